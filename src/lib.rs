//! ringlog: the broker, its native client library and the `ringlog` command line.
//!
//! - [`broker`]: the daemon (`ringlog serve`): start-up, executors, accept loops,
//!   signals, the admin HTTP listener.
//! - [`native`] and [`kafka`]: the two protocol adapters, siblings over the core.
//! - [`core`]: the protocol-neutral broker core: services, typed mesh messages,
//!   shards, partitions, the metadata and group coordinators.
//! - [`client`]: the async native client (on glommio): metadata cache, batching
//!   producer, fetch-ahead consumer.
//! - [`groups`]: consumer-group membership and assignment (pure state machines).
//! - [`tune`]: host checks for `ringlog tune --check`.
//! - [`iotune`]: device measurements (`ringlog iotune`) and `io-properties.toml`.
//! - [`metrics`]: shard-local counters, their snapshots and the Prometheus text.
//! - [`metadata`]: the cluster metadata model, its records, placement rule and
//!   persistence.
//! - [`cluster`]: the controller quorum (Raft) and the active controller's decisions.
//! - [`config`]: broker configuration with Kafka's key names.
//!
//! It builds on `ringlog-storage` (the partition log), `ringlog-shards` (executors and
//! routing) and `ringlog-schema` (formats).

pub mod broker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod core;
pub mod groups;
pub mod iotune;
pub mod kafka;
pub mod metadata;
pub mod metrics;
pub mod native;
pub mod net;
pub mod peer;
pub mod replication;
pub mod sync;
pub mod time;
pub mod tune;

pub use ringlog_schema as schema;
pub use ringlog_storage as storage;
