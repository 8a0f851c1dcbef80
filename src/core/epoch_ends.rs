//! OffsetForLeaderEpoch for clients (KIP-320): where a leader epoch ends in each
//! asked partition's log, asked of its owner on the leader's broker. A consumer
//! that saw a leader change asks the new leader where the epoch of its position
//! ends; an end below its position means the log it read was truncated.

use crate::core::error::PartitionError;
use crate::core::messages::{EpochQuery, PartitionKey, ShardRequest};
use crate::core::routing::ask_each_partition;
use crate::core::shard::Shard;

/// One `(epoch, end offset)` per asked partition, in order.
pub async fn epoch_ends(
    shard: &Shard,
    asked: Vec<(PartitionKey, EpochQuery)>,
) -> Vec<Result<(i32, i64), PartitionError>> {
    ask_each_partition(
        shard,
        "offset for leader epoch",
        asked,
        |key, query, answer| ShardRequest::EpochEnd { key, query, answer },
    )
    .await
}
