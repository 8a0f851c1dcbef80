//! Metadata: the live brokers at their Kafka listeners, and topics with partitions,
//! leaders, replicas and ISR. Missing topics asked for by name are created when
//! `auto.create.topics.enable` and the request allow it.

use crate::core::metadata::auto_create_missing;
use crate::core::shard::Shard;
use crate::kafka::api::codes;
use crate::metadata::{ClusterMetadata, TopicMeta};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

pub async fn handle(shard: &Shard, req: MetadataRequest, version: i16) -> MetadataResponse {
    let names: Option<Vec<String>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect()
    });
    // Before v4 there is no flag: Kafka then creates when the broker allows it.
    let allow = version < 4 || req.allow_auto_topic_creation;
    if let (Some(names), true) = (&names, allow) {
        auto_create_missing(shard, names).await;
    }
    let md = shard.metadata.borrow().clone();
    let mut resp = MetadataResponse::default();
    resp.brokers = brokers(shard, &md);
    // Fields newer than the asked version must keep their defaults: the codec
    // refuses to encode them.
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(md.cluster_id.clone()));
    }
    if version >= 1 {
        resp.controller_id = BrokerId(shard.config.broker_id);
    }
    resp.topics = match names {
        None => md.topics.values().map(|t| topic(t, version)).collect(),
        Some(names) => names
            .into_iter()
            .map(|n| match md.topics.get(&n) {
                Some(t) => topic(t, version),
                None => {
                    let mut t = MetadataResponseTopic::default();
                    t.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                    t.name = Some(TopicName(StrBytes::from_string(n)));
                    t
                }
            })
            .collect(),
    };
    resp
}

fn topic(t: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.name = Some(TopicName(StrBytes::from_string(t.name.clone())));
    out.is_internal = version >= 1 && crate::metadata::model::is_internal_topic(&t.name);
    out.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut m = MetadataResponsePartition::default();
            m.partition_index = p.partition;
            match p.leader {
                Some(l) => m.leader_id = BrokerId(l.0),
                None => {
                    m.leader_id = BrokerId(-1);
                    m.error_code = codes::LEADER_NOT_AVAILABLE;
                }
            }
            if version >= 7 {
                m.leader_epoch = p.leader_epoch;
            }
            m.replica_nodes = p.replicas.iter().map(|b| BrokerId(b.0)).collect();
            m.isr_nodes = p.isr.iter().map(|b| BrokerId(b.0)).collect();
            m
        })
        .collect();
    out
}

/// This broker at its advertised Kafka listener, and every other unfenced broker at
/// the Kafka listener it registered (Kafka lists only live brokers; one without a
/// Kafka listener cannot be reached by these clients and is left out).
fn brokers(shard: &Shard, md: &ClusterMetadata) -> Vec<MetadataResponseBroker> {
    let me = shard.config.broker_id;
    let entry = |id: i32, addr: std::net::SocketAddr| {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(id);
        b.host = StrBytes::from_string(addr.ip().to_string());
        b.port = i32::from(addr.port());
        b
    };
    let mut out: Vec<MetadataResponseBroker> = shard
        .config
        .kafka_advertised()
        .map(|a| entry(me, a))
        .into_iter()
        .collect();
    for b in md.brokers.values() {
        if b.id.0 == me || !md.is_unfenced(b.id) {
            continue;
        }
        if let Some(addr) = b.kafka.as_deref().and_then(|k| k.parse().ok()) {
            out.push(entry(b.id.0, addr));
        }
    }
    out
}
