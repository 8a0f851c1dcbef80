//! What this listener serves and how answers are encoded.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    ElectLeadersRequest, FetchRequest, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, InitProducerIdResponse,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    ProducerId, RequestHeader, ResponseHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::core::error::ErrorKind;
use crate::core::memory::Grant;
use crate::core::request_order::Effect;
use crate::core::shard::Shard;
use crate::kafka::{
    admin, cluster, fetch, groups, list_offsets, metadata, offset_for_leader_epoch, produce,
};
use tracing::debug;

/// Every API served, with the versions (inclusive) ApiVersions advertises.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
];

/// Kafka's error codes.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_REQUEST: i16 = 42;
}

/// A per-topic response list built partition by partition: answers list topics in
/// the order they first appear, and finding a topic's entry is a hash lookup (a
/// linear search per partition made a request of n partitions cost O(n²)).
pub struct TopicEntries<T> {
    list: Vec<T>,
    at: std::collections::HashMap<String, usize>,
}

impl<T> Default for TopicEntries<T> {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            at: std::collections::HashMap::new(),
        }
    }
}

impl<T> TopicEntries<T> {
    /// The entry for `name`, appended (with `new`) the first time.
    pub fn entry(&mut self, name: &str, new: impl FnOnce() -> T) -> &mut T {
        let at = match self.at.get(name) {
            Some(&i) => i,
            None => {
                self.list.push(new());
                self.at.insert(name.to_string(), self.list.len() - 1);
                self.list.len() - 1
            }
        };
        &mut self.list[at]
    }

    pub fn into_vec(self) -> Vec<T> {
        self.list
    }
}

/// The supported version range of `key`, if it is served.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// The Kafka code of a broker error: Kafka's own where it has one; ringlog's own
/// kinds map to the nearest Kafka meaning.
pub fn kafka_code(kind: ErrorKind) -> i16 {
    match kind {
        ErrorKind::UnknownServerError => -1,
        ErrorKind::OffsetOutOfRange => 1,
        ErrorKind::CorruptMessage => 2,
        ErrorKind::UnknownTopicOrPartition => 3,
        ErrorKind::LeaderNotAvailable => 5,
        ErrorKind::NotLeaderOrFollower => 6,
        ErrorKind::RequestTimedOut => 7,
        ErrorKind::NotController => 41,
        ErrorKind::MessageTooLarge => 10,
        ErrorKind::OffsetMetadataTooLarge => 12,
        ErrorKind::CoordinatorLoadInProgress => 14,
        ErrorKind::CoordinatorNotAvailable => 15,
        ErrorKind::NotCoordinator => 16,
        ErrorKind::InvalidTopic => 17,
        ErrorKind::RecordListTooLarge => 18,
        ErrorKind::NotEnoughReplicas => 19,
        ErrorKind::NotEnoughReplicasAfterAppend => 20,
        ErrorKind::FencedLeaderEpoch => 74,
        ErrorKind::UnknownLeaderEpoch => 75,
        ErrorKind::InvalidRequiredAcks => 21,
        ErrorKind::IllegalGeneration => 22,
        ErrorKind::InconsistentGroupProtocol => 23,
        ErrorKind::InvalidGroupId => 24,
        ErrorKind::UnknownMemberId => 25,
        ErrorKind::InvalidSessionTimeout => 26,
        ErrorKind::RebalanceInProgress => 27,
        ErrorKind::InvalidTimestamp => 32,
        ErrorKind::UnsupportedVersion => 35,
        ErrorKind::TopicAlreadyExists => 36,
        ErrorKind::InvalidPartitions => 37,
        ErrorKind::InvalidReplicationFactor => 38,
        ErrorKind::InvalidConfig => 40,
        ErrorKind::InvalidRequest => 42,
        ErrorKind::PolicyViolation => 44,
        ErrorKind::OutOfOrderSequenceNumber => 45,
        ErrorKind::DuplicateSequenceNumber => 46,
        ErrorKind::InvalidProducerEpoch => 47,
        ErrorKind::KafkaStorageError => 56,
        ErrorKind::NonEmptyGroup => 68,
        ErrorKind::GroupIdNotFound => 69,
        ErrorKind::UnsupportedCompressionType => 76,
        ErrorKind::PreferredLeaderNotAvailable => 80,
        ErrorKind::GroupMaxSizeReached => 81,
        ErrorKind::EligibleLeadersNotAvailable => 83,
        ErrorKind::ElectionNotNeeded => 84,
        ErrorKind::InvalidRecord => 87,
        ErrorKind::UnknownTopicId => 100,
        ErrorKind::ShuttingDown => codes::NOT_LEADER_OR_FOLLOWER,
    }
}

