//! A partition as its owner shard serves it: the log, its high watermark, and the
//! signal that wakes long-polling fetches.
//!
//! High watermark: what consumers may read. On a single broker it is the durable
//! offset under `log.flush = batch` (consumers never see a record a crash could take
//! back) and the log end otherwise. Replication (a later issue) lowers it to the
//! minimum log end over the ISR.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use bytes::Bytes;
use ringlog_schema::validate::{
    check_produced, ProducePolicy, TimestampType, DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT,
};
use ringlog_schema::{last_offset_in, split_batches, BatchHeader, CheckedBatch, RecordBatch};
use ringlog_storage::{FlushPolicy, Offset, PartitionLog};

use crate::core::error::ErrorKind;

use crate::core::error::{batch_error, storage_error};
use crate::core::group_coordinator::OffsetsLog;
use crate::core::messages::{FetchData, PartitionError, PartitionOffsets};
use crate::core::producer_snapshot;
use crate::core::producer_state::{last_sequence, LoggedBatch, ProducerState, Verdict};
use crate::metrics::PartitionStats;
use crate::sync::signal::{Latch, Signal};
use crate::time::now_ms;
use tracing::info;

/// Bytes read per step when rebuilding producer state.
const PRODUCER_LOAD_READ_BYTES: usize = 1 << 20;

/// Whether a fetch returns its first batch even when it is larger than the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstBatch {
    /// The response's first data: a consumer must always be able to progress.
    Always,
    /// Later partitions of a response: only what fits.
    WithinLimit,
}

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub log: PartitionLog,
    /// Notified whenever the high watermark may have moved.
    arrived: Signal,
    /// Idempotent producers' sequences, rebuilt from the log's last segments on
    /// first use (`producers_loaded`).
    producers: RefCell<ProducerState>,
    producers_loaded: Latch,
    producers_loading: Cell<bool>,
    /// Notified when a pending idempotent batch's append ends (appended or failed):
    /// a retry of it waits for that.
    producers_settled: Signal,
    /// Offsets of the producer snapshots in the directory (known once loaded).
    snapshots: RefCell<Vec<i64>>,
    /// Offset of the newest snapshot written or loaded (-1: none).
    snapshot_offset: Cell<i64>,
    snapshot_writing: Cell<bool>,
    /// Bytes and records in and out, for `/metrics`.
    pub stats: PartitionStats,
}

