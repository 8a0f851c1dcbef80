//! ringlog-schema: the formats that cross a process boundary.
//!
//! Today this crate owns the on-disk and on-wire unit of data, the Apache Kafka
//! RecordBatch v2 (magic 2): a zero-copy view with validation ([`RecordBatch`]), the
//! base-offset patch the broker applies when it assigns offsets, and a builder for
//! clients and tests ([`BatchBuilder`]). The native protocol's flatbuffers schema,
//! its generated code and the frame codec will live here too (DESIGN §4).
//!
//! Architecture invariant: this crate does no I/O. It parses and checks bytes that
//! others read or received, so everything here is pure and exhaustively testable.

mod batch;
mod builder;
mod error;
#[cfg(test)]
mod proptests;

pub use batch::{
    split_batches, BatchHeader, RecordBatch, BASE_OFFSET_LEN, BATCH_HEADER_LEN, CRC_COVERAGE_START,
    LOG_OVERHEAD, MAGIC_V2, MIN_RECORD_LEN,
};
pub use builder::{BatchBuilder, RecordHeader};
pub use error::BatchError;
