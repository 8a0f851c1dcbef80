//! The consumer: reads assigned partitions from chosen offsets. One fetch is always
//! in flight ahead of the application: as soon as an answer arrives, the next fetch
//! (from the offsets after it) is sent, then the records are decoded and returned.
//!
//! It follows leadership as Kafka's consumer does: a partition whose leader moved
//! (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, a fenced or unknown epoch) or
//! whose leader's broker cannot be reached or does not answer within
//! `request_timeout_ms` is skipped for that round, the topic's metadata is
//! refreshed after a short backoff, and the next fetch goes to the new leader
//! from the same position. Nothing is lost or read twice: positions move only
//! with records returned.

use std::collections::VecDeque;

use bytes::Bytes;
use ringlog_schema::frame::payload_slice;
use ringlog_schema::wire::{BodyT, ErrorCode, FetchPartitionT, FetchRequestT};
use ringlog_schema::{split_batches, RecordHeader};

use crate::client::cluster::unexpected;
use crate::client::connection::ResponseFuture;
use crate::client::{Client, ClientError};

/// Consumer settings (Kafka's names in the docs).
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`: how long the broker holds a fetch waiting for data.
    pub max_wait_ms: u32,
    /// `fetch.min.bytes`.
    pub min_bytes: u32,
    /// `fetch.max.bytes`.
    pub max_bytes: u32,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: u32,
    /// `request.timeout.ms`: how long an answer may take beyond `max_wait_ms`
    /// before the leader is taken as unreachable (a stopped process keeps its
    /// connection open but never answers).
    pub request_timeout_ms: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 << 20,
            partition_max_bytes: 1 << 20,
            request_timeout_ms: 30_000,
        }
    }
}

/// Where a partition's consumption starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    Offset(i64),
}

/// A consumed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

struct Position {
    partition: i32,
    offset: i64,
}

/// Reads one topic's assigned partitions.
pub struct Consumer {
    client: Client,
    topic: String,
    config: ConsumerConfig,
    positions: Vec<Position>,
    /// One fetch per leader broker of the partitions read, sent ahead.
    ahead: Option<Vec<ResponseFuture>>,
    ready: VecDeque<Record>,
}

impl Consumer {
    /// Assigns `partitions` of `topic` (all when `None`), each starting at `start`.
    pub async fn assign(
        client: Client,
        topic: &str,
        partitions: Option<Vec<i32>>,
        start: StartOffset,
        config: ConsumerConfig,
    ) -> Result<Self, ClientError> {
        let info = client.topic(topic, false).await?;
        let count = info.partitions.len();
        let partitions = match partitions {
            Some(ps) => {
                for p in &ps {
                    if *p < 0 || *p as usize >= count {
                        return Err(ClientError::UnknownPartition {
                            topic: topic.to_string(),
                            partition: *p,
                            count,
                        });
                    }
                }
                ps
            }
            None => (0..count as i32).collect(),
        };
        let mut starts = Vec::with_capacity(partitions.len());
        for p in partitions {
            let offset = match start {
                StartOffset::Earliest => client.list_offset(topic, p, -2).await?,
                StartOffset::Latest => client.list_offset(topic, p, -1).await?,
                StartOffset::Offset(o) => o,
            };
            starts.push((p, offset));
        }
        Ok(Self::assign_at(client, topic, starts, config))
    }

    /// Reads `topic`'s partitions from the given offsets: `(partition, offset)`.
    pub fn assign_at(
        client: Client,
        topic: &str,
        starts: Vec<(i32, i64)>,
        config: ConsumerConfig,
    ) -> Self {
        Self {
            client,
            topic: topic.to_string(),
            config,
            positions: starts
                .into_iter()
                .map(|(partition, offset)| Position { partition, offset })
                .collect(),
            ahead: None,
            ready: VecDeque::new(),
        }
    }

    /// The topic this consumer reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next offset to read of each assigned partition.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.positions
            .iter()
            .map(|p| (p.partition, p.offset))
            .collect()
    }

    /// Returns the next records: at once if some are buffered, else after one fetch
    /// (which the broker holds up to `max_wait_ms`); empty if nothing arrived.
    pub async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        if !self.ready.is_empty() {
            return Ok(self.ready.drain(..).collect());
        }
        let pending = match self.ahead.take() {
            Some(p) => p,
            None => match self.send_fetch().await {
                Ok(p) => p,
                Err(e) if e.is_stale_leadership() => {
                    self.client.refresh_leadership(&self.topic).await;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            },
        };
        let mut answers = Vec::new();
        let mut stale = false;
        for p in pending {
            let frame = match self.answer(p).await {
                Ok(frame) => frame,
                Err(e) if e.is_stale_leadership() => {
                    stale = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let resp = match frame.envelope.body {
                BodyT::FetchResponse(r) => r,
                other => return Err(unexpected(other)),
            };
            answers.push((frame.payload, resp));
        }
        let mut chunks = Vec::new();
        for (payload, p) in answers.into_iter().flat_map(|(payload, r)| {
            r.partitions
                .unwrap_or_default()
                .into_iter()
                .map(move |p| (payload.clone(), p))
        }) {
            if p.topic != self.topic {
                continue;
            }
            if p.error != ErrorCode::NONE {
                let e = ClientError::broker(p.error, p.message);
                if e.is_stale_leadership() {
                    stale = true;
                    continue;
                }
                return Err(e);
            }
            let data = match &p.records {
                Some(r) if r.length > 0 => payload_slice(&payload, Some(r), "records")
                    .map_err(|e| ClientError::Protocol(e.to_string()))?,
                _ => continue,
            };
            let Some(pos) = self
                .positions
                .iter_mut()
                .find(|x| x.partition == p.partition)
            else {
                continue;
            };
            let from = pos.offset;
            for b in split_batches(data.clone()) {
                let b = b.map_err(|e| ClientError::Records(e.to_string()))?;
                pos.offset = pos.offset.max(b.last_offset() + 1);
            }
            chunks.push((p.partition, from, data));
        }
        if stale {
            self.client.refresh_leadership(&self.topic).await;
        }
        // Fetch ahead while this answer is decoded and processed (a leader that
        // cannot be reached now is found again at the next poll).
        self.ahead = match self.send_fetch().await {
            Ok(p) => Some(p),
            Err(e) if e.is_stale_leadership() => None,
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for (partition, from, data) in chunks {
            for b in split_batches(data) {
                let b = b.map_err(|e| ClientError::Records(e.to_string()))?;
                for r in b
                    .records()
                    .map_err(|e| ClientError::Records(e.to_string()))?
                {
                    if r.offset < from {
                        continue;
                    }
                    out.push(Record {
                        partition,
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The answer to a fetch, or `Timeout` once it is `request_timeout_ms` late.
    async fn answer(&self, pending: ResponseFuture) -> Result<ringlog_schema::Frame, ClientError> {
        let limit = u64::from(self.config.max_wait_ms) + u64::from(self.config.request_timeout_ms);
        let late = async {
            glommio::timer::sleep(std::time::Duration::from_millis(limit)).await;
            Err(ClientError::Timeout(limit))
        };
        futures_lite::future::or(pending.await_response(), late).await
    }

    /// Sends one fetch to each leader of the partitions read.
    async fn send_fetch(&self) -> Result<Vec<ResponseFuture>, ClientError> {
        let mut by_leader: std::collections::BTreeMap<i32, Vec<FetchPartitionT>> =
            std::collections::BTreeMap::new();
        for p in &self.positions {
            let leader = self.client.leader_of(&self.topic, p.partition).await?;
            by_leader.entry(leader).or_default().push(FetchPartitionT {
                topic: self.topic.clone(),
                partition: p.partition,
                offset: p.offset,
                max_bytes: self.config.partition_max_bytes,
            });
        }
        let mut pending = Vec::new();
        for (leader, partitions) in by_leader {
            let body = BodyT::FetchRequest(Box::new(FetchRequestT {
                max_wait_ms: self.config.max_wait_ms,
                min_bytes: self.config.min_bytes,
                max_bytes: self.config.max_bytes,
                partitions: Some(partitions),
            }));
            let conn = self.client.connection_to(leader).await?;
            pending.push(conn.send(body, Vec::new()).await?);
        }
        Ok(pending)
    }
}
