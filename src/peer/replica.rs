//! Replica fetches on the wire (`ReplicaFetch`, `ReplicaFetchResponse` in
//! `schema/peer.fbs`): the follower side's connection (`PeerReplicaWire::connect`,
//! [`ReplicaConnection`]) and the leader side's server loop on the data shard the
//! inter-broker listener handed the connection to (`PeerReplicaWire::serve`).
//!
//! A response is one frame: the envelope (per-partition offsets, errors and the
//! byte count of its batches), then `payload_bytes` of batches exactly as the
//! leader stores them, sent with one vectored write from the leader's buffers and
//! read by the follower into one buffer it slices per partition, so the batches are
//! not copied on either side before the follower's append.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use ringlog_schema::peer::{
    PeerBodyT, PeerEnvelopeT, PeerError, PeerHelloT, ReplicaFetchPartitionT, ReplicaFetchResponseT,
    ReplicaFetchT, ReplicaPartitionDataT,
};
use ringlog_schema::peer_frame::{encode_peer, replica_payload_len};
use tracing::{debug, info};

use crate::core::messages::{PartitionError, PartitionKey};
use crate::core::remote::LocalFuture;
use crate::core::replica::{
    serve_fetch, ReplicaAnswer, ReplicaFetch, ReplicaFetchPartition, ReplicaLink, ReplicaWire,
};
use crate::core::shard::Shard;
use crate::metadata::BrokerId;
use crate::net::SocketReader;
use crate::peer::codec::{error_of, peer_error};
use crate::peer::read_peer_frame;
use crate::replication::divergence::EpochEnd;

/// Longest wait to connect to a leader and be welcomed.
pub const REPLICA_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How much longer than its long poll a fetch may take before the follower
/// gives up on the connection.
pub const REPLICA_FETCH_SLACK_MS: u64 = 10_000;
/// Most partitions one replica fetch may name.
pub const REPLICA_FETCH_PARTITIONS_MAX: usize = 100_000;

/// The inter-broker protocol as the data shards' replication wire.
#[derive(Default)]
pub struct PeerReplicaWire;

impl ReplicaWire for PeerReplicaWire {
    fn connect(
        &self,
        me: BrokerId,
        cluster_id: String,
        leader: BrokerId,
        addr: SocketAddr,
        shard: u16,
    ) -> LocalFuture<'_, Result<Rc<dyn ReplicaLink>, String>> {
        Box::pin(async move {
            let link = ReplicaConnection::open(me, cluster_id, leader, addr, shard).await?;
            Ok(Rc::new(link) as Rc<dyn ReplicaLink>)
        })
    }

    fn serve(&self, shard: Rc<Shard>, fd: RawFd, follower: BrokerId) {
        // SAFETY: the inter-broker listener handed this descriptor (a duplicate of
        // an accepted socket it no longer uses) to this shard, which owns it now.
        let stream = unsafe { TcpStream::from_raw_fd(fd) };
        glommio::spawn_local(serve_follower(shard, stream, follower)).detach();
    }
}

type Reader = SocketReader<ReadHalf<TcpStream>>;
type Writer = WriteHalf<TcpStream>;

/// A follower shard's connection to one leader shard.
pub struct ReplicaConnection {
    io: RefCell<Option<(Reader, Writer)>>,
    fd: RawFd,
    next_correlation: Cell<u64>,
}

