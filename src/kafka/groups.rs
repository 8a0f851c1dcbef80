//! Kafka's classic group APIs on the same coordinators as the native protocol: each
//! request is turned into the core's (`core::groups`, which routes it), so a Kafka
//! client and a native one in the same group see one group. Kafka consumers
//! assign on the client (protocol type "consumer"): the leader's SyncGroup carries
//! the assignment, whose partitions are decoded here for `describe`.

use crate::core::error::ErrorKind;
use crate::core::groups::{
    self, CommitOffset, Heartbeat, Join, Leave, OffsetCommit, OffsetFetch, Sync,
};
use crate::core::messages::PartitionError;
use crate::core::shard::Shard;
use crate::groups::membership::{MemberAssignment, Protocol};
use crate::kafka::api::{codes, kafka_code, TopicEntries};
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

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

/// The Kafka error code of a result.
fn code<T>(r: &Result<T, PartitionError>) -> i16 {
    r.as_ref()
        .map_or_else(|e| kafka_code(e.code), |_| codes::NONE)
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
            match groups::find_coordinator(shard, &key).await {
                Ok(place) => {
                    // This broker's own listener as configured; another's as it
                    // registered.
                    let addr: Option<std::net::SocketAddr> = if place.local {
                        shard.config.kafka_advertised()
                    } else {
                        place.broker.kafka.as_deref().and_then(|k| k.parse().ok())
                    };
                    match addr {
                        Some(addr) => {
                            c.node_id = BrokerId(place.broker.id.0);
                            c.host = s(addr.ip().to_string());
                            c.port = i32::from(addr.port());
                        }
                        None => {
                            c.error_code = codes::COORDINATOR_NOT_AVAILABLE;
                            c.node_id = BrokerId(-1);
                            c.error_message = Some(s(format!(
                                "the coordinator, broker {}, has no Kafka listener",
                                place.broker.id.0
                            )));
                        }
                    }
                }
                Err(e) => {
                    c.error_code = kafka_code(e.code);
                    c.node_id = BrokerId(-1);
                    c.error_message = Some(s(e.message));
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
        .map(|p| Protocol {
            name: p.name.to_string(),
            metadata: p.metadata.clone(),
            subscription: consumer_protocol::<ConsumerProtocolSubscription>(&p.metadata)
                .map(|sub| sub.topics.iter().map(|t| t.to_string()).collect())
                .unwrap_or_default(),
        })
        .collect();
    // v0 has no rebalance timeout: Kafka then uses the session timeout.
    let rebalance_timeout_ms = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let joined = match Join::new(
        req.group_id.to_string(),
        req.member_id.to_string(),
        "kafka".into(),
        (req.session_timeout_ms, rebalance_timeout_ms),
        req.protocol_type.to_string(),
        protocols,
    ) {
        Ok(join) => groups::join(shard, join).await,
        Err(e) => Err(e),
    };
    let mut resp = JoinGroupResponse::default();
    resp.error_code = code(&joined);
    if version >= 7 {
        resp.protocol_type = Some(req.protocol_type.clone());
    }
    match joined {
        Ok(j) => {
            resp.generation_id = j.generation;
            resp.protocol_name = Some(s(j.protocol));
            resp.leader = s(j.leader);
            resp.member_id = s(j.member_id);
            resp.members = j
                .members
                .into_iter()
                .map(|(member_id, metadata)| {
                    let mut out = JoinGroupResponseMember::default();
                    out.member_id = s(member_id);
                    out.metadata = metadata;
                    out
                })
                .collect();
        }
        Err(_) => {
            resp.generation_id = -1;
            resp.protocol_name = (version < 7).then(|| s(""));
        }
    }
    resp
}

pub async fn sync(shard: &Shard, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .iter()
        .map(|a| {
            let partitions = consumer_protocol::<ConsumerProtocolAssignment>(&a.assignment)
                .map(|ca| {
                    ca.assigned_partitions
                        .iter()
                        .map(|tp| (tp.topic.to_string(), tp.partitions.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let assignment = MemberAssignment {
                raw: a.assignment.clone(),
                partitions,
            };
            (a.member_id.to_string(), assignment)
        })
        .collect();
    let synced = groups::sync(
        shard,
        Sync {
            group: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            generation: req.generation_id,
            assignments,
        },
    )
    .await;
    let mut resp = SyncGroupResponse::default();
    resp.error_code = code(&synced);
    if let Ok(a) = synced {
        resp.assignment = a.raw;
    }
    if version >= 5 {
        resp.protocol_type = req.protocol_type.clone();
        resp.protocol_name = req.protocol_name.clone();
    }
    resp
}

pub async fn heartbeat(shard: &Shard, req: HeartbeatRequest) -> HeartbeatResponse {
    let beat = Heartbeat {
        group: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        generation: req.generation_id,
    };
    let mut resp = HeartbeatResponse::default();
    resp.error_code = code(&groups::heartbeat(shard, beat).await);
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
        let leave = Leave {
            group: req.group_id.to_string(),
            member_id: member_id.clone(),
        };
        let code = code(&groups::leave(shard, leave).await);
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
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push(CommitOffset {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let asked: Vec<(String, i32)> = offsets
        .iter()
        .map(|o| (o.topic.clone(), o.partition))
        .collect();
    let committed = groups::commit(
        shard,
        OffsetCommit {
            group: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            generation: req.generation_id_or_member_epoch,
            offsets,
        },
    )
    .await;
    // Per partition: its own result, or the group-level refusal for all.
    let results: Vec<(String, i32, i16)> = match committed {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| {
                let code = o.error.map_or(codes::NONE, |e| kafka_code(e.code));
                (o.topic, o.partition, code)
            })
            .collect(),
        Err(e) => asked
            .into_iter()
            .map(|(topic, partition)| (topic, partition, kafka_code(e.code)))
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
    partitions: Option<Vec<(String, i32)>>,
) -> (i16, Vec<(String, i32, i64, String)>) {
    match groups::fetch_offsets(shard, OffsetFetch { group, partitions }).await {
        Ok(offsets) => (
            codes::NONE,
            offsets
                .into_iter()
                .map(|o| {
                    let (offset, metadata) = o
                        .committed
                        .map_or((-1, String::new()), |c| (c.offset, c.metadata));
                    (o.topic, o.partition, offset, metadata)
                })
                .collect(),
        ),
        Err(e) => (kafka_code(e.code), Vec::new()),
    }
}

fn asked_partitions<'a>(
    topics: impl Iterator<Item = (&'a StrBytes, &'a Vec<i32>)>,
) -> Vec<(String, i32)> {
    topics
        .flat_map(|(name, ps)| ps.iter().map(|p| (name.to_string(), *p)))
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
    let (listed, problem) = groups::list(shard).await;
    let mut resp = ListGroupsResponse::default();
    resp.error_code = problem.map_or(codes::NONE, |e| kafka_code(e.code));
    for g in listed {
        if version >= 4
            && !req.states_filter.is_empty()
            && !req.states_filter.iter().any(|f| f.as_str() == g.state)
        {
            continue;
        }
        let mut l = ListedGroup::default();
        l.group_id = GroupId(s(g.group));
        l.protocol_type = s(g.protocol_type.unwrap_or_else(|| "consumer".into()));
        if version >= 4 {
            l.group_state = s(g.state);
        }
        resp.groups.push(l);
    }
    resp
}

pub async fn describe(shard: &Shard, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let ids = req.groups.iter().map(|g| g.to_string()).collect();
    let mut resp = DescribeGroupsResponse::default();
    for (id, described) in groups::describe(shard, ids).await {
        let mut g = DescribedGroup::default();
        g.group_id = GroupId(s(id));
        match described {
            Ok(d) => {
                g.group_state = s(d.state);
                g.protocol_type = s(d.protocol_type.unwrap_or_default());
                g.protocol_data = s(d.protocol.unwrap_or_default());
                g.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut out = DescribedGroupMember::default();
                        out.member_id = s(m.member_id);
                        out.client_id = s(m.client_id);
                        out.client_host = s(m.client_host);
                        out
                    })
                    .collect();
            }
            // Kafka describes an unknown group as Dead, without an error.
            Err(e) if e.code == ErrorKind::GroupIdNotFound => g.group_state = s("Dead"),
            Err(e) => {
                g.error_code = kafka_code(e.code);
                g.group_state = s("Dead");
            }
        }
        resp.groups.push(g);
    }
    resp
}
