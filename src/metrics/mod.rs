//! What the broker counts about itself, and how the admin listener gets it (the same
//! channel carries a reload's retention to the shards).
//!
//! Counting is shard-local: each shard keeps [`ShardStats`] and each partition its
//! [`PartitionStats`] in plain `Cell`s (the data path pays an add, no atomic, no lock),
//! and the storage logs of a shard share one [`IoStats`]. The admin thread never reads
//! them directly: it asks every shard for a [`ShardSnapshot`] over a channel and the
//! shard copies its numbers on its own executor. Gauges (log offsets, committed
//! offsets, partition counts) are read from the live state at that moment, so nothing
//! is mirrored. A shard that does not answer in time shows as `ringlog_shard_up 0`.

pub mod log_writer;
pub mod render;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ringlog_storage::stats::{bump, Histogram, HistogramSnapshot, IoStats, LATENCY_BOUNDS_US};

/// Unclean leader elections this broker committed as the active controller
/// (process-wide: the controller runs on the coordination executor, which has
/// no shard snapshot of its own).
static UNCLEAN_ELECTIONS: AtomicU64 = AtomicU64::new(0);

/// Counts an unclean leader election committed by this broker's controller.
pub fn count_unclean_election() {
    UNCLEAN_ELECTIONS.fetch_add(1, Ordering::Relaxed);
}

/// Unclean leader elections this broker committed as the active controller.
pub fn unclean_elections() -> u64 {
    UNCLEAN_ELECTIONS.load(Ordering::Relaxed)
}

/// Why a connection was closed at accept: which limit it was over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `max.connections` are open.
    Broker = 0,
    /// `max.connections.per.ip` are open from this address.
    PerAddress = 1,
}

impl ConnectionRefusal {
    /// The config key of the limit, the metric's label.
    pub fn key(self) -> &'static str {
        match self {
            ConnectionRefusal::Broker => "max.connections",
            ConnectionRefusal::PerAddress => "max.connections.per.ip",
        }
    }
}

/// The wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Native = 0,
    Kafka = 1,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Native, Protocol::Kafka];
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::Kafka => "kafka",
        }
    }
}

/// Requests timed apart: the two on the data path, and everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Produce = 0,
    Fetch = 1,
    Other = 2,
}

impl RequestKind {
    pub const ALL: [RequestKind; 3] =
        [RequestKind::Produce, RequestKind::Fetch, RequestKind::Other];
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::Produce => "produce",
            RequestKind::Fetch => "fetch",
            RequestKind::Other => "other",
        }
    }
}

