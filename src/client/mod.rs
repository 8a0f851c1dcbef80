//! The native client library (async, on glommio): used by the CLI, the bench and the
//! tests, and the reference for clients in other languages.
//!
//! - [`Client`]: one connection to the broker, pipelined and multiplexed requests,
//!   a metadata cache, admin calls.
//! - [`Producer`]: batches records per partition (batch size, linger), partitions by
//!   key (Kafka's murmur2) or round-robin, pipelines produce requests.
//! - [`Consumer`]: reads assigned partitions from given offsets, one fetch ahead.
//! - [`GroupConsumer`]: a consumer-group member: join, heartbeat, committed offsets,
//!   auto or manual commit, rebalances.

pub mod admin;
mod cluster;
mod connection;
mod consumer;
mod error;
pub mod group;
pub mod partitioner;
mod producer;

pub use cluster::{Client, ElectionOutcome, PartitionInfo, TopicInfo};
pub use connection::Connection;
pub use consumer::{Consumer, ConsumerConfig, Record, StartOffset};
pub use error::ClientError;
pub use group::{GroupConfig, GroupConsumer, OffsetReset};
pub use producer::{Delivery, Producer, ProducerConfig, BATCH_BYTES_DEFAULT};

/// Default bootstrap server, the native listener's default.
pub const BOOTSTRAP_DEFAULT: &str = crate::config::NATIVE_ADDR_DEFAULT;
