//! Partition replication on the data shards (issue 17, DESIGN §5), in the core's
//! own types; the inter-broker adapter carries them (`peer/replica.rs`).
//!
//! Followers pull. Each follower shard keeps one fetcher per (leader broker,
//! leader shard) it follows partitions from: a long poll over all of them, on a
//! connection the leader's inter-broker listener handed to the leader shard that
//! owns them, so neither side hops between cores. A fetch names, per partition,
//! the follower's log end (the fetch offset), its durable log end and the epoch
//! of its last batch; the leader checks the epochs, answers a diverging epoch
//! instead of records when the follower's suffix is not its own
//! (`replication::divergence`), and otherwise counts the durable end toward the
//! high watermark (`replication::leader`) and sends what follows the fetch
//! offset. The follower appends the batches byte for byte (offsets and epochs as
//! the leader wrote them, CRC checked) and commits them (fdatasync under
//! `log.flush = batch`) while its next fetch is out — that fetch still reports
//! the durable end from before, so what it reports is on its disk, and the sync
//! and the round trip overlap instead of adding up. It does so only while the
//! leader has a backlog (an answer cut near the size limit); otherwise it syncs
//! first, so a lightly loaded partition's acks=all waits no extra round trip.
//! While a sync is pending the fetch does not wait at the leader, so the sync's
//! end is reported at once when nothing new comes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringlog_schema::{split_batches, CheckedBatch};
use ringlog_storage::stats::Histogram;
use ringlog_storage::Offset;
use tracing::{debug, info, warn};

use crate::core::error::{batch_error, storage_error, ErrorKind};
use crate::core::messages::{PartitionError, PartitionKey};
use crate::core::partition::{Partition, ReplicatedAppend, Role};
use crate::core::remote::LocalFuture;
use crate::core::shard::Shard;
use crate::metadata::{BrokerId, ClusterMetadata};
use crate::replication::divergence::{diverging, truncation, EpochEnd};

/// Pause after a failed connection attempt, doubling up to the maximum.
const RECONNECT_BACKOFF_MS_MIN: u64 = 50;
const RECONNECT_BACKOFF_MS_MAX: u64 = 2_000;
/// Pause before fetching again when every partition of a fetch was refused (the
/// leader has not yet learned it leads, or the follower's metadata is behind).
const REFUSED_BACKOFF_MS: u64 = 100;

/// One partition of a replica fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFetchPartition {
    pub key: PartitionKey,
    /// The leader epoch the follower knows.
    pub current_leader_epoch: i32,
    /// The follower's log end: the answer's batches start here.
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch; -1 for none.
    pub last_fetched_epoch: i32,
    /// The follower's durable log end (≤ `fetch_offset`): what counts toward the
    /// high watermark.
    pub durable_end: i64,
}

/// A follower shard's long poll on the leader shard that owns these partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFetch {
    pub follower: BrokerId,
    /// The follower's broker epoch (its registration's offset).
    pub follower_epoch: u64,
    pub max_wait: Duration,
    /// Bytes of batches in the whole answer (the first batch always comes).
    pub max_bytes: usize,
    pub partition_max_bytes: usize,
    pub partitions: Vec<ReplicaFetchPartition>,
}

/// The leader's answer for one partition.
#[derive(Clone, Debug)]
pub struct ReplicaAnswer {
    pub key: PartitionKey,
    pub error: Option<PartitionError>,
    pub high_watermark: i64,
    pub log_start: i64,
    pub log_end: i64,
    /// The follower's log diverged: truncate as this says, then fetch again.
    pub diverging: Option<EpochEnd>,
    /// Whole batches from the fetch offset, as the leader stores them.
    pub batches: Vec<Bytes>,
}

impl ReplicaAnswer {
    fn refused(key: PartitionKey, error: PartitionError) -> Self {
        Self {
            key,
            error: Some(error),
            high_watermark: -1,
            log_start: -1,
            log_end: -1,
            diverging: None,
            batches: Vec::new(),
        }
    }
}

/// A connection to one leader shard, carrying one fetch at a time.
pub trait ReplicaLink {
    /// Sends `fetch` and waits for its answer (bounded by the implementation);
    /// `Err` means the connection is gone.
    fn fetch(&self, fetch: ReplicaFetch) -> LocalFuture<'_, Result<Vec<ReplicaAnswer>, String>>;
}

