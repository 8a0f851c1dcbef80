//! ringlog-storage: the partition log.
//!
//! A partition is a directory of segments (`<base_offset:020>.log` with `.index` and
//! `.timeindex`) holding Apache Kafka RecordBatch v2 batches exactly as clients send
//! them, on glommio `DmaFile`s (O_DIRECT). Appends are copied once into aligned
//! write-behind buffers and written sequentially; `flush` is a group-committed
//! fdatasync; a recent-batch cache serves tail reads without disk I/O; `open` recovers
//! from a crash by a CRC scan that truncates a torn tail and reports corruption.
//!
//! Architecture invariants: this crate never touches the network and knows nothing of
//! topics, shards or protocols. A log belongs to one glommio executor (it is `!Send`).
//! Pure decisions (scan classification, retention, indexes, the write-behind buffer
//! layout) live apart from the I/O that feeds them and are unit-tested alone.

mod cache;
mod cleaner;
mod clock;
mod config;
pub mod epochs;
mod error;
pub mod fault;
mod fifo_lock;
pub mod files;
pub mod image;
mod index;
mod loader;
mod log;
mod notify;
mod read;
mod recovery;
mod retention;
mod scan;
mod segment;
pub mod shared;
pub mod space;
pub mod stats;
mod types;
mod write_tracker;
mod writer;
mod zeroer;

pub use cleaner::CleanReport;
pub use clock::{Clock, SystemClock};
pub use config::{
    CleanupPolicy, FlushPolicy, LogConfig, BLOCK_BYTES, INFLIGHT_WRITES_MAX, READ_AHEAD_BYTES_MAX,
    READ_AHEAD_BYTES_MIN, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, WRITE_BUFFER_BYTES_MAX,
};
pub use error::{Result, StorageError};
pub use log::{OpenReport, PartitionLog, CLEAN_SHUTDOWN_MARKER};
pub use recovery::probe_device_once;
pub use shared::LogShared;
pub use types::{AppendInfo, LeaderEpoch, Offset};
