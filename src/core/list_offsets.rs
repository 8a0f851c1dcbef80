//! ListOffsets: earliest (-2), latest (-1, the high watermark), the record with the
//! largest timestamp (-3) or the first record at or after a timestamp (with its
//! timestamp), per partition, asked of each partition's owner.

use crate::core::error::{ErrorKind, PartitionError};
use crate::core::messages::{PartitionKey, ShardRequest};
use crate::core::routing::{call_owners, refused_partitions};
use crate::core::shard::Shard;

/// One `(offset, timestamp)` per asked `(partition, timestamp)`, in order; a
/// partition named twice, or a request naming too many, is refused.
pub async fn list_offsets(
    shard: &Shard,
    asked: Vec<(PartitionKey, i64)>,
) -> Vec<Result<(i64, i64), PartitionError>> {
    let refused = refused_partitions(
        "list offsets",
        asked.iter().map(|(k, _)| (k.topic.as_str(), k.partition)),
    );
    let requests = asked
        .iter()
        .zip(&refused)
        .filter(|(_, r)| r.is_none())
        .map(|((key, timestamp), _)| {
            let (key, timestamp) = (key.clone(), *timestamp);
            (key.clone(), move |answer| ShardRequest::ListOffset {
                key,
                timestamp,
                answer,
            })
        })
        .collect();
    let mut answers = call_owners(shard, requests).await.into_iter();
    refused
        .into_iter()
        .map(|refused| match refused {
            Some(e) => Err(e),
            None => answers.next().unwrap_or_else(|| {
                Err(PartitionError::new(
                    ErrorKind::UnknownServerError,
                    "not answered",
                ))
            }),
        })
        .collect()
}
