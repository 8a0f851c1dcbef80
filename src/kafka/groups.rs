//! Kafka's classic group APIs on the same coordinators as the native protocol: each
//! request is translated to its native form and routed by `handlers::groups`, so a
//! Kafka client and a native one in the same group see one group. Kafka consumers
//! assign on the client (protocol type "consumer"): the leader's SyncGroup carries
//! the assignment, whose partitions are decoded here for `describe`.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use ringlog_schema::wire::{
    BodyT, DescribeGroupsRequestT, FindCoordinatorRequestT, GroupProtocolT, HeartbeatRequestT,
    JoinGroupRequestT, LeaveGroupRequestT, MemberAssignmentEntryT, OffsetCommitPartitionT,
    OffsetCommitRequestT, OffsetFetchRequestT, SyncGroupRequestT, TopicAssignmentT,
    TopicPartitionT,
};

use crate::broker::handlers::groups;
use crate::broker::shard::Shard;
use crate::kafka::api::{codes, kafka_code, TopicEntries};

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

/// Routes a native group request and returns its answer.
async fn call(shard: &Shard, body: BodyT) -> BodyT {
    groups::handle(shard, body).await
}

/// Decodes a Kafka consumer-protocol message: `i16 version | body`.
fn consumer_protocol<T: Decodable>(raw: &[u8]) -> Option<T> {
    let mut b = Bytes::copy_from_slice(raw);
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    T::decode(&mut b, version).ok()
}

pub async fn find_coordinator(
    shard: &Shard,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut coordinators = Vec::new();
    for key in keys {
        let mut c = Coordinator::default();
        c.key = s(key.clone());
        if req.key_type != 0 {
            // Transaction coordinators do not exist here.
            c.error_code = codes::COORDINATOR_NOT_AVAILABLE;
            c.node_id = BrokerId(-1);
            c.error_message = Some(s("transactions are not supported"));
        } else {
            let body = call(
                shard,
                BodyT::FindCoordinatorRequest(Box::new(FindCoordinatorRequestT { group: key })),
            )
            .await;
            match body {
                BodyT::FindCoordinatorResponse(r) if r.error.0 == 0 => {
                    let addr = shard.config.kafka_advertised();
                    c.node_id = BrokerId(r.broker_id);
                    c.host = s(addr.map_or_else(String::new, |a| a.ip().to_string()));
                    c.port = addr.map_or(0, |a| i32::from(a.port()));
                }
                BodyT::FindCoordinatorResponse(r) => {
                    c.error_code = kafka_code(r.error);
                    c.node_id = BrokerId(-1);
                    c.error_message = r.message.map(s);
                }
                _ => {
                    c.error_code = codes::COORDINATOR_NOT_AVAILABLE;
                    c.node_id = BrokerId(-1);
                }
            }
        }
        coordinators.push(c);
    }
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = coordinators;
    } else if let Some(c) = coordinators.into_iter().next() {
        resp.error_code = c.error_code;
        if version >= 1 {
            resp.error_message = c.error_message;
        }
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    resp
}

pub async fn join(shard: &Shard, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
    let protocols = req
        .protocols
        .iter()
        .map(|p| GroupProtocolT {
            name: p.name.to_string(),
            topics: consumer_protocol::<ConsumerProtocolSubscription>(&p.metadata)
                .map(|sub| sub.topics.iter().map(|t| t.to_string()).collect()),
            metadata: Some(p.metadata.to_vec()),
        })
        .collect();
    let body = call(
        shard,
        BodyT::JoinGroupRequest(Box::new(JoinGroupRequestT {
            group: req.group_id.to_string(),
            member_id: Some(req.member_id.to_string()),
            client_id: Some("kafka".into()),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka then uses the session timeout.
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: Some(req.protocol_type.to_string()),
            protocols: Some(protocols),
        })),
    )
    .await;
    let mut resp = JoinGroupResponse::default();
    match body {
        BodyT::JoinGroupResponse(r) => {
            resp.error_code = kafka_code(r.error);
            resp.generation_id = r.generation;
            if version >= 7 {
                resp.protocol_type = Some(req.protocol_type.clone());
            }
            resp.protocol_name = r.protocol.map(s).or_else(|| (version < 7).then(|| s("")));
            resp.leader = s(r.leader.unwrap_or_default());
            resp.member_id = s(r.member_id.unwrap_or_default());
            resp.members = r
                .members
                .unwrap_or_default()
                .into_iter()
                .map(|m| {
                    let mut out = JoinGroupResponseMember::default();
                    out.member_id = s(m.member_id);
                    out.metadata = Bytes::from(m.metadata.unwrap_or_default());
                    out
                })
                .collect();
        }
        _ => resp.error_code = codes::UNKNOWN_SERVER_ERROR,
    }
    resp
}

