//! Metadata as both listeners answer it comes from the shard's copy of the cluster
//! metadata; what is shared is creating the topics a client asks for.

use crate::core::messages::CoordinatorRequest;
use crate::core::shard::Shard;

/// Creates those of `names` that do not exist, when `auto.create.topics.enable`;
/// returns once every shard has adopted them. Both protocols' Metadata use it.
pub async fn auto_create_missing(shard: &Shard, names: &[String]) {
    if !shard.config.auto_create_topics {
        return;
    }
    let missing: Vec<String> = {
        let md = shard.metadata.borrow();
        names
            .iter()
            .filter(|n| !md.topics.contains_key(*n))
            .cloned()
            .collect()
    };
    if !missing.is_empty() {
        // The coordinator answers after every shard adopted the new metadata.
        let _ = shard
            .mesh()
            .call_coordinator(|answer| CoordinatorRequest::AutoCreate {
                names: missing,
                answer,
            })
            .await;
    }
}

/// The cluster as this broker's coordinator sees it.
pub async fn describe_cluster(
    shard: &Shard,
) -> Result<crate::core::messages::ClusterView, crate::core::messages::PartitionError> {
    shard
        .mesh()
        .call_coordinator(|answer| CoordinatorRequest::DescribeCluster { answer })
        .await
        .map_err(|e| {
            crate::core::messages::PartitionError::new(
                crate::core::error::ErrorKind::ShuttingDown,
                e.to_string(),
            )
        })
}