impl Partition {
    pub fn new(topic: String, partition: i32, log: PartitionLog) -> Self {
        Self {
            topic,
            partition,
            log,
            arrived: Signal::default(),
            producers: RefCell::new(ProducerState::default()),
            producers_loaded: Latch::default(),
            producers_loading: Cell::new(false),
            producers_settled: Signal::default(),
            snapshots: RefCell::new(Vec::new()),
            snapshot_offset: Cell::new(-1),
            snapshot_writing: Cell::new(false),
            stats: PartitionStats::default(),
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
        let config = self.log.config();
        let policy = ProducePolicy {
            max_batch_bytes: config.max_batch_bytes,
            timestamp_type: config.timestamp_type,
            timestamp_before_max_ms: config.timestamp_before_max_ms,
            timestamp_after_max_ms: config.timestamp_after_max_ms,
            decompressed_max_bytes: DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT,
            keys_required: config.cleanup.compact,
        };
        let now = now_ms();
        let batches = check_batches(records, &policy, now)?;
        let idempotent = batches.iter().any(|b| b.producer_id() >= 0);
        if idempotent {
            if batches.len() > 1 {
                // Kafka clients send one batch per partition per request; several
                // would need all-or-nothing sequence checks.
                return Err(PartitionError::new(
                    ErrorKind::InvalidRequest,
                    "one batch per partition per request for idempotent producers",
                ));
            }
            self.load_producers().await?;
            let b = &batches[0];
            let (pid, epoch, first) = (b.producer_id(), b.producer_epoch(), b.base_sequence());
            let last = last_sequence(first, b.last_offset_delta());
            // The verdict and the append's place in line are taken with no await
            // between them, so sequences are checked in arrival order.
            loop {
                let settled = self.producers_settled.wait();
                match self.producers.borrow_mut().check(pid, epoch, first, last) {
                    Verdict::Append => break,
                    Verdict::Duplicate(offset) => {
                        return Ok((offset, self.log.log_start_offset().0))
                    }
                    Verdict::InFlight => {}
                    Verdict::Reject(code, message) => {
                        return Err(PartitionError::new(code, message))
                    }
                }
                settled.await;
            }
            let appended = self.append(batches).await;
            {
                let mut producers = self.producers.borrow_mut();
                match &appended {
                    Ok(base) => producers.appended(pid, epoch, first, last, *base, now),
                    Err(_) => producers.failed(pid, epoch, first, last),
                }
            }
            self.producers_settled.notify();
            let base = appended?;
            self.arrived.notify();
            self.snapshot_after_roll().await;
            return Ok((base, self.log.log_start_offset().0));
        }
        let base = self.append(batches).await?;
        self.arrived.notify();
        Ok((base, self.log.log_start_offset().0))
    }

    /// Appends validated batches together, committed under the flush policy, and
    /// counts them; returns the first one's base offset.
    async fn append(&self, batches: Vec<CheckedBatch>) -> Result<i64, PartitionError> {
        let (bytes, records) = batches.iter().fold((0, 0), |(bytes, records), b| {
            let n = u64::try_from(b.record_count()).unwrap_or(0);
            (bytes + b.size() as u64, records + n)
        });
        let infos = self
            .log
            .append_checked_committed(batches)
            .await
            .map_err(|e| storage_error(&e))?;
        self.stats.produced(bytes, records);
        Ok(infos.first().map_or(-1, |i| i.base_offset.0))
    }

    /// Reads the log from `from` (at least the log start) up to `end()` (batches
    /// starting at or past it are not visited) or the end of the log, in reads of
    /// `read_bytes`, and hands every batch to `visit` in
    /// offset order; returns how many it visited. The idempotent producers' state
    /// and a group coordinator's committed offsets are both rebuilt this way.
    pub async fn replay(
        &self,
        from: i64,
        end: impl Fn() -> i64,
        read_bytes: usize,
        mut visit: impl FnMut(RecordBatch),
    ) -> Result<u64, PartitionError> {
        let mut at = from.max(self.log.log_start_offset().0);
        let mut visited = 0u64;
        loop {
            let until = end();
            if at >= until {
                break;
            }
            let chunks = self
                .log
                .read(Offset(at), read_bytes)
                .await
                .map_err(|e| storage_error(&e))?;
            if chunks.is_empty() {
                break;
            }
            for chunk in chunks {
                for b in split_batches(chunk) {
                    let b = b.map_err(|e| batch_error(&e))?;
                    if b.base_offset() >= until {
                        return Ok(visited);
                    }
                    if b.last_offset() < at {
                        continue;
                    }
                    at = b.last_offset() + 1;
                    visited += 1;
                    visit(b);
                }
            }
        }
        Ok(visited)
    }

    /// Rebuilds the idempotent producers' state, once: from the newest snapshot at
    /// or below the log end, replaying the batches after it; without one, from the
    /// last two segments (a retry only ever repeats one of a producer's last five
    /// batches, and producers silent for longer have expired anyway).
    async fn load_producers(&self) -> Result<(), PartitionError> {
        if self.producers_loaded.is_set() {
            return Ok(());
        }
        if self.producers_loading.replace(true) {
            self.producers_loaded.wait().await;
            return Ok(());
        }
        let dir = self.log.dir().to_path_buf();
        let offsets = producer_snapshot::list(&dir);
        let end = self.log.log_end_offset().0;
        let snapshot = producer_snapshot::load_newest(&dir, &offsets, end).await;
        *self.snapshots.borrow_mut() = offsets;
        let (mut state, from, snapshot_at) = match snapshot {
            Some((offset, state)) => {
                self.snapshot_offset.set(offset);
                (state, offset, Some(offset))
            }
            None => {
                let bases = self.log.segment_bases();
                let from = bases
                    .len()
                    .checked_sub(2)
                    .and_then(|i| bases.get(i))
                    .or(bases.first())
                    .map_or(self.log.log_start_offset().0, |o| o.0);
                (ProducerState::default(), from, None)
            }
        };
        let replayed = self
            .replay(
                from,
                || end,
                PRODUCER_LOAD_READ_BYTES,
                |b| {
                    let first = b.base_sequence();
                    state.load(LoggedBatch {
                        pid: b.producer_id(),
                        epoch: b.producer_epoch(),
                        first_seq: first,
                        last_seq: last_sequence(first, b.last_offset_delta()),
                        base_offset: b.base_offset(),
                        timestamp_ms: b.max_timestamp(),
                    });
                },
            )
            .await;
        let replayed = match replayed {
            Ok(n) => n,
            Err(e) => {
                // The log cannot be read, so appends fail too; let waiters go on
                // to see that error rather than wait forever.
                self.producers_loaded.set();
                return Err(e);
            }
        };
        info!(topic = %self.topic, partition = self.partition, snapshot = ?snapshot_at,
              replayed_from = from, replayed_batches = replayed, producers = state.len(),
              "idempotent producer state loaded");
        // Batches appended while loading are in the log and were read, or came
        // after `end` and are checked against the loaded state from now on.
        *self.producers.borrow_mut() = state;
        self.producers_loaded.set();
        Ok(())
    }

    /// After a segment roll, once no idempotent batch is being appended, writes a
    /// snapshot of the producers at the log end (every batch below it is in the
    /// state), so a restart replays only what follows it.
    async fn snapshot_after_roll(&self) {
        if !self.producers_loaded.is_set() || self.snapshot_writing.get() {
            return;
        }
        let active = self.log.active_segment_base().0;
        if active <= self.snapshot_offset.get() {
            return;
        }
        self.write_snapshot().await;
    }

    /// Writes a snapshot of the producers at the log end if nothing is pending.
    async fn write_snapshot(&self) {
        let (state, offset) = {
            let producers = self.producers.borrow();
            if producers.has_pending() {
                return;
            }
            (producers.clone(), self.log.log_end_offset().0)
        };
        self.snapshot_writing.set(true);
        let dir = self.log.dir().to_path_buf();
        let mut offsets = self.snapshots.take();
        producer_snapshot::write(&dir, &mut offsets, offset, &state).await;
        *self.snapshots.borrow_mut() = offsets;
        self.snapshot_offset.set(offset);
        self.snapshot_writing.set(false);
    }

    /// At a clean close: the producers' state at the log end, so the next start
    /// replays nothing.
    pub async fn snapshot_producers(&self) {
        if self.producers_loaded.is_set()
            && self.snapshot_offset.get() < self.log.log_end_offset().0
        {
            self.write_snapshot().await;
        }
    }

    /// Forgets producers silent for `expiration_ms` (`producer.id.expiration.ms`);
    /// returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.borrow_mut().expire(now_ms, expiration_ms)
    }

