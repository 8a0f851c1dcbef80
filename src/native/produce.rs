//! Produce: validate the request, hand each partition's batches to its owner shard
//! in arrival order, answer once every partition is committed (acks = 1 / all under
//! `log.flush = batch`: durable), or not at all for acks = 0.

use bytes::Bytes;
use ringlog_schema::frame;
use ringlog_schema::wire::{
    BodyT, ErrorCode, ProducePartitionResultT, ProduceRequestT, ProduceResponseT,
};

use crate::core::error::ErrorKind;
use crate::core::messages::{Acks, PartitionError, PartitionKey};
use crate::core::produce::{outcome, queue, Queued};
use crate::core::routing::refused_partitions;
use crate::core::shard::Shard;
use crate::native::wire_code;
use crate::native::{error_body, Response};
use crate::sync::join::join_all;

/// A produce whose batches are queued on their owners.
pub struct PendingProduce {
    acks: i8,
    partitions: Vec<(PartitionKey, Queued)>,
    refused: Option<BodyT>,
}

/// Each partition a produce names, with its records sliced out of the payload or
/// the reason it is refused.
pub type Routed = Vec<(PartitionKey, Result<Bytes, PartitionError>)>;

/// The checks a produce passes before anything is queued (pure, so the fuzzer runs
/// exactly what the broker runs): acks, partitions named twice or too many, and
/// payload ranges. `Err` is the error body answering the whole request.
pub fn route(req: ProduceRequestT, payload: &Bytes) -> Result<(i8, Routed), BodyT> {
    let acks = req.acks;
    if !(-1..=1).contains(&acks) {
        return Err(error_body(
            ErrorCode::INVALID_REQUIRED_ACKS,
            &format!("acks = {acks}: use 0, 1 or -1 (all)"),
        ));
    }
    let parts = req.partitions.unwrap_or_default();
    let refused = refused_partitions(
        "produce",
        parts.iter().map(|p| (p.topic.as_str(), p.partition)),
    );
    let routed = parts
        .into_iter()
        .zip(refused)
        .map(|(p, refused)| {
            let records = match refused {
                Some(e) => Err(e),
                None => frame::payload_slice(payload, p.records.as_ref(), "records")
                    .map_err(|e| PartitionError::new(ErrorKind::CorruptMessage, e.to_string())),
            };
            let key = PartitionKey {
                topic: p.topic,
                partition: p.partition,
            };
            (key, records)
        })
        .collect();
    Ok((acks, routed))
}

/// Validates the request and queues each partition's batches on its owner shard.
pub async fn enqueue(shard: &Shard, req: ProduceRequestT, payload: Bytes) -> PendingProduce {
    let timeout = crate::core::produce::replication_timeout(i64::from(req.timeout_ms));
    let (acks, routed) = match route(req, &payload) {
        Ok(r) => r,
        Err(body) => {
            return PendingProduce {
                acks: 1,
                partitions: Vec::new(),
                refused: Some(body),
            }
        }
    };
    let mut partitions = Vec::with_capacity(routed.len());
    for (key, records) in routed {
        let queued = match records {
            Ok(records) => {
                // `route` admitted only 0, 1 and -1.
                let level = Acks::from_wire(i16::from(acks)).unwrap_or(Acks::All);
                queue(shard, &key, records, level, timeout).await
            }
            Err(e) => Err(e),
        };
        partitions.push((key, queued));
    }
    PendingProduce {
        acks,
        partitions,
        refused: None,
    }
}

impl PendingProduce {
    /// Waits for every partition's outcome and builds the response.
    pub async fn finish(self) -> Option<Response> {
        if let Some(body) = self.refused {
            return Some(Response::new(body));
        }
        let outcomes = join_all(
            self.partitions
                .into_iter()
                .map(|(key, queued)| async move { (key, outcome(queued).await) })
                .collect(),
        )
        .await;
        if self.acks == 0 {
            return None;
        }
        let partitions = outcomes
            .into_iter()
            .map(|(key, outcome)| match outcome {
                Ok((base_offset, log_start)) => ProducePartitionResultT {
                    topic: key.topic,
                    partition: key.partition,
                    error: ErrorCode::NONE,
                    message: None,
                    base_offset,
                    log_start,
                },
                Err(e) => ProducePartitionResultT {
                    topic: key.topic,
                    partition: key.partition,
                    error: wire_code(e.code),
                    message: Some(e.message),
                    base_offset: -1,
                    log_start: -1,
                },
            })
            .collect();
        Some(Response::new(BodyT::ProduceResponse(Box::new(
            ProduceResponseT {
                partitions: Some(partitions),
            },
        ))))
    }
}
