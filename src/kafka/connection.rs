//! One Kafka-protocol connection: reads `i32 size | request header | body` frames
//! (the size is checked against `socket.request.max.bytes` before anything is
//! allocated, and the buffer grows as bytes arrive), answers each in its own task, and writes the answers in request
//! order, as Kafka guarantees its clients. A frame that cannot be understood (an
//! unknown API, an unsupported version, a header or body that does not decode)
//! closes the connection, as Kafka does; ApiVersions at a version it does not
//! serve gets its v0 answer with UNSUPPORTED_VERSION so the client can downgrade.

use std::io;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use kafka_protocol::messages::ApiKey;
use std::rc::Rc;
use std::time::Instant;
use tracing::debug;

use crate::core::memory::{Grant, MemoryBudget};
use crate::core::request_order::RequestOrder;
use crate::core::shard::Shard;
use crate::kafka::api::{self, codes, Answer};
use crate::metrics::{Protocol, RequestKind};
use crate::net::{shutdown_both, write_all_vectored, SocketReader};

/// Answers being prepared for one connection; reading pauses beyond this.
const INFLIGHT_MAX: usize = 128;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // glommio's writes never block the thread; this bounds how long one waits for a
    // peer that reads nothing.
    let _ = stream.set_write_timeout(Some(shard.config.connections_max_idle));
    let fd = stream.as_raw_fd();
    let peer = stream.peer_addr().ok();
    let _open = shard.stats.connection(Protocol::Kafka);
    let (reader, mut writer) = futures_lite::io::split(stream);
    let mut reader = SocketReader::new(reader, fd);
    // Each request's answer comes through its own channel; the writer takes the
    // channels in request order.
    let (order_tx, order_rx) = flume::bounded::<flume::Receiver<Option<Answer>>>(INFLIGHT_MAX);
    let writer_task = glommio::spawn_local(async move {
        while let Ok(answer) = order_rx.recv_async().await {
            match answer.recv_async().await {
                // The answer's memory grant is released once its frame is written.
                Ok(Some(answer)) => {
                    let frame = std::slice::from_ref(&answer.frame);
                    if let Err(e) = write_all_vectored(fd, &mut writer, frame).await {
                        debug!(error = %e, "kafka connection write failed: closing");
                        // Ends the reader too; queued answers go with the channels.
                        shutdown_both(fd);
                        return;
                    }
                    drop(answer.memory);
                }
                // No response (acks = 0), or a request that ends the connection.
                Ok(None) => {}
                Err(_) => return,
            }
        }
        let _ = writer.close().await;
    });
    let max = shard.config.socket_request_max_bytes;
    let order = Rc::new(RequestOrder::default());
    loop {
        let stopping = async {
            shard.stopping.wait().await;
            Ok(None)
        };
        let memory = &shard.request_memory;
        let read = futures_lite::future::or(read_frame(&mut reader, max, memory), stopping).await;
        let (frame, request_memory) = match read {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                debug!(?peer, error = %e, "kafka connection ends");
                break;
            }
        };
        let Some((api, version, correlation_id, body)) = api::parse_request_header(frame) else {
            debug!(
                ?peer,
                "kafka frame with an unknown API or a bad header: closing"
            );
            break;
        };
        let (tx, rx) = flume::bounded(1);
        if order_tx.send_async(rx).await.is_err() {
            break;
        }
        let served = api::supported(api).is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
        if !served {
            if api == ApiKey::ApiVersions {
                let answer = api::encode_response(
                    api,
                    0,
                    correlation_id,
                    &api::api_versions(codes::UNSUPPORTED_VERSION),
                )
                .ok()
                .map(Answer::from);
                let _ = tx.send_async(answer).await;
                continue;
            }
            debug!(
                ?peer,
                ?api,
                version,
                "unsupported kafka API version: closing"
            );
            let _ = tx.send_async(None).await;
            break;
        }
        let request = match api::decode_request(api, version, body) {
            Ok(r) => r,
            Err(e) => {
                // A body that does not decode: the stream cannot be trusted.
                debug!(?peer, error = %e, "kafka request does not decode: closing");
                drop(tx);
                break;
            }
        };
        // Earlier writes on this connection take effect first (see request_order).
        let ticket = order.admit(api::effect(api)).await;
        let guard = shard.begin_request();
        let started = Instant::now();
        let kind = match api {
            ApiKey::Produce => RequestKind::Produce,
            ApiKey::Fetch => RequestKind::Fetch,
            _ => RequestKind::Other,
        };
        let answering: Answering = match request {
            // Queued on the owners here, before the next request is read.
            api::KafkaRequest::Produce(req) => {
                match api::enqueue_produce(&shard, version, correlation_id, req).await {
                    Ok(answer) => Box::pin(answer),
                    Err(e) => {
                        debug!(?peer, error = %e, "kafka produce failed: closing");
                        break;
                    }
                }
            }
            request => {
                let shard = shard.clone();
                Box::pin(
                    async move { api::dispatch(&shard, version, correlation_id, request).await },
                )
            }
        };
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let answer = answering.await;
            drop(ticket);
            drop(request_memory);
            shard.stats.request_done(Protocol::Kafka, kind, started);
            drop(guard);
            match answer {
                Ok(frame) => {
                    let _ = tx.send_async(frame).await;
                }
                Err(e) => {
                    // A body that does not decode: the stream cannot be trusted.
                    debug!(error = %e, "kafka request failed: closing");
                    drop(tx);
                }
            }
        })
        .detach();
    }
    drop(order_tx);
    let _ = writer_task.await;
}

/// A request being answered: its response, `None` for none.
type Answering =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Answer>, api::KafkaError>>>>;

/// Reads one frame body once the shard's request memory has room for it; `None`
/// at a clean end of stream.
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut SocketReader<R>,
    max: usize,
    memory: &Rc<MemoryBudget>,
) -> io::Result<Option<(Bytes, Grant)>> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size)
        .ok()
        .filter(|n| (8..=max).contains(n))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame size {size} outside [8, {max}] (socket.request.max.bytes)"),
            )
        })?;
    let grant = memory.reserve(len).await;
    let body = reader.read_body(len).await?;
    Ok(Some((body, grant)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_garbage_does_not() {
        // ApiVersions v3 header (flexible: v2): key 18, version 3, id 7, client "c", no tags.
        let frame = Bytes::from_static(&[0, 18, 0, 3, 0, 0, 0, 7, 0, 1, b'c', 0, 0xAA]);
        let (api, version, id, body) = api::parse_request_header(frame).unwrap();
        assert_eq!((api, version, id), (ApiKey::ApiVersions, 3, 7));
        assert_eq!(&body[..], &[0xAA]);
        assert!(
            api::parse_request_header(Bytes::from_static(&[0x7f, 0x7f, 0, 0])).is_none(),
            "unknown key"
        );
        assert!(
            api::parse_request_header(Bytes::from_static(&[0, 18])).is_none(),
            "short"
        );
        // A client id claiming more bytes than the frame has.
        assert!(
            api::parse_request_header(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0]))
                .is_none()
        );
    }
}