/// Why a request cannot be answered: the connection is then closed, as Kafka does
/// for what it cannot parse.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A response frame: `i32 size | header | body`.
pub fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, KafkaError> {
    let fail = |e: anyhow::Error| KafkaError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version).map_err(fail)?
        + body.compute_size(version).map_err(fail)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    header.encode(&mut buf, header_version).map_err(fail)?;
    body.encode(&mut buf, version).map_err(fail)?;
    Ok(buf.freeze())
}

fn decode<T: Decodable>(api: ApiKey, version: i16, body: &mut Bytes) -> Result<T, KafkaError> {
    T::decode(body, version).map_err(|e| KafkaError::Decode {
        api,
        version,
        reason: e.to_string(),
    })
}

/// The ApiVersions answer; `error` is set when the client asked for a version this
/// broker does not serve (then it is encoded as v0, which every client reads).
pub fn api_versions(error: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error;
    r.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect();
    r
}

/// What a request does to broker state, for the connection's request order.
pub fn effect(api: ApiKey) -> Effect {
    match api {
        ApiKey::Produce => Effect::Produce,
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::InitProducerId
        | ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::CreatePartitions
        | ApiKey::IncrementalAlterConfigs
        | ApiKey::ElectLeaders => Effect::Write,
        _ => Effect::Read,
    }
}

/// Queues a Produce on its partitions' owners (in the reader, for order); the
/// returned future answers it: the response frame, or `None` for acks = 0.
pub async fn enqueue_produce(
    shard: &Shard,
    version: i16,
    correlation_id: i32,
    req: ProduceRequest,
) -> Result<impl std::future::Future<Output = Result<Option<Answer>, KafkaError>>, KafkaError> {
    let api = ApiKey::Produce;
    let pending = produce::enqueue(shard, req, version).await;
    Ok(async move {
        match pending.finish().await {
            Some(resp) => {
                encode_response(api, version, correlation_id, &resp).map(|frame| Some(frame.into()))
            }
            None => Ok(None),
        }
    })
}

/// A response frame and the shard memory it holds until written.
pub struct Answer {
    pub frame: Bytes,
    pub memory: Option<Grant>,
}

impl From<Bytes> for Answer {
    fn from(frame: Bytes) -> Self {
        Self {
            frame,
            memory: None,
        }
    }
}

/// A request of every API this listener serves, decoded from its frame: the edge
/// where Kafka's wire format ends (fuzzed by `tests/fuzz`).
#[allow(clippy::large_enum_variant)]
pub enum KafkaRequest {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    CreatePartitions(CreatePartitionsRequest),
    InitProducerId(InitProducerIdRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    ElectLeaders(ElectLeadersRequest),
    DescribeCluster(DescribeClusterRequest),
}

/// The API, version and correlation id of a request frame (`header | body`, the
/// size prefix already read), and its body after the header; `None` when the key is
/// unknown or the header does not decode.
pub fn parse_request_header(mut frame: Bytes) -> Option<(ApiKey, i16, i32, Bytes)> {
    let key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    let version = i16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]);
    let api = ApiKey::try_from(key).ok()?;
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).ok()?;
    Some((api, version, header.correlation_id, frame))
}

