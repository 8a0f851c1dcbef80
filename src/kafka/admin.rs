//! Kafka's admin APIs on the native ones: CreateTopics and DeleteTopics go to the
//! coordination executor (which alone changes metadata); DescribeConfigs reports a
//! topic's effective configs (its own over the broker's) and a few broker ones;
//! CreatePartitions grows topics and IncrementalAlterConfigs changes a topic's
//! configs, both also through the coordination executor.

use crate::config::{
    topic_config_value, topic_log_config, topic_min_insync_replicas, topic_unclean_leader_election,
    TOPIC_KEYS,
};
use crate::core;
use crate::core::messages::{ConfigAlteration, NewTopic, PartitionError, TopicOutcome};
use crate::core::shard::Shard;
use crate::kafka::api::{codes, kafka_code};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs sources.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn s(x: impl Into<String>) -> StrBytes {
    StrBytes::from_string(x.into())
}

/// Each topic's (name, Kafka error code, message), in request order, or one
/// refusal for every name.
fn results(
    outcomes: Result<Vec<TopicOutcome>, PartitionError>,
    names: &[String],
) -> Vec<(String, i16, Option<String>)> {
    match outcomes {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| match o.error {
                None => (o.name, codes::NONE, None),
                Some(e) => (o.name, kafka_code(e.code), Some(e.message)),
            })
            .collect(),
        Err(e) => names
            .iter()
            .map(|n| (n.clone(), kafka_code(e.code), Some(e.message.clone())))
            .collect(),
    }
}

pub async fn create_topics(
    shard: &Shard,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let names: Vec<String> = req.topics.iter().map(|t| t.name.to_string()).collect();
    let topics = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.to_string(),
            partitions: (t.num_partitions != -1).then_some(t.num_partitions),
            replication_factor: (t.replication_factor != -1).then_some(t.replication_factor),
            configs: t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect(),
        })
        .collect();
    let outcomes = core::topics::create(shard, topics, req.validate_only).await;
    let mut resp = CreateTopicsResponse::default();
    for (name, code, message) in results(outcomes, &names) {
        let mut r = CreatableTopicResult::default();
        r.name = TopicName(s(name.clone()));
        r.error_code = code;
        if version >= 1 {
            r.error_message = message.map(s);
        }
        if version >= 5 && code == codes::NONE {
            if let Some(t) = shard.metadata.borrow().topics.get(&name) {
                r.num_partitions = t.partitions.len() as i32;
                r.replication_factor = t.partitions.first().map_or(-1, |p| p.replicas.len() as i16);
            }
        }
        resp.topics.push(r);
    }
    resp
}

pub async fn delete_topics(
    shard: &Shard,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let names: Vec<String> = if version >= 6 {
        req.topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect()
    } else {
        req.topic_names.iter().map(|n| n.to_string()).collect()
    };
    let outcomes = core::topics::delete(shard, names.clone()).await;
    let mut resp = DeleteTopicsResponse::default();
    for (name, code, message) in results(outcomes, &names) {
        let mut r = DeletableTopicResult::default();
        r.name = Some(TopicName(s(name)));
        r.error_code = code;
        if version >= 5 {
            r.error_message = message.map(s);
        }
        resp.responses.push(r);
    }
    resp
}

