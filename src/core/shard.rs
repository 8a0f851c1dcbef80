//! A data shard: the partitions it owns, its copy of the cluster metadata, and the
//! answers it gives to mesh requests. One per core; everything here is `!Send` and
//! touched only by its own executor.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::core::error::ErrorKind;
use glommio::TaskQueueHandle;
use ringlog_shards::{Answered, Peer, Pending, ShardId};
use ringlog_storage::{FlushPolicy, LogConfig, LogShared, PartitionLog, StorageError};
use tracing::{info, warn};

use crate::config::{topic_log_config, BrokerConfig};
use crate::core::connection_limits::ConnectionLimits;
use crate::core::error::{storage_error, unknown_partition, unreachable_owner};
use crate::core::group_coordinator::{GroupCoordinator, GroupHost};
use crate::core::memory::MemoryBudget;
use crate::core::messages::{
    Answer, BrokerMesh, FetchData, PartitionError, PartitionKey, PartitionRead, ShardRequest,
};
use crate::core::partition::{FirstBatch, Partition, Role};
use crate::core::partition_dir;
use crate::core::replica::{ReplicaWire, Source};
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::metadata::{BrokerId, ClusterMetadata, TopicMeta};
use crate::metrics::{FollowerLag, PartitionSnapshot, ShardSnapshot, ShardStats};
use crate::sync::signal::{Latch, Signal};

