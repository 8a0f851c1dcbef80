//! Produce: each partition's batches go to the partition's owner shard, queued in
//! arrival order, and the answer comes once they are committed (durable under
//! `log.flush = batch`). Both listeners call this after their own checks.

use bytes::Bytes;
use ringlog_shards::Pending;

use crate::core::error::{metadata_error, unreachable_owner};
use crate::core::messages::{Acks, PartitionError, PartitionKey, ShardRequest};
use crate::core::shard::Shard;
use crate::metadata::model::{is_internal_topic, MetadataError};

/// Longest wait for the ISR a produce may ask for (its `timeout_ms`).
pub const PRODUCE_TIMEOUT_MS_MAX: i64 = 300_000;

/// The replication wait a produce's `timeout_ms` asks for, within
/// [0, `PRODUCE_TIMEOUT_MS_MAX`].
pub fn replication_timeout(timeout_ms: i64) -> std::time::Duration {
    let ms = timeout_ms.clamp(0, PRODUCE_TIMEOUT_MS_MAX);
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// What an owner answers a produce: (base offset, log start offset).
pub type Appended = Result<(i64, i64), PartitionError>;

/// A produce handed to its owner shard (or refused before it was).
pub type Queued = Result<Pending<Appended>, PartitionError>;

/// Hands one partition's records to its owner shard. Called in arrival order, it
/// keeps that order on the owner. `timeout` bounds an acks=all wait for the ISR.
pub async fn queue(
    shard: &Shard,
    key: &PartitionKey,
    records: Bytes,
    acks: Acks,
    timeout: std::time::Duration,
) -> Queued {
    if is_internal_topic(&key.topic) {
        return Err(metadata_error(&MetadataError::InternalTopic(
            key.topic.clone(),
        )));
    }
    let key_for_owner = key.clone();
    shard
        .send_to_owner(key, |answer| ShardRequest::Produce {
            key: key_for_owner,
            records,
            acks,
            timeout,
            answer,
        })
        .await
}

/// What the owner made of a queued produce: (base offset, log start).
pub async fn outcome(queued: Queued) -> Appended {
    queued?
        .recv()
        .await
        .map_err(|e| unreachable_owner(&e))
        .and_then(|appended| appended)
}
