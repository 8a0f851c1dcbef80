//! ringlog: the broker, its native client library and the `ringlog` command line.
//!
//! - [`broker`]: the daemon (`ringlog serve`): data shards serving the native
//!   protocol, the coordination executor owning cluster metadata.
//! - [`client`]: the async native client (on glommio): metadata cache, batching
//!   producer, fetch-ahead consumer.
//! - [`groups`]: consumer-group membership and assignment (pure state machines).
//! - [`kafka`]: the Apache Kafka wire-protocol listener.
//! - [`tune`]: host checks for `ringlog tune --check`.
//! - [`iotune`]: device measurements (`ringlog iotune`) and `io-properties.toml`.
//! - [`metrics`]: shard-local counters, their snapshots and the Prometheus text.
//! - [`metadata`]: the cluster metadata model, placement rule and persistence.
//! - [`config`]: broker configuration with Kafka's key names.
//!
//! It builds on `ringlog-storage` (the partition log), `ringlog-shards` (executors and
//! routing) and `ringlog-schema` (formats).

pub mod broker;
pub mod client;
pub mod config;
pub mod core;
pub mod groups;
pub mod iotune;
pub mod kafka;
pub mod metadata;
pub mod metrics;
pub mod sync;
pub mod time;
pub mod tune;

pub use ringlog_schema as schema;
pub use ringlog_storage as storage;