    /// Idempotent producers known to this partition.
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
    }

    /// Whole batches from `offset`, cut at the high watermark, within `max_bytes`;
    /// with `first` (the first data of a response, as Kafka's `minOneMessage`) the
    /// first batch comes even when it is larger. None when `max_bytes` is 0 (the
    /// offsets and errors only).
    pub async fn fetch(
        &self,
        offset: i64,
        max_bytes: u32,
        first: FirstBatch,
    ) -> Result<FetchData, PartitionError> {
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
        if offset >= offsets.high_watermark || max_bytes == 0 {
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
        let mut last_sent = None;
        for chunk in read {
            let last = last_offset_in(&chunk);
            if last.is_some_and(|last| last < hw) {
                batches.push(chunk);
                last_sent = last;
                continue;
            }
            // The chunk reaches past the high watermark: keep its batches below it.
            for b in split_batches(chunk) {
                let b = b.map_err(|e| batch_error(&e))?;
                if b.base_offset() >= hw {
                    break;
                }
                last_sent = Some(b.last_offset());
                batches.push(b.into_bytes());
            }
        }
        if first == FirstBatch::WithinLimit
            && batches
                .first()
                .is_some_and(|b| b.len() > max_bytes as usize)
        {
            // The next batch does not fit what is left of the response.
            batches.clear();
            last_sent = None;
        }
        let first = batches.first().and_then(|b| BatchHeader::read(b));
        if let (Some(first), Some(last)) = (first, last_sent) {
            let bytes: usize = batches.iter().map(Bytes::len).sum();
            let records = u64::try_from(last - first.base_offset + 1).unwrap_or(0);
            self.stats.fetched(bytes as u64, records);
        }
        Ok(FetchData { batches, offsets })
    }

    /// Resolves at the next change that may move the high watermark.
    pub fn arrived(&self) -> crate::sync::signal::Wait<'_> {
        self.arrived.wait()
    }

    /// Long-polling fetches waiting on this partition.
    pub fn waiters(&self) -> usize {
        self.arrived.waiters()
    }

    /// Wakes long-polling fetches (at shutdown, so they answer at once).
    pub fn wake_waiters(&self) {
        self.arrived.notify();
    }
}

