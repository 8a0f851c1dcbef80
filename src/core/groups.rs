//! Consumer groups as both listeners see them: the requests in the broker's own
//! types, and their routing. A group's coordinator is the owner shard of the
//! group's `__consumer_offsets` partition (the topic is created with the first group
//! request, as Kafka does); a request goes there over the mesh, and ListGroups asks
//! every shard. The coordinator itself is `broker::group_coordinator`.

use std::collections::BTreeMap;

use crate::core::error::ErrorKind;
use ringlog_shards::ShardId;

use crate::core;
use crate::core::messages::{Answer, NewTopic, PartitionError, ShardRequest};
use crate::core::shard::Shard;
use crate::groups::membership::{
    GroupError, JoinRequest, JoinResult, MemberAssignment, MemberView, Protocol,
};
use crate::groups::offsets::{partition_for_group, Committed, OFFSETS_TOPIC};
use crate::metadata::model::{BrokerInfo, ClusterMetadata};
use crate::sync::join::join_all;

/// JoinGroup.
#[derive(Clone, Debug)]
pub struct Join {
    pub group: String,
    pub request: JoinRequest,
}

impl Join {
    /// A join as a client asks it: the timeouts in ms as the wire carries them
    /// (negative ones are refused), no member id for a first join.
    pub fn new(
        group: String,
        member_id: String,
        client_id: String,
        timeouts_ms: (i32, i32),
        protocol_type: String,
        protocols: Vec<Protocol>,
    ) -> Result<Self, PartitionError> {
        let (session, rebalance) = timeouts_ms;
        let (Ok(session_timeout_ms), Ok(rebalance_timeout_ms)) =
            (u64::try_from(session), u64::try_from(rebalance))
        else {
            return Err(PartitionError::new(
                ErrorKind::InvalidSessionTimeout,
                "negative timeout",
            ));
        };
        Ok(Self {
            group,
            request: JoinRequest {
                member_id,
                client_id,
                client_host: String::new(),
                session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type,
                protocols,
            },
        })
    }
}

/// SyncGroup: the leader of a client-side group brings every member's assignment.
#[derive(Clone, Debug, Default)]
pub struct Sync {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub assignments: BTreeMap<String, MemberAssignment>,
}

/// Heartbeat.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
}

/// LeaveGroup of one member.
#[derive(Clone, Debug, Default)]
pub struct Leave {
    pub group: String,
    pub member_id: String,
}

/// One partition's offset to commit.
#[derive(Clone, Debug, Default)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: String,
}

/// OffsetCommit. A member commits with its generation; a client outside any group
/// (no member id, generation < 0) commits freely.
#[derive(Clone, Debug, Default)]
pub struct OffsetCommit {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub offsets: Vec<CommitOffset>,
}

/// One partition's outcome of an OffsetCommit.
#[derive(Clone, Debug)]
pub struct CommitOutcome {
    pub topic: String,
    pub partition: i32,
    pub error: Option<PartitionError>,
}

/// OffsetFetch: these partitions' committed offsets, or (`None`) all of the group's.
#[derive(Clone, Debug, Default)]
pub struct OffsetFetch {
    pub group: String,
    pub partitions: Option<Vec<(String, i32)>>,
}

/// A partition's committed offset (`None`: nothing committed).
#[derive(Clone, Debug)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<Committed>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug)]
pub struct GroupListing {
    pub group: String,
    /// Kafka's state name.
    pub state: String,
    pub protocol_type: Option<String>,
    pub members: usize,
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug, Default)]
pub struct GroupDescription {
    pub group: String,
    /// Kafka's state name.
    pub state: String,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberView>,
}

/// A group request for the coordinator shard, with the answer of its own type.
pub enum GroupCall {
    Join(Join, Answer<Result<JoinResult, PartitionError>>),
    Sync(Sync, Answer<Result<MemberAssignment, PartitionError>>),
    Heartbeat(Heartbeat, Answer<Result<(), PartitionError>>),
    Leave(Leave, Answer<Result<(), PartitionError>>),
    Commit(
        OffsetCommit,
        Answer<Result<Vec<CommitOutcome>, PartitionError>>,
    ),
    FetchOffsets(
        OffsetFetch,
        Answer<Result<Vec<CommittedOffset>, PartitionError>>,
    ),
    /// The groups this shard coordinates.
    List(Answer<Vec<GroupListing>>),
    Describe(String, Answer<Result<GroupDescription, PartitionError>>),
    Delete(String, Answer<Result<(), PartitionError>>),
}

