//! Group requests on the shard that received them: FindCoordinator is answered here;
//! everything else goes to the group's coordinator, the owner shard of the group's
//! `__consumer_offsets` partition (created with the first group request), and
//! ListGroups asks every shard. A request for several groups is split per group.

use ringlog_schema::wire::{
    BodyT, DeleteGroupsRequestT, DeleteGroupsResponseT, DescribeGroupsRequestT,
    DescribeGroupsResponseT, ErrorCode, FindCoordinatorResponseT, GroupDescriptionT, GroupResultT,
    HeartbeatResponseT, JoinGroupResponseT, LeaveGroupResponseT, ListGroupsResponseT,
    OffsetCommitResponseT, OffsetFetchResponseT, SyncGroupResponseT,
};
use ringlog_shards::ShardId;

use crate::broker::group_coordinator::offsets_partition;
use crate::broker::handlers::join_all;
use crate::broker::messages::{NewTopic, PartitionError, ShardRequest};
use crate::broker::shard::Shard;
use crate::core;
use crate::groups::offsets::OFFSETS_TOPIC;

/// Answers a group request.
pub async fn handle(shard: &Shard, body: BodyT) -> BodyT {
    match body {
        BodyT::FindCoordinatorRequest(r) => find_coordinator(shard, &r.group).await,
        BodyT::ListGroupsRequest(_) => list(shard).await,
        BodyT::DescribeGroupsRequest(r) => describe(shard, r.groups.unwrap_or_default()).await,
        BodyT::DeleteGroupsRequest(r) => delete(shard, r.groups.unwrap_or_default()).await,
        other => {
            let group = match &other {
                BodyT::JoinGroupRequest(r) => r.group.clone(),
                BodyT::SyncGroupRequest(r) => r.group.clone(),
                BodyT::HeartbeatRequest(r) => r.group.clone(),
                BodyT::LeaveGroupRequest(r) => r.group.clone(),
                BodyT::OffsetCommitRequest(r) => r.group.clone(),
                BodyT::OffsetFetchRequest(r) => r.group.clone(),
                _ => String::new(),
            };
            let kind = Kind::of(&other);
            match route(shard, &group, other).await {
                Ok(answer) => answer,
                Err(e) => refusal(kind, e),
            }
        }
    }
}

/// Sends `body` to the coordinator of `group` and returns its answer.
async fn route(shard: &Shard, group: &str, body: BodyT) -> Result<BodyT, PartitionError> {
    let owner = coordinator_of(shard, group).await?;
    shard
        .mesh()
        .call_shard(owner, |answer| ShardRequest::Group {
            request: Box::new(body),
            answer,
        })
        .await
        .map(|answer| *answer)
        .map_err(|e| PartitionError::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, e.to_string()))
}

/// The shard coordinating `group`; creates `__consumer_offsets` if it is missing.
async fn coordinator_of(shard: &Shard, group: &str) -> Result<ShardId, PartitionError> {
    if group.is_empty() {
        return Err(PartitionError::new(
            ErrorCode::INVALID_GROUP_ID,
            "the group id must not be empty",
        ));
    }
    ensure_offsets_topic(shard).await?;
    let p = offsets_partition(shard, group);
    shard.owner_of(OFFSETS_TOPIC, p).map_err(|e| {
        PartitionError::new(
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            format!(
                "the coordinator of group {group:?} is not available: {}",
                e.message
            ),
        )
    })
}

/// Creates `__consumer_offsets` (`offsets.topic.num.partitions`) on first use, as
/// Kafka does; the coordinator answers once every shard has opened its partitions.
async fn ensure_offsets_topic(shard: &Shard) -> Result<(), PartitionError> {
    if shard.metadata.borrow().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let offsets_topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: Some(shard.config.offsets_topic_partitions),
        replication_factor: Some(1),
        configs: crate::groups::offsets::offsets_topic_configs(
            shard.config.offsets_topic_segment_bytes,
            shard.config.log.max_batch_bytes,
        )
        .into_iter()
        .collect(),
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
        ErrorCode::COORDINATOR_NOT_AVAILABLE,
        format!("cannot create {OFFSETS_TOPIC}: {why}"),
    ))
}

async fn find_coordinator(shard: &Shard, group: &str) -> BodyT {
    let found = coordinator_of(shard, group).await;
    let addr = shard
        .config
        .advertised_native_addr
        .unwrap_or(shard.config.native_addr);
    let resp = match found {
        Ok(owner) => FindCoordinatorResponseT {
            error: ErrorCode::NONE,
            message: None,
            broker_id: shard.config.broker_id,
            host: Some(addr.ip().to_string()),
            port: i32::from(addr.port()),
            partition: offsets_partition(shard, group),
            shard: owner.0,
        },
        Err(e) => FindCoordinatorResponseT {
            error: e.code,
            message: Some(e.message),
            broker_id: -1,
            ..Default::default()
        },
    };
    BodyT::FindCoordinatorResponse(Box::new(resp))
}

