//! A partition as its owner shard serves it: the log, its high watermark, and the
//! signal that wakes long-polling fetches.
//!
//! High watermark: what consumers may read. On a single broker it is the durable
//! offset under `log.flush = batch` (consumers never see a record a crash could take
//! back) and the log end otherwise. Replication (a later issue) lowers it to the
//! minimum log end over the ISR.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::FutureExt;
use ringlog_schema::{split_batches, RecordBatch};
use ringlog_storage::{FlushPolicy, Offset, PartitionLog};

use crate::broker::errors::{batch_error, storage_error};
use crate::broker::messages::{FetchData, PartitionError, PartitionOffsets};
use crate::broker::signal::Signal;

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub log: PartitionLog,
    /// Notified whenever the high watermark may have moved.
    arrived: Signal,
}

impl Partition {
    pub fn new(topic: String, partition: i32, log: PartitionLog) -> Self {
        Self {
            topic,
            partition,
            log,
            arrived: Signal::default(),
        }
    }

    /// The directory of a partition's log.
    pub fn dir(data_dir: &std::path::Path, topic: &str, partition: i32) -> PathBuf {
        data_dir.join(format!("{topic}-{partition}"))
    }

    pub fn high_watermark(&self) -> i64 {
        match self.log.config().flush {
            FlushPolicy::Batch => self.log.durable_offset().0,
            FlushPolicy::Interval(_) | FlushPolicy::Os => self.log.log_end_offset().0,
        }
    }

    pub fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start: self.log.log_start_offset().0,
            log_end: self.log.log_end_offset().0,
            high_watermark: self.high_watermark(),
        }
    }

    /// Validates every batch of `records` first (so a bad one leaves nothing behind),
    /// then appends them together, in order, with no other request's batches between
    /// them, and returns once they are committed under the flush policy. Returns the
    /// first batch's base offset and the log start.
    pub async fn produce(&self, records: Bytes) -> Result<(i64, i64), PartitionError> {
        let max = self.log.config().max_batch_bytes;
        let batches: Vec<RecordBatch> = split_batches(records)
            .collect::<Result<_, _>>()
            .map_err(|e| batch_error(&e))?;
        if batches.is_empty() {
            return Err(batch_error(&ringlog_schema::BatchError::Truncated {
                available: 0,
                needed: ringlog_schema::BATCH_HEADER_LEN,
            }));
        }
        for b in &batches {
            b.validate(max).map_err(|e| batch_error(&e))?;
        }
        let infos = self
            .log
            .append_all_committed(batches.into_iter().map(RecordBatch::into_bytes).collect())
            .await
            .map_err(|e| storage_error(&e))?;
        let base = infos.first().map(|i| i.base_offset.0);
        self.arrived.notify();
        Ok((base.unwrap_or(-1), self.log.log_start_offset().0))
    }

    /// Whole batches from `offset`, cut at the high watermark.
    pub async fn fetch(&self, offset: i64, max_bytes: u32) -> Result<FetchData, PartitionError> {
        let offsets = self.offsets();
        if offset < offsets.log_start || offset > offsets.log_end {
            return Err(storage_error(
                &ringlog_storage::StorageError::OffsetOutOfRange {
                    offset,
                    log_start: offsets.log_start,
                    log_end: offsets.log_end,
                },
            ));
        }
        if offset >= offsets.high_watermark {
            return Ok(FetchData {
                batches: Vec::new(),
                offsets,
            });
        }
        let read = self
            .log
            .read(Offset(offset), max_bytes as usize)
            .await
            .map_err(|e| storage_error(&e))?;
        let hw = offsets.high_watermark;
        let mut batches = Vec::with_capacity(read.len());
        for chunk in read {
            if last_offset_of(&chunk).is_some_and(|last| last < hw) {
                batches.push(chunk);
                continue;
            }
            // The chunk reaches past the high watermark: keep its batches below it.
            for b in split_batches(chunk) {
                let b = b.map_err(|e| batch_error(&e))?;
                if b.base_offset() >= hw {
                    break;
                }
                batches.push(b.into_bytes());
            }
        }
        Ok(FetchData { batches, offsets })
    }

    /// Resolves once the high watermark passes `offset`, or at `deadline`.
    pub async fn wait_for_data(&self, offset: i64, deadline: Instant) {
        loop {
            if self.high_watermark() > offset {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let timer = async {
                glommio::timer::sleep(deadline - now).await;
            };
            self.arrived.wait().or(timer).await;
        }
    }

    /// Wakes long-polling fetches (at shutdown, so they answer at once).
    pub fn wake_waiters(&self) {
        self.arrived.notify();
    }
}

/// The last offset of the last batch in `chunk` (one or more whole batches).
fn last_offset_of(chunk: &Bytes) -> Option<i64> {
    let mut last = None;
    for b in split_batches(chunk.clone()) {
        last = Some(b.ok()?.last_offset());
    }
    last
}