/// The wire replication travels on, given to every data shard of a cluster
/// member by the daemon (the inter-broker adapter implements it).
pub trait ReplicaWire {
    /// Opens a connection to data shard `shard` of `leader`, whose inter-broker
    /// listener is at `addr`, on behalf of `me` in `cluster_id`.
    fn connect(
        &self,
        me: BrokerId,
        cluster_id: String,
        leader: BrokerId,
        addr: SocketAddr,
        shard: u16,
    ) -> LocalFuture<'_, Result<Rc<dyn ReplicaLink>, String>>;
    /// Serves replica fetches from `follower` on a connection the inter-broker
    /// listener welcomed and handed to this shard (the shard owns `fd` now).
    fn serve(&self, shard: Rc<Shard>, fd: RawFd, follower: BrokerId);
}

/// Which leader shard a fetcher pulls from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub leader: BrokerId,
    pub shard: u16,
}

/// The leader shard's answer to a replica fetch: every partition's batches from
/// its fetch offset, waiting up to `max_wait` for an append when none has any.
pub async fn serve_fetch(shard: &Shard, fetch: ReplicaFetch) -> Vec<ReplicaAnswer> {
    let deadline = Instant::now() + fetch.max_wait;
    loop {
        let (answers, ready) = read_all(shard, &fetch).await;
        let now = Instant::now();
        if ready || now >= deadline || shard.stopping.is_set() {
            return answers;
        }
        let parts: Vec<Rc<Partition>> = fetch
            .partitions
            .iter()
            .filter_map(|p| shard.partition(&p.key))
            .collect();
        if parts.is_empty() {
            return answers;
        }
        wait_for_append(&parts, deadline - now).await;
    }
}

/// One pass over the fetch's partitions; `true` when the answer should go now
/// (records, an error or a divergence to report).
async fn read_all(shard: &Shard, fetch: &ReplicaFetch) -> (Vec<ReplicaAnswer>, bool) {
    let mut left = fetch.max_bytes;
    let mut sent_any = false;
    let mut ready = false;
    let mut answers = Vec::with_capacity(fetch.partitions.len());
    for req in &fetch.partitions {
        let budget = if sent_any {
            left.min(fetch.partition_max_bytes)
        } else {
            // The first data always comes, even past the limit, so a batch larger
            // than the limit cannot stall a follower.
            fetch.partition_max_bytes.max(1)
        };
        let answer = match shard.partition(&req.key) {
            None => ReplicaAnswer::refused(
                req.key.clone(),
                PartitionError::new(
                    ErrorKind::UnknownTopicOrPartition,
                    format!(
                        "{}-{} is not on this shard",
                        req.key.topic, req.key.partition
                    ),
                ),
            ),
            Some(p) => {
                let lag = &shard.stats.replication_lag_us;
                read_one(&p, fetch.follower, fetch.follower_epoch, req, budget, lag).await
            }
        };
        let size: usize = answer.batches.iter().map(Bytes::len).sum();
        if size > 0 {
            sent_any = true;
            left = left.saturating_sub(size);
        }
        ready |= size > 0 || answer.error.is_some() || answer.diverging.is_some();
        answers.push(answer);
    }
    (answers, ready)
}

