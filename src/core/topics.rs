//! Topic administration: creation, deletion and growth go to the coordinator, which
//! alone changes metadata and answers once every data shard has adopted the change;
//! a partition's offsets come from its owner.

use crate::core::error::ErrorKind;
use crate::core::messages::{
    ConfigAlteration, CoordinatorRequest, NewTopic, PartitionError, PartitionKey, PartitionOffsets,
    ShardRequest, TopicOutcome,
};
use crate::core::routing::call_owners;
use crate::core::shard::Shard;

/// The coordinator did not answer (the broker is stopping).
fn coordinator_unavailable(e: &ringlog_shards::ShardError) -> PartitionError {
    PartitionError::new(ErrorKind::ShuttingDown, e.to_string())
}

/// Creates `topics` (or only checks them, when `validate_only`); one outcome per
/// topic, in order.
pub async fn create(
    shard: &Shard,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Result<Vec<TopicOutcome>, PartitionError> {
    shard
        .mesh()
        .call_coordinator(|answer| CoordinatorRequest::CreateTopics {
            topics,
            validate_only,
            answer,
        })
        .await
        .map_err(|e| coordinator_unavailable(&e))
}

/// Deletes the topics `names`; one outcome per name, in order.
pub async fn delete(
    shard: &Shard,
    names: Vec<String>,
) -> Result<Vec<TopicOutcome>, PartitionError> {
    shard
        .mesh()
        .call_coordinator(|answer| CoordinatorRequest::DeleteTopics { names, answer })
        .await
        .map_err(|e| coordinator_unavailable(&e))
}

/// Grows each topic to its partition count (or only checks, when `validate_only`).
pub async fn create_partitions(
    shard: &Shard,
    topics: Vec<(String, i32)>,
    validate_only: bool,
) -> Result<Vec<TopicOutcome>, PartitionError> {
    shard
        .mesh()
        .call_coordinator(|answer| CoordinatorRequest::CreatePartitions {
            topics,
            validate_only,
            answer,
        })
        .await
        .map_err(|e| coordinator_unavailable(&e))
}

/// Changes a topic's configs through the active controller (or only checks, when
/// `validate_only`).
pub async fn alter_topic_configs(
    shard: &Shard,
    topic: String,
    alteration: ConfigAlteration,
    validate_only: bool,
) -> Result<Vec<TopicOutcome>, PartitionError> {
    shard
        .mesh()
        .call_coordinator(|answer| CoordinatorRequest::AlterTopicConfigs {
            topic,
            alteration,
            validate_only,
            answer,
        })
        .await
        .map_err(|e| coordinator_unavailable(&e))
}

/// An operator's leader election (ElectLeaders), through the active controller.
pub async fn elect_leaders(
    shard: &Shard,
    kind: crate::metadata::election::ElectionType,
    partitions: Option<Vec<(String, i32)>>,
) -> Result<Vec<TopicOutcome>, PartitionError> {
    shard
        .mesh()
        .call_coordinator(|answer| CoordinatorRequest::ElectLeaders {
            kind,
            partitions,
            answer,
        })
        .await
        .map_err(|e| coordinator_unavailable(&e))?
}

/// Each partition's offsets, asked of its owner, in order.
pub async fn offsets(
    shard: &Shard,
    keys: Vec<PartitionKey>,
) -> Vec<Result<PartitionOffsets, PartitionError>> {
    let requests = keys
        .into_iter()
        .map(|key| (key.clone(), |answer| ShardRequest::Offsets { key, answer }))
        .collect();
    call_owners(shard, requests).await
}