pub fn describe_configs(shard: &Shard, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let wanted = |key: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
        };
        let entry = |name: &str, value: String, source: i8| {
            let mut c = DescribeConfigsResourceResult::default();
            c.name = s(name);
            c.value = Some(s(value));
            c.config_source = source;
            c
        };
        match res.resource_type {
            RESOURCE_TOPIC => {
                let md = shard.metadata.borrow();
                match md.topics.get(res.resource_name.as_str()) {
                    None => {
                        out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        out.error_message = Some(s("unknown topic"));
                    }
                    Some(t) => match topic_log_config(&shard.log_defaults(), &t.configs) {
                        Err(e) => {
                            out.error_code = codes::UNKNOWN_SERVER_ERROR;
                            out.error_message = Some(s(e));
                        }
                        Ok(log) => {
                            let min_insync = topic_min_insync_replicas(
                                shard.config.min_insync_replicas,
                                &t.configs,
                            );
                            let unclean = topic_unclean_leader_election(
                                shard.config.unclean_leader_election,
                                &t.configs,
                            );
                            for key in TOPIC_KEYS.iter().filter(|k| wanted(k)) {
                                let value = topic_config_value(&log, min_insync, unclean, key);
                                let source = if t.configs.contains_key(*key) {
                                    SOURCE_TOPIC
                                } else {
                                    SOURCE_DEFAULT
                                };
                                out.configs.push(entry(key, value, source));
                            }
                        }
                    },
                }
            }
            RESOURCE_BROKER => {
                let c = &shard.config;
                for (key, value) in [
                    ("broker.id", c.broker_id.to_string()),
                    ("num.partitions", c.num_partitions.to_string()),
                    (
                        "default.replication.factor",
                        c.default_replication_factor.to_string(),
                    ),
                    (
                        "auto.create.topics.enable",
                        c.auto_create_topics.to_string(),
                    ),
                    ("message.max.bytes", c.log.max_batch_bytes.to_string()),
                    ("log.segment.bytes", c.log.segment_bytes.to_string()),
                ] {
                    if wanted(key) {
                        out.configs.push(entry(key, value, SOURCE_STATIC_BROKER));
                    }
                }
            }
            _ => {
                out.error_code = codes::INVALID_REQUEST;
                out.error_message = Some(s("only topic and broker configs are described"));
            }
        }
        resp.results.push(out);
    }
    resp
}

/// CreatePartitions: grows topics by the seed placement rule. Explicit replica
/// assignments are refused (placement is the broker's rule).
pub async fn create_partitions(
    shard: &Shard,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    let mut asked = Vec::new();
    for t in &req.topics {
        if t.assignments.is_some() {
            let mut r = CreatePartitionsTopicResult::default();
            r.name = t.name.clone();
            r.error_code = codes::INVALID_REQUEST;
            r.error_message = Some(s(
                "replica assignments are chosen by the broker's placement rule",
            ));
            resp.results.push(r);
        } else {
            asked.push((t.name.to_string(), t.count));
        }
    }
    let names: Vec<String> = asked.iter().map(|(n, _)| n.clone()).collect();
    let outcomes = core::topics::create_partitions(shard, asked, req.validate_only).await;
    for (name, code, message) in results(outcomes, &names) {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = TopicName(s(name));
        r.error_code = code;
        r.error_message = message.map(s);
        resp.results.push(r);
    }
    resp
}

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// IncrementalAlterConfigs: SET and DELETE of topic configs, one topic at a time
/// through the controller (the same rules as `ringlog topic alter-config`).
/// APPEND and SUBTRACT (for list configs) and broker resources are refused with
/// a message; nothing of that resource changes.
pub async fn incremental_alter_configs(
    shard: &Shard,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let refuse = |r: &mut AlterConfigsResourceResponse, code: i16, message: &str| {
            r.error_code = code;
            r.error_message = Some(s(message));
        };
        if res.resource_type != RESOURCE_TOPIC {
            refuse(
                &mut r,
                codes::INVALID_REQUEST,
                "only topic configs can be altered",
            );
            resp.responses.push(r);
            continue;
        }
        let mut alteration = ConfigAlteration::default();
        let mut unsupported = None;
        for c in &res.configs {
            match (c.config_operation, &c.value) {
                (OP_SET, Some(v)) => {
                    alteration.set.insert(c.name.to_string(), v.to_string());
                }
                (OP_DELETE, _) => alteration.delete.push(c.name.to_string()),
                (op, _) => {
                    unsupported = Some(format!(
                        "{}: operation {op} is not served (SET with a value, or DELETE)",
                        c.name.as_str()
                    ))
                }
            }
        }
        if let Some(message) = unsupported {
            refuse(&mut r, INVALID_CONFIG, &message);
            resp.responses.push(r);
            continue;
        }
        let name = res.resource_name.to_string();
        let outcomes =
            core::topics::alter_topic_configs(shard, name.clone(), alteration, req.validate_only)
                .await;
        if let Some((_, code, message)) = results(outcomes, &[name]).into_iter().next() {
            r.error_code = code;
            r.error_message = message.map(s);
        }
        resp.responses.push(r);
    }
    resp
}

/// Kafka's INVALID_CONFIG.
const INVALID_CONFIG: i16 = 40;