pub async fn sync(shard: &Shard, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .iter()
        .map(|a| MemberAssignmentEntryT {
            member_id: a.member_id.to_string(),
            assignment: Some(a.assignment.to_vec()),
            topics: consumer_protocol::<ConsumerProtocolAssignment>(&a.assignment).map(|ca| {
                ca.assigned_partitions
                    .iter()
                    .map(|tp| TopicAssignmentT {
                        topic: tp.topic.to_string(),
                        partitions: Some(tp.partitions.clone()),
                    })
                    .collect()
            }),
        })
        .collect();
    let body = call(
        shard,
        BodyT::SyncGroupRequest(Box::new(SyncGroupRequestT {
            group: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            generation: req.generation_id,
            assignments: Some(assignments),
        })),
    )
    .await;
    let mut resp = SyncGroupResponse::default();
    match body {
        BodyT::SyncGroupResponse(r) => {
            resp.error_code = kafka_code(r.error);
            resp.assignment = Bytes::from(r.assignment.unwrap_or_default());
            if version >= 5 {
                resp.protocol_type = req.protocol_type.clone();
                resp.protocol_name = req.protocol_name.clone();
            }
        }
        _ => resp.error_code = codes::UNKNOWN_SERVER_ERROR,
    }
    resp
}

pub async fn heartbeat(shard: &Shard, req: HeartbeatRequest) -> HeartbeatResponse {
    let body = call(
        shard,
        BodyT::HeartbeatRequest(Box::new(HeartbeatRequestT {
            group: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            generation: req.generation_id,
        })),
    )
    .await;
    let mut resp = HeartbeatResponse::default();
    resp.error_code = match body {
        BodyT::HeartbeatResponse(r) => kafka_code(r.error),
        _ => codes::UNKNOWN_SERVER_ERROR,
    };
    resp
}

pub async fn leave(shard: &Shard, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<String> = if version >= 3 {
        req.members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect()
    } else {
        vec![req.member_id.to_string()]
    };
    let mut resp = LeaveGroupResponse::default();
    for member_id in members {
        let body = call(
            shard,
            BodyT::LeaveGroupRequest(Box::new(LeaveGroupRequestT {
                group: req.group_id.to_string(),
                member_id: member_id.clone(),
            })),
        )
        .await;
        let code = match body {
            BodyT::LeaveGroupResponse(r) => kafka_code(r.error),
            _ => codes::UNKNOWN_SERVER_ERROR,
        };
        if version >= 3 {
            let mut m = MemberResponse::default();
            m.member_id = s(member_id);
            m.error_code = code;
            resp.members.push(m);
        } else {
            resp.error_code = code;
        }
    }
    resp
}

pub async fn commit(shard: &Shard, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut partitions = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            partitions.push(OffsetCommitPartitionT {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let body = call(
        shard,
        BodyT::OffsetCommitRequest(Box::new(OffsetCommitRequestT {
            group: req.group_id.to_string(),
            member_id: Some(req.member_id.to_string()),
            generation: req.generation_id_or_member_epoch,
            partitions: Some(partitions.clone()),
        })),
    )
    .await;
    // Per partition: its own result, or the group-level refusal for all.
    let results: Vec<(String, i32, i16)> = match body {
        BodyT::OffsetCommitResponse(r) if r.error.0 == 0 => r
            .partitions
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.topic, p.partition, kafka_code(p.error)))
            .collect(),
        BodyT::OffsetCommitResponse(r) => partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, kafka_code(r.error)))
            .collect(),
        _ => partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, codes::UNKNOWN_SERVER_ERROR))
            .collect(),
    };
    let mut resp = OffsetCommitResponse::default();
    let mut topics = TopicEntries::default();
    for (topic, partition, code) in results {
        let mut p = OffsetCommitResponsePartition::default();
        p.partition_index = partition;
        p.error_code = code;
        topics
            .entry(&topic, || {
                let mut t = OffsetCommitResponseTopic::default();
                t.name = TopicName(s(topic.clone()));
                t
            })
            .partitions
            .push(p);
    }
    resp.topics = topics.into_vec();
    resp
}

/// One group's committed offsets: a group-level error code, and per (topic,
/// partition) the offset (-1: none) and metadata.
async fn committed(
    shard: &Shard,
    group: String,
    asked: Option<Vec<TopicPartitionT>>,
) -> (i16, Vec<(String, i32, i64, String)>) {
    let body = call(
        shard,
        BodyT::OffsetFetchRequest(Box::new(OffsetFetchRequestT {
            group,
            partitions: asked,
        })),
    )
    .await;
    match body {
        BodyT::OffsetFetchResponse(r) => (
            kafka_code(r.error),
            r.offsets
                .unwrap_or_default()
                .into_iter()
                .map(|o| {
                    (
                        o.topic,
                        o.partition,
                        o.offset,
                        o.metadata.unwrap_or_default(),
                    )
                })
                .collect(),
        ),
        _ => (codes::UNKNOWN_SERVER_ERROR, Vec::new()),
    }
}