/// Bucket bounds of the replication lag, µs: finer than the request latency's
/// around the milliseconds a follower takes, since its p50 and p99 are what
/// acks=all costs.
pub const REPLICATION_LAG_BOUNDS_US: &[u64] = &[
    100, 200, 300, 400, 500, 750, 1_000, 1_250, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 7_500,
    10_000, 15_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

const PROTOCOLS: usize = Protocol::ALL.len();
const KINDS: usize = RequestKind::ALL.len();

/// One shard's counters. Owned by the shard's executor.
pub struct ShardStats {
    /// Shared by every log the shard opens.
    pub io: Rc<IoStats>,
    /// Time from a request's last byte read to its answer being ready, µs.
    latency_us: [[Histogram; KINDS]; PROTOCOLS],
    connections_open: [Cell<u64>; PROTOCOLS],
    connections_accepted: [Cell<u64>; PROTOCOLS],
    /// Connections closed at accept for being over `max.connections` (0) or
    /// `max.connections.per.ip` (1).
    connections_refused: [Cell<u64>; 2],
    /// Compaction passes that rewrote something, and the records they removed.
    compactions: Cell<u64>,
    compacted_records: Cell<u64>,
    /// ISR changes this shard's leaders had committed: members dropped, added.
    pub isr_shrinks: Cell<u64>,
    pub isr_expands: Cell<u64>,
    /// From an append on a partition this shard leads to the fetch in which a
    /// follower reported it durable, µs (one sample per follower and append).
    pub replication_lag_us: Histogram,
}

impl Default for ShardStats {
    fn default() -> Self {
        Self {
            io: Rc::default(),
            latency_us: std::array::from_fn(|_| {
                std::array::from_fn(|_| Histogram::new(LATENCY_BOUNDS_US))
            }),
            connections_open: Default::default(),
            connections_accepted: Default::default(),
            connections_refused: Default::default(),
            compactions: Cell::new(0),
            compacted_records: Cell::new(0),
            isr_shrinks: Cell::new(0),
            isr_expands: Cell::new(0),
            replication_lag_us: Histogram::new(REPLICATION_LAG_BOUNDS_US),
        }
    }
}

impl ShardStats {
    /// Counts one answered request that started at `started`.
    pub fn request_done(&self, protocol: Protocol, kind: RequestKind, started: Instant) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency_us[protocol as usize][kind as usize].record(us);
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection(&self, protocol: Protocol) -> ConnectionGuard<'_> {
        let i = protocol as usize;
        bump(&self.connections_accepted[i]);
        bump(&self.connections_open[i]);
        ConnectionGuard {
            open: &self.connections_open[i],
        }
    }

    /// Counts a compaction pass and the records it removed.
    pub fn compacted(&self, records_removed: u64) {
        bump(&self.compactions);
        self.compacted_records
            .set(self.compacted_records.get() + records_removed);
    }

    /// Counts a connection closed at accept for being over a limit.
    pub fn connection_refused(&self, why: ConnectionRefusal) {
        bump(&self.connections_refused[why as usize]);
    }

    /// The shard-wide part of a snapshot (partitions and groups are added by the shard).
    pub fn snapshot(&self, shard: u16) -> ShardSnapshot {
        let mut requests = Vec::with_capacity(PROTOCOLS * KINDS);
        let mut connections = Vec::with_capacity(PROTOCOLS);
        for p in Protocol::ALL {
            for k in RequestKind::ALL {
                requests.push(RequestSnapshot {
                    protocol: p.label(),
                    request: k.label(),
                    latency_us: self.latency_us[p as usize][k as usize].snapshot(),
                });
            }
            connections.push(ConnectionSnapshot {
                protocol: p.label(),
                open: self.connections_open[p as usize].get(),
                accepted: self.connections_accepted[p as usize].get(),
            });
        }
        ShardSnapshot {
            shard,
            requests,
            connections,
            fdatasync_us: self.io.fdatasync_us.snapshot(),
            commit_records: self.io.commit_records.snapshot(),
            commit_write_us: self.io.commit_write_us.snapshot(),
            cache_hits: self.io.cache_hits.get(),
            cache_misses: self.io.cache_misses.get(),
            waiters: 0,
            connections_refused: [
                self.connections_refused[0].get(),
                self.connections_refused[1].get(),
            ],
            memory: Vec::new(),
            open_segment_files: 0,
            segment_file_reopens: 0,
            preallocated_unused_bytes: 0,
            offsets_records_skipped: 0,
            compactions: self.compactions.get(),
            compacted_records: self.compacted_records.get(),
            isr_shrinks: self.isr_shrinks.get(),
            isr_expands: self.isr_expands.get(),
            replication_lag_us: self.replication_lag_us.snapshot(),
            partitions: Vec::new(),
            committed: Vec::new(),
        }
    }
}

/// Keeps a connection counted as open.
pub struct ConnectionGuard<'a> {
    open: &'a Cell<u64>,
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
    }
}

/// One partition's traffic, counted by its owner shard.
#[derive(Debug, Default)]
pub struct PartitionStats {
    pub bytes_in: Cell<u64>,
    pub records_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub records_out: Cell<u64>,
    /// Copied from the leader, on a follower.
    pub bytes_replicated: Cell<u64>,
    pub records_replicated: Cell<u64>,
}