impl ReplicaConnection {
    /// Connects, says hello naming the leader's shard, and waits to be welcomed.
    pub async fn open(
        me: BrokerId,
        cluster_id: String,
        leader: BrokerId,
        addr: SocketAddr,
        shard: u16,
    ) -> Result<Self, String> {
        let timeout = Duration::from_millis(REPLICA_CONNECT_TIMEOUT_MS);
        let stream = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(|e| format!("connecting to broker {} at {addr}: {e}", leader.0))?;
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let (reader, mut writer) = futures_lite::io::split(stream);
        let mut reader = SocketReader::new(reader, fd);
        let hello = encode_peer(&PeerEnvelopeT {
            correlation_id: 0,
            body: PeerBodyT::PeerHello(Box::new(PeerHelloT {
                cluster_id: (!cluster_id.is_empty()).then_some(cluster_id),
                broker_id: me.0,
                protocol_version: 1,
                replica_shard: i32::from(shard),
            })),
        });
        writer.write_all(&hello).await.map_err(|e| e.to_string())?;
        let welcome =
            futures_lite::future::or(async { read_peer_frame(&mut reader).await }, async {
                glommio::timer::sleep(timeout).await;
                Err("no answer to the hello in time".to_string())
            })
            .await?;
        match welcome.map(|e| e.body) {
            Some(PeerBodyT::PeerHelloResponse(h)) if h.error == PeerError::NONE => {}
            Some(PeerBodyT::PeerHelloResponse(h)) => {
                return Err(format!(
                    "refused by broker {}: {:?} {}",
                    leader.0,
                    h.error,
                    h.message.unwrap_or_default()
                ))
            }
            Some(_) => return Err("the answer to the hello is not a hello".into()),
            None => return Err("closed before answering the hello".into()),
        }
        Ok(Self {
            io: RefCell::new(Some((reader, writer))),
            fd,
            next_correlation: Cell::new(1),
        })
    }

    async fn exchange(&self, fetch: ReplicaFetch) -> Result<Vec<ReplicaAnswer>, String> {
        let (mut reader, mut writer) = self
            .io
            .borrow_mut()
            .take()
            .ok_or("the connection is in use or broken")?;
        let correlation_id = self.next_correlation.get();
        self.next_correlation.set(correlation_id + 1);
        let limit = fetch.max_wait + Duration::from_millis(REPLICA_FETCH_SLACK_MS);
        let frame = encode_peer(&PeerEnvelopeT {
            correlation_id,
            body: PeerBodyT::ReplicaFetch(Box::new(fetch_to_wire(&fetch))),
        });
        let round = async {
            writer.write_all(&frame).await.map_err(|e| e.to_string())?;
            let env = read_peer_frame(&mut reader)
                .await?
                .ok_or("closed by the leader")?;
            if env.correlation_id != correlation_id {
                return Err(format!(
                    "answer {} to request {correlation_id}",
                    env.correlation_id
                ));
            }
            let PeerBodyT::ReplicaFetchResponse(resp) = env.body else {
                return Err("the answer to a replica fetch is not a ReplicaFetchResponse".into());
            };
            let len = replica_payload_len(resp.payload_bytes).map_err(|e| e.to_string())?;
            let payload = if len == 0 {
                Bytes::new()
            } else {
                reader.read_body(len).await.map_err(|e| e.to_string())?
            };
            answers_from_wire(*resp, payload)
        };
        let result = futures_lite::future::or(round, async {
            glommio::timer::sleep(limit).await;
            Err(format!("no answer within {} ms", limit.as_millis()))
        })
        .await;
        if result.is_ok() {
            *self.io.borrow_mut() = Some((reader, writer));
        } else {
            crate::net::shutdown_both(self.fd);
        }
        result
    }
}

impl ReplicaLink for ReplicaConnection {
    fn fetch(&self, fetch: ReplicaFetch) -> LocalFuture<'_, Result<Vec<ReplicaAnswer>, String>> {
        Box::pin(self.exchange(fetch))
    }
}

impl Drop for ReplicaConnection {
    fn drop(&mut self) {
        crate::net::shutdown_both(self.fd);
    }
}

fn fetch_to_wire(fetch: &ReplicaFetch) -> ReplicaFetchT {
    ReplicaFetchT {
        broker_epoch: fetch.follower_epoch,
        max_wait_ms: u32::try_from(fetch.max_wait.as_millis()).unwrap_or(u32::MAX),
        max_bytes: u32::try_from(fetch.max_bytes).unwrap_or(u32::MAX),
        partition_max_bytes: u32::try_from(fetch.partition_max_bytes).unwrap_or(u32::MAX),
        partitions: fetch
            .partitions
            .iter()
            .map(|p| ReplicaFetchPartitionT {
                topic: p.key.topic.clone(),
                partition: p.key.partition,
                current_leader_epoch: p.current_leader_epoch,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: p.last_fetched_epoch,
                durable_end: p.durable_end,
            })
            .collect(),
    }
}

