//! Socket helpers both client listeners share: reading a frame body without
//! trusting its announced length, and shutting a socket down from either half.

use std::io;
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncReadExt;

/// A frame body grows by at most this much per read, so a peer that announces a
/// large frame and sends little holds little memory.
pub const FRAME_GROWTH_BYTES: usize = 1 << 20;

/// Reads a frame body of `len` bytes (already checked against the limit), growing
/// the buffer as bytes arrive: a peer that announces a large frame and sends little
/// holds little memory.
pub async fn read_body<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> io::Result<Bytes> {
    let mut body = BytesMut::new();
    while body.len() < len {
        let start = body.len();
        let step = (len - start).min(FRAME_GROWTH_BYTES);
        body.resize(start + step, 0);
        reader.read_exact(&mut body[start..]).await?;
    }
    Ok(body.freeze())
}

/// Shuts a socket down in both directions; the descriptor stays open until its
/// owner drops it, so no other file can take its number meanwhile.
pub fn shutdown_both(fd: RawFd) {
    // SAFETY: `fd` is a socket its caller still owns; shutdown does not close it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
