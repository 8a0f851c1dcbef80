//! Socket helpers both client listeners share: reading a frame body without
//! trusting its announced length, and shutting a socket down from either half.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_lite::io::BufReader;
use futures_lite::{AsyncBufRead, AsyncBufReadExt, AsyncRead};

/// Each connection's read buffer: frame prefixes and small requests come through
/// it; a large body's bytes beyond it are received straight into the body.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A frame body grows by at most this much per read, so a peer that announces a
/// large frame and sends little holds little memory.
pub const FRAME_GROWTH_BYTES: usize = 1 << 20;

/// Reads a frame body of `len` bytes (already checked against the limit), growing
/// the buffer as bytes arrive: a peer that announces a large frame and sends little
/// holds little memory.
///
/// The body is never zero-filled first (that memset was 4 % of a shard's time at
/// max rate): what `reader` already holds is copied out, the rest is received from
/// `fd` straight into the body's spare capacity with a non-blocking `recv`, and
/// when the socket is empty the task waits through glommio (`fill_buf`). `fd` must
/// be the socket `reader` reads, with no other reader (glommio's default stream
/// keeps no buffer of its own, so the two see one byte stream).
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    fd: RawFd,
    len: usize,
) -> io::Result<Bytes> {
    let mut body = BytesMut::new();
    while body.len() < len {
        let buffered = reader.buffer();
        if !buffered.is_empty() {
            let n = buffered.len().min(len - body.len());
            body.extend_from_slice(&buffered[..n]);
            Pin::new(&mut *reader).consume(n);
            continue;
        }
        let want = (len - body.len()).min(FRAME_GROWTH_BYTES);
        body.reserve(want);
        match recv_into_spare(fd, &mut body, want) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read: wait for bytes, which land in the reader's buffer.
                if reader.fill_buf().await?.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(body.freeze())
}

/// One non-blocking `recv` of at most `want` bytes into `body`'s spare capacity.
fn recv_into_spare(fd: RawFd, body: &mut BytesMut, want: usize) -> io::Result<usize> {
    let spare = body.spare_capacity_mut();
    let want = want.min(spare.len());
    // SAFETY: recv writes at most `want` bytes through a raw pointer into memory
    // `body` owns and has not initialised; no reference to that memory exists.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { body.set_len(body.len() + n) };
    Ok(n)
}

/// Shuts a socket down in both directions; the descriptor stays open until its
/// owner drops it, so no other file can take its number meanwhile.
pub fn shutdown_both(fd: RawFd) {
    // SAFETY: `fd` is a socket its caller still owns; shutdown does not close it.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::sync::run_on_executor as run;

    /// A body of `len` bytes after a 4-byte prefix, written in one go up to
    /// `first`, then in small pieces with pauses (the socket runs empty between
    /// them); read back it must be byte for byte what was sent.
    fn round_trip(len: usize, first: usize) {
        run(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let sent = body.clone();
            let writer = glommio::spawn_local(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let mut all = (len as u32).to_be_bytes().to_vec();
                all.extend_from_slice(&sent);
                let (head, tail) = all.split_at(4 + first.min(len));
                s.write_all(head).await.expect("write head");
                for piece in tail.chunks(3_000) {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                    s.write_all(piece).await.expect("write piece");
                }
                s
            });
            let stream = listener.accept().await.expect("accept");
            let fd = stream.as_raw_fd();
            let (reader, _w) = futures_lite::io::split(stream);
            let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
            let mut prefix = [0u8; 4];
            reader.read_exact(&mut prefix).await.expect("prefix");
            assert_eq!(u32::from_be_bytes(prefix) as usize, len);
            let got = read_body(&mut reader, fd, len).await.expect("body");
            assert_eq!(got.len(), len);
            assert!(got[..] == body[..], "the body differs from what was sent");
            drop(writer.await);
        });
    }

    #[test]
    fn a_body_partly_buffered_partly_trickling_in_arrives_intact() {
        // Part in the reader's buffer with the prefix, the rest in pieces.
        round_trip(40_000, 10_000);
        // Longer than the read buffer and than one growth step.
        round_trip(FRAME_GROWTH_BYTES + 70_000, 200_000);
        // Nothing but the prefix at first.
        round_trip(9_000, 0);
    }

    #[test]
    fn a_peer_that_closes_mid_body_is_an_unexpected_eof() {
        run(|| async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let writer = glommio::spawn_local(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                s.write_all(&[1u8; 100]).await.expect("write");
                // Dropped: the connection closes after 100 of 1000 bytes.
            });
            let stream = listener.accept().await.expect("accept");
            let fd = stream.as_raw_fd();
            let (reader, _w) = futures_lite::io::split(stream);
            let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
            writer.await;
            let e = read_body(&mut reader, fd, 1_000)
                .await
                .expect_err("cut short");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        });
    }
}