/// The wire meaning of a membership error.
pub fn group_error(e: GroupError) -> PartitionError {
    let code = match e {
        GroupError::UnknownMemberId => ErrorKind::UnknownMemberId,
        GroupError::IllegalGeneration => ErrorKind::IllegalGeneration,
        GroupError::RebalanceInProgress => ErrorKind::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ErrorKind::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ErrorKind::InvalidSessionTimeout,
        GroupError::GroupMaxSizeReached => ErrorKind::GroupMaxSizeReached,
    };
    PartitionError::new(code, e.to_string())
}

/// Where a group's coordinator is: the broker leading the group's
/// `__consumer_offsets` partition, and the shard owning it there.
pub struct CoordinatorPlace {
    pub broker: BrokerInfo,
    /// The coordinator's shard on its broker (by the broker's shard count).
    pub shard: ShardId,
    /// Whether the coordinator is on this broker.
    pub local: bool,
    pub partition: i32,
}

/// The coordinator of `group`: the leader of its `__consumer_offsets` partition, as
/// Kafka's; creates `__consumer_offsets` if it is missing.
pub async fn find_coordinator(
    shard: &Shard,
    group: &str,
) -> Result<CoordinatorPlace, PartitionError> {
    if group.is_empty() {
        return Err(PartitionError::new(
            ErrorKind::InvalidGroupId,
            "the group id must not be empty",
        ));
    }
    ensure_offsets_topic(shard).await?;
    let partition = offsets_partition(shard, group);
    let unavailable = |why: String| {
        PartitionError::new(
            ErrorKind::CoordinatorNotAvailable,
            format!("the coordinator of group {group:?} is not available: {why}"),
        )
    };
    let md = shard.metadata.borrow();
    let topic = md
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or_else(|| unavailable(format!("{OFFSETS_TOPIC} does not exist")))?;
    let leader = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .and_then(|p| p.leader)
        .ok_or_else(|| unavailable(format!("{OFFSETS_TOPIC}-{partition} has no leader")))?;
    let broker = md
        .brokers
        .get(&leader)
        .cloned()
        .ok_or_else(|| unavailable(format!("broker {} is not registered", leader.0)))?;
    let local = leader == shard.broker_id();
    let shard_count = if local { shard.shards } else { broker.shards };
    Ok(CoordinatorPlace {
        shard: ClusterMetadata::shard_of(topic, partition, shard_count),
        broker,
        local,
        partition,
    })
}

/// The `__consumer_offsets` partition of `group`: by the topic's partition count once
/// it exists, so a changed config never moves a group.
pub fn offsets_partition(shard: &Shard, group: &str) -> i32 {
    let n = shard
        .partition_count(OFFSETS_TOPIC)
        .unwrap_or(shard.config.offsets_topic_partitions);
    partition_for_group(group, n)
}

