//! A partition as its owner shard serves it: the log, its high watermark, and the
//! signal that wakes long-polling fetches.
//!
//! High watermark: what consumers may read. The partition's [`Role`] decides it:
//! a leader's is the lowest durable log end over the ISR (`replication::leader`),
//! a follower's is the leader's last word, and a partition outside any cluster role
//! (unit tests, an offline partition) uses its own: the durable offset under
//! `log.flush = batch` (consumers never see a record a crash could take back), the
//! log end otherwise.

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
use crate::core::hw_checkpoint;
use crate::core::messages::{Acks, EpochQuery, FetchData, PartitionError, PartitionOffsets};
use crate::core::producer_snapshot;
use crate::core::producer_state::{last_sequence, LoggedBatch, ProducerState, Verdict};
use crate::metadata::BrokerId;
use crate::metrics::PartitionStats;
use crate::replication::lag::AppendTimes;
use crate::replication::leader::{LeaderReplicas, Membership};
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

/// What this broker is for a partition, with the state that role needs.
#[derive(Clone, Debug)]
pub enum Role {
    /// No cluster role: the high watermark is the partition's own committed end.
    Standalone,
    /// Leading in `epoch`: the followers' progress and the high watermark.
    Leader {
        epoch: i32,
        replicas: LeaderReplicas,
    },
    /// Following `leader` in `epoch`, with the high watermark it last sent.
    /// `leader` is `None` while the partition has none (offline).
    Follower {
        leader: Option<BrokerId>,
        epoch: i32,
        high_watermark: i64,
    },
}

/// A partition owned by this shard.
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub log: PartitionLog,
    /// Notified whenever the high watermark may have moved (or the role changed).
    arrived: Signal,
    /// Notified after every append, before it is durable: replica fetches wait on
    /// it, so followers copy a batch while the leader's fdatasync runs.
    appended: Signal,
    role: RefCell<Role>,
    /// The high watermark last written to (or read from) the partition's
    /// checkpoint, capped at the log end when read (-1: none): the floor a new role
    /// starts from (`hw_checkpoint`).
    checkpointed_hw: Cell<i64>,
    /// Idempotent producers' sequences, rebuilt from the log's last segments on
    /// first use (`producers_loaded`): by a leader at its first idempotent
    /// produce, by a follower at the first idempotent batch it copies, so a new
    /// leader deduplicates a retry of what it only replicated (Kafka keeps
    /// producer state on every replica the same way).
    producers: RefCell<ProducerState>,
    producers_loaded: Latch,
    producers_loading: Cell<bool>,
    /// Bumped when the log is cut back (a follower's truncation): a load or a
    /// snapshot begun before it describes batches that may be gone.
    producers_generation: Cell<u64>,
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
    /// When recent appends happened, while leading with followers: their fetches
    /// measure the replication lag (`replication::lag`).
    append_times: RefCell<AppendTimes>,
}

impl Partition {
    pub fn new(topic: String, partition: i32, log: PartitionLog) -> Self {
        producer_snapshot::discard_above_at_open(log.dir(), log.log_end_offset().0);
        let checkpointed_hw = hw_checkpoint::load(log.dir()).map_or(-1, |hw| {
            hw.min(log.log_end_offset().0).max(log.log_start_offset().0)
        });
        Self {
            topic,
            partition,
            log,
            arrived: Signal::default(),
            appended: Signal::default(),
            role: RefCell::new(Role::Standalone),
            checkpointed_hw: Cell::new(checkpointed_hw),
            producers: RefCell::new(ProducerState::default()),
            producers_loaded: Latch::default(),
            producers_loading: Cell::new(false),
            producers_generation: Cell::new(0),
            producers_settled: Signal::default(),
            snapshots: RefCell::new(Vec::new()),
            snapshot_offset: Cell::new(-1),
            snapshot_writing: Cell::new(false),
            stats: PartitionStats::default(),
            append_times: RefCell::new(AppendTimes::default()),
        }
    }