/// The leader's answer for one partition (see the module doc).
async fn read_one(
    p: &Partition,
    follower: BrokerId,
    follower_epoch: u64,
    req: &ReplicaFetchPartition,
    budget: usize,
    lag: &Histogram,
) -> ReplicaAnswer {
    let key = req.key.clone();
    let refuse = |kind: ErrorKind, message: String| {
        ReplicaAnswer::refused(key.clone(), PartitionError::new(kind, message))
    };
    let checked = p.with_leader(|epoch, replicas| {
        if req.current_leader_epoch < epoch {
            return Err((
                ErrorKind::FencedLeaderEpoch,
                format!(
                    "epoch {} is older than this leader's {epoch}",
                    req.current_leader_epoch
                ),
            ));
        }
        if req.current_leader_epoch > epoch {
            return Err((
                ErrorKind::UnknownLeaderEpoch,
                format!(
                    "epoch {} is newer than this leader's {epoch}",
                    req.current_leader_epoch
                ),
            ));
        }
        if replicas.follower(follower).is_none() {
            return Err((
                ErrorKind::NotLeaderOrFollower,
                format!("broker {} is not a replica of this partition", follower.0),
            ));
        }
        Ok(())
    });
    match checked {
        None => {
            return refuse(
                ErrorKind::NotLeaderOrFollower,
                format!("this broker does not lead {}-{}", key.topic, key.partition),
            )
        }
        Some(Err((kind, message))) => return refuse(kind, message),
        Some(Ok(())) => {}
    }
    let log_start = p.log.log_start_offset().0;
    let log_end = p.log.log_end_offset().0;
    let mut answer = ReplicaAnswer {
        key: key.clone(),
        error: None,
        high_watermark: p.high_watermark(),
        log_start,
        log_end,
        diverging: None,
        batches: Vec::new(),
    };
    let leader_end = EpochEnd::new(p.log.end_offset_for_epoch(req.last_fetched_epoch));
    if let Some(d) = diverging(req.last_fetched_epoch, req.fetch_offset, leader_end) {
        answer.diverging = Some(d);
        return answer;
    }
    if req.fetch_offset < log_start || req.fetch_offset > log_end {
        answer.error = Some(PartitionError::new(
            ErrorKind::OffsetOutOfRange,
            format!(
                "fetch offset {} is outside [{log_start}, {log_end}]",
                req.fetch_offset
            ),
        ));
        return answer;
    }
    let now = crate::time::now_ms();
    let at = Instant::now();
    let progress = p.with_leader(|_, replicas| {
        let before = replicas.follower(follower).map(|f| f.end_offset);
        let moved = replicas.on_fetch(follower, req.durable_end, follower_epoch, now);
        (before, moved)
    });
    if let Some((before, moved)) = progress {
        if moved {
            p.high_watermark_moved();
        }
        if let Some(before) = before {
            p.follower_reached(before, req.durable_end, at, |d| {
                lag.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            });
        }
    }
    answer.high_watermark = p.high_watermark();
    if req.fetch_offset < log_end {
        match p.log.read(Offset(req.fetch_offset), budget).await {
            Ok(chunks) => answer.batches = chunks,
            Err(e) => answer.error = Some(storage_error(&e)),
        }
    }
    answer
}