/// Creates `__consumer_offsets` (`offsets.topic.num.partitions`) on first use, as
/// Kafka does; the coordinator answers once every shard has opened its partitions.
/// Its replication factor is `offsets.topic.replication.factor` capped at the
/// brokers registered: while some of those are down the creation fails and the
/// client retries (COORDINATOR_NOT_AVAILABLE), as Kafka's does, rather than the
/// topic being made with fewer replicas for good.
async fn ensure_offsets_topic(shard: &Shard) -> Result<(), PartitionError> {
    let registered = {
        let md = shard.metadata.borrow();
        if md.topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        md.brokers.len()
    };
    let offsets_topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: Some(shard.config.offsets_topic_partitions),
        replication_factor: Some(offsets_replication_factor(
            shard.config.offsets_topic_replication_factor,
            registered,
        )),
        configs: crate::groups::offsets::offsets_topic_configs(
            shard.config.offsets_topic_segment_bytes,
            shard.config.log.max_batch_bytes,
        ),
    };
    let answer = core::topics::create(shard, vec![offsets_topic], false).await;
    if shard.metadata.borrow().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let why = match answer {
        Ok(outcomes) => outcomes
            .into_iter()
            .filter_map(|t| t.error.map(|e| e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => e.message,
    };
    Err(PartitionError::new(
        ErrorKind::CoordinatorNotAvailable,
        format!("cannot create {OFFSETS_TOPIC}: {why}"),
    ))
}

/// `offsets.topic.replication.factor` capped at the `registered` brokers, at least 1.
fn offsets_replication_factor(configured: i16, registered: usize) -> i16 {
    let registered = i16::try_from(registered).unwrap_or(i16::MAX);
    configured.min(registered).max(1)
}

/// Sends the call `call` builds to the coordinator of `group` and returns its answer.
async fn route<T: Send + 'static>(
    shard: &Shard,
    group: &str,
    call: impl FnOnce(Answer<Result<T, PartitionError>>) -> GroupCall,
) -> Result<T, PartitionError> {
    let place = find_coordinator(shard, group).await?;
    if !place.local {
        return Err(PartitionError::new(
            ErrorKind::NotCoordinator,
            format!(
                "broker {} is not the coordinator of group {group:?}: broker {} is",
                shard.config.broker_id, place.broker.id.0
            ),
        ));
    }
    let owner = place.shard;
    shard
        .mesh()
        .call_shard(owner, |answer| ShardRequest::Group(call(answer)))
        .await
        .map_err(|e| PartitionError::new(ErrorKind::CoordinatorNotAvailable, e.to_string()))
        .and_then(|answer| answer)
}

pub async fn join(shard: &Shard, request: Join) -> Result<JoinResult, PartitionError> {
    let group = request.group.clone();
    route(shard, &group, |answer| GroupCall::Join(request, answer)).await
}

pub async fn sync(shard: &Shard, request: Sync) -> Result<MemberAssignment, PartitionError> {
    let group = request.group.clone();
    route(shard, &group, |answer| GroupCall::Sync(request, answer)).await
}

pub async fn heartbeat(shard: &Shard, request: Heartbeat) -> Result<(), PartitionError> {
    let group = request.group.clone();
    route(shard, &group, |answer| {
        GroupCall::Heartbeat(request, answer)
    })
    .await
}

pub async fn leave(shard: &Shard, request: Leave) -> Result<(), PartitionError> {
    let group = request.group.clone();
    route(shard, &group, |answer| GroupCall::Leave(request, answer)).await
}

pub async fn commit(
    shard: &Shard,
    request: OffsetCommit,
) -> Result<Vec<CommitOutcome>, PartitionError> {
    let group = request.group.clone();
    route(shard, &group, |answer| GroupCall::Commit(request, answer)).await
}

pub async fn fetch_offsets(
    shard: &Shard,
    request: OffsetFetch,
) -> Result<Vec<CommittedOffset>, PartitionError> {
    let group = request.group.clone();
    route(shard, &group, |answer| {
        GroupCall::FetchOffsets(request, answer)
    })
    .await
}

/// Every shard's groups, by id; with the error of the shards that did not answer
/// (the groups of those are missing).
pub async fn list(shard: &Shard) -> (Vec<GroupListing>, Option<PartitionError>) {
    let calls = (0..shard.shards).map(|i| async move {
        shard
            .mesh()
            .call_shard(ShardId(i), |answer| {
                ShardRequest::Group(GroupCall::List(answer))
            })
            .await
    });
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    for answer in join_all(calls.collect()).await {
        match answer {
            Ok(listed) => groups.extend(listed),
            Err(e) => problems.push(e.to_string()),
        }
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    let error = (!problems.is_empty())
        .then(|| PartitionError::new(ErrorKind::CoordinatorNotAvailable, problems.join("; ")));
    (groups, error)
}

/// Each group described by its coordinator, in order.
pub async fn describe(
    shard: &Shard,
    groups: Vec<String>,
) -> Vec<(String, Result<GroupDescription, PartitionError>)> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let id = group.clone();
        let described = route(shard, &group, |answer| GroupCall::Describe(id, answer)).await;
        out.push((group, described));
    }
    out
}

/// Deletes each group (its commits; it must have no members), in order.
pub async fn delete(
    shard: &Shard,
    groups: Vec<String>,
) -> Vec<(String, Result<(), PartitionError>)> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let id = group.clone();
        let deleted = route(shard, &group, |answer| GroupCall::Delete(id, answer)).await;
        out.push((group, deleted));
    }
    out
}
