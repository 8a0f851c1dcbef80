//! [`PartitionLog`]: one partition's log, owned by one shard. This module is the
//! façade and the append/commit path: opening and recovery are `loader`'s (it
//! returns a `LoadedLog` the log is built from), disk reads are `read`'s.
//!
//! Concurrency model: the log lives on one glommio executor and is shared by that
//! shard's tasks through `Rc`. Its state sits in a `RefCell` that is never borrowed
//! across an `.await`. Three async locks order what must not interleave:
//!
//! - `append_lock`: appends, rolls, truncation, retention and close, one at a time
//!   (offset assignment and segment changes are sequential), first come first
//!   served: appends keep the order in which they reached the log (`FifoLock`);
//! - `write_stage`: one flusher at a time writes out what is buffered (queues the
//!   partly filled buffer and waits for the writes up to it);
//! - `flush_lock`: one fdatasync at a time, covering everything written before it
//!   started;
//! - `pump_lock`: queued buffers are issued to the device in order. A write stage
//!   holds it only while issuing, so appends keep issuing full buffers while the
//!   stage waits for its writes.
//!
//! Committing is a pipeline of those two stages, write then fdatasync: while one
//! group's fdatasync runs, the next group's bytes are being written. Neither stage is
//! queued for: a flusher whose offsets are not written takes the write stage if it is
//! free, else waits for it to end (`write_done`) and looks again; one whose offsets
//! are written does the same with the sync (`sync_done`). So one write stage and one
//! fdatasync serve every flusher waiting (group commit), and nobody waits in a line of
//! lock hand-overs, each a trip through the run queue. Lock order for what holds
//! several (roll, truncate, close): `flush_lock`, `write_stage`, `pump_lock`.
//!
//! Write-behind buffers are written by spawned tasks, at most `inflight_writes_max` at a
//! time (`write_slots`); taking every slot waits until no write is in flight. Writes
//! are numbered as they are issued (`WriteTracker`): a write stage waits only for the
//! writes issued up to its own last one, not for those appends issue after it, so the
//! device queue does not run dry at the end of every stage. An append issues the
//! buffers it filled only after releasing `append_lock`: issuing can wait for a slot,
//! and other appends need not wait with it. Whatever changes the writer (roll,
//! truncate, close) holds `append_lock` and `flush_lock`, writes everything out and
//! waits until no write is in flight, so a late issuer finds nothing left.
//!
//! Offsets: `log_start <= durable <= written <= log_end`, all exclusive bounds ("next
//! offset").

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;
use glommio::sync::Semaphore;
use ringlog_schema::{BatchError, BatchHeader, CheckedBatch, RecordBatch};
use tracing::{debug, info, warn};

use crate::cache::{BatchCache, CachedBatch};
use crate::cleaner;
use crate::clock::{Clock, SystemClock};
use crate::config::{FlushPolicy, LogConfig, BLOCK_BYTES};
use crate::epochs::{self, EpochCache, EpochEntry};
use crate::error::io_err;
use crate::fifo_lock::FifoLock;
use crate::files::SegmentFile;
use crate::loader;
pub use crate::loader::{OpenReport, CLEAN_SHUTDOWN_MARKER};
use crate::notify::SyncNotify;
use crate::read::{find_batch_start, read_batches};
use crate::recovery::{self, ScanMode};
use crate::retention::{segments_to_delete, RetentionView};
use crate::scan::ScannedBatch;
use crate::segment::{segment_file, Segment, LOG_SUFFIX};
use crate::shared::LogShared;
use crate::space;
use crate::stats::bump;
use crate::write_tracker::WriteTracker;
use crate::writer::{WriteBehind, WriteItem};
use crate::zeroer::{self, ZeroAhead};
use crate::{AppendInfo, Offset, Result, StorageError};

const BLOCK: u64 = BLOCK_BYTES as u64;

pub(crate) struct LogState {
    /// All segments by base offset; the last is the active one.
    pub(crate) segments: BTreeMap<i64, Segment>,
    writer: WriteBehind,
    pub(crate) cache: BatchCache,
    next_offset: i64,
    /// Every record below this offset is written to the file (maybe not yet durable).
    written_offset: i64,
    durable_offset: i64,
    pub(crate) log_start: i64,
    /// The writes in flight (shared with the log, which issues them).
    writes: Rc<WriteTracker>,
    preallocated: u64,
    last_flush_ms: i64,
    closed: bool,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }
    fn stable_position(&self) -> u64 {
        self.writer.stable_position(self.writes.first_position())
    }
    /// Base offset of the active segment; `None` only while truncation replaces the
    /// segments (readers must not assume an active segment exists).
    pub(crate) fn active_base(&self) -> Option<i64> {
        self.segments.keys().next_back().copied()
    }
    /// The log's offset invariant, checked in release builds after every change of
    /// the offsets: `log_start <= next` and `durable <= written <= next`. Broken, a
    /// consumer or a producer could be told of records that are not there, so the
    /// broker stops instead of serving on.
    fn check_offsets(&self) {
        assert!(
            self.log_start <= self.next_offset
                && self.durable_offset <= self.written_offset
                && self.written_offset <= self.next_offset,
            "log offsets out of order: start {}, durable {}, written {}, end {}",
            self.log_start,
            self.durable_offset,
            self.written_offset,
            self.next_offset
        );
    }
    fn evict_cache(&mut self) {
        let Some(active) = self.active_base() else {
            return;
        };
        let stable = self.stable_position();
        self.cache
            .evict(|b| b.segment_base != active || b.end_position <= stable);
    }
}

