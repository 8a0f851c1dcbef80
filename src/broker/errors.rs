//! Mapping of internal errors onto wire error codes (Kafka's meanings).

use ringlog_schema::wire::ErrorCode;
use ringlog_schema::BatchError;
use ringlog_storage::StorageError;

use crate::broker::messages::PartitionError;
use crate::metadata::model::MetadataError;

/// The wire error for a storage error.
pub fn storage_error(e: &StorageError) -> PartitionError {
    let code = match e {
        StorageError::InvalidBatch(BatchError::TooLarge { .. }) => ErrorCode::MESSAGE_TOO_LARGE,
        StorageError::InvalidBatch(_) => ErrorCode::CORRUPT_MESSAGE,
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
        // Truncation happens when a leader becomes a follower: the producer retries
        // on the new leader.
        StorageError::Closed { .. } | StorageError::Truncated { .. } => {
            ErrorCode::NOT_LEADER_OR_FOLLOWER
        }
        StorageError::Config(_) => ErrorCode::INVALID_CONFIG,
        StorageError::Io { .. }
        | StorageError::Corruption { .. }
        | StorageError::LogFailed { .. } => ErrorCode::KAFKA_STORAGE_ERROR,
    };
    PartitionError::new(code, e.to_string())
}

/// The wire error for a refused batch.
pub fn batch_error(e: &BatchError) -> PartitionError {
    let code = match e {
        BatchError::TooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
        BatchError::InvalidRecord(_) | BatchError::InvalidRecordCount { .. } => {
            ErrorCode::INVALID_RECORD
        }
        BatchError::InvalidTimestamp(_) => ErrorCode::INVALID_TIMESTAMP,
        BatchError::UnsupportedCompression(_) => ErrorCode::UNSUPPORTED_COMPRESSION_TYPE,
        BatchError::Truncated { .. }
        | BatchError::LengthMismatch { .. }
        | BatchError::UnsupportedMagic { .. }
        | BatchError::CrcMismatch { .. }
        | BatchError::Build(_)
        | BatchError::Decode(_) => ErrorCode::CORRUPT_MESSAGE,
    };
    PartitionError::new(code, e.to_string())
}

/// The wire error for a refused metadata change.
pub fn metadata_error(e: &MetadataError) -> PartitionError {
    let code = match e {
        MetadataError::TopicExists(_) => ErrorCode::TOPIC_ALREADY_EXISTS,
        MetadataError::UnknownTopic(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        MetadataError::InvalidTopicName { .. } | MetadataError::InternalTopic(_) => {
            ErrorCode::INVALID_TOPIC
        }
        MetadataError::InvalidPartitions(_) | MetadataError::PartitionsCannotShrink { .. } => {
            ErrorCode::INVALID_PARTITIONS
        }
        MetadataError::InvalidReplicationFactor { .. } => ErrorCode::INVALID_REPLICATION_FACTOR,
        MetadataError::InvalidConfig(_) => ErrorCode::INVALID_CONFIG,
    };
    PartitionError::new(code, e.to_string())
}

/// "No such partition here", Kafka's UNKNOWN_TOPIC_OR_PARTITION.
pub fn unknown_partition(topic: &str, partition: i32) -> PartitionError {
    PartitionError::new(
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        format!("unknown topic or partition {topic}-{partition}"),
    )
}

/// A partition's owner shard did not answer (it is stopping): the client retries
/// on the leader it finds next, as after a leadership move.
pub fn unreachable_owner(e: &ringlog_shards::ShardError) -> PartitionError {
    PartitionError::new(ErrorCode::NOT_LEADER_OR_FOLLOWER, e.to_string())
}