impl PartitionStats {
    pub fn produced(&self, bytes: u64, records: u64) {
        add(&self.bytes_in, bytes);
        add(&self.records_in, records);
    }
    pub fn fetched(&self, bytes: u64, records: u64) {
        add(&self.bytes_out, bytes);
        add(&self.records_out, records);
    }
    pub fn replicated(&self, bytes: u64, records: u64) {
        add(&self.bytes_replicated, bytes);
        add(&self.records_replicated, records);
    }
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// A shard's numbers at one moment, sent to the admin thread.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: u16,
    pub requests: Vec<RequestSnapshot>,
    pub connections: Vec<ConnectionSnapshot>,
    pub fdatasync_us: HistogramSnapshot,
    pub commit_records: HistogramSnapshot,
    pub commit_write_us: HistogramSnapshot,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Tasks waiting on the shard's signals (long-polling fetches, shutdown).
    pub waiters: u64,
    /// Connections refused at accept: over `max.connections`, over
    /// `max.connections.per.ip`.
    pub connections_refused: [u64; 2],
    /// The shard's memory budgets: (kind, bytes reserved, capacity, waits so far).
    pub memory: Vec<MemorySnapshot>,
    /// Segment files open now, and reopened after being closed as cold.
    pub open_segment_files: u64,
    pub segment_file_reopens: u64,
    /// Bytes the shard's logs hold allocated past their data.
    pub preallocated_unused_bytes: u64,
    /// Records of `__consumer_offsets` skipped at load because they do not parse.
    pub offsets_records_skipped: u64,
    /// Compaction passes and the records they removed.
    pub compactions: u64,
    pub compacted_records: u64,
    /// ISR changes committed for this shard's leaders.
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub replication_lag_us: HistogramSnapshot,
    pub partitions: Vec<PartitionSnapshot>,
    /// Committed offsets of the groups this shard coordinates (loaded ones).
    pub committed: Vec<CommittedOffset>,
}

/// One memory budget of a shard.
#[derive(Clone, Debug)]
pub struct MemorySnapshot {
    /// `request` or `response`.
    pub kind: &'static str,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    /// Reservations that had to wait since start.
    pub waits: u64,
}

#[derive(Clone, Debug)]
pub struct RequestSnapshot {
    pub protocol: &'static str,
    pub request: &'static str,
    pub latency_us: HistogramSnapshot,
}

#[derive(Clone, Debug)]
pub struct ConnectionSnapshot {
    pub protocol: &'static str,
    pub open: u64,
    pub accepted: u64,
}

#[derive(Clone, Debug, Default)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub log_end: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: usize,
    pub replicas: usize,
    pub in_sync_replicas: usize,
    /// Whether this broker leads the partition (or runs it alone): the
    /// partition-health gauges count leaders only, so a cluster's sum counts each
    /// partition once.
    pub leader: bool,
    /// `min.insync.replicas` as it applies to the partition (leaders only; 0 otherwise).
    pub min_insync: usize,
    /// Each follower as the leader sees it (leaders only).
    pub followers: Vec<FollowerLag>,
    /// Copied from the leader and made durable, on a follower.
    pub bytes_replicated: u64,
    pub records_replicated: u64,
    /// The log refuses writes (a write or fdatasync failed: a full or failing disk).
    pub log_failed: bool,
    /// Idempotent producers the partition tracks.
    pub producers: usize,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// How far one follower is behind its leader, as the leader knows from its fetches.
#[derive(Clone, Debug, Default)]
pub struct FollowerLag {
    pub broker: i32,
    /// The leader's durable log end less the follower's (the whole log before the
    /// follower's first fetch of this leadership).
    pub records: i64,
    /// Since the follower was last caught up with the leader's log end (Kafka's
    /// `lastCaughtUpTimeMs`), ms.
    pub since_caught_up_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What the admin thread asks a shard.
pub enum ShardQuery {
    /// Copy your numbers.
    Snapshot(flume::Sender<ShardSnapshot>),
    /// Answer if your executor is running tasks (liveness).
    Ping(flume::Sender<()>),
    /// Take this broker retention (a reload); answer how many partitions changed.
    Retention {
        ms: Option<u64>,
        bytes: Option<u64>,
        reply: flume::Sender<usize>,
    },
}
