//! One client connection on the native listener: frames in, responses out.
//!
//! The reader decodes frames one after another and hands each request to its own
//! task, so requests are pipelined and answered in any order (matched by correlation
//! id). Produce requests are the exception that keeps order: the reader itself hands
//! each produce to the owner shards' queues before reading the next frame, so a
//! connection's batches for a partition are appended in the order they were sent.
//! A request starts only once the writes sent before it on the connection have
//! taken effect (`request_order`). At most `CONNECTION_INFLIGHT_MAX` requests are in flight; beyond that the reader
//! stops reading (TCP backpressure). The writer task writes each response as one
//! vectored `sendmsg` of the frame head and the payload buffers (cached or disk-read
//! batches), so fetched record data is never copied.
//!
//! The socket is in blocking mode (glommio accepts it so), so the vectored write is
//! made non-blocking per call (`MSG_DONTWAIT`) and a full socket is waited on through
//! the reactor: a peer that stops reading never blocks the shard's thread. A peer that
//! reads nothing for `connections.max.idle.ms` has its connection closed, and what was
//! queued for it is released.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::io::{AsyncWriteExt, WriteHalf};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use ringlog_schema::frame::{self, FrameError, FRAME_LEN_BYTES};
use ringlog_schema::wire::{BodyT, EnvelopeT, ErrorCode, ErrorResponseT};
use tracing::debug;

use crate::config::CONNECTION_INFLIGHT_MAX;
use crate::core::memory::{Grant, MemoryBudget};
use crate::core::request_order::{Effect, RequestOrder};
use crate::core::shard::Shard;
use crate::metrics::{Protocol, RequestKind};
use crate::native::{self, Outgoing, Response};
use crate::net::{shutdown_both, write_all_vectored, SocketReader};

/// Most queued responses the writer sends in one vectored write.
const WRITE_GATHER_MAX: usize = 64;

/// Serves one connection until the peer closes it, it breaks the protocol beyond
/// repair, or the shard stops.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // Bounds each wait for room in the socket (glommio counts from the write that
    // found it full): a reader that stopped is cut off, not waited for forever.
    let _ = stream.set_write_timeout(Some(shard.config.connections_max_idle));
    let fd = stream.as_raw_fd();
    let peer = stream.peer_addr().ok();
    let _open = shard.stats.connection(Protocol::Native);
    let (reader, writer) = futures_lite::io::split(stream);
    let mut reader = SocketReader::new(reader, fd);
    let (out_tx, out_rx) = flume::bounded::<Outgoing>(CONNECTION_INFLIGHT_MAX);
    let writer_task = glommio::spawn_local(write_loop(fd, writer, out_rx));
    let slots = Rc::new(Semaphore::new(CONNECTION_INFLIGHT_MAX as u64));
    let max = shard.config.socket_request_max_bytes;
    let order = Rc::new(RequestOrder::default());
    loop {
        let Ok(permit) = slots.clone().acquire_static_permit(1).await else {
            break;
        };
        let stopping = async {
            shard.stopping.wait().await;
            Ok(None)
        };
        let memory = &shard.request_memory;
        let next = futures_lite::future::or(read_frame(&mut reader, max, memory), stopping).await;

        let (body, request_memory) = match next {
            Ok(Some(read)) => read,
            Ok(None) => break,
            Err(ReadError::Io(e)) => {
                debug!(?peer, error = %e, "connection read ended");
                break;
            }
            Err(ReadError::Frame(e)) => {
                // The stream cannot be resynchronized: answer, then close.
                let _ = out_tx
                    .send_async(error_frame(0, ErrorCode::MALFORMED_FRAME, &e))
                    .await;
                break;
            }
        };
        let guard = shard.begin_request();
        let frame = match frame::decode_frame(body.clone()) {
            Ok(f) => f,
            Err(e) => {
                let id = frame::peek_correlation_id(&body).unwrap_or(0);
                if out_tx
                    .send_async(error_frame(id, ErrorCode::MALFORMED_FRAME, &e))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
        };
        // Earlier writes on this connection take effect first (see request_order).
        let ticket = order.admit(effect(&frame.envelope.body)).await;
        let correlation_id = frame.envelope.correlation_id;
        let out = out_tx.clone();
        let started = Instant::now();
        let kind = match &frame.envelope.body {
            BodyT::ProduceRequest(_) => RequestKind::Produce,
            BodyT::FetchRequest(_) => RequestKind::Fetch,
            _ => RequestKind::Other,
        };
        let timed = shard.clone();
        let respond = move |resp: Option<Response>| async move {
            drop(ticket);
            // The request's bytes (a produce's records) are no longer needed.
            drop(request_memory);
            timed.stats.request_done(Protocol::Native, kind, started);
            if let Some(resp) = resp {
                let _ = out.send_async(resp.into_outgoing(correlation_id)).await;
            }
            drop(permit);
            drop(guard);
        };
        if let BodyT::ProduceRequest(req) = frame.envelope.body {
            // Queue the batches on their owners now, in arrival order; answer later.
            let pending = native::produce::enqueue(&shard, *req, frame.payload).await;

            glommio::spawn_local(async move { respond(pending.finish().await).await }).detach();
        } else {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                let resp = native::dispatch(&shard, frame.envelope.body, frame.payload).await;
                respond(resp).await;
            })
            .detach();
        }
    }
    // Let in-flight requests answer, then close the writer.
    let _ = slots.acquire(CONNECTION_INFLIGHT_MAX as u64).await;
    drop(out_tx);
    let _ = writer_task.await;
}

