//! ListOffsets: earliest (-2), latest (-1, the high watermark), the record with the
//! largest timestamp (-3) or the first record at or after a timestamp (with its
//! timestamp), per partition.

use ringlog_schema::wire::{
    BodyT, ErrorCode, ListOffsetsPartitionResultT, ListOffsetsRequestT, ListOffsetsResponseT,
};

use crate::broker::handlers::wire_code;
use crate::broker::handlers::{call_owners, refused_partitions};
use crate::broker::messages::{PartitionError, PartitionKey, ShardRequest};
use crate::broker::shard::Shard;
use crate::core::error::ErrorKind;

pub async fn handle(shard: &Shard, req: ListOffsetsRequestT) -> BodyT {
    let parts = req.partitions.unwrap_or_default();
    let refused = refused_partitions(
        "list offsets",
        parts.iter().map(|p| (p.topic.as_str(), p.partition)),
    );
    let requests = parts
        .iter()
        .zip(&refused)
        .filter(|(_, r)| r.is_none())
        .map(|(p, _)| {
            let key = PartitionKey::new(&p.topic, p.partition);
            let timestamp = p.timestamp;
            (key.clone(), move |answer| ShardRequest::ListOffset {
                key,
                timestamp,
                answer,
            })
        })
        .collect();
    let mut answers = call_owners(shard, requests).await.into_iter();
    let partitions = parts
        .into_iter()
        .zip(refused)
        .map(|(p, refused)| {
            let r = match refused {
                Some(e) => Err(e),
                None => answers.next().unwrap_or_else(|| {
                    Err(PartitionError::new(
                        ErrorKind::UnknownServerError,
                        "not answered",
                    ))
                }),
            };
            match r {
                Ok((offset, timestamp)) => ListOffsetsPartitionResultT {
                    topic: p.topic,
                    partition: p.partition,
                    error: ErrorCode::NONE,
                    message: None,
                    offset,
                    timestamp,
                },
                Err(e) => ListOffsetsPartitionResultT {
                    topic: p.topic,
                    partition: p.partition,
                    error: wire_code(e.code),
                    message: Some(e.message),
                    offset: -1,
                    timestamp: -1,
                },
            }
        })
        .collect();
    BodyT::ListOffsetsResponse(Box::new(ListOffsetsResponseT {
        partitions: Some(partitions),
    }))
}
