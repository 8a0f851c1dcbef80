//! Cluster metadata: the model (brokers, topics, partitions, replicas, leaders, leader
//! epochs, ISR), the placement rule, and its persistence.
//!
//! Architecture invariant: only the coordination executor changes this state. Data
//! shards receive immutable snapshots ([`ClusterMetadata`] behind an `Arc`) and never
//! decide cluster state themselves. Everything here except [`store`] is pure.

pub mod election;
pub mod model;
pub mod placement;
pub mod records;
pub mod store;

pub use model::{BrokerId, BrokerInfo, ClusterMetadata, PartitionMeta, TopicMeta};
