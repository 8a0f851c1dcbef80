//! What data shards and the coordinator say to each other over the mesh. Payloads
//! (`Bytes`) move between cores; they are never copied.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ringlog_schema::wire::{
    BodyT, CreateTopicsRequestT, CreateTopicsResponseT, DeleteTopicsRequestT,
    DeleteTopicsResponseT, ErrorCode,
};

use crate::metadata::ClusterMetadata;

/// A partition-level failure: a wire error code and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionError {
    pub code: ErrorCode,
    pub message: String,
}

impl PartitionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Offsets of a partition as its owner sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: i64,
    pub log_end: i64,
    pub high_watermark: i64,
}

/// Batches read for a fetch, with the offsets to report beside them.
#[derive(Clone, Debug)]
pub struct FetchData {
    pub batches: Vec<Bytes>,
    pub offsets: PartitionOffsets,
}

/// One partition of a `Fetch`: where to read and at most how much.
#[derive(Clone, Debug)]
pub struct PartitionRead {
    pub key: PartitionKey,
    pub offset: i64,
    pub max_bytes: u32,
}

/// Identifies a partition in a message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    pub topic: String,
    pub partition: i32,
}

impl PartitionKey {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
        }
    }
}

/// Every request and answer that crosses the mesh.
pub enum ShardMsg {
    // Coordinator -> data shards.
    /// Adopt this metadata: open newly owned partitions, close dropped ones.
    Apply(Arc<ClusterMetadata>),
    /// Stop accepting, finish in-flight requests, close every log cleanly.
    Shutdown,

    // Data shards -> coordinator.
    CreateTopics(Box<CreateTopicsRequestT>),
    DeleteTopics(Box<DeleteTopicsRequestT>),
    /// Create these topics with the broker defaults if `auto.create.topics.enable`.
    AutoCreate(Vec<String>),
    /// Grow topics to these partition counts (or only check, when `validate_only`).
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },

    // Any shard -> a partition's owner shard.
    Produce {
        key: PartitionKey,
        records: Bytes,
    },
    /// Reads these partitions of the owner, in order, within `limit` bytes in all
    /// (the first data always comes, as in Kafka, so a large batch cannot stall a
    /// consumer; later partitions get nothing once the limit is reached).
    Fetch {
        reads: Vec<PartitionRead>,
        limit: usize,
    },
    /// Resolves once the high watermark of any of these partitions passes its
    /// offset, or at `deadline`.
    WaitForData {
        waits: Vec<(PartitionKey, i64)>,
        deadline: Instant,
    },
    ListOffset {
        key: PartitionKey,
        timestamp: i64,
    },
    Offsets {
        key: PartitionKey,
    },
    /// A group request for the coordinator of its group on this shard (or, for
    /// ListGroups, for this shard's groups).
    Group(Box<BodyT>),

    // Answers.
    Done,
    Created(Box<CreateTopicsResponseT>),
    Deleted(Box<DeleteTopicsResponseT>),
    /// Per topic of a CreatePartitions: `None` when it grew (or would).
    PartitionsCreated(Vec<(String, Option<PartitionError>)>),
    Produced(Result<(i64, i64), PartitionError>),
    /// One result per read of a `Fetch`, in order.
    Fetched(Vec<Result<FetchData, PartitionError>>),
    /// (offset, timestamp): the timestamp of the record found by time, else -1.
    Offset(Result<(i64, i64), PartitionError>),
    OffsetsAre(Result<PartitionOffsets, PartitionError>),
    GroupAnswer(Box<BodyT>),
    /// The request was not one this executor answers.
    Unexpected(&'static str),
}
