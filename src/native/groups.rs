//! Group requests on the native protocol: each is turned into the core's request
//! (`core::groups`, which routes it to the group's coordinator shard) and its
//! answer into the native response.

use bytes::Bytes;
use ringlog_schema::wire::{
    BodyT, CommittedOffsetT, DeleteGroupsResponseT, DescribeGroupsResponseT, ErrorCode,
    FindCoordinatorResponseT, GroupDescriptionT, GroupListingT, GroupMemberDescriptionT,
    GroupMemberMetadataT, GroupResultT, HeartbeatRequestT, HeartbeatResponseT, JoinGroupRequestT,
    JoinGroupResponseT, LeaveGroupRequestT, LeaveGroupResponseT, ListGroupsResponseT,
    OffsetCommitPartitionResultT, OffsetCommitRequestT, OffsetCommitResponseT, OffsetFetchRequestT,
    OffsetFetchResponseT, SyncGroupRequestT, SyncGroupResponseT, TopicAssignmentT,
};

use crate::core::error::ErrorKind;
use crate::core::groups::{
    self, CommitOffset, Heartbeat, Join, Leave, OffsetCommit, OffsetFetch, Sync,
};
use crate::core::messages::PartitionError;
use crate::core::shard::Shard;
use crate::groups::assignor::TopicPartitions;
use crate::groups::membership::{MemberAssignment, Protocol};
use crate::native::error_body;
use crate::native::wire_code;

/// Answers a group request.
pub async fn handle(shard: &Shard, body: BodyT) -> BodyT {
    match body {
        BodyT::FindCoordinatorRequest(r) => find_coordinator(shard, &r.group).await,
        BodyT::JoinGroupRequest(r) => join(shard, *r).await,
        BodyT::SyncGroupRequest(r) => sync(shard, *r).await,
        BodyT::HeartbeatRequest(r) => heartbeat(shard, *r).await,
        BodyT::LeaveGroupRequest(r) => leave(shard, *r).await,
        BodyT::OffsetCommitRequest(r) => commit(shard, *r).await,
        BodyT::OffsetFetchRequest(r) => fetch_offsets(shard, *r).await,
        BodyT::ListGroupsRequest(_) => list(shard).await,
        BodyT::DescribeGroupsRequest(r) => describe(shard, r.groups.unwrap_or_default()).await,
        BodyT::DeleteGroupsRequest(r) => delete(shard, r.groups.unwrap_or_default()).await,
        other => error_body(
            ErrorCode::INVALID_REQUEST,
            &format!("{:?} is not a group request", other.body_type()),
        ),
    }
}

/// `(error, message)` of a result, as native responses carry them.
fn status<T>(r: &Result<T, PartitionError>) -> (ErrorCode, Option<String>) {
    match r {
        Ok(_) => (ErrorCode::NONE, None),
        Err(e) => (wire_code(e.code), Some(e.message.clone())),
    }
}

fn assignment_to_wire(tp: &TopicPartitions) -> Vec<TopicAssignmentT> {
    tp.iter()
        .map(|(t, ps)| TopicAssignmentT {
            topic: t.clone(),
            partitions: Some(ps.clone()),
        })
        .collect()
}

async fn find_coordinator(shard: &Shard, group: &str) -> BodyT {
    let resp = match groups::find_coordinator(shard, group).await {
        Ok(place) => {
            // This broker's own address as configured; another's as it registered.
            let (host, port) = if place.local {
                let addr = shard
                    .config
                    .advertised_native_addr
                    .unwrap_or(shard.config.native_addr);
                (addr.ip().to_string(), addr.port())
            } else {
                (place.broker.host.clone(), place.broker.port)
            };
            FindCoordinatorResponseT {
                error: ErrorCode::NONE,
                message: None,
                broker_id: place.broker.id.0,
                host: Some(host),
                port: i32::from(port),
                partition: place.partition,
                shard: place.shard.0,
            }
        }
        Err(e) => FindCoordinatorResponseT {
            error: wire_code(e.code),
            message: Some(e.message),
            broker_id: -1,
            ..Default::default()
        },
    };
    BodyT::FindCoordinatorResponse(Box::new(resp))
}

