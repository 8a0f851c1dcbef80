//! The group coordinator of one shard: it drives the membership state machines
//! (`groups::membership`) of the groups whose `__consumer_offsets` partition this
//! shard owns, and keeps their committed offsets (`groups::offsets`), written to that
//! partition before they are acknowledged and rebuilt from it on first use.
//!
//! Requests reach it already routed (`core::groups`). Join requests are held
//! until the rebalance lets them be answered; a timer task (`tick_loop`) expires
//! sessions and ends rebalances on time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::core::error::ErrorKind;
use bytes::Bytes;
use glommio::sync::Semaphore;
use ringlog_schema::{BatchBuilder, RecordBatch};
use ringlog_shards::Answered;
use tracing::{debug, info, warn};

use crate::core::groups::{
    group_error, CommitOutcome, CommittedOffset, GroupCall, GroupDescription, GroupListing,
    Heartbeat, Join, Leave, OffsetCommit, OffsetFetch, Sync,
};
use crate::core::messages::PartitionError;
use crate::groups::membership::{
    Group, GroupError, GroupLimits, GroupState, JoinResult, MemberAssignment, Reply, Token,
};
use crate::groups::offsets::{
    encode_key, encode_value, Committed, OffsetStore, OFFSETS_TOPIC, OFFSET_METADATA_MAX_BYTES,
};
use crate::sync::signal::{Latch, Signal};
use crate::time::now_ms;

/// Longest the timer sleeps when no group has a deadline.
const IDLE_TICK: Duration = Duration::from_secs(3600);

/// An offsets partition's log as the group coordinator uses it: commits are
/// appended (durable on return) and the committed offsets are rebuilt by replaying
/// it.
pub trait OffsetsLog {
    /// Appends records; resolves once they are durable.
    fn append(&self, records: Bytes) -> impl Future<Output = Result<(), PartitionError>>;
    /// Hands every batch of the log to `visit`, in offset order; returns how many.
    fn replay(
        &self,
        visit: impl FnMut(RecordBatch),
    ) -> impl Future<Output = Result<u64, PartitionError>>;
}

/// What the group coordinator needs of the shard it runs on: a view of the
/// metadata, and the offsets logs of the groups it coordinates.
pub trait GroupHost {
    type Log: OffsetsLog;
    /// Partition count of `topic`, if it exists.
    fn partition_count(&self, topic: &str) -> Option<i32>;
    /// The `__consumer_offsets` partition of `group`.
    fn offsets_partition_of(&self, group: &str) -> i32;
    /// The `__consumer_offsets` partitions this coordinator owns.
    fn owned_offsets_partitions(&self) -> Vec<i32>;
    /// Offsets partition `p`, when this coordinator owns it.
    fn offsets_log(&self, p: i32) -> Result<Rc<Self::Log>, PartitionError>;
}

/// A held request's answer, once there is one.
#[derive(Default)]
struct Pending {
    done: Latch,
    reply: RefCell<Option<Reply>>,
    /// The group the request is for.
    group: String,
    /// Set when this broker stopped coordinating the group before an answer.
    moved: Cell<bool>,
}

/// One shard's groups and committed offsets.
pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: RefCell<BTreeMap<String, Group>>,
    /// Records of `__consumer_offsets` skipped at load because they do not parse.
    pub skipped_records: Cell<u64>,
    /// Offsets of each owned `__consumer_offsets` partition, once loaded.
    stores: RefCell<HashMap<i32, Rc<RefCell<OffsetStore>>>>,
    /// Offsets partitions with loaded offsets or groups: what `resign` has to
    /// unload (every other partition costs it nothing; it is asked about every
    /// partition this broker does not lead at each metadata change).
    active_partitions: RefCell<BTreeSet<i32>>,
    loading: Semaphore,
    pending: RefCell<HashMap<Token, Rc<Pending>>>,
    next_token: Cell<Token>,
    /// Notified when a group's deadlines may have moved.
    changed: Signal,
}

