//! The native protocol adapter: its connections (`connection`) and one handler
//! module per API. A handler decodes the flatbuffer request into the core's types,
//! calls the core, and encodes the answer as the response body (and payload
//! buffers), or `None` where the protocol sends no response (Produce with acks = 0).
//! This module and `client/` are the only code that names the generated types.

pub mod connection;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

use bytes::Bytes;
use ringlog_schema::frame;
use ringlog_schema::wire::{BodyT, EnvelopeT, ErrorCode, ErrorResponseT, HelloResponseT};

use crate::core::error::ErrorKind;
use crate::core::memory::Grant;
use crate::core::shard::Shard;

/// Native protocol version this broker speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// A response: its body and the payload buffers its ranges refer to.
pub struct Response {
    pub body: BodyT,
    pub payload: Vec<Bytes>,
    /// The shard memory the payload holds, released once it is written.
    pub memory: Option<Grant>,
}

/// A response ready for the socket: its buffers and the memory they hold.
pub struct Outgoing {
    pub buffers: Vec<Bytes>,
    pub memory: Option<Grant>,
}

impl From<Vec<Bytes>> for Outgoing {
    fn from(buffers: Vec<Bytes>) -> Self {
        Self {
            buffers,
            memory: None,
        }
    }
}

impl Response {
    pub fn new(body: BodyT) -> Self {
        Self {
            body,
            payload: Vec::new(),
            memory: None,
        }
    }

    /// The frame head followed by the payload buffers, ready for one writev.
    pub fn into_outgoing(self, correlation_id: u64) -> Outgoing {
        let payload_len = self.payload.iter().map(Bytes::len).sum();
        let env = EnvelopeT {
            correlation_id,
            body: self.body,
        };
        let mut buffers = Vec::with_capacity(1 + self.payload.len());
        buffers.push(frame::encode_frame_head(&env, payload_len));
        buffers.extend(self.payload);
        Outgoing {
            buffers,
            memory: self.memory,
        }
    }
}

/// Answers every request except Produce (see [`produce::enqueue`]).
pub async fn dispatch(shard: &Shard, body: BodyT, payload: Bytes) -> Option<Response> {
    let _ = payload;
    let body = match body {
        BodyT::HelloRequest(_) => BodyT::HelloResponse(Box::new(HelloResponseT {
            error: ErrorCode::NONE,
            protocol_version: PROTOCOL_VERSION,
            broker_id: shard.config.broker_id,
            shard_count: shard.shards,
            server_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            connection_shard: shard.id.0,
        })),
        BodyT::MetadataRequest(req) => metadata::handle(shard, *req).await,
        BodyT::DescribeClusterRequest(_) => metadata::describe_cluster(shard).await,
        BodyT::CreateTopicsRequest(req) => topics::create(shard, *req).await,
        BodyT::DeleteTopicsRequest(req) => topics::delete(shard, *req).await,
        BodyT::AlterTopicConfigsRequest(req) => topics::alter_configs(shard, *req).await,
        BodyT::ElectLeadersRequest(req) => topics::elect_leaders(shard, *req).await,
        BodyT::DescribeTopicsRequest(req) => topics::describe(shard, *req).await,
        BodyT::FetchRequest(req) => return Some(fetch::handle(shard, *req).await),
        BodyT::ListOffsetsRequest(req) => list_offsets::handle(shard, *req).await,
        body @ (BodyT::FindCoordinatorRequest(_)
        | BodyT::JoinGroupRequest(_)
        | BodyT::SyncGroupRequest(_)
        | BodyT::HeartbeatRequest(_)
        | BodyT::LeaveGroupRequest(_)
        | BodyT::OffsetCommitRequest(_)
        | BodyT::OffsetFetchRequest(_)
        | BodyT::ListGroupsRequest(_)
        | BodyT::DescribeGroupsRequest(_)
        | BodyT::DeleteGroupsRequest(_)) => groups::handle(shard, body).await,
        BodyT::ProduceRequest(_) => error_body(
            ErrorCode::INVALID_REQUEST,
            "produce is handled by the connection reader",
        ),
        other => error_body(
            ErrorCode::UNSUPPORTED_API,
            &format!(
                "{:?} is not a request this broker serves",
                other.body_type()
            ),
        ),
    };
    Some(Response::new(body))
}