async fn join(shard: &Shard, req: JoinGroupRequestT) -> BodyT {
    let protocols = req
        .protocols
        .unwrap_or_default()
        .into_iter()
        .map(|p| Protocol {
            name: p.name,
            metadata: Bytes::from(p.metadata.unwrap_or_default()),
            subscription: p.topics.unwrap_or_default(),
        })
        .collect();
    let joined = match Join::new(
        req.group,
        req.member_id.unwrap_or_default(),
        req.client_id.unwrap_or_default(),
        (req.session_timeout_ms, req.rebalance_timeout_ms),
        req.protocol_type.unwrap_or_default(),
        protocols,
    ) {
        Ok(join) => groups::join(shard, join).await,
        Err(e) => Err(e),
    };
    let resp = match joined {
        Ok(j) => JoinGroupResponseT {
            error: ErrorCode::NONE,
            message: None,
            generation: j.generation,
            protocol: Some(j.protocol),
            leader: Some(j.leader),
            member_id: Some(j.member_id),
            assignment: Some(assignment_to_wire(
                &j.assignment.map(|a| a.partitions).unwrap_or_default(),
            )),
            members: Some(
                j.members
                    .into_iter()
                    .map(|(member_id, metadata)| GroupMemberMetadataT {
                        member_id,
                        metadata: Some(metadata.to_vec()),
                    })
                    .collect(),
            ),
        },
        Err(e) => JoinGroupResponseT {
            error: wire_code(e.code),
            message: Some(e.message),
            generation: -1,
            ..Default::default()
        },
    };
    BodyT::JoinGroupResponse(Box::new(resp))
}

async fn sync(shard: &Shard, req: SyncGroupRequestT) -> BodyT {
    let assignments = req
        .assignments
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let partitions = a
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.topic, t.partitions.unwrap_or_default()))
                .collect();
            let assignment = MemberAssignment {
                raw: Bytes::from(a.assignment.unwrap_or_default()),
                partitions,
            };
            (a.member_id, assignment)
        })
        .collect();
    let synced = groups::sync(
        shard,
        Sync {
            group: req.group,
            member_id: req.member_id,
            generation: req.generation,
            assignments,
        },
    )
    .await;
    let (error, message) = status(&synced);
    let resp = match synced {
        Ok(a) => SyncGroupResponseT {
            error,
            message,
            assignment: Some(a.raw.to_vec()),
            topics: Some(assignment_to_wire(&a.partitions)),
        },
        Err(_) => SyncGroupResponseT {
            error,
            message,
            ..Default::default()
        },
    };
    BodyT::SyncGroupResponse(Box::new(resp))
}

async fn heartbeat(shard: &Shard, req: HeartbeatRequestT) -> BodyT {
    let beat = Heartbeat {
        group: req.group,
        member_id: req.member_id,
        generation: req.generation,
    };
    let (error, message) = status(&groups::heartbeat(shard, beat).await);
    BodyT::HeartbeatResponse(Box::new(HeartbeatResponseT { error, message }))
}

async fn leave(shard: &Shard, req: LeaveGroupRequestT) -> BodyT {
    let leave = Leave {
        group: req.group,
        member_id: req.member_id,
    };
    let (error, message) = status(&groups::leave(shard, leave).await);
    BodyT::LeaveGroupResponse(Box::new(LeaveGroupResponseT { error, message }))
}

async fn commit(shard: &Shard, req: OffsetCommitRequestT) -> BodyT {
    let offsets = req
        .partitions
        .unwrap_or_default()
        .into_iter()
        .map(|p| CommitOffset {
            topic: p.topic,
            partition: p.partition,
            offset: p.offset,
            metadata: p.metadata.unwrap_or_default(),
        })
        .collect();
    let committed = groups::commit(
        shard,
        OffsetCommit {
            group: req.group,
            member_id: req.member_id.unwrap_or_default(),
            generation: req.generation,
            offsets,
        },
    )
    .await;
    let (error, message) = status(&committed);
    let partitions = committed.ok().map(|outcomes| {
        outcomes
            .into_iter()
            .map(|o| {
                let (error, message) = match o.error {
                    None => (ErrorCode::NONE, None),
                    Some(e) => (wire_code(e.code), Some(e.message)),
                };
                OffsetCommitPartitionResultT {
                    topic: o.topic,
                    partition: o.partition,
                    error,
                    message,
                }
            })
            .collect()
    });
    BodyT::OffsetCommitResponse(Box::new(OffsetCommitResponseT {
        error,
        message,
        partitions,
    }))
}