async fn list(shard: &Shard) -> BodyT {
    let calls = (0..shard.shards).map(|i| async move {
        shard
            .mesh()
            .call_shard(ShardId(i), |answer| ShardRequest::Group {
                request: Box::new(BodyT::ListGroupsRequest(Box::default())),
                answer,
            })
            .await
    });
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    for answer in join_all(calls.collect()).await {
        match answer {
            Ok(b) => {
                if let BodyT::ListGroupsResponse(r) = *b {
                    groups.extend(r.groups.unwrap_or_default());
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    BodyT::ListGroupsResponse(Box::new(ListGroupsResponseT {
        error: if problems.is_empty() {
            ErrorCode::NONE
        } else {
            ErrorCode::COORDINATOR_NOT_AVAILABLE
        },
        message: (!problems.is_empty()).then(|| problems.join("; ")),
        groups: Some(groups),
    }))
}

/// Sends a one-group request per id to its coordinator; `pick` takes the group's
/// entry out of the answer, `failed` builds one for a group that got none.
async fn per_group<T>(
    shard: &Shard,
    ids: Vec<String>,
    request: impl Fn(String) -> BodyT,
    pick: impl Fn(BodyT) -> Option<T>,
    failed: impl Fn(String, ErrorCode, String) -> T,
) -> Vec<T> {
    let mut out = Vec::new();
    for id in ids {
        let entry = match route(shard, &id, request(id.clone())).await {
            Ok(answer) => pick(answer).unwrap_or_else(|| {
                failed(
                    id,
                    ErrorCode::UNKNOWN_SERVER_ERROR,
                    "the coordinator answered oddly".into(),
                )
            }),
            Err(e) => failed(id, e.code, e.message),
        };
        out.push(entry);
    }
    out
}

async fn describe(shard: &Shard, ids: Vec<String>) -> BodyT {
    let groups = per_group(
        shard,
        ids,
        |id| {
            BodyT::DescribeGroupsRequest(Box::new(DescribeGroupsRequestT {
                groups: Some(vec![id]),
            }))
        },
        |answer| match answer {
            BodyT::DescribeGroupsResponse(r) => r.groups.unwrap_or_default().into_iter().next(),
            _ => None,
        },
        |group, error, message| GroupDescriptionT {
            group,
            error,
            message: Some(message),
            ..Default::default()
        },
    )
    .await;
    BodyT::DescribeGroupsResponse(Box::new(DescribeGroupsResponseT {
        groups: Some(groups),
    }))
}

async fn delete(shard: &Shard, ids: Vec<String>) -> BodyT {
    let results = per_group(
        shard,
        ids,
        |id| {
            BodyT::DeleteGroupsRequest(Box::new(DeleteGroupsRequestT {
                groups: Some(vec![id]),
            }))
        },
        |answer| match answer {
            BodyT::DeleteGroupsResponse(r) => r.results.unwrap_or_default().into_iter().next(),
            _ => None,
        },
        |group, error, message| GroupResultT {
            group,
            error,
            message: Some(message),
        },
    )
    .await;
    BodyT::DeleteGroupsResponse(Box::new(DeleteGroupsResponseT {
        results: Some(results),
    }))
}

/// Which group request a refusal answers.
#[derive(Clone, Copy)]
enum Kind {
    Join,
    Sync,
    Heartbeat,
    Leave,
    Commit,
    Fetch,
    Other,
}

impl Kind {
    fn of(request: &BodyT) -> Self {
        match request {
            BodyT::JoinGroupRequest(_) => Kind::Join,
            BodyT::SyncGroupRequest(_) => Kind::Sync,
            BodyT::HeartbeatRequest(_) => Kind::Heartbeat,
            BodyT::LeaveGroupRequest(_) => Kind::Leave,
            BodyT::OffsetCommitRequest(_) => Kind::Commit,
            BodyT::OffsetFetchRequest(_) => Kind::Fetch,
            _ => Kind::Other,
        }
    }
}

/// The response of a `kind` request that failed with `e`.
fn refusal(kind: Kind, e: PartitionError) -> BodyT {
    let (error, message) = (e.code, Some(e.message));
    match kind {
        Kind::Join => BodyT::JoinGroupResponse(Box::new(JoinGroupResponseT {
            error,
            message,
            generation: -1,
            ..Default::default()
        })),
        Kind::Sync => BodyT::SyncGroupResponse(Box::new(SyncGroupResponseT {
            error,
            message,
            ..Default::default()
        })),
        Kind::Heartbeat => {
            BodyT::HeartbeatResponse(Box::new(HeartbeatResponseT { error, message }))
        }
        Kind::Leave => BodyT::LeaveGroupResponse(Box::new(LeaveGroupResponseT { error, message })),
        Kind::Commit => BodyT::OffsetCommitResponse(Box::new(OffsetCommitResponseT {
            error,
            message,
            partitions: None,
        })),
        Kind::Fetch => BodyT::OffsetFetchResponse(Box::new(OffsetFetchResponseT {
            error,
            message,
            offsets: None,
        })),
        Kind::Other => {
            crate::broker::handlers::error_body(error, message.as_deref().unwrap_or_default())
        }
    }
}