/// A partition's log: segments of Kafka RecordBatch v2 batches on O_DIRECT files.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    clock: Rc<dyn Clock>,
    pub(crate) state: RefCell<LogState>,
    pub(crate) append_lock: FifoLock,
    flush_lock: Semaphore,
    /// Broadcast when the holder of `flush_lock` releases it.
    sync_done: SyncNotify,
    /// Held by the one flusher writing out what is buffered (a write stage).
    write_stage: Semaphore,
    /// Broadcast when the holder of `write_stage` releases it.
    write_done: SyncNotify,
    pump_lock: Semaphore,
    write_slots: Rc<Semaphore>,
    /// The issued writes still in flight, by issue order.
    writes: Rc<WriteTracker>,
    zero: Rc<ZeroAhead>,
    /// Set once by the first failed write or fdatasync; the log is then read-only.
    pub(crate) failure: Rc<RefCell<Option<String>>>,
    fdatasyncs: Cell<u64>,
    /// Shared with the shard's other logs: statistics, open files, space bound.
    pub(crate) shared: LogShared,
    /// Compacted logs: every closed segment below this offset has been cleaned
    /// (the cleaner's checkpoint).
    pub(crate) cleaned_to: Cell<i64>,
    /// This log's bytes allocated past its data, as last told to `shared.space`.
    space_counted: Cell<u64>,
    /// `(retention.ms, retention.bytes)`: from the config, changed by a reload.
    retention: Cell<(Option<u64>, Option<u64>)>,
    report: OpenReport,
    /// The leader epochs that wrote to this log and where each started; kept in
    /// step with the log (appends, truncation, retention) and checkpointed.
    epochs: RefCell<EpochCache>,
    /// The epoch stamped into batches this log assigns offsets to (a leader's
    /// appends); -1 leaves the client's field as it came.
    leader_epoch: Cell<i32>,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it if it was not closed
    /// cleanly.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        Self::open_with(dir, config, Rc::new(SystemClock), LogShared::default()).await
    }

    /// [`PartitionLog::open`] sharing statistics, open files and the space bound
    /// with the shard's other logs.
    pub async fn open_shared(
        dir: impl AsRef<Path>,
        config: LogConfig,
        shared: LogShared,
    ) -> Result<Self> {
        Self::open_with(dir, config, Rc::new(SystemClock), shared).await
    }

    /// [`PartitionLog::open`] with an explicit clock (for `segment.ms` rolls).
    pub async fn open_with_clock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self> {
        Self::open_with(dir, config, clock, LogShared::default()).await
    }

    async fn open_with(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Rc<dyn Clock>,
        shared: LogShared,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let now = clock.now_ms();
        let loaded = loader::load(&dir, &config, now, &shared).await?;
        let active = loaded
            .segments
            .values()
            .next_back()
            .expect("the loader always leaves an active segment");
        let writer = WriteBehind::new(config.write_buffer_bytes, active.size, loaded.tail);
        let preallocated = active.size;
        let inflight = config.inflight_writes_max as u64;
        let writes = Rc::new(WriteTracker::default());
        let retention = (config.retention_ms, config.retention_bytes);
        let cleaned_to = cleaner::read_checkpoint(&dir);
        let epochs = load_epochs(&dir, loaded.log_start, loaded.next_offset);
        Ok(Self {
            state: RefCell::new(LogState {
                segments: loaded.segments,
                writer,
                cache: BatchCache::new(config.cache_bytes),
                next_offset: loaded.next_offset,
                written_offset: loaded.next_offset,
                durable_offset: loaded.next_offset,
                log_start: loaded.log_start,
                writes: writes.clone(),
                preallocated,
                last_flush_ms: now,
                closed: false,
            }),
            dir,
            config,
            clock,
            append_lock: FifoLock::new(),
            flush_lock: Semaphore::new(1),
            sync_done: SyncNotify::default(),
            write_stage: Semaphore::new(1),
            write_done: SyncNotify::default(),
            pump_lock: Semaphore::new(1),
            write_slots: Rc::new(Semaphore::new(inflight)),
            writes,
            zero: ZeroAhead::new(),
            failure: Rc::new(RefCell::new(None)),
            fdatasyncs: Cell::new(0),
            shared,
            space_counted: Cell::new(0),
            cleaned_to: Cell::new(cleaned_to),
            retention: Cell::new(retention),
            report: loaded.report,
            epochs: RefCell::new(epochs),
            leader_epoch: Cell::new(-1),
        })
    }

    /// The directory holding this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The configuration the log was opened with (retention may have changed since:
    /// see [`PartitionLog::retention`]).
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// `(retention.ms, retention.bytes)` in force.
    pub fn retention(&self) -> (Option<u64>, Option<u64>) {
        self.retention.get()
    }

    /// Changes retention (a configuration reload); the next `enforce_retention` uses it.
    pub fn set_retention(&self, retention_ms: Option<u64>, retention_bytes: Option<u64>) {
        self.retention.set((retention_ms, retention_bytes));
    }
    /// What recovery did when the log was opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }
    /// First offset still in the log.
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.state.borrow().log_start)
    }
    /// The next offset to be assigned (exclusive end).
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.state.borrow().next_offset)
    }
    /// Every offset below this is on stable storage (exclusive bound).
    pub fn durable_offset(&self) -> Offset {
        Offset(self.state.borrow().durable_offset)
    }
    /// Base offsets of the segments, oldest first; the last is the active one.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.state
            .borrow()
            .segments
            .keys()
            .map(|b| Offset(*b))
            .collect()
    }
    /// Number of segments, the active one included.
    /// Base offset of the active (newest) segment: it changes at each roll.
    pub fn active_segment_base(&self) -> Offset {
        Offset(self.state.borrow().active_base().unwrap_or(0))
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }
    /// Total bytes of batches in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.values().map(|s| s.size).sum()
    }
    /// fdatasync calls issued on segment files since open (group commit shows here).
    pub fn fdatasync_count(&self) -> u64 {
        self.fdatasyncs.get()
    }

    /// Pieces of segment space zero-filled ahead of the writer since open.
    pub fn zero_fill_writes(&self) -> u64 {
        self.zero.pieces()
    }

    /// Why the log refuses writes, once a write or fdatasync failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    fn check_writable(&self) -> Result<()> {
        if let Some(reason) = self.failure.borrow().as_ref() {
            return Err(StorageError::LogFailed {
                dir: self.dir.clone(),
                reason: reason.clone(),
            });
        }
        if self.state.borrow().closed {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn fail(&self, reason: String) -> StorageError {
        tracing::error!(dir = %self.dir.display(), %reason, "partition log failed; refusing further writes");
        self.failure.borrow_mut().get_or_insert(reason.clone());
        StorageError::LogFailed {
            dir: self.dir.clone(),
            reason,
        }
    }

    /// Validates `batch`, assigns it the next offsets and appends it. The batch is in
    /// the write-behind buffer (readable, not yet durable) when this returns; see
    /// [`PartitionLog::flush`] and [`PartitionLog::append_committed`].
    pub async fn append(&self, batch: Bytes) -> Result<AppendInfo> {
        let mut infos = self.append_all(vec![batch]).await?;
        Ok(infos.remove(0))
    }

    /// Appends `batches` one after the other with nothing in between, as one produce
    /// request's batches for a partition are in Kafka. Every batch is validated first,
    /// so a bad one leaves nothing behind. Appends keep the order in which they asked
    /// for the log (the append lock is first come, first served).
    pub async fn append_all(&self, batches: Vec<Bytes>) -> Result<Vec<AppendInfo>> {
        let checked = batches
            .into_iter()
            .map(|b| RecordBatch::parse(b)?.checked(self.config.max_batch_bytes))
            .collect::<std::result::Result<Vec<_>, BatchError>>()?;
        self.append_checked(checked).await
    }

    /// [`PartitionLog::append_all`] of batches already checked (a produce's, checked
    /// once by its validation): the CRC is not computed again.
    pub async fn append_checked(&self, batches: Vec<CheckedBatch>) -> Result<Vec<AppendInfo>> {
        for batch in &batches {
            if batch.size() > self.config.max_batch_bytes {
                return Err(BatchError::TooLarge {
                    size: batch.size(),
                    max: self.config.max_batch_bytes,
                }
                .into());
            }
        }
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        self.check_writable()?;
        let mut infos = Vec::with_capacity(batches.len());
        for batch in batches {
            infos.push(
                self.append_locked(batch.into_bytes(), Assign::Offsets)
                    .await?,
            );
        }
        // Issue full buffers after letting the append lock go: issuing may wait for
        // a write slot, and the next appends need not wait with it.
        drop(_guard);
        if self.state.borrow().writer.has_ready() {
            self.pump().await?;
        }
        Ok(infos)
    }

    /// A follower's append: batches exactly as the leader wrote them (offsets and
    /// leader epochs kept, CRC already checked), each starting at this log's end
    /// (at or after it for a compacted topic, whose batches have gaps between
    /// them). Nothing is appended if one does not fit. Not durable on return; see
    /// [`PartitionLog::flush`].
    pub async fn append_replicated(&self, batches: Vec<CheckedBatch>) -> Result<Vec<AppendInfo>> {
        for batch in &batches {
            if batch.size() > self.config.max_batch_bytes {
                return Err(BatchError::TooLarge {
                    size: batch.size(),
                    max: self.config.max_batch_bytes,
                }
                .into());
            }
        }
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        self.check_writable()?;
        let mut expected = self.state.borrow().next_offset;
        for batch in &batches {
            let base = batch.base_offset();
            let fits = if self.config.cleanup.compact {
                base >= expected
            } else {
                base == expected
            };
            if !fits {
                return Err(StorageError::NotContiguous {
                    dir: self.dir.clone(),
                    base_offset: base,
                    log_end: expected,
                });
            }
            expected = batch.last_offset() + 1;
        }
        let mut infos = Vec::with_capacity(batches.len());
        for batch in batches {
            infos.push(self.append_locked(batch.into_bytes(), Assign::Kept).await?);
        }
        drop(_guard);
        if self.state.borrow().writer.has_ready() {
            self.pump().await?;
        }
        Ok(infos)
    }

    /// Sets the epoch stamped into the batches this log assigns offsets to: the
    /// partition's leader epoch while this broker leads it.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.set(epoch);
    }

    /// Starts leading in `epoch`: stamps it into every batch appended from now on
    /// and records that it starts at the log end (Kafka's leader does the same on
    /// election, so a follower holding a suffix of an older epoch is told where
    /// that epoch ended here). Taken under the append lock, so no batch of the old
    /// epoch lands after the new epoch's start.
    pub async fn begin_leader_epoch(&self, epoch: i32) -> Result<()> {
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        self.leader_epoch.set(epoch);
        let end = self.state.borrow().next_offset;
        self.change_epochs(|c| c.assign(epoch, end))
    }

    /// The newest leader epoch that wrote to this log, and where it started.
    pub fn latest_epoch(&self) -> Option<EpochEntry> {
        self.epochs.borrow().latest()
    }

    /// Where `epoch` ends in this log (Kafka's OffsetForLeaderEpoch):
    /// see [`EpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let end = self.state.borrow().next_offset;
        self.epochs.borrow().end_offset_for(epoch, end)
    }

    /// The leader-epoch cache as it is now.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.borrow().entries().to_vec()
    }

    /// Applies `change` to the epoch cache and, if it changed, rewrites the
    /// checkpoint. A checkpoint that cannot be written fails the log: a leader
    /// answering divergence from epochs it did not keep could lose records.
    fn change_epochs(&self, change: impl FnOnce(&mut EpochCache) -> bool) -> Result<()> {
        let snapshot = {
            let mut cache = self.epochs.borrow_mut();
            if !change(&mut cache) {
                return Ok(());
            }
            cache.clone()
        };
        epochs::store(&self.dir, &snapshot).map_err(|e| {
            self.fail(format!(
                "writing {}: {e}",
                epochs::checkpoint_path(&self.dir).display()
            ))
        })
    }

    /// Appends one validated batch. Caller holds `append_lock`.
    async fn append_locked(&self, batch: Bytes, assign: Assign) -> Result<AppendInfo> {
        if self.needs_roll(batch.len()) {
            self.roll().await?;
        }
        let bytes = match assign {
            Assign::Offsets => {
                let base = self.state.borrow().next_offset;
                let mut owned = batch
                    .try_into_mut()
                    .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                RecordBatch::set_base_offset(&mut owned, base);
                let epoch = self.leader_epoch.get();
                if epoch >= 0 {
                    RecordBatch::set_partition_leader_epoch(&mut owned, epoch);
                }
                owned.freeze()
            }
            Assign::Kept => batch,
        };
        // Validated by the caller, so the header is there.
        let header = BatchHeader::read(&bytes).ok_or(BatchError::Truncated {
            available: bytes.len(),
            needed: ringlog_schema::BATCH_HEADER_LEN,
        })?;
        // A new epoch is written down before its first batch, so the checkpoint
        // never misses an epoch the log holds (an entry past the log end after a
        // crash is dropped at open).
        let base = header.base_offset;
        self.change_epochs(|c| c.assign(header.partition_leader_epoch, base))?;
        let info = {
            let mut st = self.state.borrow_mut();
            let scanned = ScannedBatch {
                len: bytes.len(),
                base_offset: base,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
            };
            // Validation (`append_all`) checked the record count against the
            // header, so offsets only go forward.
            assert!(
                scanned.last_offset >= base,
                "batch at offset {base} ends before it starts ({})",
                scanned.last_offset
            );
            let position = st.writer.end();
            st.writer.append(&bytes, &glommio::allocate_dma_buffer);
            let interval = self.config.index_interval_bytes;
            let seg = st.active_mut();
            seg.on_batch(position, &scanned, interval);
            let segment_base = seg.base_offset;
            st.next_offset = scanned.last_offset + 1;
            st.check_offsets();
            st.cache.push(CachedBatch {
                base_offset: base,
                last_offset: scanned.last_offset,
                segment_base,
                end_position: position + bytes.len() as u64,
                bytes,
            });
            st.evict_cache();
            AppendInfo {
                base_offset: Offset(base),
                last_offset: Offset(scanned.last_offset),
                max_timestamp: scanned.max_timestamp,
            }
        };
        Ok(info)
    }

    /// Appends and, under `log.flush = batch`, returns only once the batch is durable
    /// (sharing the fdatasync with concurrent appenders). Under `interval:<ms>` it
    /// flushes when the interval has elapsed; under `os` it never waits.
    pub async fn append_committed(&self, batch: Bytes) -> Result<AppendInfo> {
        let mut infos = self.append_all_committed(vec![batch]).await?;
        Ok(infos.remove(0))
    }

    /// [`PartitionLog::append_all`], then committed as [`PartitionLog::append_committed`]
    /// commits one batch.
    pub async fn append_all_committed(&self, batches: Vec<Bytes>) -> Result<Vec<AppendInfo>> {
        let infos = self.append_all(batches).await?;
        self.commit_appended(infos).await
    }

    /// [`PartitionLog::append_checked`], then committed as
    /// [`PartitionLog::append_committed`] commits one batch.
    pub async fn append_checked_committed(
        &self,
        batches: Vec<CheckedBatch>,
    ) -> Result<Vec<AppendInfo>> {
        let infos = self.append_checked(batches).await?;
        self.commit_appended(infos).await
    }

    /// Waits for appended batches as the flush policy says (what the `_committed`
    /// appends do after appending): callers that act between the append and its
    /// commit (a leader waking its followers) call the two steps themselves.
    pub async fn commit_appended(&self, infos: Vec<AppendInfo>) -> Result<Vec<AppendInfo>> {
        let Some(last) = infos.last() else {
            return Ok(infos);
        };
        match self.config.flush {
            FlushPolicy::Batch => {
                self.flush_to(last.last_offset.0 + 1).await?;
            }
            FlushPolicy::Interval(_) => {
                self.flush_if_due().await?;
            }
            FlushPolicy::Os => {}
        }
        Ok(infos)
    }

    /// Under `log.flush = interval:<ms>`: flushes if the interval has elapsed since the
    /// last flush. Returns whether it flushed. Shards call this from a timer too.
    pub async fn flush_if_due(&self) -> Result<bool> {
        let FlushPolicy::Interval(every) = self.config.flush else {
            return Ok(false);
        };
        let due = {
            let st = self.state.borrow();
            st.durable_offset < st.next_offset
                && self.clock.now_ms() - st.last_flush_ms
                    >= i64::try_from(every.as_millis()).unwrap_or(i64::MAX)
        };
        if due {
            self.flush().await?;
        }
        Ok(due)
    }

    /// Makes everything appended so far durable; returns the durable offset. One
    /// fdatasync covers all appends that arrived before it started (group commit).
    pub async fn flush(&self) -> Result<Offset> {
        let target = self.state.borrow().next_offset;
        self.flush_to(target).await
    }

    /// Returns once every record below `target` is durable: first its bytes are
    /// written (by this flusher or one ahead of it), then an fdatasync that started
    /// after that covers them.
    async fn flush_to(&self, target: i64) -> Result<Offset> {
        loop {
            if let Some(reason) = self.failure.borrow().as_ref() {
                return Err(StorageError::LogFailed {
                    dir: self.dir.clone(),
                    reason: reason.clone(),
                });
            }
            let (durable, log_end) = {
                let st = self.state.borrow();
                (st.durable_offset, st.next_offset)
            };
            if durable >= target {
                return Ok(Offset(durable));
            }
            if target > log_end {
                return Err(StorageError::Truncated {
                    dir: self.dir.clone(),
                    offset: target - 1,
                    log_end,
                });
            }
            let written = self.state.borrow().written_offset;
            // Neither stage is queued for: a flusher takes a free stage or waits for
            // the one running to end and looks again (no await between the failed
            // try-lock and registering for the end, so it cannot be missed). Queueing
            // put every flusher in line, one hand-over through the run queue each,
            // and the syncer behind them all.
            if written < target {
                match try_lock_stage(&self.write_stage, &self.write_done) {
                    Some(_stage) => {
                        // Let appenders woken with us add their batches to this write.
                        glommio::executor().yield_task_queue_now().await;
                        self.write_buffered().await?;
                    }
                    None => self.write_done.wait().await,
                }
                continue;
            }
            match try_lock_stage(&self.flush_lock, &self.sync_done) {
                Some(_guard) => {
                    self.sync_written().await?;
                    self.zero_ahead_if_idle();
                }
                None => self.sync_done.wait().await,
            }
        }
    }

    /// Waits for the flush lock (rolls, truncation, close).
    async fn lock_flush(&self) -> Result<StageGuard<'_>> {
        lock_stage(&self.flush_lock, &self.sync_done)
            .await
            .ok_or_else(|| self.closed_err())
    }

    /// Writes out everything buffered for the active segment and fdatasyncs it; no
    /// write is in flight afterwards. Caller holds `flush_lock`.
    async fn sync_active(&self) -> Result<()> {
        {
            let _stage = lock_stage(&self.write_stage, &self.write_done)
                .await
                .ok_or_else(|| self.closed_err())?;
            self.write_buffered().await?;
        }
        self.drain_writes().await?;
        self.sync_written().await
    }

    /// Queues the partly filled buffer, issues every queued buffer and waits until
    /// those writes (not later ones) have completed; then everything appended so far
    /// is in the file. Caller holds `write_stage`.
    async fn write_buffered(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let upto = {
            let mut st = self.state.borrow_mut();
            st.writer.queue_partial();
            st.next_offset
        };
        let through = {
            let _pump = self.lock_pump().await?;
            self.pump_locked().await?;
            self.writes.last_issued()
        };
        self.writes.wait_through(through).await;
        if let Some(reason) = self.failure.borrow().clone() {
            return Err(StorageError::LogFailed {
                dir: self.dir.clone(),
                reason,
            });
        }
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.stats.commit_write_us.record(took);
        let mut st = self.state.borrow_mut();
        st.written_offset = st.written_offset.max(upto);
        st.check_offsets();
        st.evict_cache();
        Ok(())
    }

    /// fdatasyncs the active segment, making everything written so far durable.
    /// Caller holds `flush_lock`.
    async fn sync_written(&self) -> Result<()> {
        let (upto, handle, path) = {
            let st = self.state.borrow();
            let a = st.active();
            (st.written_offset, a.file.clone(), a.path.clone())
        };
        let file = handle.get().await?;
        let started = std::time::Instant::now();
        let synced = match crate::fault::injected(&path, crate::fault::FaultOp::Sync) {
            Some(e) => Err(e.into()),
            None => file.fdatasync().await,
        };
        if let Err(e) = synced {
            return Err(self.fail(format!("fdatasync {}: {e}", path.display())));
        }
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.stats.fdatasync_us.record(took);
        self.fdatasyncs.set(self.fdatasyncs.get() + 1);
        let mut st = self.state.borrow_mut();
        let committed = upto - st.durable_offset;
        if committed > 0 {
            self.shared
                .stats
                .commit_records
                .record(u64::try_from(committed).unwrap_or(0));
        }
        st.durable_offset = st.durable_offset.max(upto);
        st.check_offsets();
        st.last_flush_ms = self.clock.now_ms();
        Ok(())
    }

    /// Starts zero-filling the next piece past the data (see `zeroer`) when nothing
    /// appended waits to be written: filling uses the time a lightly loaded log would
    /// idle, and a busy one (always a group waiting) does not pay for it.
    fn zero_ahead_if_idle(&self) {
        if self.config.zero_ahead_bytes == 0 || self.failure.borrow().is_some() {
            return;
        }
        let (file, piece) = {
            let st = self.state.borrow();
            if st.closed || st.written_offset < st.next_offset || st.writer.has_ready() {
                return;
            }
            let end = st.writer.end();
            let Some(piece) = zeroer::next_piece(
                end,
                self.zero.frontier(),
                st.preallocated,
                self.zero_distance(end),
            ) else {
                return;
            };
            (st.active().file.clone(), piece)
        };
        if let Some(permit) = self.zero.try_start() {
            self.zero.spawn_write(file, piece, permit);
        }
    }

    /// How far past `end` (the active segment's data) zeros are written ahead.
    fn zero_distance(&self, end: u64) -> u64 {
        let step = space::step(end, self.config.preallocate_bytes);
        space::zero_distance(self.config.zero_ahead_bytes, step)
    }

    /// Tells the shard's space account how much this log has allocated past its data.
    fn count_space(&self) {
        let now = {
            let st = self.state.borrow();
            if st.closed {
                0
            } else {
                st.preallocated.saturating_sub(st.writer.end())
            }
        };
        let was = self.space_counted.replace(now);
        self.shared.space.update(was, now);
    }

    /// Issues queued write-behind buffers to the device, in order, each in its own task,
    /// at most `inflight_writes_max` at a time; or leaves them to the task that holds
    /// or waits for `pump_lock`. Every holder issues whatever was queued before it lets
    /// the lock go (`pump_locked` returns only on an empty queue, and no await
    /// separates that check from the release), so a buffer queued before this call is
    /// issued either way. Not queueing behind the lock matters: each hand-over costs a
    /// trip through the run queue, and appends waited milliseconds in line for it.
    async fn pump(&self) -> Result<()> {
        let Ok(_order) = self.pump_lock.try_acquire_permit(1) else {
            return Ok(());
        };
        self.pump_locked().await
    }

    /// Waits for `pump_lock`: the right to issue this log's writes.
    async fn lock_pump(&self) -> Result<glommio::sync::Permit<'_>> {
        self.pump_lock
            .acquire_permit(1)
            .await
            .map_err(|_| self.closed_err())
    }

    /// [`PartitionLog::pump`] for a caller that holds `pump_lock`.
    async fn pump_locked(&self) -> Result<()> {
        loop {
            let handle = {
                let st = self.state.borrow();
                if !st.writer.has_ready() {
                    return Ok(());
                }
                st.active().file.clone()
            };
            // Opened (if it was closed as cold) before a buffer leaves the queue, so
            // a failure to open loses nothing.
            let file = handle.get().await?;
            let (item, path, need_prealloc) = {
                let mut st = self.state.borrow_mut();
                let Some(item) = st.writer.pop_ready() else {
                    return Ok(());
                };
                let end = item.position + item.buffer.len() as u64;
                // Allocate before the zero-filled space would reach the end of the
                // allocation, so filling keeps its distance across steps; the step
                // grows with the segment and the shard bounds the total.
                let step = space::step(end, self.config.preallocate_bytes);
                let need = space::grow_to(
                    end,
                    st.preallocated,
                    space::zero_distance(self.config.zero_ahead_bytes, step),
                    step,
                    self.config.segment_bytes.next_multiple_of(BLOCK) + BLOCK,
                    self.shared.space.room(),
                );
                if let Some(to) = need {
                    st.preallocated = to;
                }
                let a = st.active();
                (item, a.path.clone(), need)
            };
            self.count_space();
            // The previous write (the last issued) ends in the block this one
            // starts with: this one's task waits for it, the pump does not (the
            // write is one block long, and the ones after it overlap neither).
            let after = item.rewrites_tail.then(|| self.writes.last_issued());
            if let Some(to) = need_prealloc {
                // Extend the file size too (not FALLOC_FL_KEEP_SIZE): then an fdatasync
                // need not journal a size change for every group commit (measured: 64 KiB
                // x 8 appenders from 42 % to 64 % of raw). Recovery treats the zeros
                // past the data as unwritten space.
                if let Err(e) = file.pre_allocate(to, false).await {
                    warn!(segment = %path.display(), error = %e, "fallocate failed; writes may block on allocation");
                }
            }
            if self
                .zero
                .overlaps_inflight(item.position + item.buffer.len() as u64)
            {
                // The zeros must land before this data, never after it.
                drop(self.zero.wait_idle().await);
            }
            let permit = self
                .write_slots
                .acquire_static_permit(1)
                .await
                .map_err(|_| self.closed_err())?;
            let issued = Issued {
                after,
                seq: self.writes.start(item.fresh_from),
                tracker: self.writes.clone(),
                failure: self.failure.clone(),
                _permit: permit,
            };
            spawn_write(item, file, path, issued);
        }
    }

    /// Waits until no write of this log is in flight.
    async fn drain_writes(&self) -> Result<()> {
        let all = self.config.inflight_writes_max as u64;
        let _all = self
            .write_slots
            .acquire_permit(all)
            .await
            .map_err(|_| self.closed_err())?;
        Ok(())
    }

    fn closed_err(&self) -> StorageError {
        StorageError::Closed {
            dir: self.dir.clone(),
        }
    }

    fn needs_roll(&self, incoming: usize) -> bool {
        let st = self.state.borrow();
        let a = st.active();
        if a.size == 0 {
            return false;
        }
        let full = a.size + incoming as u64 > self.config.segment_bytes;
        let old = self.config.segment_ms.is_some_and(|ms| {
            self.clock.now_ms().saturating_sub(a.opened_ms) >= i64::try_from(ms).unwrap_or(i64::MAX)
        });
        full || old
    }

    /// Seals the active segment (durable, trimmed, indexes written) and starts a new
    /// one at the log end. Caller holds `append_lock`.
    async fn roll(&self) -> Result<()> {
        let _sync = self.lock_flush().await?;
        self.sync_active().await?;
        let _zero = self.zero.wait_idle().await;
        self.zero.reset();
        self.seal_active().await?;
        let base = self.state.borrow().next_offset;
        let seg = create_segment(&self.dir, base, self.clock.now_ms(), &self.shared).await?;
        {
            let mut st = self.state.borrow_mut();
            debug!(dir = %self.dir.display(), base, "rolled segment");
            st.segments.insert(base, seg);
            st.writer = WriteBehind::new(self.config.write_buffer_bytes, 0, Vec::new());
            st.preallocated = 0;
        }
        self.count_space();
        Ok(())
    }

    /// Trims the active segment's file to its data and writes its index files. Caller
    /// holds `append_lock` and `flush_lock` and has just synced.
    async fn seal_active(&self) -> Result<()> {
        let (handle, path, size) = {
            let st = self.state.borrow();
            let a = st.active();
            (a.file.clone(), a.path.clone(), a.size)
        };
        let file = handle.get().await?;
        file.truncate(size)
            .await
            .map_err(|e| io_err("truncate", &path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| io_err("fdatasync", &path, e))?;
        let files = recovery::encode_indexes(&self.dir, self.state.borrow().active());
        recovery::write_indexes(files).await
    }

    /// Whole batches starting with the one that contains `from`: at least one batch if
    /// any exists at `from`, then more while the total stays within `max_bytes`. Each
    /// `Bytes` holds one or more whole batches. Empty at the log end; an error below
    /// the log start or beyond the end.
    pub async fn read(&self, from: Offset, max_bytes: usize) -> Result<Vec<Bytes>> {
        let mut from = from;
        loop {
            let (read, next_segment) = self.read_segment(from, max_bytes).await?;
            match next_segment {
                // Nothing at or after `from` in its segment: cleaning removed the
                // segment's last batches; the data goes on in the next one.
                Some(next) if read.is_empty() => from = Offset(next),
                _ => return Ok(read),
            }
        }
    }

    /// One segment's part of [`PartitionLog::read`], and the next segment's base if
    /// there is one after it.
    async fn read_segment(
        &self,
        from: Offset,
        max_bytes: usize,
    ) -> Result<(Vec<Bytes>, Option<i64>)> {
        let (file, path, position, limit, next_segment) = {
            let st = self.state.borrow();
            if from.0 < st.log_start || from.0 > st.next_offset {
                return Err(StorageError::OffsetOutOfRange {
                    offset: from.0,
                    log_start: st.log_start,
                    log_end: st.next_offset,
                });
            }
            if from.0 == st.next_offset {
                return Ok((Vec::new(), None));
            }
            if let Some(hit) = st.cache.read(from.0, max_bytes) {
                bump(&self.shared.stats.cache_hits);
                return Ok((hit, None));
            }
            bump(&self.shared.stats.cache_misses);
            let Some((_, seg)) = st.segments.range(..=from.0).next_back() else {
                return Err(StorageError::OffsetOutOfRange {
                    offset: from.0,
                    log_start: st.log_start,
                    log_end: st.next_offset,
                });
            };
            let is_active = st.active_base() == Some(seg.base_offset);
            let limit = if is_active {
                seg.size.min(st.stable_position())
            } else {
                seg.size
            };
            let position = u64::from(seg.offset_index.floor(seg.relative(from.0)));
            let next_segment = st
                .segments
                .range(seg.base_offset + 1..)
                .next()
                .map(|(base, _)| *base);
            (
                seg.file.clone(),
                seg.path.clone(),
                position,
                limit,
                next_segment,
            )
        };
        let file = file.get().await?;
        let read = read_batches(
            &file,
            &path,
            position,
            limit,
            from.0,
            max_bytes,
            self.config.max_batch_bytes,
        )
        .await?;
        Ok((read, next_segment))
    }

    /// The largest record timestamp in the log, if it holds any record.
    pub fn max_timestamp(&self) -> Option<i64> {
        let st = self.state.borrow();
        st.segments
            .values()
            .filter(|s| s.size > 0)
            .map(|s| s.max_timestamp)
            .max()
    }

    /// The first record whose timestamp is >= `ts`, as its offset and timestamp, or
    /// `None` if every record is older. (With `ts` = [`Self::max_timestamp`] it is
    /// the record holding the largest timestamp, Kafka's ListOffsets -3.)
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>> {
        let start = {
            let st = self.state.borrow();
            let Some(seg) = st
                .segments
                .values()
                .find(|s| s.size > 0 && s.max_timestamp >= ts)
            else {
                return Ok(None);
            };
            seg.base_offset + i64::from(seg.time_index.scan_start(ts))
        };
        let mut at = Offset(start.max(self.log_start_offset().0));
        loop {
            let chunks = self.read(at, self.config.max_batch_bytes).await?;
            if chunks.is_empty() {
                return Ok(None);
            }
            for chunk in chunks {
                for batch in ringlog_schema::split_batches(chunk) {
                    let batch = batch?;
                    if let Some((o, t)) = batch.first_record_at_or_after(ts)? {
                        return Ok(Some((Offset(o), t)));
                    }
                    at = Offset(batch.last_offset() + 1);
                }
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Removes every record at or after `offset`, at a batch boundary: the log end
    /// becomes the base offset of the batch containing `offset` (as in Kafka). At or
    /// below the log start the log is emptied and restarts at `offset`.
    pub async fn truncate_to(&self, offset: Offset) -> Result<Offset> {
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        let _sync = self.lock_flush().await?;
        self.sync_active().await?;
        let _zero = self.zero.wait_idle().await;
        self.zero.reset();
        let (next, log_start) = {
            let st = self.state.borrow();
            (st.next_offset, st.log_start)
        };
        if offset.0 >= next {
            // Nothing to cut, but an epoch begun at the log end with no batch
            // (a leadership that appended nothing) goes: a follower names the
            // epoch of its last batch, and keeping the empty one would have it
            // told to truncate here again and again.
            self.change_epochs(|c| c.truncate_from_end(offset.0))?;
            return Ok(Offset(next));
        }
        if offset.0 <= log_start {
            self.truncate_fully(offset.0).await?;
            return Ok(offset);
        }
        // The segment holding `offset`; later segments go entirely.
        let (seg_base, doomed) = {
            let st = self.state.borrow();
            let base = *st
                .segments
                .range(..=offset.0)
                .next_back()
                .map(|(b, _)| b)
                .expect("offset >= log start");
            (
                base,
                st.segments
                    .range(base + 1..)
                    .map(|(b, _)| *b)
                    .collect::<Vec<_>>(),
            )
        };
        for base in doomed {
            let seg = self
                .state
                .borrow_mut()
                .segments
                .remove(&base)
                .expect("listed above");
            delete_segment(&self.dir, seg).await?;
        }
        // Rescan the surviving segment up to the batch that contains `offset`.
        let mut seg = self
            .state
            .borrow_mut()
            .segments
            .remove(&seg_base)
            .expect("listed above");
        let fresh_file = seg.file.clone();
        let mut rebuilt = Segment::new_empty(&self.dir, seg_base, fresh_file, seg.opened_ms);
        let cut = find_batch_start(&seg, offset.0, self.config.max_batch_bytes).await?;
        recovery::scan_segment(
            &mut rebuilt,
            Some(cut),
            self.config.max_batch_bytes,
            self.config.index_interval_bytes,
            ScanMode::Closed,
            self.config.read_ahead_bytes,
        )
        .await?;
        seg = rebuilt;
        let file = seg.file.get().await?;
        file.truncate(cut)
            .await
            .map_err(|e| io_err("truncate", &seg.path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| io_err("fdatasync", &seg.path, e))?;
        recovery::remove_file(&seg.index_path(&self.dir)).await?;
        recovery::remove_file(&seg.time_index_path(&self.dir)).await?;
        recovery::sync_dir(&self.dir).await?;
        let tail = recovery::read_tail_block(&file, &seg.path, cut).await?;
        drop(file);
        let new_end = seg.next_offset;
        {
            let mut st = self.state.borrow_mut();
            st.segments.insert(seg_base, seg);
            st.writer = WriteBehind::new(self.config.write_buffer_bytes, cut, tail);
            st.preallocated = cut;
            st.next_offset = new_end;
            st.written_offset = new_end;
            st.durable_offset = new_end;
            st.check_offsets();
            st.cache.truncate_from(new_end);
        }
        self.change_epochs(|c| c.truncate_from_end(new_end))?;
        self.count_space();
        info!(dir = %self.dir.display(), requested = offset.0, log_end = new_end, "truncated log");
        Ok(Offset(new_end))
    }

    /// Empties the log and restarts it at `offset`, whatever it held (a follower
    /// whose whole log is below the leader's log start begins again there).
    pub async fn restart_at(&self, offset: Offset) -> Result<()> {
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        let _sync = self.lock_flush().await?;
        self.sync_active().await?;
        let _zero = self.zero.wait_idle().await;
        self.zero.reset();
        self.truncate_fully(offset.0).await
    }

    async fn truncate_fully(&self, start: i64) -> Result<()> {
        let all: Vec<Segment> = std::mem::take(&mut self.state.borrow_mut().segments)
            .into_values()
            .collect();
        for seg in all {
            delete_segment(&self.dir, seg).await?;
        }
        let seg = create_segment(&self.dir, start, self.clock.now_ms(), &self.shared).await?;
        {
            let mut st = self.state.borrow_mut();
            st.segments.insert(start, seg);
            st.writer = WriteBehind::new(self.config.write_buffer_bytes, 0, Vec::new());
            st.preallocated = 0;
            st.next_offset = start;
            st.written_offset = start;
            st.durable_offset = start;
            st.log_start = start;
            st.check_offsets();
            st.cache.truncate_from(i64::MIN);
        }
        self.change_epochs(|c| {
            let cut = c.truncate_from_end(start);
            c.truncate_from_start(start) || cut
        })?;
        self.count_space();
        info!(dir = %self.dir.display(), start, "emptied log");
        Ok(())
    }

    /// Deletes closed segments beyond `retention.bytes` or older than `retention.ms`
    /// (by their newest record); returns how many. The log start advances.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        if !self.config.cleanup.delete {
            // A compacted-only log keeps what the cleaner keeps.
            return Ok(0);
        }
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        let doomed: Vec<i64> = {
            let st = self.state.borrow();
            let views: Vec<RetentionView> = st
                .segments
                .values()
                .map(|s| RetentionView {
                    bytes: s.size,
                    max_timestamp: s.max_timestamp,
                })
                .collect();
            let (retention_ms, retention_bytes) = self.retention.get();
            let n = segments_to_delete(&views, retention_bytes, retention_ms, now_ms);
            st.segments.keys().take(n).copied().collect()
        };
        for base in &doomed {
            let seg = {
                let mut st = self.state.borrow_mut();
                let seg = st.segments.remove(base).expect("listed above");
                st.log_start = st.segments.keys().next().copied().unwrap_or(st.next_offset);
                st.check_offsets();
                let start = st.log_start;
                st.cache.drop_below(start);
                seg
            };
            info!(segment = %seg.path.display(), "retention deletes segment");
            delete_segment(&self.dir, seg).await?;
        }
        if !doomed.is_empty() {
            recovery::sync_dir(&self.dir).await?;
            let start = self.state.borrow().log_start;
            self.change_epochs(|c| c.truncate_from_start(start))?;
        }
        Ok(doomed.len())
    }

    /// Flushes, writes the active segment's indexes and the clean-shutdown marker, and
    /// closes the files. The next open skips the recovery scan.
    pub async fn close(&self) -> Result<()> {
        self.check_writable()?;
        let _guard = self.append_lock.lock().await;
        let _sync = self.lock_flush().await?;
        self.sync_active().await?;
        let _zero = self.zero.wait_idle().await;
        self.seal_active().await?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
        let f = DmaFile::create(&marker)
            .await
            .map_err(|e| io_err("create", &marker, e))?;
        f.fdatasync()
            .await
            .map_err(|e| io_err("fdatasync", &marker, e))?;
        f.close().await.map_err(|e| io_err("close", &marker, e))?;
        recovery::sync_dir(&self.dir).await?;
        let segments = {
            let mut st = self.state.borrow_mut();
            st.closed = true;
            std::mem::take(&mut st.segments)
        };
        self.count_space();
        for (_, seg) in segments {
            seg.file.close().await?;
        }
        info!(dir = %self.dir.display(), "closed partition log");
        Ok(())
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        // A log dropped without `close` (deleted, failed) gives its space back too.
        self.shared.space.update(self.space_counted.replace(0), 0);
    }
}

/// A held stage lock (`write_stage` or `flush_lock`); releasing it wakes every
/// flusher waiting for that stage to end.
struct StageGuard<'a> {
    _permit: glommio::sync::Permit<'a>,
    done: &'a SyncNotify,
}

/// Takes a stage lock if it is free.
fn try_lock_stage<'a>(lock: &'a Semaphore, done: &'a SyncNotify) -> Option<StageGuard<'a>> {
    let permit = lock.try_acquire_permit(1).ok()?;
    Some(StageGuard {
        _permit: permit,
        done,
    })
}

/// Waits for a stage lock; `None` if the log is closing.
async fn lock_stage<'a>(lock: &'a Semaphore, done: &'a SyncNotify) -> Option<StageGuard<'a>> {
    let permit = lock.acquire_permit(1).await.ok()?;
    Some(StageGuard {
        _permit: permit,
        done,
    })
}

impl Drop for StageGuard<'_> {
    fn drop(&mut self) {
        self.done.notify_all();
    }
}

