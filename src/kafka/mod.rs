//! The Apache Kafka wire protocol on a second listener of every shard, so Kafka
//! clients in any language work unchanged. Codecs are the `kafka-protocol` crate's
//! (vendored with bounded decoders); the handlers answer from the same shards,
//! partitions and metadata as the native protocol. The stored bytes are Kafka's
//! RecordBatch v2 already, so produce stores what the client sent and fetch returns
//! what is stored.
//!
//! - [`connection`]: framing (`i32 size | header | body`), limits before allocation,
//!   responses in request order (Kafka clients rely on it);
//! - [`api`]: the versions served (ApiVersions), request decoding, dispatch,
//!   response encoding, errors;
//! - one module per API; [`produce`] is public for its pure routing, which the
//!   fuzzer (`tests/fuzz`) runs.

mod admin;
pub mod api;
mod cluster;
pub mod connection;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
pub mod produce;

pub use api::SUPPORTED_APIS;
