//! Socket I/O on glommio streams for the listeners and the client: reads and
//! vectored writes go to the kernel directly (non-blocking), and glommio's reactor
//! is used only to wait when the socket is empty or full; a frame body is read
//! without trusting its announced length; a socket can be shut down from either half.

use std::io;
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Each connection's read buffer: frame prefixes and small requests come through
/// it; a large body's bytes beyond it are received straight into the body.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A frame body grows by at most this much per read, so a peer that announces a
/// large frame and sends little holds little memory.
pub const FRAME_GROWTH_BYTES: usize = 1 << 20;

/// The read half of a connection: a buffer in front of the socket, filled by
/// non-blocking `recv` calls, with the reactor used only when the socket is empty.
///
/// Why not `BufReader` over glommio's stream: after a read that does not fill its
/// buffer, glommio arms a readiness poll, and its next read waits for that poll's
/// completion to be reaped by the reactor even when bytes are waiting. The reactor
/// runs only when the shard's run queue is empty, so under load the reader (the
/// only way requests enter) waited behind every other task for each frame: 1-3 MB
/// of requests sat unread in the socket at max rate. Here a read goes to the kernel
/// directly and only `WouldBlock` waits.
///
/// `fd` must be the socket `inner` reads, with no other reader (glommio's stream
/// keeps no buffer of its own, so the two see one byte stream).
pub struct SocketReader<R> {
    inner: R,
    fd: RawFd,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> SocketReader<R> {
    pub fn new(inner: R, fd: RawFd) -> Self {
        Self {
            inner,
            fd,
            buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Fills `out`; `UnexpectedEof` if the stream ends first.
    pub async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            if self.start == self.end && self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = (self.end - self.start).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            filled += n;
        }
        Ok(())
    }

    /// Reads a frame body of `len` bytes (already checked against the limit),
    /// growing it as bytes arrive: a peer that announces a large frame and sends
    /// little holds little memory.
    ///
    /// The body is never zero-filled first (that memset was 4 % of a shard's time at
    /// max rate): what the buffer holds is copied out, the rest is received straight
    /// into the body's spare capacity.
    pub async fn read_body(&mut self, len: usize) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        while body.len() < len {
            if self.start < self.end {
                let n = (self.end - self.start).min(len - body.len());
                body.extend_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                continue;
            }
            let want = (len - body.len()).min(FRAME_GROWTH_BYTES);
            body.reserve(want);
            match recv_into_spare(self.fd, &mut body, want) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing to read: wait for bytes, which land in the buffer.
                    if self.wait_and_read().await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(body.freeze())
    }

    /// Reads more into the (empty) buffer: at once if the socket has bytes, else
    /// through the reactor. Returns 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        self.start = 0;
        self.end = 0;
        loop {
            match recv_nonblocking(self.fd, &mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.wait_and_read().await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits through glommio until the (empty) buffer gets bytes.
    async fn wait_and_read(&mut self) -> io::Result<usize> {
        let n = self.inner.read(&mut self.buf).await?;
        self.start = 0;
        self.end = n;
        Ok(n)
    }
}

/// One non-blocking `recv` into `buf`.
fn recv_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into memory `buf` borrows
    // mutably.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// One non-blocking `recv` of at most `want` bytes into `body`'s spare capacity.
fn recv_into_spare(fd: RawFd, body: &mut BytesMut, want: usize) -> io::Result<usize> {
    let spare = body.spare_capacity_mut();
    let want = want.min(spare.len());
    // SAFETY: recv writes at most `want` bytes through a raw pointer into memory
    // `body` owns and has not initialised; no reference to that memory exists.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { body.set_len(body.len() + n) };
    Ok(n)
}

/// Most buffers in one `sendmsg` (Linux IOV_MAX is 1024).
const IOVECS_MAX: usize = 1024;

/// Writes every buffer with as few `sendmsg` calls as the socket allows; when the
/// socket is full, waits through glommio for it to drain. Each call is non-blocking
/// (`MSG_DONTWAIT`): the socket itself is in blocking mode.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    fd: RawFd,
    writer: &mut W,
    bufs: &[Bytes],
) -> io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    while idx < bufs.len() {
        if bufs[idx].len() == off {
            idx += 1;
            off = 0;
            continue;
        }
        let iov: Vec<libc::iovec> = bufs[idx..]
            .iter()
            .take(IOVECS_MAX)
            .enumerate()
            .map(|(i, b)| {
                let skip = if i == 0 { off } else { 0 };
                libc::iovec {
                    iov_base: b[skip..].as_ptr() as *mut libc::c_void,
                    iov_len: b.len() - skip,
                }
            })
            .collect();
        let n = send_vectored_nonblocking(fd, &iov);
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    // Socket buffer full: let glommio wait for room for this buffer.
                    writer.write_all(&bufs[idx][off..]).await?;
                    idx += 1;
                    off = 0;
                    continue;
                }
                _ => return Err(err),
            }
        }
        let mut n = n as usize;
        while n > 0 && idx < bufs.len() {
            let left = bufs[idx].len() - off;
            if n >= left {
                n -= left;
                idx += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// One `sendmsg` of `iov` that never blocks the thread: `EAGAIN` when the socket is
/// full. `MSG_NOSIGNAL`: a peer that went away is an error, not a SIGPIPE.
fn send_vectored_nonblocking(fd: RawFd, iov: &[libc::iovec]) -> isize {
    // SAFETY: a zeroed msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: every iovec points into a live `Bytes` the caller holds for the call;
    // `fd` is the connection's socket, open while its writer exists.
    unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) }
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

    use futures_lite::AsyncWriteExt;
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
            let mut reader = SocketReader::new(reader, fd);
            let mut prefix = [0u8; 4];
            reader.read_exact(&mut prefix).await.expect("prefix");
            assert_eq!(u32::from_be_bytes(prefix) as usize, len);
            let got = reader.read_body(len).await.expect("body");
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
            let mut reader = SocketReader::new(reader, fd);
            writer.await;
            let e = reader.read_body(1_000).await.expect_err("cut short");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            // And a clean end of stream shows as one too.
            let mut prefix = [0u8; 4];
            let e = reader.read_exact(&mut prefix).await.expect_err("ended");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    /// Many frames of mixed sizes sent in one go (prefixes straddle the buffer's
    /// end, small bodies come from the buffer, large ones partly from the socket)
    /// read back in order, byte for byte.
    #[test]
    fn frames_sent_back_to_back_read_back_in_order() {
        run(|| async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            let sizes: Vec<usize> = (0..400).map(|i| (i * 7_919) % 150_000 + 1).collect();
            let frames: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (0..n).map(|j| (i + j * 31) as u8).collect())
                .collect();
            let sent = frames.clone();
            let writer = glommio::spawn_local(async move {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let mut all = Vec::new();
                for f in &sent {
                    all.extend_from_slice(&(f.len() as u32).to_be_bytes());
                    all.extend_from_slice(f);
                }
                s.write_all(&all).await.expect("write");
                s
            });
            let stream = listener.accept().await.expect("accept");
            let fd = stream.as_raw_fd();
            let (reader, _w) = futures_lite::io::split(stream);
            let mut reader = SocketReader::new(reader, fd);
            for (i, f) in frames.iter().enumerate() {
                let mut prefix = [0u8; 4];
                reader.read_exact(&mut prefix).await.expect("prefix");
                assert_eq!(u32::from_be_bytes(prefix) as usize, f.len(), "frame {i}");
                let got = reader.read_body(f.len()).await.expect("body");
                assert!(got[..] == f[..], "frame {i} differs");
            }
            drop(writer.await);
        });
    }
}