    /// The directory of a partition's log.
    pub fn dir(data_dir: &std::path::Path, topic: &str, partition: i32) -> PathBuf {
        data_dir.join(format!("{topic}-{partition}"))
    }

    pub fn high_watermark(&self) -> i64 {
        match &*self.role.borrow() {
            Role::Standalone => self.committed_end(),
            Role::Leader { replicas, .. } => replicas.high_watermark(),
            Role::Follower { high_watermark, .. } => *high_watermark,
        }
    }

    /// This replica's own committed log end: what it reports to a leader and what
    /// it counts as its own in the high watermark. Durable under
    /// `log.flush = batch`; under `interval`/`os` the operator chose to trust the
    /// page cache, and the log end counts.
    pub fn committed_end(&self) -> i64 {
        match self.log.config().flush {
            FlushPolicy::Batch => self.log.durable_offset().0,
            FlushPolicy::Interval(_) | FlushPolicy::Os => self.log.log_end_offset().0,
        }
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Leads the partition in `epoch` with these replicas and ISR. A new epoch is
    /// written into the log's epoch cache at the log end before anything is
    /// appended in it (so a follower that diverged is told where); the same epoch
    /// again only updates the membership.
    pub async fn lead(
        &self,
        me: BrokerId,
        epoch: i32,
        membership: Membership<'_>,
        now_ms: i64,
    ) -> Result<(), PartitionError> {
        let current = self.role.borrow().clone();
        if let Role::Leader { epoch: e, .. } = &current {
            if *e == epoch {
                let moved = match &mut *self.role.borrow_mut() {
                    Role::Leader { replicas: r, .. } => r.set_membership(membership, now_ms),
                    _ => false,
                };
                if moved {
                    self.arrived.notify();
                }
                return Ok(());
            }
        }
        self.log
            .begin_leader_epoch(epoch)
            .await
            .map_err(|e| storage_error(&e))?;
        let known = match current {
            Role::Standalone => self.checkpointed_hw.get().max(0),
            Role::Leader { replicas, .. } => replicas.high_watermark(),
            Role::Follower { high_watermark, .. } => high_watermark,
        };
        let state = LeaderReplicas::new(me, membership, known, self.committed_end(), now_ms);
        *self.append_times.borrow_mut() = AppendTimes::default();
        *self.role.borrow_mut() = Role::Leader {
            epoch,
            replicas: state,
        };
        info!(topic = %self.topic, partition = self.partition, epoch, "leading");
        self.arrived.notify();
        Ok(())
    }

    /// Follows `leader` in `epoch` (or, with `None`, waits for a leader). Produces
    /// waiting for replication here get NOT_LEADER_OR_FOLLOWER.
    pub fn follow(&self, leader: Option<BrokerId>, epoch: i32) {
        self.log.set_leader_epoch(-1);
        // A partition just opened has only its checkpoint to go by: its own log end
        // may hold records that were never committed.
        let known = match &*self.role.borrow() {
            Role::Standalone => self.checkpointed_hw.get().max(0),
            Role::Leader { replicas, .. } => replicas.high_watermark(),
            Role::Follower { high_watermark, .. } => *high_watermark,
        }
        .min(self.log.log_end_offset().0);
        let next = Role::Follower {
            leader,
            epoch,
            high_watermark: known,
        };
        let was_leader = matches!(*self.role.borrow(), Role::Leader { .. });
        *self.role.borrow_mut() = next;
        *self.append_times.borrow_mut() = AppendTimes::default();
        if was_leader {
            info!(topic = %self.topic, partition = self.partition, epoch, "no longer leading");
        }
        self.arrived.notify();
        self.appended.notify();
    }

    /// Writes the high watermark to the partition's checkpoint if it moved since the
    /// last write (a replicated role only: a standalone partition's is its durable
    /// end, found again at open).
    pub fn checkpoint_high_watermark(&self) -> std::io::Result<()> {
        let hw = match &*self.role.borrow() {
            Role::Standalone => return Ok(()),
            Role::Leader { replicas, .. } => replicas.high_watermark(),
            Role::Follower { high_watermark, .. } => *high_watermark,
        };
        if hw <= self.checkpointed_hw.get() {
            return Ok(());
        }
        hw_checkpoint::store(self.log.dir(), hw)?;
        self.checkpointed_hw.set(hw);
        Ok(())
    }

    /// A follower learned the leader's high watermark (never above what it holds).
    pub fn set_follower_high_watermark(&self, leader_hw: i64) {
        if let Role::Follower { high_watermark, .. } = &mut *self.role.borrow_mut() {
            let hw = leader_hw.min(self.log.log_end_offset().0);
            if hw > *high_watermark {
                *high_watermark = hw;
            }
        }
    }

    /// The leader's own committed end moved (an append became durable): the high
    /// watermark may follow.
    fn note_committed(&self) {
        let end = self.committed_end();
        let moved = match &mut *self.role.borrow_mut() {
            Role::Leader { replicas, .. } => replicas.leader_durable(end),
            _ => false,
        };
        if moved {
            self.arrived.notify();
        }
    }

    /// Runs `f` on the leader state; `None` when not leading.
    pub fn with_leader<T>(&self, f: impl FnOnce(i32, &mut LeaderReplicas) -> T) -> Option<T> {
        match &mut *self.role.borrow_mut() {
            Role::Leader { epoch, replicas } => Some(f(*epoch, replicas)),
            _ => None,
        }
    }

    /// Remembers when an append ending at `end` happened, if followers will fetch it.
    fn note_append(&self, end: i64) {
        if let Role::Leader { replicas, .. } = &*self.role.borrow() {
            if replicas.followers().next().is_some() {
                self.append_times.borrow_mut().appended(
                    end,
                    std::time::Instant::now(),
                    replicas.high_watermark(),
                );
            }
        }
    }

    /// A follower's fetch at `now` moved its durable end from `before` to `after`:
    /// `lag` gets how long each append it passed waited for it. Appends under the
    /// high watermark are then forgotten.
    pub fn follower_reached(
        &self,
        before: i64,
        after: i64,
        now: std::time::Instant,
        lag: impl FnMut(std::time::Duration),
    ) {
        let mut times = self.append_times.borrow_mut();
        times.reached(before, after, now, lag);
        times.forget_through(self.high_watermark());
    }

    /// Wakes whoever waits for the high watermark (after a follower's fetch moved
    /// it).
    pub fn high_watermark_moved(&self) {
        self.arrived.notify();
    }

    /// Resolves at the next append (replica fetches long-poll on it).
    pub fn appended(&self) -> crate::sync::signal::Wait<'_> {
        self.appended.wait()
    }