impl GroupCoordinator {
    pub fn new(limits: GroupLimits) -> Self {
        Self {
            limits,
            groups: RefCell::new(BTreeMap::new()),
            stores: RefCell::new(HashMap::new()),
            active_partitions: RefCell::new(BTreeSet::new()),
            skipped_records: Cell::new(0),
            loading: Semaphore::new(1),
            pending: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            changed: Signal::default(),
        }
    }

    /// The committed offsets of every offsets partition loaded so far, for `/metrics`.
    pub fn committed_offsets(&self) -> Vec<crate::metrics::CommittedOffset> {
        let stores = self.stores.borrow();
        let mut out = Vec::new();
        for store in stores.values() {
            for ((group, topic, partition), c) in store.borrow().iter() {
                out.push(crate::metrics::CommittedOffset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                });
            }
        }
        out
    }

    /// Answers a group request routed to this shard.
    pub async fn handle(&self, host: &impl GroupHost, call: GroupCall) -> Answered {
        match call {
            GroupCall::Join(r, answer) => answer.send(self.join(host, r).await),
            GroupCall::Sync(r, answer) => answer.send(self.sync(r).await),
            GroupCall::Heartbeat(r, answer) => answer.send(self.heartbeat(r)),
            GroupCall::Leave(r, answer) => answer.send(self.leave(host, r)),
            GroupCall::Commit(r, answer) => answer.send(self.commit(host, r).await),
            GroupCall::FetchOffsets(r, answer) => answer.send(self.fetch_offsets(host, r).await),
            GroupCall::List(answer) => answer.send(self.list(host).await),
            GroupCall::Describe(id, answer) => answer.send(self.describe(host, &id).await),
            GroupCall::Delete(id, answer) => answer.send(self.delete_one(host, &id).await),
        }
    }

    /// Expires sessions and ends rebalances whose time has come, until `stopping`
    /// resolves.
    pub async fn tick_loop(&self, host: &impl GroupHost, stopping: impl Future<Output = ()>) {
        let mut stopping = std::pin::pin!(stopping);
        loop {
            let wait = self.next_deadline_ms().map_or(IDLE_TICK, |d| {
                Duration::from_millis(u64::try_from(d - now_ms()).unwrap_or(0))
            });
            let stop = async {
                stopping.as_mut().await;
                true
            };
            let timer = async {
                futures_lite::future::or(glommio::timer::sleep(wait), self.changed.wait()).await;
                false
            };
            if futures_lite::future::or(stop, timer).await {
                self.abandon_pending();
                return;
            }
            self.tick(host);
        }
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        self.groups
            .borrow()
            .values()
            .filter_map(Group::next_deadline_ms)
            .min()
    }

    fn tick(&self, host: &impl GroupHost) {
        let now = now_ms();
        let parts = |t: &str| host.partition_count(t);
        let replies: Vec<Reply> = self
            .groups
            .borrow_mut()
            .values_mut()
            .filter(|g| g.next_deadline_ms().is_some_and(|d| d <= now))
            .flat_map(|g| g.tick(now, &parts))
            .collect();
        self.deliver(replies);
        self.forget_empty();
    }

    /// Drops groups left without members: their commits stay in the offset store,
    /// so many short-lived groups do not pile up in memory.
    fn forget_empty(&self) {
        self.groups.borrow_mut().retain(|_, g| !g.is_empty());
    }

    /// Unloads `__consumer_offsets` partition `p`, which this broker no longer
    /// leads: its committed offsets and its groups go, and held joins and syncs of
    /// those groups are answered NOT_COORDINATOR, so their members find the new
    /// coordinator, which rebuilds the offsets from its replica of the log. Leading
    /// `p` again loads it afresh from the log (this broker's copy may have missed
    /// commits made while another broker led). A no-op for a partition not loaded.
    pub fn resign(&self, host: &impl GroupHost, p: i32) {
        if !self.active_partitions.borrow_mut().remove(&p) {
            return;
        }
        self.stores.borrow_mut().remove(&p);
        let before = self.groups.borrow().len();
        self.groups
            .borrow_mut()
            .retain(|id, _| host.offsets_partition_of(id) != p);
        let moved: Vec<Rc<Pending>> = {
            let mut pending = self.pending.borrow_mut();
            let tokens: Vec<Token> = pending
                .iter()
                .filter(|(_, h)| host.offsets_partition_of(&h.group) == p)
                .map(|(t, _)| *t)
                .collect();
            tokens
                .into_iter()
                .filter_map(|t| pending.remove(&t))
                .collect()
        };
        for h in &moved {
            h.moved.set(true);
            h.done.set();
        }
        let groups = before - self.groups.borrow().len();
        if groups > 0 || !moved.is_empty() {
            info!(
                partition = p,
                groups,
                held = moved.len(),
                "no longer the coordinator of {OFFSETS_TOPIC}-{p}'s groups"
            );
            self.changed.notify();
        }
    }

    /// At shutdown: every held request is answered (with no reply: the broker is
    /// going away), so connections can drain.
    fn abandon_pending(&self) {
        for (_, p) in self.pending.borrow_mut().drain() {
            p.done.set();
        }
    }

    fn deliver(&self, replies: Vec<Reply>) {
        for r in replies {
            let token = match &r {
                Reply::Join(t, _) | Reply::Sync(t, _) => *t,
            };
            if let Some(p) = self.pending.borrow_mut().remove(&token) {
                *p.reply.borrow_mut() = Some(r);
                p.done.set();
            }
        }
    }

    fn hold(&self, group: &str) -> (Token, Rc<Pending>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let p = Rc::new(Pending {
            group: group.to_string(),
            ..Pending::default()
        });
        self.pending.borrow_mut().insert(token, p.clone());
        (token, p)
    }

    async fn join(&self, host: &impl GroupHost, req: Join) -> Result<JoinResult, PartitionError> {
        let (token, pending) = self.hold(&req.group);
        self.active_partitions
            .borrow_mut()
            .insert(host.offsets_partition_of(&req.group));
        let parts = |t: &str| host.partition_count(t);
        let replies = {
            let mut groups = self.groups.borrow_mut();
            let limits = self.limits.clone();
            let g = groups
                .entry(req.group.clone())
                .or_insert_with(|| Group::new(&req.group, limits));
            g.join(token, req.request, now_ms(), &parts)
        };
        self.deliver(replies);
        self.changed.notify();
        pending.done.wait().await;
        let reply = pending.reply.borrow_mut().take();
        match reply {
            Some(Reply::Join(_, joined)) => joined.map_err(group_error),
            _ => Err(unanswered(&pending)),
        }
    }

    /// SyncGroup: client-side groups receive the leader's assignment here.
    async fn sync(&self, req: Sync) -> Result<MemberAssignment, PartitionError> {
        let (token, pending) = self.hold(&req.group);
        let replies = match self.groups.borrow_mut().get_mut(&req.group) {
            Some(g) => g.sync(
                token,
                &req.member_id,
                req.generation,
                req.assignments,
                now_ms(),
            ),
            None => vec![Reply::Sync(token, Err(GroupError::UnknownMemberId))],
        };
        self.deliver(replies);
        self.changed.notify();
        pending.done.wait().await;
        let reply = pending.reply.borrow_mut().take();
        match reply {
            Some(Reply::Sync(_, assigned)) => assigned.map_err(group_error),
            _ => Err(unanswered(&pending)),
        }
    }

    fn heartbeat(&self, req: Heartbeat) -> Result<(), PartitionError> {
        match self.groups.borrow_mut().get_mut(&req.group) {
            Some(g) => g.heartbeat(&req.member_id, req.generation, now_ms()),
            None => Err(GroupError::UnknownMemberId),
        }
        .map_err(group_error)
    }

    fn leave(&self, host: &impl GroupHost, req: Leave) -> Result<(), PartitionError> {
        let parts = |t: &str| host.partition_count(t);
        let (result, replies) = match self.groups.borrow_mut().get_mut(&req.group) {
            Some(g) => g.leave(&req.member_id, now_ms(), &parts),
            None => (Err(GroupError::UnknownMemberId), Vec::new()),
        };
        self.deliver(replies);
        self.forget_empty();
        self.changed.notify();
        result.map_err(group_error)
    }

    async fn commit(
        &self,
        host: &impl GroupHost,
        req: OffsetCommit,
    ) -> Result<Vec<CommitOutcome>, PartitionError> {
        let verdict = match self.groups.borrow().get(&req.group) {
            Some(g) => g.check_commit(&req.member_id, req.generation),
            None if req.member_id.is_empty() && req.generation < 0 => Ok(()),
            None => Err(GroupError::UnknownMemberId),
        };
        verdict.map_err(group_error)?;
        let p = host.offsets_partition_of(&req.group);
        let store = self.ensure_loaded(host, p).await?;
        let now = now_ms();
        let mut results = Vec::new();
        let mut accepted = Vec::new();
        let mut batch = BatchBuilder::new();
        for c in req.offsets {
            let problem = if c.metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(PartitionError::new(
                    ErrorKind::OffsetMetadataTooLarge,
                    format!("metadata longer than {OFFSET_METADATA_MAX_BYTES} bytes"),
                ))
            } else if host
                .partition_count(&c.topic)
                .is_none_or(|n| c.partition < 0 || c.partition >= n)
            {
                Some(PartitionError::new(
                    ErrorKind::UnknownTopicOrPartition,
                    format!("{}-{} does not exist", c.topic, c.partition),
                ))
            } else {
                None
            };
            if let Some(error) = problem {
                results.push(CommitOutcome {
                    topic: c.topic,
                    partition: c.partition,
                    error: Some(error),
                });
                continue;
            }
            let committed = Committed {
                offset: c.offset,
                metadata: c.metadata,
                commit_timestamp: now,
            };
            batch.push(
                Some(encode_key(&req.group, &c.topic, c.partition)),
                Some(encode_value(&committed)),
                &[],
                now,
            );
            accepted.push((c.topic, c.partition, committed));
        }
        if !accepted.is_empty() {
            let written = match batch.build() {
                Ok(bytes) => match host.offsets_log(p) {
                    Ok(log) => log.append(bytes).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(PartitionError::new(
                    ErrorKind::UnknownServerError,
                    e.to_string(),
                )),
            };
            let mut store = store.borrow_mut();
            for (topic, partition, committed) in accepted {
                let error = match &written {
                    Ok(()) => {
                        store.set((req.group.clone(), topic.clone(), partition), committed);
                        None
                    }
                    Err(e) => Some(e.clone()),
                };
                results.push(CommitOutcome {
                    topic,
                    partition,
                    error,
                });
            }
        }
        Ok(results)
    }

    async fn fetch_offsets(
        &self,
        host: &impl GroupHost,
        req: OffsetFetch,
    ) -> Result<Vec<CommittedOffset>, PartitionError> {
        let p = host.offsets_partition_of(&req.group);
        let store = self.ensure_loaded(host, p).await?;
        let store = store.borrow();
        Ok(match req.partitions.filter(|ps| !ps.is_empty()) {
            Some(ps) => ps
                .into_iter()
                .map(|(topic, partition)| CommittedOffset {
                    committed: store.get(&req.group, &topic, partition).cloned(),
                    topic,
                    partition,
                })
                .collect(),
            None => store
                .of_group(&req.group)
                .into_iter()
                .map(|(topic, partition, c)| CommittedOffset {
                    topic,
                    partition,
                    committed: Some(c),
                })
                .collect(),
        })
    }

    /// Groups of this shard: those with members, and those with only commits.
    async fn list(&self, host: &impl GroupHost) -> Vec<GroupListing> {
        let mut listed: BTreeMap<String, GroupListing> = BTreeMap::new();
        for p in host.owned_offsets_partitions() {
            match self.ensure_loaded(host, p).await {
                Ok(store) => {
                    for g in store.borrow().groups() {
                        listed.insert(
                            g.clone(),
                            GroupListing {
                                group: g,
                                state: GroupState::Empty.name().into(),
                                protocol_type: None,
                                members: 0,
                            },
                        );
                    }
                }
                Err(e) => warn!(partition = p, error = %e.message, "cannot load committed offsets"),
            }
        }
        for (id, g) in self.groups.borrow().iter() {
            if g.is_empty() && !listed.contains_key(id) {
                continue;
            }
            listed.insert(
                id.clone(),
                GroupListing {
                    group: id.clone(),
                    state: g.state().name().into(),
                    protocol_type: g.protocol_type().map(str::to_string),
                    members: g.members().len(),
                },
            );
        }
        listed.into_values().collect()
    }

    async fn describe(
        &self,
        host: &impl GroupHost,
        id: &str,
    ) -> Result<GroupDescription, PartitionError> {
        let p = host.offsets_partition_of(id);
        let has_commits = match self.ensure_loaded(host, p).await {
            Ok(store) => !store.borrow().of_group(id).is_empty(),
            Err(_) => false,
        };
        let groups = self.groups.borrow();
        match groups.get(id) {
            Some(g) if !g.is_empty() || has_commits => Ok(GroupDescription {
                group: id.to_string(),
                state: g.state().name().into(),
                protocol_type: g.protocol_type().map(str::to_string),
                protocol: g.protocol().map(str::to_string),
                generation: g.generation(),
                leader: g.leader().map(str::to_string),
                members: g.members(),
            }),
            None if has_commits => Ok(GroupDescription {
                group: id.to_string(),
                state: GroupState::Empty.name().into(),
                ..GroupDescription::default()
            }),
            _ => Err(PartitionError::new(
                ErrorKind::GroupIdNotFound,
                format!("group {id:?} does not exist"),
            )),
        }
    }

    async fn delete_one(&self, host: &impl GroupHost, id: &str) -> Result<(), PartitionError> {
        if self.groups.borrow().get(id).is_some_and(|g| !g.is_empty()) {
            return Err(PartitionError::new(
                ErrorKind::NonEmptyGroup,
                format!("group {id:?} has active members; stop them first"),
            ));
        }
        let p = host.offsets_partition_of(id);
        let store = self.ensure_loaded(host, p).await?;
        let keys: Vec<(String, i32)> = store
            .borrow()
            .of_group(id)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
        let known = self.groups.borrow().contains_key(id);
        if keys.is_empty() && !known {
            return Err(PartitionError::new(
                ErrorKind::GroupIdNotFound,
                format!("group {id:?} does not exist"),
            ));
        }
        if !keys.is_empty() {
            let now = now_ms();
            let mut batch = BatchBuilder::new();
            for (t, part) in &keys {
                batch.push(Some(encode_key(id, t, *part)), None, &[], now);
            }
            let bytes = batch
                .build()
                .map_err(|e| PartitionError::new(ErrorKind::UnknownServerError, e.to_string()))?;
            host.offsets_log(p)?.append(bytes).await?;
            let mut store = store.borrow_mut();
            for (t, part) in keys {
                store.remove(&(id.to_string(), t, part));
            }
        }
        self.groups.borrow_mut().remove(id);
        debug!(group = id, "deleted group");
        Ok(())
    }

    /// The offsets of `__consumer_offsets` partition `p`, read from its log the first
    /// time they are needed.
    async fn ensure_loaded(
        &self,
        host: &impl GroupHost,
        p: i32,
    ) -> Result<Rc<RefCell<OffsetStore>>, PartitionError> {
        if let Some(s) = self.stores.borrow().get(&p) {
            return Ok(s.clone());
        }
        let _one_at_a_time = self.loading.acquire_permit(1).await;
        if let Some(s) = self.stores.borrow().get(&p) {
            return Ok(s.clone());
        }
        let log = host.offsets_log(p)?;
        let mut store = OffsetStore::default();
        let mut skipped = 0u64;
        let mut replayed = 0u64;
        log.replay(|batch| {
            let records = match batch.records() {
                Ok(records) => records,
                Err(e) => {
                    // One bad batch never blocks the partition's groups.
                    warn!(partition = p, offset = batch.base_offset(), error = %e,
                          "a batch of {OFFSETS_TOPIC} does not decode; skipped");
                    skipped += u64::try_from(batch.record_count()).unwrap_or(0).max(1);
                    return;
                }
            };
            for r in records {
                replayed += 1;
                let applied = r
                    .key
                    .as_deref()
                    .map(|k| store.apply_record(k, r.value.as_deref()));
                if !matches!(applied, Some(Ok(()))) {
                    skipped += 1;
                }
            }
        })
        .await?;
        self.skipped_records
            .set(self.skipped_records.get() + skipped);
        if skipped > 0 {
            warn!(
                partition = p,
                skipped, "records of {OFFSETS_TOPIC} that are not offset commits were skipped"
            );
        }
        info!(
            partition = p,
            records = replayed,
            "loaded committed offsets of {OFFSETS_TOPIC}"
        );
        let store = Rc::new(RefCell::new(store));
        self.stores.borrow_mut().insert(p, store.clone());
        self.active_partitions.borrow_mut().insert(p);
        Ok(store)
    }
}

