//! ListOffsets: earliest (-2), latest (-1, the high watermark), the record with the
//! largest timestamp (-3) or the first record at or after a timestamp (with its
//! timestamp), per partition.

use ringlog_schema::wire::{
    BodyT, ErrorCode, ListOffsetsPartitionResultT, ListOffsetsRequestT, ListOffsetsResponseT,
};

use crate::broker::handlers::call_owners;
use crate::broker::messages::{PartitionError, PartitionKey, ShardMsg};
use crate::broker::shard::Shard;

pub async fn handle(shard: &Shard, req: ListOffsetsRequestT) -> BodyT {
    let parts = req.partitions.unwrap_or_default();
    let requests = parts
        .iter()
        .map(|p| {
            let key = PartitionKey::new(&p.topic, p.partition);
            (
                key.clone(),
                ShardMsg::ListOffset {
                    key,
                    timestamp: p.timestamp,
                },
            )
        })
        .collect();
    let answers = call_owners(shard, requests).await;
    let partitions = parts
        .into_iter()
        .zip(answers)
        .map(|(p, a)| {
            let r = match a {
                Ok(ShardMsg::Offset(r)) => r,
                Ok(_) => Err(PartitionError::new(
                    ErrorCode::UNKNOWN_SERVER_ERROR,
                    "unexpected answer",
                )),
                Err(e) => Err(e),
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
                    error: e.code,
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