/// The native protocol's code for a core error kind.
pub fn wire_code(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::UnknownServerError => ErrorCode::UNKNOWN_SERVER_ERROR,
        ErrorKind::OffsetOutOfRange => ErrorCode::OFFSET_OUT_OF_RANGE,
        ErrorKind::CorruptMessage => ErrorCode::CORRUPT_MESSAGE,
        ErrorKind::UnknownTopicOrPartition => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
        ErrorKind::LeaderNotAvailable => ErrorCode::LEADER_NOT_AVAILABLE,
        ErrorKind::NotLeaderOrFollower => ErrorCode::NOT_LEADER_OR_FOLLOWER,
        ErrorKind::RequestTimedOut => ErrorCode::REQUEST_TIMED_OUT,
        ErrorKind::NotController => ErrorCode::NOT_CONTROLLER,
        ErrorKind::MessageTooLarge => ErrorCode::MESSAGE_TOO_LARGE,
        ErrorKind::OffsetMetadataTooLarge => ErrorCode::OFFSET_METADATA_TOO_LARGE,
        ErrorKind::CoordinatorLoadInProgress => ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
        ErrorKind::CoordinatorNotAvailable => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        ErrorKind::NotCoordinator => ErrorCode::NOT_COORDINATOR,
        ErrorKind::InvalidTopic => ErrorCode::INVALID_TOPIC,
        ErrorKind::RecordListTooLarge => ErrorCode::RECORD_LIST_TOO_LARGE,
        ErrorKind::NotEnoughReplicas => ErrorCode::NOT_ENOUGH_REPLICAS,
        ErrorKind::NotEnoughReplicasAfterAppend => ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorKind::FencedLeaderEpoch => ErrorCode::FENCED_LEADER_EPOCH,
        ErrorKind::UnknownLeaderEpoch => ErrorCode::UNKNOWN_LEADER_EPOCH,
        ErrorKind::InvalidRequiredAcks => ErrorCode::INVALID_REQUIRED_ACKS,
        ErrorKind::IllegalGeneration => ErrorCode::ILLEGAL_GENERATION,
        ErrorKind::InconsistentGroupProtocol => ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
        ErrorKind::InvalidGroupId => ErrorCode::INVALID_GROUP_ID,
        ErrorKind::UnknownMemberId => ErrorCode::UNKNOWN_MEMBER_ID,
        ErrorKind::InvalidSessionTimeout => ErrorCode::INVALID_SESSION_TIMEOUT,
        ErrorKind::RebalanceInProgress => ErrorCode::REBALANCE_IN_PROGRESS,
        ErrorKind::InvalidTimestamp => ErrorCode::INVALID_TIMESTAMP,
        ErrorKind::UnsupportedVersion => ErrorCode::UNSUPPORTED_VERSION,
        ErrorKind::TopicAlreadyExists => ErrorCode::TOPIC_ALREADY_EXISTS,
        ErrorKind::InvalidPartitions => ErrorCode::INVALID_PARTITIONS,
        ErrorKind::InvalidReplicationFactor => ErrorCode::INVALID_REPLICATION_FACTOR,
        ErrorKind::InvalidConfig => ErrorCode::INVALID_CONFIG,
        ErrorKind::InvalidRequest => ErrorCode::INVALID_REQUEST,
        ErrorKind::PolicyViolation => ErrorCode::POLICY_VIOLATION,
        ErrorKind::OutOfOrderSequenceNumber => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorKind::DuplicateSequenceNumber => ErrorCode::DUPLICATE_SEQUENCE_NUMBER,
        ErrorKind::InvalidProducerEpoch => ErrorCode::INVALID_PRODUCER_EPOCH,
        ErrorKind::KafkaStorageError => ErrorCode::KAFKA_STORAGE_ERROR,
        ErrorKind::NonEmptyGroup => ErrorCode::NON_EMPTY_GROUP,
        ErrorKind::GroupIdNotFound => ErrorCode::GROUP_ID_NOT_FOUND,
        ErrorKind::UnsupportedCompressionType => ErrorCode::UNSUPPORTED_COMPRESSION_TYPE,
        ErrorKind::PreferredLeaderNotAvailable => ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE,
        ErrorKind::GroupMaxSizeReached => ErrorCode::GROUP_MAX_SIZE_REACHED,
        ErrorKind::EligibleLeadersNotAvailable => ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        ErrorKind::ElectionNotNeeded => ErrorCode::ELECTION_NOT_NEEDED,
        ErrorKind::InvalidRecord => ErrorCode::INVALID_RECORD,
        ErrorKind::UnknownTopicId => ErrorCode::UNKNOWN_TOPIC_ID,
        ErrorKind::ShuttingDown => ErrorCode::SHUTTING_DOWN,
    }
}

/// An `ErrorResponse` body.
pub fn error_body(code: ErrorCode, message: &str) -> BodyT {
    BodyT::ErrorResponse(Box::new(ErrorResponseT {
        error: code,
        message: Some(message.to_string()),
    }))
}
