//! ListOffsets: earliest (-2), latest (-1, the high watermark), the record with the
//! largest timestamp (-3) or the first record at or after a timestamp (with its
//! timestamp), per partition, asked of each partition's owner.

use crate::core::error::PartitionError;
use crate::core::messages::{PartitionKey, ShardRequest};
use crate::core::routing::ask_each_partition;
use crate::core::shard::Shard;

/// One `(offset, timestamp)` per asked `(partition, timestamp)`, in order; a
/// partition named twice, or a request naming too many, is refused.
pub async fn list_offsets(
    shard: &Shard,
    asked: Vec<(PartitionKey, i64)>,
) -> Vec<Result<(i64, i64), PartitionError>> {
    ask_each_partition(shard, "list offsets", asked, |key, timestamp, answer| {
        ShardRequest::ListOffset {
            key,
            timestamp,
            answer,
        }
    })
    .await
}