/// The state of one data shard.
pub struct Shard {
    pub id: ShardId,
    pub shards: u16,
    pub config: Arc<BrokerConfig>,
    pub metadata: RefCell<Arc<ClusterMetadata>>,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition>>>,
    mesh: OnceCell<BrokerMesh>,
    /// Set by the first metadata the coordinator sends: the shard may serve.
    pub ready: Latch,
    /// Set when shutdown starts: stop accepting and reading requests.
    pub stopping: Latch,
    /// Set once every log is closed.
    pub closed: Latch,
    /// Requests being handled on this shard's connections.
    inflight: Cell<usize>,
    inflight_done: Signal,
    /// Background work (retention, interval flushes) runs here, below requests.
    pub background: TaskQueueHandle,
    /// The consumer groups this shard coordinates.
    pub groups: GroupCoordinator,
    /// The last producer id this shard handed out (InitProducerId).
    last_producer_id: Cell<i64>,
    /// Counters read by the admin listener's `/metrics`.
    pub stats: ShardStats,
    /// The broker's `(retention.ms, retention.bytes)`: the config's until a reload.
    retention: Cell<(Option<u64>, Option<u64>)>,
    /// Request bytes being read or handled on this shard's connections
    /// (`queued.max.request.bytes` / shards).
    pub request_memory: Rc<MemoryBudget>,
    /// Fetch response bytes being read or queued on this shard's sockets
    /// (`queued.max.response.bytes` / shards).
    pub response_memory: Rc<MemoryBudget>,
    /// The broker's open client connections (shared by every shard).
    pub connection_limits: Arc<ConnectionLimits>,
    /// What this shard's logs share: I/O statistics (also `stats.io`), open segment
    /// files (`shard.open.files.max`) and preallocated space
    /// (`shard.preallocate.max.bytes`).
    pub logs: LogShared,
    /// How replication reaches other brokers; unset on a cluster of one.
    replica_wire: OnceCell<Rc<dyn ReplicaWire>>,
    /// The leader shards this shard's fetchers pull from, one fetcher each.
    fetchers: RefCell<BTreeSet<Source>>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        shards: u16,
        config: Arc<BrokerConfig>,
        background: TaskQueueHandle,
        connection_limits: Arc<ConnectionLimits>,
    ) -> Self {
        let limits = config.groups.clone();
        let retention = (config.log.retention_ms, config.log.retention_bytes);
        let per_shard = |total: usize| (total / usize::from(shards.max(1))).max(1);
        let request_memory = MemoryBudget::new(per_shard(config.queued_max_request_bytes));
        let response_memory = MemoryBudget::new(per_shard(config.queued_max_response_bytes));
        let stats = ShardStats::default();
        let logs = LogShared {
            stats: stats.io.clone(),
            ..LogShared::new(
                config.shard_open_files_max,
                config.shard_preallocate_max_bytes,
            )
        };
        Self {
            id,
            shards,
            config,
            metadata: RefCell::new(Arc::new(ClusterMetadata::default())),
            partitions: RefCell::new(HashMap::new()),
            mesh: OnceCell::new(),
            ready: Latch::default(),
            stopping: Latch::default(),
            closed: Latch::default(),
            inflight: Cell::new(0),
            inflight_done: Signal::default(),
            background,
            groups: GroupCoordinator::new(limits),
            last_producer_id: Cell::new(0),
            stats,
            retention: Cell::new(retention),
            request_memory,
            response_memory,
            connection_limits,
            logs,
            replica_wire: OnceCell::new(),
            fetchers: RefCell::new(BTreeSet::new()),
        }
    }

    /// Gives the shard the wire replication uses (the daemon does, for a cluster
    /// member).
    pub fn set_replica_wire(&self, wire: Rc<dyn ReplicaWire>) {
        let _ = self.replica_wire.set(wire);
    }

    pub fn replica_wire(&self) -> Option<Rc<dyn ReplicaWire>> {
        self.replica_wire.get().cloned()
    }

    /// A fetcher stopped (nothing left to follow there, or shutdown).
    pub fn fetcher_done(&self, source: Source) {
        self.fetchers.borrow_mut().remove(&source);
    }

    /// Where a voter's inter-broker listener is (`controller.quorum.voters`).
    pub fn voter_addr(&self, broker: BrokerId) -> Option<std::net::SocketAddr> {
        self.config
            .controller_voters
            .iter()
            .find(|(id, _)| *id == broker.0)
            .map(|(_, a)| *a)
    }

    /// A partition this shard holds a replica of.
    pub fn partition(&self, key: &PartitionKey) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(key).cloned()
    }

    /// Every partition this shard holds a replica of.
    pub fn partitions_snapshot(&self) -> Vec<(PartitionKey, Rc<Partition>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    pub fn set_mesh(&self, mesh: BrokerMesh) {
        let _ = self.mesh.set(mesh);
    }

    /// The mesh; set right after the shard joins it, before any request is served.
    pub fn mesh(&self) -> &BrokerMesh {
        self.mesh
            .get()
            .expect("the mesh is joined before requests are served")
    }

    pub fn broker_id(&self) -> BrokerId {
        BrokerId(self.config.broker_id)
    }

    /// The shard owning a partition, or the error a client should see.
    pub fn owner_of(&self, topic: &str, partition: i32) -> Result<ShardId, PartitionError> {
        let md = self.metadata.borrow();
        let t = md
            .topics
            .get(topic)
            .ok_or_else(|| unknown_partition(topic, partition))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
            .ok_or_else(|| unknown_partition(topic, partition))?;
        if p.leader.is_none() {
            return Err(PartitionError::new(
                ErrorKind::LeaderNotAvailable,
                format!(
                    "{topic}-{partition} has no leader: no in-sync replica is alive (unclean.leader.election.enable would let a replica outside the ISR lead, losing what only the ISR held)"
                ),
            ));
        }
        if p.leader != Some(self.broker_id()) {
            return Err(PartitionError::new(
                ErrorKind::NotLeaderOrFollower,
                format!(
                    "broker {} does not lead {topic}-{partition}",
                    self.config.broker_id
                ),
            ));
        }
        Ok(ClusterMetadata::shard_of(t, partition, self.shards))
    }

    /// Routes a partition request to its owner and returns the pending answer.
    pub async fn send_to_owner<T: Send + 'static>(
        &self,
        key: &PartitionKey,
        request: impl FnOnce(Answer<T>) -> ShardRequest,
    ) -> Result<Pending<T>, PartitionError> {
        let owner = self.owner_of(&key.topic, key.partition)?;
        self.mesh()
            .send_to_shard(owner, request)
            .await
            .map_err(|e| unreachable_owner(&e))
    }

    /// A producer id no other producer of this broker has had, across restarts:
    /// `unix_ms << 20 | shard << 12 | n`, increasing on each shard (ids handed out
    /// within one millisecond take the next numbers, and borrow from the next
    /// millisecond when 4,096 are not enough).
    pub fn new_producer_id(&self) -> i64 {
        let now_ms = crate::time::now_ms();
        let shard = i64::from(self.id.0 & 0xff);
        let floor = (now_ms << 20) | (shard << 12);
        let last = self.last_producer_id.get();
        let id = if floor > last {
            floor
        } else if last & 0xfff == 0xfff {
            // This millisecond's numbers are used up: the next one's first.
            (((last >> 20) + 1) << 20) | (shard << 12)
        } else {
            last + 1
        };
        self.last_producer_id.set(id);
        id
    }

    /// Partition count of `topic`, if it exists.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.metadata
            .borrow()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32)
    }

    /// Runs the group coordinator's timers (session expiry, rebalance ends) until
    /// shutdown.
    pub async fn group_timers(self: Rc<Self>) {
        let stopping = async {
            self.stopping.wait().await;
        };
        self.groups.tick_loop(&*self, stopping).await;
    }

    /// Reads `reads` of partitions this shard owns, in order, within `limit` bytes
    /// in all: the first data always comes (one batch may exceed the limit, as in
    /// Kafka); after it, a partition whose next batch does not fit what is left
    /// gets no data, and once nothing is left the rest are not read at all.
    async fn fetch(
        &self,
        reads: Vec<PartitionRead>,
        limit: usize,
    ) -> Vec<Result<FetchData, PartitionError>> {
        let mut left = limit;
        let mut sent_any = false;
        let mut out = Vec::with_capacity(reads.len());
        for r in reads {
            let p = match self.local(&r.key) {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let want = u32::try_from(left).unwrap_or(u32::MAX).min(r.max_bytes);
            let read = if sent_any {
                p.fetch(r.offset, want, FirstBatch::WithinLimit).await
            } else {
                p.fetch(r.offset, want.max(1), FirstBatch::Always).await
            };
            if let Ok(data) = &read {
                let size: usize = data.batches.iter().map(bytes::Bytes::len).sum();
                if size > 0 {
                    left = left.saturating_sub(size);
                    sent_any = true;
                }
            }
            out.push(read);
        }
        out
    }

    fn local(&self, key: &PartitionKey) -> Result<Rc<Partition>, PartitionError> {
        if self.closed.is_set() {
            return Err(PartitionError::new(
                ErrorKind::ShuttingDown,
                "the broker is shutting down",
            ));
        }
        self.partitions
            .borrow()
            .get(key)
            .cloned()
            .ok_or_else(|| unknown_partition(&key.topic, key.partition))
    }

    /// Answers a request from the mesh (or from this shard itself).
    pub async fn handle(self: Rc<Self>, _from: Peer, request: ShardRequest) -> Answered {
        match request {
            ShardRequest::Apply { metadata, answer } => {
                self.apply(metadata).await;
                answer.send(())
            }
            ShardRequest::Shutdown { answer } => {
                self.stopping.set();
                self.closed.wait().await;
                answer.send(())
            }
            ShardRequest::Produce {
                key,
                records,
                acks,
                timeout,
                answer,
            } => answer.send(match self.local(&key) {
                Ok(p) => p.produce(records, acks, timeout).await,
                Err(e) => Err(e),
            }),
            ShardRequest::ReplicaFetch { fetch, answer } => {
                answer.send(crate::core::replica::serve_fetch(&self, fetch).await)
            }
            ShardRequest::AdoptReplicaConnection {
                fd,
                follower,
                answer,
            } => {
                match self.replica_wire() {
                    Some(wire) => wire.serve(self.clone(), fd, follower),
                    None => {
                        // SAFETY: the descriptor was handed to this shard to own.
                        unsafe { libc::close(fd) };
                    }
                }
                answer.send(())
            }
            ShardRequest::Fetch {
                reads,
                limit,
                answer,
            } => answer.send(self.fetch(reads, limit).await),
            ShardRequest::WaitForData {
                waits,
                deadline,
                answer,
            } => {
                let parts: Vec<(Rc<Partition>, i64)> = waits
                    .into_iter()
                    .filter_map(|(key, offset)| Some((self.local(&key).ok()?, offset)))
                    .collect();
                let stopping = async {
                    self.stopping.wait().await;
                };
                futures_lite::future::or(wait_for_any(&parts, deadline), stopping).await;
                answer.send(())
            }
            ShardRequest::ListOffset {
                key,
                timestamp,
                answer,
            } => answer.send(match self.local(&key) {
                Ok(p) => list_offset(&p, timestamp).await,
                Err(e) => Err(e),
            }),
            ShardRequest::Offsets { key, answer } => {
                answer.send(self.local(&key).map(|p| p.offsets()))
            }
            ShardRequest::EpochEnd { key, query, answer } => {
                answer.send(self.local(&key).and_then(|p| p.epoch_end(query)))
            }
            ShardRequest::Group(call) => self.groups.handle(&*self, call).await,
        }
    }

    /// Adopts new metadata: opens the partitions this shard now owns and closes the
    /// ones it no longer does (their directories are then the coordinator's to remove).
    async fn apply(self: &Rc<Self>, md: Arc<ClusterMetadata>) {
        let me = self.broker_id();
        let mut wanted: BTreeMap<PartitionKey, &TopicMeta> = BTreeMap::new();
        for t in md.topics.values() {
            for p in &t.partitions {
                if p.replicas.contains(&me)
                    && ClusterMetadata::shard_of(t, p.partition, self.shards) == self.id
                {
                    wanted.insert(
                        PartitionKey {
                            topic: t.name.clone(),
                            partition: p.partition,
                        },
                        t,
                    );
                }
            }
        }
        let dropped: Vec<(PartitionKey, Rc<Partition>)> = {
            let mut parts = self.partitions.borrow_mut();
            let gone: Vec<PartitionKey> = parts
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|k| parts.remove(&k).map(|p| (k, p)))
                .collect()
        };
        for (key, p) in dropped {
            p.wake_waiters();
            if let Err(e) = p.log.close().await {
                warn!(topic = %key.topic, partition = key.partition, error = %e, "closing a dropped partition failed");
            }
        }
        for (key, topic) in wanted {
            if self.partitions.borrow().contains_key(&key) {
                continue;
            }
            match open_partition(
                &self.config,
                &self.log_defaults(),
                &self.logs,
                topic,
                key.partition,
            )
            .await
            {
                Ok(p) => {
                    self.partitions.borrow_mut().insert(key, Rc::new(p));
                }
                Err(e) => {
                    warn!(topic = %key.topic, partition = key.partition, error = %e, "cannot open partition log; it stays offline");
                }
            }
        }
        *self.metadata.borrow_mut() = md.clone();
        // A topic's retention may have been altered.
        self.sync_retention();
        self.assign_roles(&md).await;
        self.ready.set();
    }

    /// Gives every partition its role under `md` (lead, follow, or wait for a
    /// leader) and starts a fetcher for each leader shard followed and not yet
    /// pulled from.
    async fn assign_roles(self: &Rc<Self>, md: &ClusterMetadata) {
        let me = self.broker_id();
        let now = crate::time::now_ms();
        let mut followed = Vec::new();
        for (key, p) in self.partitions_snapshot() {
            let Some((topic, meta)) = md.topics.get(&key.topic).and_then(|t| {
                usize::try_from(key.partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
                    .map(|meta| (t, meta))
            }) else {
                continue;
            };
            if meta.leader == Some(me) {
                let min_insync = crate::config::topic_min_insync_replicas(
                    self.config.min_insync_replicas,
                    &topic.configs,
                );
                let min_insync = usize::try_from(min_insync).unwrap_or(1);
                if let Err(e) = p
                    .lead(
                        me,
                        meta.leader_epoch,
                        crate::replication::leader::Membership {
                            replicas: &meta.replicas,
                            isr: &meta.isr,
                            partition_epoch: meta.partition_epoch,
                            min_insync,
                        },
                        now,
                    )
                    .await
                {
                    warn!(topic = %key.topic, partition = key.partition, error = %e.message, "cannot take leadership");
                }
                continue;
            }
            if key.topic == OFFSETS_TOPIC {
                self.groups.resign(&**self, key.partition);
            }
            let same = matches!(p.role(), Role::Follower { leader, epoch, .. }
                if leader == meta.leader && epoch == meta.leader_epoch);
            if !same {
                p.follow(meta.leader, meta.leader_epoch);
            }
            if let Some(leader) = meta.leader {
                followed.push((key, leader));
            }
        }
        if self.replica_wire.get().is_none() {
            return;
        }
        for source in crate::core::replica::sources(md, &followed) {
            if self.fetchers.borrow_mut().insert(source) {
                glommio::spawn_local(crate::core::replica::run_fetcher(self.clone(), source))
                    .detach();
            }
        }
    }

    /// Counts a request in flight on this shard; dropping the guard counts it out.
    /// The broker's log settings as they are now (retention may have been reloaded);
    /// topic configs apply over them.
    pub fn log_defaults(&self) -> LogConfig {
        let mut log = self.config.log.clone();
        (log.retention_ms, log.retention_bytes) = self.retention.get();
        log
    }

    /// Applies reloaded broker retention to every partition without its own (topic
    /// configs still win); returns how many partitions it changed.
    pub fn set_retention(&self, retention_ms: Option<u64>, retention_bytes: Option<u64>) -> usize {
        self.retention.set((retention_ms, retention_bytes));
        self.sync_retention()
    }

    /// Gives every open partition the retention its topic's configs and the
    /// broker's settings say now; returns how many changed.
    fn sync_retention(&self) -> usize {
        let base = self.log_defaults();
        let md = self.metadata.borrow().clone();
        let mut changed = 0;
        for (key, p) in self.partitions.borrow().iter() {
            let Some(topic) = md.topics.get(&key.topic) else {
                continue;
            };
            match topic_log_config(&base, &topic.configs) {
                Ok(log) => {
                    if p.log.retention() != (log.retention_ms, log.retention_bytes) {
                        p.log.set_retention(log.retention_ms, log.retention_bytes);
                        changed += 1;
                    }
                }
                Err(e) => {
                    warn!(topic = %key.topic, partition = key.partition, error = %e, "retention not reloaded")
                }
            }
        }
        changed
    }

    /// This shard's numbers for `/metrics`: counters, every partition it leads with
    /// its offsets as they are now, and the committed offsets of its groups.
    pub fn metrics_snapshot(&self) -> ShardSnapshot {
        let mut snap = self.stats.snapshot(self.id.0);
        let md = self.metadata.borrow().clone();
        let parts = self.partitions.borrow();
        snap.partitions = parts
            .iter()
            .map(|(key, p)| {
                let meta = md.topics.get(&key.topic).and_then(|t| {
                    usize::try_from(key.partition)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                });
                let offsets = p.offsets();
                let now = crate::time::now_ms();
                let (leader, min_insync, followers) = match p.role() {
                    Role::Standalone => (true, 0, Vec::new()),
                    Role::Follower { .. } => (false, 0, Vec::new()),
                    Role::Leader { replicas, .. } => {
                        let followers = replicas
                            .followers()
                            .map(|(broker, f)| FollowerLag {
                                broker: broker.0,
                                records: replicas.leader_end()
                                    - f.end_offset.max(offsets.log_start),
                                since_caught_up_ms: (now - f.caught_up_ms).max(0),
                            })
                            .collect();
                        (true, replicas.min_insync(), followers)
                    }
                };
                PartitionSnapshot {
                    topic: key.topic.clone(),
                    partition: key.partition,
                    log_start: offsets.log_start,
                    log_end: offsets.log_end,
                    high_watermark: offsets.high_watermark,
                    size_bytes: p.log.size_bytes(),
                    segments: p.log.segment_count(),
                    replicas: meta.map_or(0, |m| m.replicas.len()),
                    in_sync_replicas: meta.map_or(0, |m| m.isr.len()),
                    leader,
                    min_insync,
                    followers,
                    bytes_replicated: p.stats.bytes_replicated.get(),
                    records_replicated: p.stats.records_replicated.get(),
                    log_failed: p.log.failure().is_some(),
                    producers: p.producer_count(),
                    bytes_in: p.stats.bytes_in.get(),
                    records_in: p.stats.records_in.get(),
                    bytes_out: p.stats.bytes_out.get(),
                    records_out: p.stats.records_out.get(),
                }
            })
            .collect();
        snap.partitions
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        snap.committed = self.groups.committed_offsets();
        let waiting: usize = parts.values().map(|p| p.waiters()).sum();
        snap.waiters = (waiting + self.stopping.waiters()) as u64;
        snap.open_segment_files = self.logs.files.open_now() as u64;
        snap.segment_file_reopens = self.logs.files.reopened();
        snap.preallocated_unused_bytes = self.logs.space.unused();
        snap.offsets_records_skipped = self.groups.skipped_records.get();
        snap.memory = [
            ("request", &self.request_memory),
            ("response", &self.response_memory),
        ]
        .into_iter()
        .map(|(kind, m)| crate::metrics::MemorySnapshot {
            kind,
            used_bytes: m.used() as u64,
            capacity_bytes: m.capacity() as u64,
            waits: m.waits(),
        })
        .collect();
        snap
    }

    /// Answers the admin thread's questions until it goes away or the shard stops.
    pub async fn answer_queries(
        self: Rc<Self>,
        queries: flume::Receiver<crate::metrics::ShardQuery>,
    ) {
        use crate::metrics::ShardQuery;
        loop {
            let stop = async {
                self.closed.wait().await;
                None
            };
            let next = async { queries.recv_async().await.ok() };
            match futures_lite::future::or(next, stop).await {
                Some(ShardQuery::Snapshot(reply)) => {
                    let _ = reply.send(self.metrics_snapshot());
                }
                Some(ShardQuery::Ping(reply)) => {
                    let _ = reply.send(());
                }
                Some(ShardQuery::Retention { ms, bytes, reply }) => {
                    let _ = reply.send(self.set_retention(ms, bytes));
                }
                None => return,
            }
        }
    }

    pub fn begin_request(self: &Rc<Self>) -> InflightGuard {
        self.inflight.set(self.inflight.get() + 1);
        InflightGuard {
            shard: self.clone(),
        }
    }

    /// Finishes shutdown: waits (bounded) for in-flight requests, then closes every log
    /// cleanly (flush, indexes, clean-shutdown marker).
    pub async fn drain_and_close(&self, bound: Duration) {
        let deadline = std::time::Instant::now() + bound;
        for p in self.partitions.borrow().values() {
            p.wake_waiters();
        }
        while self.inflight.get() > 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                warn!(shard = %self.id, inflight = self.inflight.get(), "shutdown stops waiting for in-flight requests");
                break;
            }
            let timer = async {
                glommio::timer::sleep(deadline - now).await;
            };
            futures_lite::future::or(self.inflight_done.wait(), timer).await;
        }
        let parts: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        let count = parts.len();
        for p in parts {
            p.snapshot_producers().await;
            if let Err(e) = p.checkpoint_high_watermark() {
                warn!(topic = %p.topic, partition = p.partition, error = %e, "high-watermark checkpoint not written");
            }
            if let Err(e) = p.log.close().await {
                warn!(topic = %p.topic, partition = p.partition, error = %e, "clean close failed; the next start recovers this log");
            }
        }
        info!(shard = %self.id, partitions = count, "shard closed its logs");
        self.closed.set();
    }

    /// Runs retention and interval flushes until shutdown.
    pub async fn background_loop(self: Rc<Self>) {
        let checks = self
            .config
            .retention_check_interval
            .min(self.config.producer_id_expiration_check_interval)
            .min(self.config.log_cleaner_backoff)
            .min(self.config.replica_hw_checkpoint_interval);
        let interval = match self.config.log.flush {
            FlushPolicy::Interval(every) => every.min(checks),
            _ => checks,
        };
        let mut since_retention = Duration::ZERO;
        let mut since_expiry = Duration::ZERO;
        let mut since_cleaning = Duration::ZERO;
        let mut since_checkpoint = Duration::ZERO;
        loop {
            let stopping = async {
                self.stopping.wait().await;
                true
            };
            let tick = async {
                glommio::timer::sleep(interval).await;
                false
            };
            if futures_lite::future::or(stopping, tick).await {
                return;
            }
            since_retention += interval;
            since_expiry += interval;
            since_cleaning += interval;
            since_checkpoint += interval;
            let checkpoint_due = since_checkpoint >= self.config.replica_hw_checkpoint_interval;
            if checkpoint_due {
                since_checkpoint = Duration::ZERO;
            }
            let cleaning_due = since_cleaning >= self.config.log_cleaner_backoff;
            if cleaning_due {
                since_cleaning = Duration::ZERO;
            }
            let expiry_due = since_expiry >= self.config.producer_id_expiration_check_interval;
            if expiry_due {
                since_expiry = Duration::ZERO;
            }
            let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
            let retention_due = since_retention >= self.config.retention_check_interval;
            if retention_due {
                since_retention = Duration::ZERO;
            }
            let now_ms = crate::time::now_ms();
            for p in parts {
                if let Err(e) = p.log.flush_if_due().await {
                    warn!(topic = %p.topic, partition = p.partition, error = %e, "interval flush failed");
                }
                if checkpoint_due {
                    if let Err(e) = p.checkpoint_high_watermark() {
                        warn!(topic = %p.topic, partition = p.partition, error = %e, "high-watermark checkpoint not written");
                    }
                }
                if expiry_due {
                    let expired = p.expire_producers(now_ms, self.config.producer_id_expiration_ms);
                    if expired > 0 {
                        info!(topic = %p.topic, partition = p.partition, expired, "idempotent producers expired (producer.id.expiration.ms)");
                    }
                }
                if cleaning_due {
                    match p.log.compact(now_ms).await {
                        Ok(Some(report)) => {
                            self.stats.compacted(report.records_removed);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(topic = %p.topic, partition = p.partition, error = %e, "compaction failed")
                        }
                    }
                }
                if retention_due {
                    if let Err(e) = p.log.enforce_retention(now_ms).await {
                        warn!(topic = %p.topic, partition = p.partition, error = %e, "retention failed");
                    }
                }
                glommio::yield_if_needed().await;
            }
        }
    }
}

