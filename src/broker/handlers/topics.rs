//! CreateTopics and DeleteTopics (forwarded to the coordinator, which alone changes
//! metadata) and DescribeTopics (metadata plus each partition's offsets, asked of
//! its owner shard).

use ringlog_schema::wire::{
    BodyT, ConfigEntryT, CreateTopicsRequestT, DeleteTopicsRequestT, DescribeTopicsRequestT,
    DescribeTopicsResponseT, ErrorCode, PartitionDescriptionT, TopicDescriptionT,
};
use ringlog_shards::Peer;

use crate::broker::handlers::{call_owners, error_body};
use crate::broker::messages::{PartitionKey, ShardMsg};
use crate::broker::shard::Shard;
use crate::metadata::ClusterMetadata;

pub async fn create(shard: &Shard, req: CreateTopicsRequestT) -> BodyT {
    match shard
        .mesh()
        .call(Peer::Coordinator, ShardMsg::CreateTopics(Box::new(req)))
        .await
    {
        Ok(ShardMsg::Created(resp)) => BodyT::CreateTopicsResponse(resp),
        Ok(_) => error_body(
            ErrorCode::UNKNOWN_SERVER_ERROR,
            "unexpected answer from the coordinator",
        ),
        Err(e) => error_body(ErrorCode::SHUTTING_DOWN, &e.to_string()),
    }
}

pub async fn delete(shard: &Shard, req: DeleteTopicsRequestT) -> BodyT {
    match shard
        .mesh()
        .call(Peer::Coordinator, ShardMsg::DeleteTopics(Box::new(req)))
        .await
    {
        Ok(ShardMsg::Deleted(resp)) => BodyT::DeleteTopicsResponse(resp),
        Ok(_) => error_body(
            ErrorCode::UNKNOWN_SERVER_ERROR,
            "unexpected answer from the coordinator",
        ),
        Err(e) => error_body(ErrorCode::SHUTTING_DOWN, &e.to_string()),
    }
}

pub async fn describe(shard: &Shard, req: DescribeTopicsRequestT) -> BodyT {
    let md = shard.metadata.borrow().clone();
    let names: Vec<String> = req
        .names
        .unwrap_or_else(|| md.topics.keys().cloned().collect());
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let Some(t) = md.topics.get(&name) else {
            topics.push(TopicDescriptionT {
                message: Some(format!("unknown topic {name:?}")),
                name,
                error: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                partitions: None,
                configs: None,
            });
            continue;
        };
        let requests = t
            .partitions
            .iter()
            .map(|p| {
                let key = PartitionKey {
                    topic: t.name.clone(),
                    partition: p.partition,
                };
                (key.clone(), ShardMsg::Offsets { key })
            })
            .collect();
        let offsets = call_owners(shard, requests).await;
        let partitions = t
            .partitions
            .iter()
            .zip(offsets)
            .map(|(p, o)| {
                let mut d = PartitionDescriptionT {
                    partition: p.partition,
                    error: ErrorCode::NONE,
                    leader: p.leader.map_or(-1, |b| b.0),
                    leader_epoch: p.leader_epoch,
                    replicas: Some(p.replicas.iter().map(|b| b.0).collect()),
                    isr: Some(p.isr.iter().map(|b| b.0).collect()),
                    shard: ClusterMetadata::shard_of(t, p.partition, shard.shards).0,
                    log_start: -1,
                    log_end: -1,
                    high_watermark: -1,
                };
                match o {
                    Ok(ShardMsg::OffsetsAre(Ok(o))) => {
                        d.log_start = o.log_start;
                        d.log_end = o.log_end;
                        d.high_watermark = o.high_watermark;
                    }
                    Ok(ShardMsg::OffsetsAre(Err(e))) | Err(e) => d.error = e.code,
                    Ok(_) => d.error = ErrorCode::UNKNOWN_SERVER_ERROR,
                }
                d
            })
            .collect();
        topics.push(TopicDescriptionT {
            name: t.name.clone(),
            error: ErrorCode::NONE,
            message: None,
            partitions: Some(partitions),
            configs: Some(
                t.configs
                    .iter()
                    .map(|(k, v)| ConfigEntryT {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            ),
        });
    }
    BodyT::DescribeTopicsResponse(Box::new(DescribeTopicsResponseT {
        topics: Some(topics),
    }))
}
