//! CreateTopics, DeleteTopics, AlterTopicConfigs and ElectLeaders (forwarded to the coordinator,
//! which alone changes metadata) and DescribeTopics (metadata plus each partition's offsets, asked of
//! its owner shard).

use ringlog_schema::wire::{
    AlterTopicConfigsRequestT, AlterTopicConfigsResponseT, BodyT, ConfigEntryT,
    CreateTopicsRequestT, CreateTopicsResponseT, DeleteTopicsRequestT, DeleteTopicsResponseT,
    DescribeTopicsRequestT, DescribeTopicsResponseT, ElectLeadersRequestT, ElectLeadersResponseT,
    ElectionResultT, ErrorCode, PartitionDescriptionT, TopicDescriptionT, TopicResultT,
};

use crate::core;
use crate::core::messages::{ConfigAlteration, NewTopic, PartitionKey, TopicOutcome};
use crate::core::shard::Shard;
use crate::metadata::election::ElectionType;
use crate::metadata::ClusterMetadata;
use crate::native::error_body;
use crate::native::wire_code;

pub async fn create(shard: &Shard, req: CreateTopicsRequestT) -> BodyT {
    let topics = req
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| NewTopic {
            name: t.name,
            partitions: (t.partitions != -1).then_some(t.partitions),
            replication_factor: (t.replication_factor != -1).then_some(t.replication_factor),
            configs: t
                .configs
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.key, c.value))
                .collect(),
        })
        .collect();
    match core::topics::create(shard, topics, req.validate_only).await {
        Ok(outcomes) => BodyT::CreateTopicsResponse(Box::new(CreateTopicsResponseT {
            results: Some(topic_results(outcomes)),
        })),
        Err(e) => error_body(wire_code(e.code), &e.message),
    }
}

pub async fn delete(shard: &Shard, req: DeleteTopicsRequestT) -> BodyT {
    match core::topics::delete(shard, req.names.unwrap_or_default()).await {
        Ok(outcomes) => BodyT::DeleteTopicsResponse(Box::new(DeleteTopicsResponseT {
            results: Some(topic_results(outcomes)),
        })),
        Err(e) => error_body(wire_code(e.code), &e.message),
    }
}

pub async fn alter_configs(shard: &Shard, req: AlterTopicConfigsRequestT) -> BodyT {
    let alteration = ConfigAlteration {
        set: req
            .set
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.key, c.value))
            .collect(),
        delete: req.delete.unwrap_or_default(),
    };
    match core::topics::alter_topic_configs(shard, req.topic, alteration, req.validate_only).await {
        Ok(outcomes) => BodyT::AlterTopicConfigsResponse(Box::new(AlterTopicConfigsResponseT {
            result: topic_results(outcomes).into_iter().next().map(Box::new),
        })),
        Err(e) => error_body(wire_code(e.code), &e.message),
    }
}

pub async fn elect_leaders(shard: &Shard, req: ElectLeadersRequestT) -> BodyT {
    let kind = if req.unclean {
        ElectionType::Unclean
    } else {
        ElectionType::Preferred
    };
    let partitions = (!req.all).then(|| {
        req.partitions
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect()
    });
    let response = match core::topics::elect_leaders(shard, kind, partitions).await {
        Ok(outcomes) => ElectLeadersResponseT {
            error: ErrorCode::NONE,
            message: None,
            results: Some(
                outcomes
                    .into_iter()
                    .map(|o| ElectionResultT {
                        topic: o.name,
                        partition: o.partition.unwrap_or(-1),
                        error: o
                            .error
                            .as_ref()
                            .map_or(ErrorCode::NONE, |e| wire_code(e.code)),
                        message: o.error.map(|e| e.message),
                    })
                    .collect(),
            ),
        },
        Err(e) => ElectLeadersResponseT {
            error: wire_code(e.code),
            message: Some(e.message),
            results: None,
        },
    };
    BodyT::ElectLeadersResponse(Box::new(response))
}

fn topic_results(outcomes: Vec<TopicOutcome>) -> Vec<TopicResultT> {
    outcomes
        .into_iter()
        .map(|o| match o.error {
            None => TopicResultT {
                name: o.name,
                error: ErrorCode::NONE,
                message: None,
            },
            Some(e) => TopicResultT {
                name: o.name,
                error: wire_code(e.code),
                message: Some(e.message),
            },
        })
        .collect()
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
        let keys = t
            .partitions
            .iter()
            .map(|p| PartitionKey::new(&t.name, p.partition))
            .collect();
        let offsets = core::topics::offsets(shard, keys).await;
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
                    Ok(o) => {
                        d.log_start = o.log_start;
                        d.log_end = o.log_end;
                        d.high_watermark = o.high_watermark;
                    }
                    Err(e) => d.error = wire_code(e.code),
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