/// The group coordinator's view of its shard: the metadata, and the
/// `__consumer_offsets` partitions the shard owns.
impl GroupHost for Shard {
    type Log = Partition;

    fn partition_count(&self, topic: &str) -> Option<i32> {
        Shard::partition_count(self, topic)
    }

    fn offsets_partition_of(&self, group: &str) -> i32 {
        crate::core::groups::offsets_partition(self, group)
    }

    fn owned_offsets_partitions(&self) -> Vec<i32> {
        let n = self.partition_count(OFFSETS_TOPIC).unwrap_or(0);
        (0..n)
            .filter(|p| self.owner_of(OFFSETS_TOPIC, *p).is_ok_and(|s| s == self.id))
            .collect()
    }

    fn offsets_log(&self, p: i32) -> Result<Rc<Partition>, PartitionError> {
        self.local(&PartitionKey::new(OFFSETS_TOPIC, p))
    }
}

/// Decrements the shard's in-flight count when dropped.
pub struct InflightGuard {
    shard: Rc<Shard>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let n = self.shard.inflight.get().saturating_sub(1);
        self.shard.inflight.set(n);
        if n == 0 {
            self.shard.inflight_done.notify();
        }
    }
}

async fn open_partition(
    config: &BrokerConfig,
    log_defaults: &LogConfig,
    logs: &LogShared,
    topic: &TopicMeta,
    partition: i32,
) -> Result<Partition, StorageError> {
    let log_config =
        topic_log_config(log_defaults, &topic.configs).map_err(StorageError::Config)?;
    let dir = Partition::dir(&config.data_dir, &topic.name, partition);
    // A directory left by a deleted incarnation of this topic is never served.
    let state = partition_dir::check(&dir, &topic.id);
    if let partition_dir::DirState::Stale(old) = &state {
        warn!(topic = %topic.name, partition, old_topic_id = %old, topic_id = %topic.id,
              "removing the directory of a deleted incarnation of this topic");
        if !partition_dir::remove(&config.data_dir, &dir) {
            return Err(StorageError::Config(format!(
                "{} holds a deleted topic's data and cannot be removed",
                dir.display()
            )));
        }
    }
    let log = PartitionLog::open_shared(&dir, log_config, logs.clone()).await?;
    if state != partition_dir::DirState::Ours && !topic.id.is_empty() {
        partition_dir::mark(&dir, &topic.id).map_err(|e| StorageError::Io {
            op: "write",
            path: dir.join(partition_dir::PARTITION_METADATA),
            source: e,
        })?;
    }
    let report = log.open_report();
    info!(
        topic = %topic.name,
        partition,
        clean = report.clean,
        segments_scanned = report.segments_scanned,
        truncated_bytes = report.truncated_bytes,
        log_start = log.log_start_offset().0,
        log_end = log.log_end_offset().0,
        "opened partition"
    );
    Ok(Partition::new(topic.name.clone(), partition, log))
}