/// Waits until any of `parts` appends, or `wait` passes.
async fn wait_for_append(parts: &[Rc<Partition>], wait: Duration) {
    use std::future::Future;
    let mut appends: Vec<_> = parts.iter().map(|p| Box::pin(p.appended())).collect();
    let any = std::future::poll_fn(|cx| {
        let mut ready = false;
        for a in &mut appends {
            ready |= a.as_mut().poll(cx).is_ready();
        }
        if ready {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    futures_lite::future::or(any, async {
        glommio::timer::sleep(wait).await;
    })
    .await;
}

/// The partitions this shard follows from `source`, with the epoch it knows.
pub fn following(shard: &Shard, source: Source) -> Vec<(PartitionKey, Rc<Partition>, i32)> {
    let md = shard.metadata.borrow().clone();
    shard
        .partitions_snapshot()
        .into_iter()
        .filter_map(|(key, p)| {
            let Role::Follower {
                leader: Some(leader),
                epoch,
                ..
            } = p.role()
            else {
                return None;
            };
            (source_of(&md, &key, leader)? == source).then_some((key, p, epoch))
        })
        .collect()
}

/// The leader shard a partition led by `leader` lives on.
pub fn source_of(md: &ClusterMetadata, key: &PartitionKey, leader: BrokerId) -> Option<Source> {
    let topic = md.topics.get(&key.topic)?;
    let shards = md.brokers.get(&leader)?.shards;
    let shard = ClusterMetadata::shard_of(topic, key.partition, shards);
    Some(Source {
        leader,
        shard: shard.0,
    })
}

/// Pulls from `source` for as long as this shard follows partitions there.
pub async fn run_fetcher(shard: Rc<Shard>, source: Source) {
    let Some(wire) = shard.replica_wire() else {
        shard.fetcher_done(source);
        return;
    };
    let me = shard.broker_id();
    let mut backoff = RECONNECT_BACKOFF_MS_MIN;
    'connect: loop {
        if shard.stopping.is_set() || following(&shard, source).is_empty() {
            break;
        }
        let Some(addr) = shard.voter_addr(source.leader) else {
            warn!(
                leader = source.leader.0,
                "no inter-broker address for the leader; not replicating from it"
            );
            break;
        };
        let cluster_id = shard.metadata.borrow().cluster_id.clone();
        let link = match wire
            .connect(me, cluster_id, source.leader, addr, source.shard)
            .await
        {
            Ok(link) => link,
            Err(e) => {
                debug!(leader = source.leader.0, shard = source.shard, error = %e, "replica fetch connection failed");
                pause(&shard, backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MS_MAX);
                continue;
            }
        };
        backoff = RECONNECT_BACKOFF_MS_MIN;
        info!(
            leader = source.leader.0,
            shard = source.shard,
            "replicating from leader"
        );
        // Appended by the last answer and not yet committed.
        let mut unsynced: Vec<(Rc<Partition>, ReplicatedAppend)> = Vec::new();
        loop {
            let parts = following(&shard, source);
            if parts.is_empty() || shard.stopping.is_set() {
                sync_all(std::mem::take(&mut unsynced)).await;
                break 'connect;
            }
            let follower_epoch = shard
                .metadata
                .borrow()
                .registrations
                .get(&me)
                .map_or(0, |r| r.epoch);
            let max_wait = if unsynced.is_empty() {
                shard.config.replica_fetch_wait_max
            } else {
                Duration::ZERO
            };
            let fetch = ReplicaFetch {
                follower: me,
                follower_epoch,
                max_wait,
                max_bytes: shard.config.replica_fetch_response_max_bytes,
                partition_max_bytes: shard.config.replica_fetch_max_bytes,
                partitions: parts
                    .iter()
                    .map(|(key, p, epoch)| ReplicaFetchPartition {
                        key: key.clone(),
                        current_leader_epoch: *epoch,
                        fetch_offset: p.log.log_end_offset().0,
                        last_fetched_epoch: p.log.latest_epoch().map_or(-1, |e| e.epoch),
                        durable_end: p.committed_end(),
                    })
                    .collect(),
            };
            let stopping = async {
                shard.stopping.wait().await;
                Err("the broker is stopping".to_string())
            };
            let fetched = futures_lite::future::or(link.fetch(fetch), stopping);
            let synced = sync_all(std::mem::take(&mut unsynced));
            let (answers, ()) = futures_lite::future::zip(fetched, synced).await;
            let answers = match answers {
                Ok(answers) => answers,
                Err(e) => {
                    info!(leader = source.leader.0, shard = source.shard, reason = %e, "replica fetch connection lost");
                    continue 'connect;
                }
            };
            let mut refused = !answers.is_empty();
            let mut backlog = false;
            for answer in answers {
                refused &= answer.error.is_some();
                let bytes: usize = answer.batches.iter().map(Bytes::len).sum();
                backlog |= leader_has_more(bytes, shard.config.replica_fetch_max_bytes);
                if let Some(p) = shard.partition(&answer.key) {
                    if let Some(appended) = apply(&p, answer).await {
                        unsynced.push((p, appended));
                    }
                }
            }
            if !backlog {
                // Nothing suggests more is waiting: a fetch now would most likely
                // come back empty and only delay reporting this sync.
                sync_all(std::mem::take(&mut unsynced)).await;
            }
            if refused {
                pause(&shard, REFUSED_BACKOFF_MS).await;
            }
        }
    }
    shard.fetcher_done(source);
}

/// Sleeps `ms`, or less if the shard stops.
async fn pause(shard: &Shard, ms: u64) {
    futures_lite::future::or(
        async {
            glommio::timer::sleep(Duration::from_millis(ms)).await;
        },
        async {
            shard.stopping.wait().await;
        },
    )
    .await;
}

/// Whether an answer of `bytes` for one partition, against the per-partition
/// limit, suggests the leader has more waiting: an answer cut near the limit
/// (half of it or more) was most likely cut by it. Only then does the next fetch
/// go out before the sync of this one; under light load the sync comes first, so
/// its durable end is reported by the very next fetch.
fn leader_has_more(bytes: usize, partition_max_bytes: usize) -> bool {
    bytes > 0 && bytes >= partition_max_bytes / 2
}

/// Commits what the last answers appended, every partition at once (their
/// fdatasyncs overlap). A failure leaves the log refusing writes; the partition
/// stops advancing and drops out of the ISR.
async fn sync_all(unsynced: Vec<(Rc<Partition>, ReplicatedAppend)>) {
    let syncs = unsynced.into_iter().map(|(p, appended)| async move {
        if let Err(e) = p.sync_replicated(appended).await {
            warn!(topic = %p.topic, partition = p.partition, error = %e.message, "replicated sync failed");
        }
    });
    crate::sync::join::join_all(syncs.collect()).await;
}

/// A follower applies the leader's answer for one partition: truncate on a
/// divergence, move past a range the leader no longer has, or append the
/// batches (returned, for the caller to commit) and take the leader's high
/// watermark.
pub async fn apply(p: &Partition, answer: ReplicaAnswer) -> Option<ReplicatedAppend> {
    let Role::Follower { .. } = p.role() else {
        // Leadership changed while the fetch was out.
        return None;
    };
    let log_end = p.log.log_end_offset().0;
    if let Some(error) = answer.error {
        if error.code == ErrorKind::OffsetOutOfRange && answer.log_start >= 0 {
            let result = if log_end < answer.log_start {
                // Retention removed what this replica still needs: start over at
                // the leader's log start.
                let moved = p.log.restart_at(Offset(answer.log_start)).await;
                if moved.is_ok() {
                    p.log_cut_back(answer.log_start, true).await;
                }
                moved.map(|_| ())
            } else if log_end > answer.log_end {
                let moved = p.log.truncate_to(Offset(answer.log_end)).await;
                if let Ok(end) = &moved {
                    p.log_cut_back(end.0, false).await;
                }
                moved.map(|_| ())
            } else {
                Ok(())
            };
            match result {
                Ok(()) => {
                    info!(topic = %p.topic, partition = p.partition, log_end, leader_start = answer.log_start, leader_end = answer.log_end, "replica moved into the leader's range")
                }
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, error = %e, "replica could not move into the leader's range")
                }
            }
        } else {
            debug!(topic = %p.topic, partition = p.partition, error = %error.message, "replica fetch refused");
        }
        return None;
    }
    if let Some(d) = answer.diverging {
        let own = EpochEnd::new(p.log.end_offset_for_epoch(d.epoch));
        let t = truncation(d, own, log_end, p.high_watermark());
        match p.log.truncate_to(Offset(t.offset)).await {
            Ok(end) => {
                p.log_cut_back(end.0, false).await;
                info!(topic = %p.topic, partition = p.partition, diverging_epoch = d.epoch,
                             leader_end = d.end_offset, from = log_end, to = end.0, complete = t.complete,
                             "replica truncated to the leader's log")
            }
            Err(e) => {
                warn!(topic = %p.topic, partition = p.partition, error = %e, "replica truncation failed")
            }
        }
        return None;
    }
    let appended = if answer.batches.is_empty() {
        None
    } else {
        match checked(p, answer.batches) {
            Ok(batches) => match p.append_replicated(batches).await {
                Ok(appended) => Some(appended),
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, error = %e.message, "replicated append failed");
                    return None;
                }
            },
            Err(e) => {
                warn!(topic = %p.topic, partition = p.partition, error = %e.message, "leader sent a batch that fails its checks; fetching again");
                return None;
            }
        }
    };
    p.set_follower_high_watermark(answer.high_watermark);
    appended
}