fn asked_partitions<'a>(
    topics: impl Iterator<Item = (&'a StrBytes, &'a Vec<i32>)>,
) -> Vec<TopicPartitionT> {
    topics
        .flat_map(|(name, ps)| {
            ps.iter().map(|p| TopicPartitionT {
                topic: name.to_string(),
                partition: *p,
            })
        })
        .collect()
}

pub async fn fetch_offsets(
    shard: &Shard,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        // Several groups per request.
        for g in &req.groups {
            let asked = g
                .topics
                .as_ref()
                .map(|ts| asked_partitions(ts.iter().map(|t| (&t.name.0, &t.partition_indexes))));
            let (error, offsets) = committed(shard, g.group_id.to_string(), asked).await;
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = g.group_id.clone();
            out.error_code = error;
            let mut topics = TopicEntries::default();
            for (topic, partition, offset, metadata) in offsets {
                let mut p = OffsetFetchResponsePartitions::default();
                p.partition_index = partition;
                p.committed_offset = offset;
                p.metadata = Some(s(metadata));
                topics
                    .entry(&topic, || {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = TopicName(s(topic.clone()));
                        t
                    })
                    .partitions
                    .push(p);
            }
            out.topics = topics.into_vec();
            resp.groups.push(out);
        }
        return resp;
    }
    let asked = req
        .topics
        .as_ref()
        .map(|ts| asked_partitions(ts.iter().map(|t| (&t.name.0, &t.partition_indexes))));
    let (error, offsets) = committed(shard, req.group_id.to_string(), asked).await;
    // Before v2 there is no group-level error: each partition carries it.
    if version >= 2 {
        resp.error_code = error;
    }
    let mut topics = TopicEntries::default();
    for (topic, partition, offset, metadata) in offsets {
        let mut p = OffsetFetchResponsePartition::default();
        p.partition_index = partition;
        p.committed_offset = offset;
        p.metadata = Some(s(metadata));
        if version < 2 {
            p.error_code = error;
        }
        topics
            .entry(&topic, || {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = TopicName(s(topic.clone()));
                t
            })
            .partitions
            .push(p);
    }
    resp.topics = topics.into_vec();
    resp
}

pub async fn list(shard: &Shard, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let body = call(shard, BodyT::ListGroupsRequest(Box::default())).await;
    let mut resp = ListGroupsResponse::default();
    match body {
        BodyT::ListGroupsResponse(r) => {
            resp.error_code = kafka_code(r.error);
            for g in r.groups.unwrap_or_default() {
                let state = g.state.unwrap_or_default();
                if version >= 4
                    && !req.states_filter.is_empty()
                    && !req.states_filter.iter().any(|f| f.as_str() == state)
                {
                    continue;
                }
                let mut l = ListedGroup::default();
                l.group_id = GroupId(s(g.group));
                l.protocol_type = s(g.protocol_type.unwrap_or_else(|| "consumer".into()));
                if version >= 4 {
                    l.group_state = s(state);
                }
                resp.groups.push(l);
            }
        }
        _ => resp.error_code = codes::UNKNOWN_SERVER_ERROR,
    }
    resp
}

pub async fn describe(shard: &Shard, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let body = call(
        shard,
        BodyT::DescribeGroupsRequest(Box::new(DescribeGroupsRequestT {
            groups: Some(req.groups.iter().map(|g| g.to_string()).collect()),
        })),
    )
    .await;
    let mut resp = DescribeGroupsResponse::default();
    if let BodyT::DescribeGroupsResponse(r) = body {
        for d in r.groups.unwrap_or_default() {
            let mut g = DescribedGroup::default();
            g.group_id = GroupId(s(d.group));
            // Kafka describes an unknown group as Dead, without an error.
            g.error_code = if d.error.0 == ringlog_schema::wire::ErrorCode::GROUP_ID_NOT_FOUND.0 {
                codes::NONE
            } else {
                kafka_code(d.error)
            };
            g.group_state = s(d.state.unwrap_or_else(|| "Dead".into()));
            g.protocol_type = s(d.protocol_type.unwrap_or_default());
            g.protocol_data = s(d.protocol.unwrap_or_default());
            g.members = d
                .members
                .unwrap_or_default()
                .into_iter()
                .map(|m| {
                    let mut out = DescribedGroupMember::default();
                    out.member_id = s(m.member_id);
                    out.client_id = s(m.client_id.unwrap_or_default());
                    out.client_host = s(m.client_host.unwrap_or_default());
                    out
                })
                .collect();
            resp.groups.push(g);
        }
    }
    resp
}
