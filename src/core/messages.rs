//! What data shards and the coordinator ask each other over the mesh, each request
//! with the type of its answer. Payloads (`Bytes`) move between cores; they are
//! never copied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub use crate::core::error::{ErrorKind, PartitionError};
use bytes::Bytes;
pub use ringlog_shards::Answer;
use ringlog_shards::{Answered, Mesh};

use crate::core::groups::GroupCall;
use crate::metadata::ClusterMetadata;

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

/// When a produce is answered (Kafka's `acks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// 0: never (the producer does not wait); the batch is still appended and
    /// committed like acks=1.
    None,
    /// 1: once the leader has it (durable under `log.flush = batch`).
    Leader,
    /// -1: once every in-sync replica has it durable (the high watermark passed
    /// it), refused up front while the ISR is below `min.insync.replicas`.
    All,
}

impl Acks {
    /// The wire's value (0, 1 or -1); `None` for anything else.
    pub fn from_wire(acks: i16) -> Option<Self> {
        match acks {
            0 => Some(Self::None),
            1 => Some(Self::Leader),
            -1 => Some(Self::All),
            _ => None,
        }
    }
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

/// A new topic as the admin APIs of both protocols ask for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// `None`: the broker's `num.partitions`.
    pub partitions: Option<i32>,
    /// `None`: the broker's `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// Topic configs over the broker's log settings.
    pub configs: BTreeMap<String, String>,
}

/// A change to a topic's configs: `set` ones take these values, `delete` ones
/// go back to the broker's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigAlteration {
    pub set: BTreeMap<String, String>,
    pub delete: Vec<String>,
}

/// What became of one topic of an admin request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    /// The partition, where the outcome is one partition's (an election's).
    pub partition: Option<i32>,
    /// `None` when the change was made (or, validating only, would be).
    pub error: Option<PartitionError>,
}

/// The requests a data shard serves. Each carries the [`Answer`] of its own type.
pub enum ShardRequest {
    /// Adopt this metadata: open newly owned partitions, close dropped ones.
    Apply {
        metadata: Arc<ClusterMetadata>,
        answer: Answer<()>,
    },
    /// Stop accepting, finish in-flight requests, close every log cleanly.
    Shutdown { answer: Answer<()> },
    /// Append these batches: (base offset, log start), once committed as `acks`
    /// asks, within `timeout` for the replication wait.
    Produce {
        key: PartitionKey,
        records: Bytes,
        acks: Acks,
        timeout: std::time::Duration,
        answer: Answer<Result<(i64, i64), PartitionError>>,
    },
    /// A follower's long poll over partitions this shard leads.
    ReplicaFetch {
        fetch: crate::core::replica::ReplicaFetch,
        answer: Answer<Vec<crate::core::replica::ReplicaAnswer>>,
    },
    /// Serve replica fetches from `follower` on this connection (a socket the
    /// inter-broker listener accepted and welcomed, handed over as a descriptor
    /// the shard now owns).
    AdoptReplicaConnection {
        fd: i32,
        follower: crate::metadata::BrokerId,
        answer: Answer<()>,
    },
    /// Reads these partitions of the owner, in order, within `limit` bytes in all
    /// (the first data always comes, as in Kafka, so a large batch cannot stall a
    /// consumer; later partitions get nothing once the limit is reached). One
    /// result per read, in order.
    Fetch {
        reads: Vec<PartitionRead>,
        limit: usize,
        answer: Answer<Vec<Result<FetchData, PartitionError>>>,
    },
    /// Answered once the high watermark of any of these partitions passes its
    /// offset, or at `deadline`.
    WaitForData {
        waits: Vec<(PartitionKey, i64)>,
        deadline: Instant,
        answer: Answer<()>,
    },
    /// (offset, timestamp) by Kafka's ListOffsets rules: the timestamp of the
    /// record found by time, else -1.
    ListOffset {
        key: PartitionKey,
        timestamp: i64,
        answer: Answer<Result<(i64, i64), PartitionError>>,
    },
    Offsets {
        key: PartitionKey,
        answer: Answer<Result<PartitionOffsets, PartitionError>>,
    },
    /// Where a leader epoch ends in the leader's log (OffsetForLeaderEpoch):
    /// `(epoch, end offset)`, after checking the asker's current leader epoch.
    EpochEnd {
        key: PartitionKey,
        query: EpochQuery,
        answer: Answer<Result<(i32, i64), PartitionError>>,
    },
    /// A group request for the coordinator of its group on this shard (or, for
    /// ListGroups, for this shard's groups).
    Group(GroupCall),
}

/// The requests the coordinator serves: metadata changes, answered once every
/// data shard has adopted them.
pub enum CoordinatorRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
        answer: Answer<Vec<TopicOutcome>>,
    },
    DeleteTopics {
        names: Vec<String>,
        answer: Answer<Vec<TopicOutcome>>,
    },
    /// Create these topics with the broker defaults if `auto.create.topics.enable`
    /// (no outcomes when it is off).
    AutoCreate {
        names: Vec<String>,
        answer: Answer<Vec<TopicOutcome>>,
    },
    /// Grow topics to these partition counts (or only check, when `validate_only`).
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
        answer: Answer<Vec<TopicOutcome>>,
    },
    /// Change a topic's configs (or only check, when `validate_only`).
    AlterTopicConfigs {
        topic: String,
        alteration: ConfigAlteration,
        validate_only: bool,
        answer: Answer<Vec<TopicOutcome>>,
    },
    /// An operator's leader election through the active controller: one outcome
    /// per partition (`partitions` `None`: every partition), or the request's
    /// one error.
    ElectLeaders {
        kind: crate::metadata::election::ElectionType,
        partitions: Option<Vec<(String, i32)>>,
        answer: Answer<Result<Vec<TopicOutcome>, PartitionError>>,
    },
    /// The cluster as this broker sees it: metadata, active controller and term.
    DescribeCluster { answer: Answer<ClusterView> },
    /// A partition this broker leads changes its ISR: through the active
    /// controller, answered once committed (or refused, with the reason).
    AlterPartition {
        change: crate::metadata::records::IsrChange,
        answer: Answer<Result<(), PartitionError>>,
    },
}

/// The cluster as one broker sees it (`ringlog cluster describe`).
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub metadata: Arc<ClusterMetadata>,
    pub controller: Option<crate::metadata::BrokerId>,
    pub term: u64,
}

impl CoordinatorRequest {
    /// Declines the request, whatever it is: the caller gets
    /// [`ringlog_shards::ShardError::Refused`].
    pub fn refuse(self) -> Answered {
        match self {
            Self::CreateTopics { answer, .. }
            | Self::DeleteTopics { answer, .. }
            | Self::AutoCreate { answer, .. }
            | Self::CreatePartitions { answer, .. }
            | Self::AlterTopicConfigs { answer, .. } => answer.refuse(),
            Self::DescribeCluster { answer } => answer.refuse(),
            Self::ElectLeaders { answer, .. } => answer.refuse(),
            Self::AlterPartition { answer, .. } => answer.refuse(),
        }
    }
}

/// The broker's mesh: data shards serve [`ShardRequest`]s, the coordinator
/// [`CoordinatorRequest`]s.
pub type BrokerMesh = Mesh<ShardRequest, CoordinatorRequest>;

/// One partition's OffsetForLeaderEpoch question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochQuery {
    /// The leader epoch the asker knows (-1: do not check), as KIP-320 fences it.
    pub current_leader_epoch: i32,
    /// The epoch whose end is asked for.
    pub leader_epoch: i32,
}
