//! ringlog: the broker, its native client library and the `ringlog` command line.
//!
//! This crate will own request handling, the partition manager, the coordination shard
//! (cluster metadata, placement, replication, ISR), consumer groups, the native and
//! Kafka-protocol servers, the native client and the CLI (DESIGN §2, §4–§7, §9). It
//! builds on `ringlog-storage` (the partition log), `ringlog-shards` (executors and
//! routing) and `ringlog-schema` (formats). Nothing is served yet: the storage engine
//! comes first.

pub use ringlog_schema as schema;
pub use ringlog_storage as storage;