    /// Where `query.leader_epoch` ends in this leader's log, as Kafka's
    /// OffsetForLeaderEpoch answers a client (KIP-320): the largest epoch at or
    /// below it and the start of the next one (the log end for the current epoch;
    /// `(-1, -1)` for an epoch newer than every one known). A follower refuses
    /// (clients ask the leader), and so does a leader in another epoch than the
    /// asker's current one: FENCED_LEADER_EPOCH when the asker's is older,
    /// UNKNOWN_LEADER_EPOCH when it is newer.
    pub fn epoch_end(&self, query: EpochQuery) -> Result<(i32, i64), PartitionError> {
        let current = match &*self.role.borrow() {
            Role::Standalone => None,
            Role::Leader { epoch, .. } => Some(*epoch),
            Role::Follower { .. } => {
                return Err(PartitionError::new(
                    ErrorKind::NotLeaderOrFollower,
                    format!(
                        "this broker does not lead {}-{}",
                        self.topic, self.partition
                    ),
                ))
            }
        };
        if let (Some(epoch), asked) = (current, query.current_leader_epoch) {
            if asked >= 0 && asked != epoch {
                let (kind, age) = if asked < epoch {
                    (ErrorKind::FencedLeaderEpoch, "older")
                } else {
                    (ErrorKind::UnknownLeaderEpoch, "newer")
                };
                return Err(PartitionError::new(
                    kind,
                    format!("epoch {asked} is {age} than this leader's {epoch}"),
                ));
            }
        }
        Ok(self.log.end_offset_for_epoch(query.leader_epoch))
    }