/// What a request does to broker state, for the connection's request order.
pub fn effect(body: &BodyT) -> Effect {
    match body {
        BodyT::ProduceRequest(_) => Effect::Produce,
        BodyT::CreateTopicsRequest(_)
        | BodyT::DeleteTopicsRequest(_)
        | BodyT::AlterTopicConfigsRequest(_)
        | BodyT::ElectLeadersRequest(_)
        | BodyT::JoinGroupRequest(_)
        | BodyT::SyncGroupRequest(_)
        | BodyT::HeartbeatRequest(_)
        | BodyT::LeaveGroupRequest(_)
        | BodyT::OffsetCommitRequest(_)
        | BodyT::DeleteGroupsRequest(_) => Effect::Write,
        _ => Effect::Read,
    }
}

enum ReadError {
    Io(io::Error),
    Frame(FrameError),
}

/// Reads one frame body (everything after `frame_len`) once the shard's request
/// memory has room for all of it; `None` at a clean EOF.
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut SocketReader<R>,
    max: usize,
    memory: &Rc<MemoryBudget>,
) -> Result<Option<(Bytes, Grant)>, ReadError> {
    let mut prefix = [0u8; FRAME_LEN_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ReadError::Io(e)),
    }
    let len = frame::frame_len(prefix, max).map_err(ReadError::Frame)?;
    let grant = memory.reserve(len).await;
    let body = reader.read_body(len).await.map_err(ReadError::Io)?;
    Ok(Some((body, grant)))
}

fn error_frame(correlation_id: u64, code: ErrorCode, e: &dyn std::fmt::Display) -> Outgoing {
    let env = EnvelopeT {
        correlation_id,
        body: BodyT::ErrorResponse(Box::new(ErrorResponseT {
            error: code,
            message: Some(e.to_string()),
        })),
    };
    vec![frame::encode_frame_head(&env, 0)].into()
}

async fn write_loop(fd: RawFd, mut writer: WriteHalf<TcpStream>, rx: flume::Receiver<Outgoing>) {
    let mut buffers = Vec::new();
    let mut grants = Vec::new();
    while let Ok(first) = rx.recv_async().await {
        // Responses that are ready together leave in one sendmsg.
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(out) = next.take() {
            buffers.extend(out.buffers);
            grants.push(out.memory);
            taken += 1;
            if taken < WRITE_GATHER_MAX {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = write_all_vectored(fd, &mut writer, &buffers).await {
            debug!(error = %e, "connection write failed: closing");
            // Wake the reader too (it sees end of stream), so the connection ends and
            // everything queued for it is dropped with the channel.
            shutdown_both(fd);
            return;
        }
        // Each response's memory grant is released once its bytes are written.
        buffers.clear();
        grants.clear();
    }
    let _ = writer.close().await;
}