/// The follower's reading of a response: each partition's batches sliced out of
/// the payload, whose length must be exactly what the partitions add up to.
fn answers_from_wire(
    resp: ReplicaFetchResponseT,
    payload: Bytes,
) -> Result<Vec<ReplicaAnswer>, String> {
    if let Some(e) = error_of(resp.error, resp.message) {
        return Err(format!("replica fetch refused: {}", e.message));
    }
    let parts = resp.partitions.unwrap_or_default();
    let total: u64 = parts.iter().map(|p| u64::from(p.records_bytes)).sum();
    if total != payload.len() as u64 {
        return Err(format!(
            "partitions claim {total} bytes of batches, the payload has {}",
            payload.len()
        ));
    }
    let mut at = 0usize;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let len = p.records_bytes as usize;
        let records = payload.slice(at..at + len);
        at += len;
        let diverging = p.diverged.then_some(EpochEnd {
            epoch: p.diverging_epoch,
            end_offset: p.diverging_end_offset,
        });
        out.push(ReplicaAnswer {
            key: PartitionKey {
                topic: p.topic,
                partition: p.partition,
            },
            error: error_of(p.error, p.message),
            high_watermark: p.high_watermark,
            log_start: p.log_start_offset,
            log_end: p.log_end_offset,
            diverging,
            batches: if records.is_empty() {
                Vec::new()
            } else {
                vec![records]
            },
        });
    }
    Ok(out)
}

/// The leader shard's side of one follower's connection: one fetch at a time,
/// until the follower goes away, sends something else, or the broker stops.
async fn serve_follower(shard: Rc<Shard>, stream: TcpStream, follower: BrokerId) {
    let fd = stream.as_raw_fd();
    let (reader, mut writer) = futures_lite::io::split(stream);
    let mut reader = SocketReader::new(reader, fd);
    info!(follower = follower.0, shard = %shard.id, "serving replica fetches");
    let why = loop {
        let stopping = async {
            shard.stopping.wait().await;
            Err("the broker is stopping".to_string())
        };
        let env = match futures_lite::future::or(read_peer_frame(&mut reader), stopping).await {
            Ok(Some(env)) => env,
            Ok(None) => break "closed by the follower".to_string(),
            Err(e) => break e,
        };
        let PeerBodyT::ReplicaFetch(req) = env.body else {
            break "a frame other than ReplicaFetch on a replica connection".to_string();
        };
        let fetch = match fetch_from_wire(follower, *req) {
            Ok(f) => f,
            Err(e) => break e,
        };
        let answers = serve_fetch(&shard, fetch).await;
        let (frame, payload) = response_to_wire(env.correlation_id, answers);
        let mut bufs = Vec::with_capacity(payload.len() + 1);
        bufs.push(Bytes::from(frame));
        bufs.extend(payload);
        if let Err(e) = crate::net::write_all_vectored(fd, &mut writer, &bufs).await {
            break e.to_string();
        }
    };
    debug!(follower = follower.0, shard = %shard.id, reason = %why, "replica connection closed");
    crate::net::shutdown_both(fd);
}

fn fetch_from_wire(follower: BrokerId, req: ReplicaFetchT) -> Result<ReplicaFetch, String> {
    if req.partitions.len() > REPLICA_FETCH_PARTITIONS_MAX {
        return Err(format!(
            "a replica fetch of {} partitions exceeds {REPLICA_FETCH_PARTITIONS_MAX}",
            req.partitions.len()
        ));
    }
    let wait_ms = req.max_wait_ms.min(crate::config::FETCH_MAX_WAIT_MS_MAX);
    Ok(ReplicaFetch {
        follower,
        follower_epoch: req.broker_epoch,
        max_wait: Duration::from_millis(u64::from(wait_ms)),
        max_bytes: (req.max_bytes as usize)
            .min(crate::config::REPLICA_FETCH_RESPONSE_MAX_BYTES_MAX),
        partition_max_bytes: (req.partition_max_bytes as usize)
            .min(crate::config::REPLICA_FETCH_RESPONSE_MAX_BYTES_MAX),
        partitions: req
            .partitions
            .into_iter()
            .map(|p| ReplicaFetchPartition {
                key: PartitionKey {
                    topic: p.topic,
                    partition: p.partition,
                },
                current_leader_epoch: p.current_leader_epoch,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: p.last_fetched_epoch,
                durable_end: durable_end(p.fetch_offset, p.durable_end),
            })
            .collect(),
    })
}