/// Decodes the body of an `api` request at `version` (a version the listener
/// serves: the caller checked it against `SUPPORTED_APIS`).
pub fn decode_request(
    api: ApiKey,
    version: i16,
    mut body: Bytes,
) -> Result<KafkaRequest, KafkaError> {
    let b = &mut body;
    Ok(match api {
        ApiKey::ApiVersions => KafkaRequest::ApiVersions(decode(api, version, b)?),
        ApiKey::Metadata => KafkaRequest::Metadata(decode(api, version, b)?),
        ApiKey::Produce => KafkaRequest::Produce(decode(api, version, b)?),
        ApiKey::Fetch => KafkaRequest::Fetch(decode(api, version, b)?),
        ApiKey::ListOffsets => KafkaRequest::ListOffsets(decode(api, version, b)?),
        ApiKey::ListGroups => KafkaRequest::ListGroups(decode(api, version, b)?),
        ApiKey::DescribeGroups => KafkaRequest::DescribeGroups(decode(api, version, b)?),
        ApiKey::CreateTopics => KafkaRequest::CreateTopics(decode(api, version, b)?),
        ApiKey::DeleteTopics => KafkaRequest::DeleteTopics(decode(api, version, b)?),
        ApiKey::DescribeConfigs => KafkaRequest::DescribeConfigs(decode(api, version, b)?),
        ApiKey::CreatePartitions => KafkaRequest::CreatePartitions(decode(api, version, b)?),
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(decode(api, version, b)?),
        ApiKey::FindCoordinator => KafkaRequest::FindCoordinator(decode(api, version, b)?),
        ApiKey::JoinGroup => KafkaRequest::JoinGroup(decode(api, version, b)?),
        ApiKey::SyncGroup => KafkaRequest::SyncGroup(decode(api, version, b)?),
        ApiKey::Heartbeat => KafkaRequest::Heartbeat(decode(api, version, b)?),
        ApiKey::LeaveGroup => KafkaRequest::LeaveGroup(decode(api, version, b)?),
        ApiKey::OffsetCommit => KafkaRequest::OffsetCommit(decode(api, version, b)?),
        ApiKey::OffsetFetch => KafkaRequest::OffsetFetch(decode(api, version, b)?),
        ApiKey::OffsetForLeaderEpoch => {
            KafkaRequest::OffsetForLeaderEpoch(decode(api, version, b)?)
        }
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(decode(api, version, b)?)
        }
        ApiKey::ElectLeaders => KafkaRequest::ElectLeaders(decode(api, version, b)?),
        ApiKey::DescribeCluster => KafkaRequest::DescribeCluster(decode(api, version, b)?),
        other => {
            return Err(KafkaError::Decode {
                api: other,
                version,
                reason: "not served".into(),
            })
        }
    })
}