/// Splits a partition's produced records into batches and validates each under the
/// topic's `policy` at `now` (stamping LogAppendTime where the topic uses it): the
/// checks before an append, pure so the fuzzer runs exactly what the broker runs.
/// One bad batch refuses them all.
pub fn check_batches(
    records: Bytes,
    policy: &ProducePolicy,
    now: i64,
) -> Result<Vec<CheckedBatch>, PartitionError> {
    let split: Vec<RecordBatch> = split_batches(records)
        .collect::<Result<_, _>>()
        .map_err(|e| batch_error(&e))?;
    if split.is_empty() {
        return Err(batch_error(&ringlog_schema::BatchError::Truncated {
            available: 0,
            needed: ringlog_schema::BATCH_HEADER_LEN,
        }));
    }
    // The one CRC check of a produced batch: storage takes it as checked.
    let mut batches = split
        .into_iter()
        .map(|b| check_produced(b, policy, now).map_err(|e| batch_error(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    if policy.timestamp_type == TimestampType::LogAppendTime {
        for b in &mut batches {
            *b = b.with_log_append_time(now);
        }
    }
    Ok(batches)
}

/// Bytes read per step when a group coordinator rebuilds committed offsets.
const OFFSETS_LOAD_READ_BYTES: usize = 1 << 20;

/// A `__consumer_offsets` partition as its group coordinator uses it: commits
/// appended as any produce (durable on return), offsets replayed up to the high
/// watermark.
impl OffsetsLog for Partition {
    async fn append(&self, records: Bytes) -> Result<(), PartitionError> {
        self.produce(records).await.map(|_| ())
    }

    async fn replay(&self, visit: impl FnMut(RecordBatch)) -> Result<u64, PartitionError> {
        let start = self.log.log_start_offset().0;
        Partition::replay(
            self,
            start,
            || self.high_watermark(),
            OFFSETS_LOAD_READ_BYTES,
            visit,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringlog_schema::BatchBuilder;
    use ringlog_storage::fault::{self, FaultOp};
    use ringlog_storage::LogConfig;

    use crate::sync::run_on_executor as run;

    fn idempotent_batch(pid: i64, epoch: i16, base_sequence: i32, records: usize) -> Bytes {
        let mut b = BatchBuilder::new();
        for i in 0..records {
            b.push(
                None,
                Some(Bytes::from(format!("r{i}"))),
                &[],
                1_700_000_000_000,
            );
        }
        b.producer(pid, epoch, base_sequence)
            .build()
            .expect("batch")
    }

    async fn open(dir: &std::path::Path) -> Partition {
        let log = PartitionLog::open(dir, LogConfig::default())
            .await
            .expect("open log");
        Partition::new("t".into(), 0, log)
    }

    /// Issue 15: a produced batch's CRC is computed once on the broker (by the
    /// produce validation), not again by storage's append.
    #[test]
    fn a_produced_batch_is_crc_checked_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("t-0");
        run(move || async move {
            let p = open(&dir).await;
            let mut b = BatchBuilder::new();
            b.push(None, Some(Bytes::from_static(b"v")), &[], 1_700_000_000_000);
            let batch = b.build().expect("batch");
            let before = ringlog_schema::crc_checks_on_this_thread();
            p.produce(batch).await.expect("produce");
            assert_eq!(ringlog_schema::crc_checks_on_this_thread() - before, 1);
        });
    }

    /// Issue 13 §2: a batch whose append failed must not be answered as a duplicate
    /// on retry (clients take DUPLICATE_SEQUENCE_NUMBER for success).
    #[test]
    fn a_failed_idempotent_append_is_retried_not_acknowledged_as_a_duplicate() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("t-0");
        run(move || async move {
            let p = open(&dir).await;
            let first = idempotent_batch(42, 0, 0, 3);
            assert_eq!(p.produce(first.clone()).await.expect("first").0, 0);
            assert_eq!(p.produce(first).await.expect("retry of first").0, 0);

            fault::inject(&dir, FaultOp::Write, libc::ENOSPC);
            let second = idempotent_batch(42, 0, 3, 2);
            let e = p
                .produce(second.clone())
                .await
                .expect_err("the disk is full");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "{e:?}");
            let e = p
                .produce(second.clone())
                .await
                .expect_err("retry, still failing");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "retry: {e:?}");
            fault::clear(&dir);
            drop(p);

            // After a restart the retry lands, once, right after the first batch.
            let p = open(&dir).await;
            assert_eq!(p.produce(second.clone()).await.expect("second").0, 3);
            assert_eq!(p.produce(second).await.expect("its retry").0, 3);
            assert_eq!(p.log.log_end_offset().0, 5);
        });
    }

    #[test]
    fn a_failed_fdatasync_fails_the_append_and_leaves_producer_state_as_it_was() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("t-0");
        run(move || async move {
            let p = open(&dir).await;
            fault::inject(&dir, FaultOp::Sync, libc::EIO);
            let batch = idempotent_batch(7, 0, 0, 1);
            let e = p.produce(batch.clone()).await.expect_err("sync fails");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "{e:?}");
            let e = p.produce(batch).await.expect_err("the log refuses writes");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "retry: {e:?}");
            fault::clear(&dir);
        });
    }
}
