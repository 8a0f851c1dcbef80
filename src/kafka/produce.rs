//! Produce (v3 and later carry RecordBatch v2, which is what the log stores): each
//! partition's records go to their owner shard in arrival order, as on the native
//! protocol, and are answered once committed; acks = 0 gets no answer.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use crate::core::messages::{Acks, PartitionError, PartitionKey};
use crate::core::produce::{outcome, queue, Queued};
use crate::core::routing::refused_partitions;
use crate::core::shard::Shard;
use crate::kafka::api::{codes, kafka_code, TopicEntries};
use crate::sync::join::join_all;

/// A produce whose partitions are queued on their owners (or refused).
pub struct PendingProduce {
    acks: i16,
    version: i16,
    queued: Vec<(PartitionKey, Result<Queued, Refusal>)>,
}

/// The checks a produce passes before anything is queued (pure, so the fuzzer runs
/// exactly what the broker runs): each partition named, with its records or the
/// reason it is refused.
pub fn route(req: ProduceRequest, version: i16) -> Vec<(PartitionKey, Result<Bytes, Refusal>)> {
    let acks = req.acks;
    let named = req.topic_data.iter().flat_map(|t| {
        t.partition_data
            .iter()
            .map(|p| (t.name.0.as_str(), p.index))
    });
    let mut refusals =
        refused_partitions("produce", named.collect::<Vec<_>>().into_iter()).into_iter();
    let mut routed = Vec::new();
    for t in req.topic_data {
        let topic = t.name.0.to_string();
        for p in t.partition_data {
            let key = PartitionKey::new(&topic, p.index);
            let records = if let Some(e) = refusals.next().flatten() {
                Err(Refusal::from(e))
            } else if !(-1..=1).contains(&acks) {
                Err(refused(
                    codes::INVALID_REQUIRED_ACKS,
                    "acks must be 0, 1 or -1",
                ))
            } else if version < 3 {
                // Before v3 the records are message sets v0/v1, which are not stored.
                Err(refused(
                    codes::UNSUPPORTED_FOR_MESSAGE_FORMAT,
                    "produce v3 or later (RecordBatch v2) is required",
                ))
            } else {
                Ok(p.records.unwrap_or_else(Bytes::new))
            };
            routed.push((key, records));
        }
    }
    routed
}

/// Queues each partition's records on its owner shard. The connection's reader
/// calls this before it reads the next request, so a connection's produces reach
/// the owners in the order they were sent, whatever backpressure the mesh applies.
pub async fn enqueue(shard: &Shard, req: ProduceRequest, version: i16) -> PendingProduce {
    let acks = req.acks;
    let timeout = crate::core::produce::replication_timeout(i64::from(req.timeout_ms));
    // `route` refuses every partition of a request with another acks value.
    let level = Acks::from_wire(acks).unwrap_or(Acks::All);
    let mut queued = Vec::new();
    for (key, records) in route(req, version) {
        let sent = match records {
            Ok(records) => Ok(queue(shard, &key, records, level, timeout).await),
            Err(e) => Err(e),
        };
        queued.push((key, sent));
    }
    PendingProduce {
        acks,
        version,
        queued,
    }
}

impl PendingProduce {
    /// Waits for every partition's outcome: the answer, or `None` for acks = 0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let PendingProduce {
            acks,
            version,
            queued,
        } = self;
        let outcomes = join_all(
            queued
                .into_iter()
                .map(|(key, sent)| async move {
                    let outcome = match sent {
                        Ok(queued) => outcome(queued).await.map_err(Refusal::from),
                        Err(e) => Err(e),
                    };
                    (key, outcome)
                })
                .collect(),
        )
        .await;
        if acks == 0 {
            return None;
        }
        let mut resp = ProduceResponse::default();
        let mut topics = TopicEntries::default();
        for (key, outcome) in outcomes {
            let mut p = PartitionProduceResponse::default();
            p.index = key.partition;
            match outcome {
                // Fields newer than the asked version keep their defaults.
                Ok((base, log_start)) => {
                    p.base_offset = base;
                    if version >= 5 {
                        p.log_start_offset = log_start;
                    }
                }
                Err(e) => {
                    p.error_code = e.code;
                    p.base_offset = -1;
                    if version >= 8 {
                        p.error_message = Some(StrBytes::from_string(e.message));
                    }
                }
            }
            topics
                .entry(&key.topic, || {
                    let mut t = TopicProduceResponse::default();
                    t.name = kafka_protocol::messages::TopicName(StrBytes::from_string(
                        key.topic.clone(),
                    ));
                    t
                })
                .partition_responses
                .push(p);
        }
        resp.responses = topics.into_vec();
        Some(resp)
    }
}

/// A partition's refusal with a Kafka code.
pub struct Refusal {
    code: i16,
    message: String,
}

fn refused(code: i16, message: &str) -> Refusal {
    Refusal {
        code,
        message: message.to_string(),
    }
}

impl From<PartitionError> for Refusal {
    fn from(e: PartitionError) -> Self {
        Refusal {
            code: kafka_code(e.code),
            message: e.message,
        }
    }
}
