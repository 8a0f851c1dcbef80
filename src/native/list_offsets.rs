//! ListOffsets: earliest (-2), latest (-1, the high watermark), the record with the
//! largest timestamp (-3) or the first record at or after a timestamp (with its
//! timestamp), per partition: the core's `list_offsets` in native types.

use ringlog_schema::wire::{
    BodyT, ErrorCode, ListOffsetsPartitionResultT, ListOffsetsRequestT, ListOffsetsResponseT,
};

use crate::core::list_offsets::list_offsets;
use crate::core::messages::PartitionKey;
use crate::core::shard::Shard;
use crate::native::wire_code;

pub async fn handle(shard: &Shard, req: ListOffsetsRequestT) -> BodyT {
    let parts = req.partitions.unwrap_or_default();
    let asked = parts
        .iter()
        .map(|p| (PartitionKey::new(&p.topic, p.partition), p.timestamp))
        .collect();
    let answers = list_offsets(shard, asked).await;
    let partitions = parts
        .into_iter()
        .zip(answers)
        .map(|(p, r)| match r {
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
        })
        .collect();
    BodyT::ListOffsetsResponse(Box::new(ListOffsetsResponseT {
        partitions: Some(partitions),
    }))
}