async fn fetch_offsets(shard: &Shard, req: OffsetFetchRequestT) -> BodyT {
    let asked = OffsetFetch {
        group: req.group,
        partitions: req
            .partitions
            .map(|ps| ps.into_iter().map(|p| (p.topic, p.partition)).collect()),
    };
    let fetched = groups::fetch_offsets(shard, asked).await;
    let (error, message) = status(&fetched);
    let offsets = fetched.ok().map(|offsets| {
        offsets
            .into_iter()
            .map(|o| CommittedOffsetT {
                topic: o.topic,
                partition: o.partition,
                offset: o.committed.as_ref().map_or(-1, |c| c.offset),
                metadata: o.committed.as_ref().map(|c| c.metadata.clone()),
                commit_timestamp: o.committed.as_ref().map_or(-1, |c| c.commit_timestamp),
            })
            .collect()
    });
    BodyT::OffsetFetchResponse(Box::new(OffsetFetchResponseT {
        error,
        message,
        offsets,
    }))
}

async fn list(shard: &Shard) -> BodyT {
    let (listed, problem) = groups::list(shard).await;
    let (error, message) = match problem {
        None => (ErrorCode::NONE, None),
        Some(e) => (wire_code(e.code), Some(e.message)),
    };
    let groups = listed
        .into_iter()
        .map(|g| GroupListingT {
            group: g.group,
            state: Some(g.state),
            protocol_type: g.protocol_type,
            members: i32::try_from(g.members).unwrap_or(i32::MAX),
        })
        .collect();
    BodyT::ListGroupsResponse(Box::new(ListGroupsResponseT {
        error,
        message,
        groups: Some(groups),
    }))
}

async fn describe(shard: &Shard, ids: Vec<String>) -> BodyT {
    let groups = groups::describe(shard, ids)
        .await
        .into_iter()
        .map(|(group, described)| match described {
            Ok(d) => GroupDescriptionT {
                group,
                error: ErrorCode::NONE,
                message: None,
                state: Some(d.state),
                protocol_type: d.protocol_type,
                protocol: d.protocol,
                generation: d.generation,
                leader: d.leader,
                members: Some(
                    d.members
                        .into_iter()
                        .map(|m| GroupMemberDescriptionT {
                            member_id: m.member_id,
                            client_id: Some(m.client_id),
                            client_host: Some(m.client_host),
                            assignment: Some(assignment_to_wire(&m.assignment)),
                        })
                        .collect(),
                ),
            },
            // An unknown group is described as Dead, as Kafka does.
            Err(e) if e.code == ErrorKind::GroupIdNotFound => GroupDescriptionT {
                group,
                error: wire_code(e.code),
                message: Some(e.message),
                state: Some("Dead".into()),
                ..Default::default()
            },
            Err(e) => GroupDescriptionT {
                group,
                error: wire_code(e.code),
                message: Some(e.message),
                ..Default::default()
            },
        })
        .collect();
    BodyT::DescribeGroupsResponse(Box::new(DescribeGroupsResponseT {
        groups: Some(groups),
    }))
}

async fn delete(shard: &Shard, ids: Vec<String>) -> BodyT {
    let results = groups::delete(shard, ids)
        .await
        .into_iter()
        .map(|(group, deleted)| {
            let (error, message) = status(&deleted);
            GroupResultT {
                group,
                error,
                message,
            }
        })
        .collect();
    BodyT::DeleteGroupsResponse(Box::new(DeleteGroupsResponseT {
        results: Some(results),
    }))
}