/// Answers one decoded request other than Produce (see `enqueue_produce`): the
/// response frame.
pub async fn dispatch(
    shard: &Shard,
    version: i16,
    correlation_id: i32,
    request: KafkaRequest,
) -> Result<Option<Answer>, KafkaError> {
    use KafkaRequest as R;
    let frame = match request {
        R::ApiVersions(req) => {
            debug!(
                client = %req.client_software_name.as_str(),
                version = %req.client_software_version.as_str(),
                "kafka client announces itself"
            );
            encode_response(
                ApiKey::ApiVersions,
                version,
                correlation_id,
                &api_versions(codes::NONE),
            )?
        }
        R::Metadata(req) => {
            let resp = metadata::handle(shard, req, version).await;
            encode_response(ApiKey::Metadata, version, correlation_id, &resp)?
        }
        R::Produce(_) => {
            return Err(KafkaError::Decode {
                api: ApiKey::Produce,
                version,
                reason: "produce is queued by the connection reader".into(),
            })
        }
        R::Fetch(req) => {
            let (resp, mut memory) = fetch::handle(shard, req, version).await;
            let frame = encode_response(ApiKey::Fetch, version, correlation_id, &resp)?;
            // The records now live in the frame (one copy, joined per partition).
            drop(resp);
            memory.resize_to(frame.len());
            return Ok(Some(Answer {
                frame,
                memory: Some(memory),
            }));
        }
        R::ListOffsets(req) => {
            let resp = list_offsets::handle(shard, req).await;
            encode_response(ApiKey::ListOffsets, version, correlation_id, &resp)?
        }
        R::IncrementalAlterConfigs(req) => {
            let resp = admin::incremental_alter_configs(shard, req).await;
            encode_response(
                ApiKey::IncrementalAlterConfigs,
                version,
                correlation_id,
                &resp,
            )?
        }
        R::ElectLeaders(req) => {
            let resp = cluster::elect_leaders(shard, req, version).await;
            encode_response(ApiKey::ElectLeaders, version, correlation_id, &resp)?
        }
        R::DescribeCluster(req) => {
            let resp = cluster::describe_cluster(shard, req, version).await;
            encode_response(ApiKey::DescribeCluster, version, correlation_id, &resp)?
        }
        R::OffsetForLeaderEpoch(req) => {
            let resp = offset_for_leader_epoch::handle(shard, req).await;
            encode_response(ApiKey::OffsetForLeaderEpoch, version, correlation_id, &resp)?
        }
        R::ListGroups(req) => {
            let resp = groups::list(shard, req, version).await;
            encode_response(ApiKey::ListGroups, version, correlation_id, &resp)?
        }
        R::DescribeGroups(req) => {
            let resp = groups::describe(shard, req).await;
            encode_response(ApiKey::DescribeGroups, version, correlation_id, &resp)?
        }
        R::CreateTopics(req) => {
            let resp = admin::create_topics(shard, req, version).await;
            encode_response(ApiKey::CreateTopics, version, correlation_id, &resp)?
        }
        R::DeleteTopics(req) => {
            let resp = admin::delete_topics(shard, req, version).await;
            encode_response(ApiKey::DeleteTopics, version, correlation_id, &resp)?
        }
        R::DescribeConfigs(req) => {
            let resp = admin::describe_configs(shard, req);
            encode_response(ApiKey::DescribeConfigs, version, correlation_id, &resp)?
        }
        R::CreatePartitions(req) => {
            let resp = admin::create_partitions(shard, req).await;
            encode_response(ApiKey::CreatePartitions, version, correlation_id, &resp)?
        }
        R::InitProducerId(req) => {
            let resp = init_producer_id(shard, &req);
            encode_response(ApiKey::InitProducerId, version, correlation_id, &resp)?
        }
        R::FindCoordinator(req) => {
            let resp = groups::find_coordinator(shard, req, version).await;
            encode_response(ApiKey::FindCoordinator, version, correlation_id, &resp)?
        }
        R::JoinGroup(req) => {
            let resp = groups::join(shard, req, version).await;
            encode_response(ApiKey::JoinGroup, version, correlation_id, &resp)?
        }
        R::SyncGroup(req) => {
            let resp = groups::sync(shard, req, version).await;
            encode_response(ApiKey::SyncGroup, version, correlation_id, &resp)?
        }
        R::Heartbeat(req) => {
            let resp = groups::heartbeat(shard, req).await;
            encode_response(ApiKey::Heartbeat, version, correlation_id, &resp)?
        }
        R::LeaveGroup(req) => {
            let resp = groups::leave(shard, req, version).await;
            encode_response(ApiKey::LeaveGroup, version, correlation_id, &resp)?
        }
        R::OffsetCommit(req) => {
            let resp = groups::commit(shard, req).await;
            encode_response(ApiKey::OffsetCommit, version, correlation_id, &resp)?
        }
        R::OffsetFetch(req) => {
            let resp = groups::fetch_offsets(shard, req, version).await;
            encode_response(ApiKey::OffsetFetch, version, correlation_id, &resp)?
        }
    };
    Ok(Some(frame.into()))
}

/// InitProducerId for idempotent producers: always a new producer id at epoch 0,
/// as Kafka answers when there is no transactional id, whatever id and epoch the
/// request gives back (v3+): bumping the given id's epoch would let any client
/// fence another producer. Transactions are not served (an empty transactional id
/// counts as none).
fn init_producer_id(shard: &Shard, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
        resp.error_code = codes::COORDINATOR_NOT_AVAILABLE;
        return resp;
    }
    resp.producer_id = ProducerId(shard.new_producer_id());
    resp.producer_epoch = 0;
    resp
}
