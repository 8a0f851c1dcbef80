//! Metadata: brokers, topics, partitions with leader, epoch, replicas, ISR and the
//! owning shard, from this shard's copy of the cluster metadata. Missing topics are
//! auto-created when the client allows it and `auto.create.topics.enable` is on.

use ringlog_schema::wire::{
    BodyT, BrokerT, ClusterBrokerT, DescribeClusterResponseT, ErrorCode, MetadataRequestT,
    MetadataResponseT, PartitionMetadataT, TopicMetadataT,
};

use crate::core::shard::Shard;
use crate::metadata::{ClusterMetadata, TopicMeta};

pub async fn handle(shard: &Shard, req: MetadataRequestT) -> BodyT {
    if let Some(names) = &req.topics {
        if req.allow_auto_topic_creation {
            crate::core::metadata::auto_create_missing(shard, names).await;
        }
    }
    let md = shard.metadata.borrow().clone();
    let topics = match &req.topics {
        None => md
            .topics
            .values()
            .map(|t| topic_metadata(t, shard.shards))
            .collect(),
        Some(names) => names
            .iter()
            .map(|n| match md.topics.get(n) {
                Some(t) => topic_metadata(t, shard.shards),
                None => TopicMetadataT {
                    name: n.clone(),
                    error: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    message: Some(format!("unknown topic {n:?}")),
                    partitions: None,
                },
            })
            .collect(),
    };
    BodyT::MetadataResponse(Box::new(MetadataResponseT {
        error: ErrorCode::NONE,
        cluster_id: Some(md.cluster_id.clone()),
        controller_id: shard.config.broker_id,
        brokers: Some(
            md.brokers
                .values()
                .map(|b| BrokerT {
                    id: b.id.0,
                    host: b.host.clone(),
                    port: b.port,
                    shard_count: b.shards,
                })
                .collect(),
        ),
        topics: Some(topics),
    }))
}

fn topic_metadata(t: &TopicMeta, shards: u16) -> TopicMetadataT {
    TopicMetadataT {
        name: t.name.clone(),
        error: ErrorCode::NONE,
        message: None,
        partitions: Some(
            t.partitions
                .iter()
                .map(|p| PartitionMetadataT {
                    partition: p.partition,
                    error: if p.leader.is_some() {
                        ErrorCode::NONE
                    } else {
                        ErrorCode::LEADER_NOT_AVAILABLE
                    },
                    leader: p.leader.map_or(-1, |b| b.0),
                    leader_epoch: p.leader_epoch,
                    replicas: Some(p.replicas.iter().map(|b| b.0).collect()),
                    isr: Some(p.isr.iter().map(|b| b.0).collect()),
                    shard: ClusterMetadata::shard_of(t, p.partition, shards).0,
                })
                .collect(),
        ),
    }
}

/// The cluster as this broker sees it: every broker with its epoch and fencing, the
/// active controller and its term, the metadata offset applied here.
pub async fn describe_cluster(shard: &Shard) -> BodyT {
    let view = match crate::core::metadata::describe_cluster(shard).await {
        Ok(v) => v,
        Err(e) => {
            return BodyT::DescribeClusterResponse(Box::new(DescribeClusterResponseT {
                error: super::wire_code(e.code),
                message: Some(e.message),
                ..Default::default()
            }))
        }
    };
    let md = &view.metadata;
    BodyT::DescribeClusterResponse(Box::new(DescribeClusterResponseT {
        error: ErrorCode::NONE,
        message: None,
        cluster_id: Some(md.cluster_id.clone()),
        controller_id: view.controller.map_or(-1, |b| b.0),
        controller_term: view.term,
        metadata_offset: md.applied_offset,
        brokers: Some(
            md.brokers
                .values()
                .map(|b| {
                    let reg = md.registrations.get(&b.id);
                    ClusterBrokerT {
                        id: b.id.0,
                        host: b.host.clone(),
                        port: b.port,
                        shard_count: b.shards,
                        epoch: reg.map_or(0, |r| r.epoch),
                        fenced: reg.is_some_and(|r| r.fenced),
                    }
                })
                .collect(),
        ),
    }))
}