/// Splits fetched chunks into batches and checks each one's framing and CRC.
fn checked(p: &Partition, chunks: Vec<Bytes>) -> Result<Vec<CheckedBatch>, PartitionError> {
    let max = p.log.config().max_batch_bytes;
    let mut out = Vec::new();
    for chunk in chunks {
        for b in split_batches(chunk) {
            let b = b.map_err(|e| batch_error(&e))?;
            out.push(b.checked(max).map_err(|e| batch_error(&e))?);
        }
    }
    Ok(out)
}

/// The sources a shard's metadata says it follows from.
pub fn sources(md: &ClusterMetadata, followed: &[(PartitionKey, BrokerId)]) -> BTreeSet<Source> {
    followed
        .iter()
        .filter_map(|(key, leader)| source_of(md, key, *leader))
        .collect()
}

/// How often a leader shard looks for ISR members to drop or add.
pub const ISR_CHECK_INTERVAL_MS: u64 = 250;

/// The leader side of ISR maintenance, for as long as the shard runs: every
/// `ISR_CHECK_INTERVAL_MS`, each partition this shard leads asks the controller to
/// drop members not caught up for `replica.lag.time.max.ms` and to add followers
/// that reached the high watermark (one change per partition in flight).
pub async fn run_isr_checks(shard: Rc<Shard>) {
    while !shard.stopping.is_set() {
        pause(&shard, ISR_CHECK_INTERVAL_MS).await;
        let lag_ms =
            i64::try_from(shard.config.replica_lag_time_max.as_millis()).unwrap_or(i64::MAX);
        let now = crate::time::now_ms();
        let md = shard.metadata.borrow().clone();
        let me = shard.broker_id();
        for (key, p) in shard.partitions_snapshot() {
            let Some(meta) = md.topics.get(&key.topic).and_then(|t| {
                usize::try_from(key.partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            }) else {
                continue;
            };
            let epoch_start = p
                .log
                .latest_epoch()
                .filter(|e| e.epoch == meta.leader_epoch)
                .map_or(0, |e| e.start_offset);
            let decided = p.with_leader(|epoch, replicas| {
                if epoch != meta.leader_epoch {
                    return None;
                }
                let isr = replicas.desired_isr(now, lag_ms, epoch_start)?;
                // Members kept from the current ISR are named by their registered
                // epoch; joining ones by the epoch their fetches carry.
                let members: Vec<(BrokerId, u64)> = isr
                    .iter()
                    .map(|b| {
                        let registered = md.registrations.get(b).map_or(0, |r| r.epoch);
                        let epoch = if *b == me || meta.isr.contains(b) {
                            registered
                        } else {
                            replicas.follower(*b).map_or(0, |f| f.broker_epoch)
                        };
                        (*b, epoch)
                    })
                    .collect();
                let id = replicas.begin_change(isr);
                Some((members, id))
            });
            let Some(Some((members, id))) = decided else {
                continue;
            };
            let change = crate::metadata::records::IsrChange {
                topic: key.topic.clone(),
                partition: key.partition,
                leader: me,
                leader_epoch: meta.leader_epoch,
                partition_epoch: meta.partition_epoch,
                isr: members,
            };
            glommio::spawn_local(send_isr_change(shard.clone(), p, change, id)).detach();
        }
    }
}

/// Sends one ISR change to the controller through this broker's coordinator; a
/// refusal clears it so the next check decides again.
async fn send_isr_change(
    shard: Rc<Shard>,
    p: Rc<Partition>,
    change: crate::metadata::records::IsrChange,
    id: crate::replication::leader::ChangeId,
) {
    let from: Vec<i32> = shard
        .metadata
        .borrow()
        .topics
        .get(&change.topic)
        .and_then(|t| {
            usize::try_from(change.partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
        })
        .map(|m| m.isr.iter().map(|b| b.0).collect())
        .unwrap_or_default();
    let to: Vec<i32> = change.isr.iter().map(|(b, _)| b.0).collect();
    let (topic, partition) = (change.topic.clone(), change.partition);
    let sent = shard
        .mesh()
        .call_coordinator(
            |answer| crate::core::messages::CoordinatorRequest::AlterPartition { change, answer },
        )
        .await;
    match sent {
        Ok(Ok(())) => {
            info!(%topic, partition, ?from, ?to, "ISR changed");
            if to.len() < from.len() {
                shard
                    .stats
                    .isr_shrinks
                    .set(shard.stats.isr_shrinks.get() + 1);
            } else {
                shard
                    .stats
                    .isr_expands
                    .set(shard.stats.isr_expands.get() + 1);
            }
        }
        Ok(Err(e)) => {
            info!(%topic, partition, ?from, ?to, reason = %e.message, "ISR change refused");
            if p.with_leader(|_, r| r.change_failed(id)) == Some(true) {
                p.high_watermark_moved();
            }
        }
        Err(e) => {
            warn!(%topic, partition, error = %e, "ISR change not sent");
            if p.with_leader(|_, r| r.change_failed(id)) == Some(true) {
                p.high_watermark_moved();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::leader_has_more;

    #[test]
    fn only_an_answer_cut_near_the_limit_pipelines_the_next_fetch() {
        let limit = 1 << 20;
        assert!(!leader_has_more(0, limit));
        assert!(!leader_has_more(64 << 10, limit));
        assert!(!leader_has_more(limit / 2 - 1, limit));
        assert!(leader_has_more(limit / 2, limit));
        assert!(leader_has_more(limit, limit));
        // The first batch always comes, even past the limit.
        assert!(leader_has_more(3 * limit, limit));
    }
}