/// The durable end a fetch reports: absent (-1) means the fetch offset, and it
/// never counts past the fetch offset (a follower cannot have synced what it does
/// not have; a peer saying so is not believed).
fn durable_end(fetch_offset: i64, durable_end: i64) -> i64 {
    if durable_end < 0 {
        fetch_offset
    } else {
        durable_end.min(fetch_offset)
    }
}

/// The response frame (length prefix and envelope) and the batches that follow it.
fn response_to_wire(correlation_id: u64, answers: Vec<ReplicaAnswer>) -> (Vec<u8>, Vec<Bytes>) {
    let mut payload = Vec::new();
    let mut total = 0u64;
    let partitions = answers
        .into_iter()
        .map(|a| {
            let bytes: usize = a.batches.iter().map(Bytes::len).sum();
            total += bytes as u64;
            payload.extend(a.batches);
            let (error, message) = match a.error {
                Some(PartitionError { code, message }) => (peer_error(code), Some(message)),
                None => (PeerError::NONE, None),
            };
            ReplicaPartitionDataT {
                topic: a.key.topic,
                partition: a.key.partition,
                error,
                message,
                high_watermark: a.high_watermark,
                log_start_offset: a.log_start,
                log_end_offset: a.log_end,
                diverged: a.diverging.is_some(),
                diverging_epoch: a.diverging.map_or(-1, |d| d.epoch),
                diverging_end_offset: a.diverging.map_or(-1, |d| d.end_offset),
                records_bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            }
        })
        .collect();
    let frame = encode_peer(&PeerEnvelopeT {
        correlation_id,
        body: PeerBodyT::ReplicaFetchResponse(Box::new(ReplicaFetchResponseT {
            error: PeerError::NONE,
            message: None,
            partitions: Some(partitions),
            payload_bytes: u32::try_from(total).unwrap_or(u32::MAX),
        })),
    });
    (frame, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(fetch_offset: i64, durable_end: i64) -> ReplicaFetch {
        ReplicaFetch {
            follower: BrokerId(2),
            follower_epoch: 7,
            max_wait: Duration::from_millis(0),
            max_bytes: 1 << 20,
            partition_max_bytes: 1 << 20,
            partitions: vec![ReplicaFetchPartition {
                key: PartitionKey {
                    topic: "t".into(),
                    partition: 3,
                },
                current_leader_epoch: 4,
                fetch_offset,
                last_fetched_epoch: 4,
                durable_end,
            }],
        }
    }

    #[test]
    fn a_fetch_carries_the_durable_end_and_the_leader_never_counts_past_the_fetch_offset() {
        let sent = fetch(100, 60);
        let got = fetch_from_wire(BrokerId(2), fetch_to_wire(&sent)).expect("decodes");
        assert_eq!(got, sent);
        // A peer claiming more durable than it has is held to its fetch offset.
        let mut wire = fetch_to_wire(&fetch(100, 60));
        wire.partitions[0].durable_end = 500;
        let got = fetch_from_wire(BrokerId(2), wire).expect("decodes");
        assert_eq!(got.partitions[0].durable_end, 100);
        // A follower that does not send one (-1) reports its fetch offset.
        let mut wire = fetch_to_wire(&fetch(100, 60));
        wire.partitions[0].durable_end = -1;
        let got = fetch_from_wire(BrokerId(2), wire).expect("decodes");
        assert_eq!(got.partitions[0].durable_end, 100);
    }
}