/// Resolves once the high watermark of any of `parts` passes its offset, or at
/// `deadline`. Each partition's signal is registered once per wake-up: linear in
/// the partitions asked for, and nothing is left registered when it returns.
async fn wait_for_any(parts: &[(Rc<Partition>, i64)], deadline: std::time::Instant) {
    loop {
        if parts.iter().any(|(p, offset)| p.high_watermark() > *offset) || parts.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        use std::future::Future;
        let mut arrivals: Vec<_> = parts.iter().map(|(p, _)| Box::pin(p.arrived())).collect();
        let any = std::future::poll_fn(|cx| {
            let mut ready = false;
            for a in &mut arrivals {
                ready |= a.as_mut().poll(cx).is_ready();
            }
            if ready {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        let timer = async {
            glommio::timer::sleep(deadline - now).await;
        };
        futures_lite::future::or(any, timer).await;
    }
}

/// Kafka's ListOffsets queries: earliest (-2), latest (-1), the record with the
/// largest timestamp (-3), or the first record at or after a time. Returns the
/// offset and the found record's timestamp (-1 for earliest and latest, and
/// (-1, -1) when no record qualifies).
async fn list_offset(p: &Partition, timestamp: i64) -> Result<(i64, i64), PartitionError> {
    const NOT_FOUND: (i64, i64) = (-1, -1);
    let by_time = |ts: i64| async move {
        let found = p
            .log
            .offset_for_timestamp(ts)
            .await
            .map_err(|e| storage_error(&e))?;
        // Only what consumers may read is found.
        Ok(found
            .filter(|(o, _)| o.0 < p.high_watermark())
            .map_or(NOT_FOUND, |(o, t)| (o.0, t)))
    };
    match timestamp {
        -2 => Ok((p.log.log_start_offset().0, -1)),
        -1 => Ok((p.high_watermark(), -1)),
        -3 => match p.log.max_timestamp() {
            Some(max) => by_time(max).await,
            None => Ok(NOT_FOUND),
        },
        ts if ts >= 0 => by_time(ts).await,
        other => Err(PartitionError::new(
            ErrorKind::InvalidRequest,
            format!(
                "timestamp {other}: use -2 (earliest), -1 (latest), -3 (max timestamp) or a time in ms"
            ),
        )),
    }
}