/// A write handed to its task, and what it reports to when it completes.
struct Issued {
    /// A write that must complete before this one starts (it overlaps its block).
    after: Option<u64>,
    seq: u64,
    tracker: Rc<WriteTracker>,
    failure: Rc<RefCell<Option<String>>>,
    _permit: glommio::sync::StaticPermit,
}

fn spawn_write(item: WriteItem, file: Rc<DmaFile>, path: PathBuf, issued: Issued) {
    glommio::spawn_local(async move {
        let Issued {
            after,
            seq,
            tracker,
            failure,
            _permit,
        } = issued;
        if let Some(previous) = after {
            tracker.wait_for(previous).await;
        }
        let position = item.position;
        let len = item.buffer.len();
        let result = match crate::fault::injected(&path, crate::fault::FaultOp::Write) {
            Some(e) => Err(e.into()),
            None => file.write_at(item.buffer, position).await,
        };
        let problem = match result {
            Ok(n) if n == len => None,
            Ok(n) => Some(format!(
                "short write to {} at {position}: {n} of {len} bytes",
                path.display()
            )),
            Err(e) => Some(format!("write to {} at {position}: {e}", path.display())),
        };
        if let Some(reason) = problem {
            tracing::error!(%reason, "segment write failed; the log refuses further writes");
            failure.borrow_mut().get_or_insert(reason);
        }
        // After the failure is recorded, so a waiting write stage sees it.
        tracker.finish(seq);
    })
    .detach();
}

