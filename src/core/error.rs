//! What went wrong, in the broker's own terms. The meanings are Kafka's error codes
//! (both listeners speak them), but the numbers are each adapter's: the native
//! protocol maps an [`ErrorKind`] to its wire `ErrorKind`, the Kafka listener to
//! Kafka's `i16`. Also the mapping of storage, batch and metadata errors onto them.

use ringlog_schema::BatchError;
use ringlog_storage::StorageError;

use crate::metadata::model::MetadataError;

/// A failure's kind; success is the absence of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    UnknownServerError,
    OffsetOutOfRange,
    CorruptMessage,
    UnknownTopicOrPartition,
    LeaderNotAvailable,
    NotLeaderOrFollower,
    RequestTimedOut,
    MessageTooLarge,
    OffsetMetadataTooLarge,
    CoordinatorLoadInProgress,
    CoordinatorNotAvailable,
    NotCoordinator,
    InvalidTopic,
    RecordListTooLarge,
    NotEnoughReplicas,
    /// The batch was written on the leader, then the ISR fell below
    /// `min.insync.replicas` before it was replicated.
    NotEnoughReplicasAfterAppend,
    /// A replica fetch or request carried an epoch older than the leader's.
    FencedLeaderEpoch,
    /// A replica fetch carried an epoch newer than this broker knows.
    UnknownLeaderEpoch,
    InvalidRequiredAcks,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    UnknownMemberId,
    InvalidSessionTimeout,
    RebalanceInProgress,
    InvalidTimestamp,
    UnsupportedVersion,
    TopicAlreadyExists,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidConfig,
    InvalidRequest,
    PolicyViolation,
    OutOfOrderSequenceNumber,
    DuplicateSequenceNumber,
    InvalidProducerEpoch,
    KafkaStorageError,
    NonEmptyGroup,
    GroupIdNotFound,
    UnsupportedCompressionType,
    GroupMaxSizeReached,
    InvalidRecord,
    UnknownTopicId,
    /// This broker is not the active controller (Kafka's NOT_CONTROLLER).
    NotController,
    /// ringlog's own: the broker is shutting down (clients retry elsewhere).
    ShuttingDown,
    /// The partition already has the leader the election would give it.
    ElectionNotNeeded,
    /// The preferred leader is not live or not in sync.
    PreferredLeaderNotAvailable,
    /// No replica may lead the partition.
    EligibleLeadersNotAvailable,
}

/// A partition-level (or request-level) failure: its kind and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionError {
    pub code: ErrorKind,
    pub message: String,
}

impl PartitionError {
    pub fn new(code: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The error for a storage error.
pub fn storage_error(e: &StorageError) -> PartitionError {
    let code = match e {
        StorageError::InvalidBatch(BatchError::TooLarge { .. }) => ErrorKind::MessageTooLarge,
        StorageError::InvalidBatch(_) => ErrorKind::CorruptMessage,
        StorageError::OffsetOutOfRange { .. } | StorageError::NotContiguous { .. } => {
            ErrorKind::OffsetOutOfRange
        }
        // Truncation happens when a leader becomes a follower: the producer retries
        // on the new leader.
        StorageError::Closed { .. } | StorageError::Truncated { .. } => {
            ErrorKind::NotLeaderOrFollower
        }
        StorageError::Config(_) => ErrorKind::InvalidConfig,
        StorageError::Io { .. }
        | StorageError::Corruption { .. }
        | StorageError::LogFailed { .. } => ErrorKind::KafkaStorageError,
    };
    PartitionError::new(code, e.to_string())
}

/// The error for a refused batch.
pub fn batch_error(e: &BatchError) -> PartitionError {
    let code = match e {
        BatchError::TooLarge { .. } => ErrorKind::MessageTooLarge,
        BatchError::InvalidRecord(_) | BatchError::InvalidRecordCount { .. } => {
            ErrorKind::InvalidRecord
        }
        BatchError::InvalidTimestamp(_) => ErrorKind::InvalidTimestamp,
        BatchError::UnsupportedCompression(_) => ErrorKind::UnsupportedCompressionType,
        BatchError::Truncated { .. }
        | BatchError::LengthMismatch { .. }
        | BatchError::UnsupportedMagic { .. }
        | BatchError::CrcMismatch { .. }
        | BatchError::Build(_)
        | BatchError::Decode(_) => ErrorKind::CorruptMessage,
    };
    PartitionError::new(code, e.to_string())
}

/// The error for a refused metadata change.
pub fn metadata_error(e: &MetadataError) -> PartitionError {
    let code = match e {
        MetadataError::TopicExists(_) => ErrorKind::TopicAlreadyExists,
        MetadataError::UnknownTopic(_) => ErrorKind::UnknownTopicOrPartition,
        MetadataError::InvalidTopicName { .. } | MetadataError::InternalTopic(_) => {
            ErrorKind::InvalidTopic
        }
        MetadataError::InvalidPartitions(_) | MetadataError::PartitionsCannotShrink { .. } => {
            ErrorKind::InvalidPartitions
        }
        MetadataError::InvalidReplicationFactor { .. } => ErrorKind::InvalidReplicationFactor,
        MetadataError::InvalidConfig(_) => ErrorKind::InvalidConfig,
    };
    PartitionError::new(code, e.to_string())
}

/// "No such partition here", Kafka's UNKNOWN_TOPIC_OR_PARTITION.
pub fn unknown_partition(topic: &str, partition: i32) -> PartitionError {
    PartitionError::new(
        ErrorKind::UnknownTopicOrPartition,
        format!("unknown topic or partition {topic}-{partition}"),
    )
}

/// A partition's owner shard did not answer (it is stopping): the client retries
/// on the leader it finds next, as after a leadership move.
pub fn unreachable_owner(e: &ringlog_shards::ShardError) -> PartitionError {
    PartitionError::new(ErrorKind::NotLeaderOrFollower, e.to_string())
}
