//! Kafka's cluster APIs: DescribeCluster (the brokers at their Kafka listeners and
//! the active controller, from this broker's coordinator) and ElectLeaders
//! (preferred or unclean elections, through the active controller).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ElectLeadersRequest,
    ElectLeadersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::core;
use crate::core::error::ErrorKind;
use crate::core::shard::Shard;
use crate::kafka::api::{codes, kafka_code};
use crate::metadata::election::ElectionType;

/// DescribeCluster's `endpoint_type` for brokers (2, controllers, is refused:
/// the controllers here speak only the inter-broker protocol).
const ENDPOINT_BROKERS: i8 = 1;
/// ElectLeaders' `election_type`s.
const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

pub async fn describe_cluster(
    shard: &Shard,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    if version >= 1 {
        resp.endpoint_type = req.endpoint_type;
    }
    if req.endpoint_type != ENDPOINT_BROKERS {
        resp.error_code = kafka_code(ErrorKind::InvalidRequest);
        resp.error_message = Some(StrBytes::from_string(format!(
            "endpoint type {} is not served: controllers are reached only through brokers",
            req.endpoint_type
        )));
        return resp;
    }
    let view = match core::metadata::describe_cluster(shard).await {
        Ok(v) => v,
        Err(e) => {
            resp.error_code = kafka_code(e.code);
            resp.error_message = Some(StrBytes::from_string(e.message));
            return resp;
        }
    };
    let md = &view.metadata;
    resp.cluster_id = StrBytes::from_string(md.cluster_id.clone());
    resp.controller_id = BrokerId(view.controller.map_or(-1, |b| b.0));
    let me = shard.config.broker_id;
    for b in md.brokers.values() {
        let fenced = !md.is_unfenced(b.id);
        if fenced && !(version >= 2 && req.include_fenced_brokers) {
            continue;
        }
        let addr: Option<std::net::SocketAddr> = if b.id.0 == me {
            shard.config.kafka_advertised()
        } else {
            b.kafka.as_deref().and_then(|k| k.parse().ok())
        };
        // A broker without a Kafka listener cannot be reached by these clients.
        let Some(addr) = addr else { continue };
        let mut entry = DescribeClusterBroker::default();
        entry.broker_id = BrokerId(b.id.0);
        entry.host = StrBytes::from_string(addr.ip().to_string());
        entry.port = i32::from(addr.port());
        if version >= 2 {
            entry.is_fenced = fenced;
        }
        resp.brokers.push(entry);
    }
    // Authorized operations are not computed (no authorizer yet): Kafka's "not
    // provided" value.
    resp.cluster_authorized_operations = i32::MIN;
    resp
}

pub async fn elect_leaders(
    shard: &Shard,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let mut resp = ElectLeadersResponse::default();
    // Version 0 has no election type: preferred.
    let kind = match (version, req.election_type) {
        (0, _) | (_, ELECTION_PREFERRED) => ElectionType::Preferred,
        (_, ELECTION_UNCLEAN) => ElectionType::Unclean,
        (_, other) => {
            resp.error_code = kafka_code(ErrorKind::InvalidRequest);
            let message = format!("unknown election type {other}");
            resp.replica_election_results =
                refuse_all(&req, kafka_code(ErrorKind::InvalidRequest), &message);
            return resp;
        }
    };
    let all = req.topic_partitions.is_none();
    let partitions = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions.iter().map(move |p| (topic.clone(), *p))
            })
            .collect()
    });
    let outcomes = match core::topics::elect_leaders(shard, kind, partitions).await {
        Ok(o) => o,
        Err(e) => {
            if version >= 1 {
                resp.error_code = kafka_code(e.code);
            }
            resp.replica_election_results = refuse_all(&req, kafka_code(e.code), &e.message);
            return resp;
        }
    };
    for o in outcomes {
        let code = o.error.as_ref().map_or(codes::NONE, |e| kafka_code(e.code));
        // As Kafka's controller: asked for every partition, those that needed no
        // election are left out.
        if all && o.error.as_ref().map(|e| e.code) == Some(ErrorKind::ElectionNotNeeded) {
            continue;
        }
        let mut r = PartitionResult::default();
        r.partition_id = o.partition.unwrap_or(-1);
        r.error_code = code;
        r.error_message = o.error.map(|e| StrBytes::from_string(e.message));
        let topic = TopicName(StrBytes::from_string(o.name));
        match resp
            .replica_election_results
            .iter_mut()
            .find(|t| t.topic == topic)
        {
            Some(t) => t.partition_result.push(r),
            None => {
                let mut t = ReplicaElectionResult::default();
                t.topic = topic;
                t.partition_result.push(r);
                resp.replica_election_results.push(t);
            }
        }
    }
    resp
}

/// Every partition the request named, refused with `code`.
fn refuse_all(req: &ElectLeadersRequest, code: i16, message: &str) -> Vec<ReplicaElectionResult> {
    req.topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            let mut out = ReplicaElectionResult::default();
            out.topic = t.topic.clone();
            out.partition_result = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = PartitionResult::default();
                    r.partition_id = *p;
                    r.error_code = code;
                    r.error_message = Some(StrBytes::from_string(message.to_string()));
                    r
                })
                .collect();
            out
        })
        .collect()
}