/// A held request the broker stopped before answering.
/// Why a held request ended without a reply.
fn unanswered(pending: &Pending) -> PartitionError {
    if pending.moved.get() {
        PartitionError::new(
            ErrorKind::NotCoordinator,
            format!(
                "this broker stopped coordinating group {:?}; find its coordinator again",
                pending.group
            ),
        )
    } else {
        shutting_down()
    }
}

fn shutting_down() -> PartitionError {
    PartitionError::new(
        ErrorKind::CoordinatorNotAvailable,
        "the broker is shutting down",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::groups::CommitOffset;
    use crate::sync::run_on_executor as run;

    /// An offsets log in memory: what was appended, replayed in order.
    #[derive(Default)]
    struct MemoryLog {
        batches: RefCell<Vec<Bytes>>,
    }

    impl OffsetsLog for MemoryLog {
        async fn append(&self, records: Bytes) -> Result<(), PartitionError> {
            self.batches.borrow_mut().push(records);
            Ok(())
        }

        async fn replay(&self, mut visit: impl FnMut(RecordBatch)) -> Result<u64, PartitionError> {
            let batches = self.batches.borrow().clone();
            for b in &batches {
                let batch = RecordBatch::parse(b.clone())
                    .map_err(|e| PartitionError::new(ErrorKind::CorruptMessage, e.to_string()))?;
                visit(batch);
            }
            Ok(batches.len() as u64)
        }
    }

    /// One topic `t` of two partitions and one offsets partition, owned here.
    struct OneShard {
        log: Rc<MemoryLog>,
    }

    impl GroupHost for OneShard {
        type Log = MemoryLog;
        fn partition_count(&self, topic: &str) -> Option<i32> {
            (topic == "t").then_some(2)
        }
        fn offsets_partition_of(&self, _group: &str) -> i32 {
            0
        }
        fn owned_offsets_partitions(&self) -> Vec<i32> {
            vec![0]
        }
        fn offsets_log(&self, p: i32) -> Result<Rc<MemoryLog>, PartitionError> {
            match p {
                0 => Ok(self.log.clone()),
                _ => Err(PartitionError::new(ErrorKind::NotCoordinator, "not here")),
            }
        }
    }

    fn offset(partition: i32, offset: i64) -> CommitOffset {
        CommitOffset {
            topic: "t".into(),
            partition,
            offset,
            metadata: String::new(),
        }
    }

    async fn committed(c: &GroupCoordinator, host: &OneShard) -> Vec<(i32, Option<i64>)> {
        let asked = OffsetFetch {
            group: "g".into(),
            partitions: None,
        };
        let offsets = c.fetch_offsets(host, asked).await.expect("offsets load");
        offsets
            .into_iter()
            .map(|o| (o.partition, o.committed.map(|c| c.offset)))
            .collect()
    }

    #[test]
    fn commits_go_to_the_offsets_log_and_a_new_coordinator_rebuilds_them_from_it() {
        run(|| async {
            let host = OneShard {
                log: Rc::new(MemoryLog::default()),
            };
            let first = GroupCoordinator::new(GroupLimits::default());
            let commit = OffsetCommit {
                group: "g".into(),
                member_id: String::new(),
                generation: -1,
                offsets: vec![offset(0, 42), offset(1, 7), offset(5, 1)],
            };
            let outcomes = first.commit(&host, commit).await.expect("accepted");
            let errors: Vec<Option<ErrorKind>> = outcomes
                .iter()
                .map(|o| o.error.as_ref().map(|e| e.code))
                .collect();
            // Partition 5 does not exist; the others are written.
            assert_eq!(
                errors,
                [Some(ErrorKind::UnknownTopicOrPartition), None, None]
            );
            assert_eq!(host.log.batches.borrow().len(), 1);

            let second = GroupCoordinator::new(GroupLimits::default());
            assert_eq!(
                committed(&second, &host).await,
                [(0, Some(42)), (1, Some(7))]
            );

            second.delete_one(&host, "g").await.expect("deleted");
            let third = GroupCoordinator::new(GroupLimits::default());
            assert!(committed(&third, &host).await.is_empty());
            let gone = third.describe(&host, "g").await.map(|_| ());
            assert_eq!(gone.map_err(|e| e.code), Err(ErrorKind::GroupIdNotFound));
        });
    }

    #[test]
    fn a_resigned_partition_answers_held_joins_not_coordinator_and_reloads_from_the_log() {
        run(|| async {
            let host = OneShard {
                log: Rc::new(MemoryLog::default()),
            };
            // A long initial delay holds the first join until the resignation.
            let limits = GroupLimits {
                initial_rebalance_delay_ms: 60_000,
                ..GroupLimits::default()
            };
            let c = Rc::new(GroupCoordinator::new(limits));
            let commit = OffsetCommit {
                group: "g".into(),
                member_id: String::new(),
                generation: -1,
                offsets: vec![offset(0, 42)],
            };
            c.commit(&host, commit).await.expect("accepted");
            assert_eq!(c.committed_offsets().len(), 1);

            let join = Join::new(
                "g".into(),
                String::new(),
                "client".into(),
                (10_000, 10_000),
                "consumer".into(),
                vec![crate::groups::membership::Protocol {
                    name: "range".into(),
                    metadata: Bytes::new(),
                    subscription: vec!["t".into()],
                }],
            )
            .expect("join");
            let held = glommio::spawn_local({
                let c = c.clone();
                let host = OneShard {
                    log: host.log.clone(),
                };
                async move { c.join(&host, join).await.map(|_| ()) }
            });
            // Let the join reach the group and be held.
            while c.pending.borrow().is_empty() {
                glommio::executor().yield_now().await;
            }
            c.resign(&host, 0);
            let answer = held.await;
            assert_eq!(answer.map_err(|e| e.code), Err(ErrorKind::NotCoordinator));
            assert!(c.groups.borrow().is_empty());
            assert!(c.committed_offsets().is_empty(), "offsets unloaded");
            // Leading again: the offsets come back from the log.
            assert_eq!(committed(&c, &host).await, [(0, Some(42))]);
        });
    }
}