    /// Refuses acks=all up front when the ISR is below `min.insync.replicas`, and
    /// any produce on a follower.
    fn check_can_append(&self, acks: Acks) -> Result<(), PartitionError> {
        match &*self.role.borrow() {
            Role::Standalone => Ok(()),
            Role::Follower { .. } => Err(PartitionError::new(
                ErrorKind::NotLeaderOrFollower,
                format!(
                    "this broker does not lead {}-{}",
                    self.topic, self.partition
                ),
            )),
            Role::Leader { replicas, .. } => {
                if acks == Acks::All && !replicas.enough_in_sync() {
                    return Err(PartitionError::new(
                        ErrorKind::NotEnoughReplicas,
                        format!(
                            "{}-{}: {} in-sync replica(s) {:?}, min.insync.replicas is {}",
                            self.topic,
                            self.partition,
                            replicas.isr().len(),
                            replicas.isr(),
                            replicas.min_insync()
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Waits until the high watermark reaches `end` (acks=all), or `deadline`.
    async fn wait_replicated(
        &self,
        end: i64,
        deadline: std::time::Instant,
    ) -> Result<(), PartitionError> {
        loop {
            let changed = self.arrived.wait();
            match &*self.role.borrow() {
                Role::Standalone => {
                    if self.committed_end() >= end {
                        return Ok(());
                    }
                }
                Role::Leader { replicas, .. } => {
                    if replicas.high_watermark() >= end {
                        return Ok(());
                    }
                    if !replicas.enough_in_sync() {
                        return Err(PartitionError::new(
                            ErrorKind::NotEnoughReplicasAfterAppend,
                            format!(
                                "{}-{}: written on the leader, but the ISR {:?} fell below min.insync.replicas {}",
                                self.topic,
                                self.partition,
                                replicas.isr(),
                                replicas.min_insync()
                            ),
                        ));
                    }
                }
                Role::Follower { .. } => {
                    return Err(PartitionError::new(
                        ErrorKind::NotLeaderOrFollower,
                        format!(
                            "{}-{}: leadership moved before the write was replicated",
                            self.topic, self.partition
                        ),
                    ))
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(PartitionError::new(
                    ErrorKind::RequestTimedOut,
                    format!(
                        "{}-{}: written on the leader, not replicated to the ISR in time",
                        self.topic, self.partition
                    ),
                ));
            }
            futures_lite::future::or(changed, async {
                glommio::timer::sleep(left).await;
            })
            .await;
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
    pub async fn produce(
        &self,
        records: Bytes,
        acks: Acks,
        timeout: std::time::Duration,
    ) -> Result<(i64, i64), PartitionError> {
        let deadline = std::time::Instant::now() + timeout;
        self.check_can_append(acks)?;
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
                let verdict = self.producers.borrow_mut().check(pid, epoch, first, last);
                match verdict {
                    Verdict::Append => break,
                    Verdict::Duplicate(offset) => {
                        if acks == Acks::All {
                            self.wait_replicated(offset + 1, deadline).await?;
                        }
                        return Ok((offset, self.log.log_start_offset().0));
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
                    Ok((base, _)) => producers.appended(pid, epoch, first, last, *base, now),
                    Err(_) => producers.failed(pid, epoch, first, last),
                }
            }
            self.producers_settled.notify();
            let (base, end) = appended?;
            self.arrived.notify();
            self.snapshot_after_roll().await;
            if acks == Acks::All {
                self.wait_replicated(end, deadline).await?;
            }
            return Ok((base, self.log.log_start_offset().0));
        }
        let (base, end) = self.append(batches).await?;
        self.arrived.notify();
        if acks == Acks::All {
            self.wait_replicated(end, deadline).await?;
        }
        Ok((base, self.log.log_start_offset().0))
    }

    /// Appends validated batches together, committed under the flush policy, and
    /// counts them; returns the first one's base offset and the offset after the
    /// last. Followers are woken as soon as the batches are in the log, so they
    /// copy them while the leader's own fdatasync runs.
    async fn append(&self, batches: Vec<CheckedBatch>) -> Result<(i64, i64), PartitionError> {
        let (bytes, records) = batches.iter().fold((0, 0), |(bytes, records), b| {
            let n = u64::try_from(b.record_count()).unwrap_or(0);
            (bytes + b.size() as u64, records + n)
        });
        let infos = self
            .log
            .append_checked(batches)
            .await
            .map_err(|e| storage_error(&e))?;
        if let Some(last) = infos.last() {
            self.note_append(last.last_offset.0 + 1);
        }
        self.appended.notify();
        let infos = self
            .log
            .commit_appended(infos)
            .await
            .map_err(|e| storage_error(&e))?;
        self.note_committed();
        self.stats.produced(bytes, records);
        let base = infos.first().map_or(-1, |i| i.base_offset.0);
        let end = infos.last().map_or(-1, |i| i.last_offset.0 + 1);
        Ok((base, end))
    }

    /// A follower's append of batches fetched from the leader (CRC checked,
    /// offsets and epochs as the leader wrote them), not yet committed: the
    /// fetcher commits them (`sync_replicated`) while its next fetch is out, and
    /// that fetch still reports the durable end from before.
    pub async fn append_replicated(
        &self,
        batches: Vec<CheckedBatch>,
    ) -> Result<ReplicatedAppend, PartitionError> {
        let (bytes, records) = batches.iter().fold((0, 0), |(bytes, records), b| {
            let n = u64::try_from(b.record_count()).unwrap_or(0);
            (bytes + b.size() as u64, records + n)
        });
        let idempotent: Vec<LoggedBatch> = batches
            .iter()
            .filter(|b| b.producer_id() >= 0)
            .map(|b| {
                let first = b.base_sequence();
                LoggedBatch {
                    pid: b.producer_id(),
                    epoch: b.producer_epoch(),
                    first_seq: first,
                    last_seq: last_sequence(first, b.last_offset_delta()),
                    base_offset: b.base_offset(),
                    timestamp_ms: b.max_timestamp(),
                }
            })
            .collect();
        if !idempotent.is_empty() {
            // Built from the log before these are appended, then kept up with them.
            self.load_producers().await?;
        }
        let infos = if batches.is_empty() {
            Vec::new()
        } else {
            self.log
                .append_replicated(batches)
                .await
                .map_err(|e| storage_error(&e))?
        };
        if !idempotent.is_empty() {
            let mut producers = self.producers.borrow_mut();
            for b in idempotent {
                producers.load(b);
            }
        }
        self.snapshot_after_roll().await;
        Ok(ReplicatedAppend {
            infos,
            bytes,
            records,
        })
    }

    /// Commits what `append_replicated` appended, under the flush policy
    /// (fdatasync under `log.flush = batch`).
    pub async fn sync_replicated(&self, appended: ReplicatedAppend) -> Result<(), PartitionError> {
        if appended.infos.is_empty() {
            return Ok(());
        }
        self.log
            .commit_appended(appended.infos)
            .await
            .map_err(|e| storage_error(&e))?;
        self.stats.replicated(appended.bytes, appended.records);
        Ok(())
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
        loop {
            let generation = self.producers_generation.get();
            let loaded = self.load_producers_once().await;
            if generation == self.producers_generation.get() || loaded.is_err() {
                // The log cannot be read, so appends fail too; let waiters go
                // on to see that error rather than wait forever.
                self.producers_loading.set(false);
                self.producers_loaded.set();
                return loaded;
            }
            // Cut back while loading: what was read may be gone.
        }
    }

    /// One load of the producers' state from the newest snapshot and the log
    /// after it (see `load_producers`).
    async fn load_producers_once(&self) -> Result<(), PartitionError> {
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
        let replayed = replayed?;
        info!(topic = %self.topic, partition = self.partition, snapshot = ?snapshot_at,
              replayed_from = from, replayed_batches = replayed, producers = state.len(),
              "idempotent producer state loaded");
        // Batches appended while loading are in the log and were read, or came
        // after `end` and are checked against the loaded state from now on.
        *self.producers.borrow_mut() = state;
        Ok(())
    }

    /// A follower's log was cut back to `end` (truncated to the leader's log, or
    /// emptied to restart at the leader's start with `emptied`): the producers'
    /// state, built from batches that may be gone, is dropped and rebuilt at next
    /// use, and the snapshots past the new end (all, when emptied) are removed so
    /// a restart cannot load one.
    pub async fn log_cut_back(&self, end: i64, emptied: bool) {
        self.producers_generation
            .set(self.producers_generation.get().wrapping_add(1));
        if self.producers_loaded.is_set() {
            self.producers_loaded.reset();
            self.producers_loading.set(false);
        }
        *self.producers.borrow_mut() = ProducerState::default();
        let dir = self.log.dir().to_path_buf();
        let mut offsets = producer_snapshot::list(&dir);
        producer_snapshot::remove_above(&dir, &mut offsets, (!emptied).then_some(end)).await;
        self.snapshot_offset
            .set(offsets.last().copied().unwrap_or(-1));
        *self.snapshots.borrow_mut() = offsets;
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
        let generation = self.producers_generation.get();
        let dir = self.log.dir().to_path_buf();
        let mut offsets = self.snapshots.take();
        producer_snapshot::write(&dir, &mut offsets, offset, &state).await;
        // Set even when the write failed, so a failing disk is not asked again
        // at every append, only at the next roll.
        let mut newest = offset;
        if generation != self.producers_generation.get() {
            // The log was cut back while writing: this snapshot may describe
            // batches no longer there.
            let end = self.log.log_end_offset().0;
            producer_snapshot::remove_above(&dir, &mut offsets, Some(end)).await;
            newest = offsets.last().copied().unwrap_or(-1);
        }
        self.snapshot_offset.set(newest);
        *self.snapshots.borrow_mut() = offsets;
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

/// Batches a follower appended and has yet to commit.
pub struct ReplicatedAppend {
    infos: Vec<ringlog_storage::AppendInfo>,
    bytes: u64,
    records: u64,
}

/// How long an offset commit waits for the `__consumer_offsets` ISR (Kafka's
/// `offsets.commit.timeout.ms` default).
const OFFSET_COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes read per step when a group coordinator rebuilds committed offsets.
const OFFSETS_LOAD_READ_BYTES: usize = 1 << 20;

/// A `__consumer_offsets` partition as its group coordinator uses it: commits
/// appended as any produce (durable on return), offsets replayed up to the high
/// watermark.
impl OffsetsLog for Partition {
    async fn append(&self, records: Bytes) -> Result<(), PartitionError> {
        // Commits are acknowledged like acks=all produces.
        self.produce(records, Acks::All, OFFSET_COMMIT_REPLICATION_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// To the log end, not the high watermark, as Kafka's coordinator loads: a
    /// leader that just took over holds commits its followers have not fetched
    /// yet, and they are committed as soon as they do (this log is the
    /// partition's now). Stopping at the high watermark lost them from the
    /// coordinator's view, so their groups re-read what they had committed.
    async fn replay(&self, visit: impl FnMut(RecordBatch)) -> Result<u64, PartitionError> {
        let start = self.log.log_start_offset().0;
        Partition::replay(
            self,
            start,
            || self.log.log_end_offset().0,
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

    const T: std::time::Duration = std::time::Duration::from_secs(5);

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

    /// A coordinator taking over an offsets partition reads its whole log: what a
    /// new leader holds past its high watermark (followers have not fetched it
    /// yet) is the partition's, and is committed as soon as they do.
    #[test]
    fn an_offsets_log_replays_to_its_end_not_its_high_watermark() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("t-0");
        run(move || async move {
            let p = open(&dir).await;
            let (me, follower) = (BrokerId(1), BrokerId(2));
            let membership = Membership {
                replicas: &[me, follower],
                isr: &[me, follower],
                partition_epoch: 0,
                min_insync: 1,
            };
            p.lead(me, 1, membership, now_ms()).await.expect("lead");
            for _ in 0..2 {
                let mut b = BatchBuilder::new();
                b.push(Some(Bytes::from_static(b"k")), None, &[], 1_700_000_000_000);
                p.produce(b.build().expect("batch"), Acks::Leader, T)
                    .await
                    .expect("produce");
            }
            assert_eq!((p.high_watermark(), p.log.log_end_offset().0), (0, 2));
            let mut seen = 0;
            let replayed = OffsetsLog::replay(&p, |_| seen += 1).await.expect("replay");
            assert_eq!((replayed, seen), (2, 2));
        });
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
            p.produce(batch, Acks::All, T).await.expect("produce");
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
            assert_eq!(
                p.produce(first.clone(), Acks::All, T)
                    .await
                    .expect("first")
                    .0,
                0
            );
            assert_eq!(
                p.produce(first, Acks::All, T)
                    .await
                    .expect("retry of first")
                    .0,
                0
            );

            fault::inject(&dir, FaultOp::Write, libc::ENOSPC);
            let second = idempotent_batch(42, 0, 3, 2);
            let e = p
                .produce(second.clone(), Acks::All, T)
                .await
                .expect_err("the disk is full");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "{e:?}");
            let e = p
                .produce(second.clone(), Acks::All, T)
                .await
                .expect_err("retry, still failing");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "retry: {e:?}");
            fault::clear(&dir);
            drop(p);

            // After a restart the retry lands, once, right after the first batch.
            let p = open(&dir).await;
            assert_eq!(
                p.produce(second.clone(), Acks::All, T)
                    .await
                    .expect("second")
                    .0,
                3
            );
            assert_eq!(
                p.produce(second, Acks::All, T).await.expect("its retry").0,
                3
            );
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
            let e = p
                .produce(batch.clone(), Acks::All, T)
                .await
                .expect_err("sync fails");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "{e:?}");
            let e = p
                .produce(batch, Acks::All, T)
                .await
                .expect_err("the log refuses writes");
            assert_eq!(e.code, ErrorKind::KafkaStorageError, "retry: {e:?}");
            fault::clear(&dir);
        });
    }

    fn one_record() -> Bytes {
        let mut b = BatchBuilder::new();
        b.push(None, Some(Bytes::from_static(b"v")), &[], 1_700_000_000_000);
        b.build().expect("batch")
    }

    /// Issue 17 §2: a replica opened again starts from its checkpointed high
    /// watermark — not from 0 (consumers would see it go backwards), and not from
    /// its own log end (records there may never have been committed).
    #[test]
    fn a_reopened_replica_starts_from_its_checkpointed_high_watermark() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("t-0");
        run(move || async move {
            let p = open(&dir).await;
            for _ in 0..3 {
                p.produce(one_record(), Acks::Leader, T)
                    .await
                    .expect("produce");
            }
            assert_eq!(p.log.log_end_offset().0, 3);
            // As a follower whose leader said 2 was committed.
            p.follow(Some(BrokerId(1)), 1);
            p.set_follower_high_watermark(2);
            assert_eq!(p.high_watermark(), 2);
            p.checkpoint_high_watermark().expect("checkpoint");
            p.log.close().await.expect("close");
            drop(p);

            let p = open(&dir).await;
            p.follow(Some(BrokerId(1)), 1);
            assert_eq!(
                p.high_watermark(),
                2,
                "follower: the checkpoint, not the log end"
            );
            drop(p);

            let p = open(&dir).await;
            let all = [BrokerId(0), BrokerId(1), BrokerId(2)];
            p.lead(
                BrokerId(0),
                2,
                Membership {
                    replicas: &all,
                    isr: &all,
                    partition_epoch: 3,
                    min_insync: 2,
                },
                now_ms(),
            )
            .await
            .expect("lead");
            assert_eq!(p.high_watermark(), 2, "leader: no follower fetched yet");
        });
    }
}