pub(crate) async fn create_segment(
    dir: &Path,
    base: i64,
    now_ms: i64,
    shared: &LogShared,
) -> Result<Segment> {
    let path = segment_file(dir, base, LOG_SUFFIX);
    let file = recovery::open_rw(&path, true).await?;
    recovery::sync_dir(dir).await?;
    let file = SegmentFile::opened(path, file, &shared.files);
    Ok(Segment::new_empty(dir, base, file, now_ms))
}

async fn delete_segment(dir: &Path, seg: Segment) -> Result<()> {
    recovery::remove_file(&seg.index_path(dir)).await?;
    recovery::remove_file(&seg.time_index_path(dir)).await?;
    recovery::remove_file(&seg.path).await?;
    seg.file.close().await
}

/// Whether an append assigns offsets (a leader's) or keeps the batch's (a
/// follower's copy of the leader's).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Assign {
    Offsets,
    Kept,
}

/// The epoch cache at open: the checkpoint cut to what the log holds (a crash can
/// leave an epoch written down whose first batch never reached the disk). A damaged
/// checkpoint is reported and replaced by what later appends record.
fn load_epochs(dir: &Path, log_start: i64, log_end: i64) -> EpochCache {
    let mut cache = match epochs::load(dir) {
        Ok(cache) => cache,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "leader-epoch checkpoint unreadable; starting it afresh");
            EpochCache::default()
        }
    };
    let cut = cache.truncate_from_end(log_end);
    let trimmed = cache.truncate_from_start(log_start);
    if cut || trimmed {
        if let Err(e) = epochs::store(dir, &cache) {
            warn!(dir = %dir.display(), error = %e, "rewriting the leader-epoch checkpoint failed");
        }
    }
    cache
}
