//! Metadata: brokers, topics, partitions with leader, epoch, replicas, ISR and the
//! owning shard, from this shard's copy of the cluster metadata. Missing topics are
//! auto-created when the client allows it and `auto.create.topics.enable` is on.

use ringlog_schema::wire::{
    BodyT, BrokerT, ErrorCode, MetadataRequestT, MetadataResponseT, PartitionMetadataT,
    TopicMetadataT,
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
