//! The group coordinator of one shard: it drives the membership state machines
//! (`groups::membership`) of the groups whose `__consumer_offsets` partition this
//! shard owns, and keeps their committed offsets (`groups::offsets`), written to that
//! partition before they are acknowledged and rebuilt from it on first use.
//!
//! Requests reach it already routed (`handlers::groups`). Join requests are held
//! until the rebalance lets them be answered; a timer task (`tick_loop`) expires
//! sessions and ends rebalances on time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use ringlog_schema::wire::{
    BodyT, CommittedOffsetT, DeleteGroupsRequestT, DeleteGroupsResponseT, DescribeGroupsRequestT,
    DescribeGroupsResponseT, ErrorCode, GroupDescriptionT, GroupListingT, GroupMemberDescriptionT,
    GroupMemberMetadataT, GroupResultT, HeartbeatRequestT, HeartbeatResponseT, JoinGroupRequestT,
    JoinGroupResponseT, LeaveGroupRequestT, LeaveGroupResponseT, ListGroupsResponseT,
    OffsetCommitPartitionResultT, OffsetCommitRequestT, OffsetCommitResponseT, OffsetFetchRequestT,
    OffsetFetchResponseT, SyncGroupRequestT, SyncGroupResponseT, TopicAssignmentT,
};
use ringlog_schema::BatchBuilder;
use tracing::{debug, info, warn};

use crate::broker::messages::{PartitionError, PartitionKey};
use crate::broker::shard::Shard;
use crate::groups::assignor::TopicPartitions;
use crate::groups::membership::{
    Group, GroupError, GroupLimits, GroupState, JoinRequest, MemberAssignment, Protocol, Reply,
    Token,
};
use crate::groups::offsets::{
    encode_key, encode_value, partition_for_group, Committed, OffsetStore, OFFSETS_TOPIC,
    OFFSET_METADATA_MAX_BYTES,
};
use crate::sync::signal::{Latch, Signal};
use crate::time::now_ms;

/// Bytes read per step when rebuilding a partition's offsets.
const LOAD_READ_BYTES: usize = 1 << 20;
/// Longest the timer sleeps when no group has a deadline.
const IDLE_TICK: Duration = Duration::from_secs(3600);

/// The wire code of a membership error.
pub fn group_error_code(e: GroupError) -> ErrorCode {
    match e {
        GroupError::UnknownMemberId => ErrorCode::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => ErrorCode::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => ErrorCode::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentGroupProtocol => ErrorCode::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::InvalidSessionTimeout => ErrorCode::INVALID_SESSION_TIMEOUT,
        GroupError::GroupMaxSizeReached => ErrorCode::GROUP_MAX_SIZE_REACHED,
    }
}

fn assignment_to_wire(tp: &TopicPartitions) -> Vec<TopicAssignmentT> {
    tp.iter()
        .map(|(t, ps)| TopicAssignmentT {
            topic: t.clone(),
            partitions: Some(ps.clone()),
        })
        .collect()
}

/// A held request's answer, once there is one.
#[derive(Default)]
struct Pending {
    done: Latch,
    reply: RefCell<Option<Reply>>,
}

/// One shard's groups and committed offsets.
pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: RefCell<BTreeMap<String, Group>>,
    /// Records of `__consumer_offsets` skipped at load because they do not parse.
    pub skipped_records: Cell<u64>,
    /// Offsets of each owned `__consumer_offsets` partition, once loaded.
    stores: RefCell<HashMap<i32, Rc<RefCell<OffsetStore>>>>,
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
    pub async fn handle(&self, shard: &Shard, body: BodyT) -> BodyT {
        match body {
            BodyT::JoinGroupRequest(r) => self.join(shard, *r).await,
            BodyT::SyncGroupRequest(r) => self.sync(*r).await,
            BodyT::HeartbeatRequest(r) => self.heartbeat(*r),
            BodyT::LeaveGroupRequest(r) => self.leave(shard, *r),
            BodyT::OffsetCommitRequest(r) => self.commit(shard, *r).await,
            BodyT::OffsetFetchRequest(r) => self.fetch_offsets(shard, *r).await,
            BodyT::ListGroupsRequest(_) => self.list(shard).await,
            BodyT::DescribeGroupsRequest(r) => self.describe(shard, *r).await,
            BodyT::DeleteGroupsRequest(r) => self.delete(shard, *r).await,
            other => crate::broker::handlers::error_body(
                ErrorCode::INVALID_REQUEST,
                &format!("{:?} is not a group request", other.body_type()),
            ),
        }
    }

    /// Expires sessions and ends rebalances whose time has come, until shutdown.
    pub async fn tick_loop(shard: Rc<Shard>) {
        loop {
            let wait = shard.groups.next_deadline_ms().map_or(IDLE_TICK, |d| {
                Duration::from_millis(u64::try_from(d - now_ms()).unwrap_or(0))
            });
            let stop = async {
                shard.stopping.wait().await;
                true
            };
            let timer = async {
                futures_lite::future::or(glommio::timer::sleep(wait), shard.groups.changed.wait())
                    .await;
                false
            };
            if futures_lite::future::or(stop, timer).await {
                shard.groups.abandon_pending();
                return;
            }
            shard.groups.tick(&shard);
        }
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        self.groups
            .borrow()
            .values()
            .filter_map(Group::next_deadline_ms)
            .min()
    }

    fn tick(&self, shard: &Shard) {
        let now = now_ms();
        let parts = |t: &str| partitions_of(shard, t);
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

    fn hold(&self) -> (Token, Rc<Pending>) {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let p = Rc::new(Pending::default());
        self.pending.borrow_mut().insert(token, p.clone());
        (token, p)
    }

    async fn join(&self, shard: &Shard, req: JoinGroupRequestT) -> BodyT {
        let refuse = |code, message: String| {
            BodyT::JoinGroupResponse(Box::new(JoinGroupResponseT {
                error: code,
                message: Some(message),
                generation: -1,
                ..Default::default()
            }))
        };
        let (Ok(session), Ok(rebalance)) = (
            u64::try_from(req.session_timeout_ms),
            u64::try_from(req.rebalance_timeout_ms),
        ) else {
            return refuse(
                ErrorCode::INVALID_SESSION_TIMEOUT,
                "negative timeout".into(),
            );
        };
        let request = JoinRequest {
            member_id: req.member_id.unwrap_or_default(),
            client_id: req.client_id.unwrap_or_default(),
            client_host: String::new(),
            session_timeout_ms: session,
            rebalance_timeout_ms: rebalance,
            protocol_type: req.protocol_type.unwrap_or_default(),
            protocols: req
                .protocols
                .unwrap_or_default()
                .into_iter()
                .map(|p| Protocol {
                    name: p.name,
                    metadata: Bytes::from(p.metadata.unwrap_or_default()),
                    subscription: p.topics.unwrap_or_default(),
                })
                .collect(),
        };
        let (token, pending) = self.hold();
        let parts = |t: &str| partitions_of(shard, t);
        let replies = {
            let mut groups = self.groups.borrow_mut();
            let limits = self.limits.clone();
            let g = groups
                .entry(req.group.clone())
                .or_insert_with(|| Group::new(&req.group, limits));
            g.join(token, request, now_ms(), &parts)
        };
        self.deliver(replies);
        self.changed.notify();
        pending.done.wait().await;
        let reply = pending.reply.borrow_mut().take();
        match reply {
            Some(Reply::Join(_, Ok(j))) => BodyT::JoinGroupResponse(Box::new(JoinGroupResponseT {
                error: ErrorCode::NONE,
                message: None,
                generation: j.generation,
                protocol: Some(j.protocol),
                leader: Some(j.leader),
                member_id: Some(j.member_id),
                assignment: Some(assignment_to_wire(
                    &j.assignment.map(|a| a.partitions).unwrap_or_default(),
                )),
                members: Some(
                    j.members
                        .into_iter()
                        .map(|(member_id, metadata)| GroupMemberMetadataT {
                            member_id,
                            metadata: Some(metadata.to_vec()),
                        })
                        .collect(),
                ),
            })),
            Some(Reply::Join(_, Err(e))) => refuse(group_error_code(e), e.to_string()),
            _ => refuse(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "the broker is shutting down".into(),
            ),
        }
    }

    /// SyncGroup: client-side groups receive the leader's assignment here.
    async fn sync(&self, req: SyncGroupRequestT) -> BodyT {
        let assignments: BTreeMap<String, MemberAssignment> = req
            .assignments
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                let partitions = a
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.topic, t.partitions.unwrap_or_default()))
                    .collect();
                (
                    a.member_id,
                    MemberAssignment {
                        raw: Bytes::from(a.assignment.unwrap_or_default()),
                        partitions,
                    },
                )
            })
            .collect();
        let (token, pending) = self.hold();
        let replies = match self.groups.borrow_mut().get_mut(&req.group) {
            Some(g) => g.sync(token, &req.member_id, req.generation, assignments, now_ms()),
            None => vec![Reply::Sync(token, Err(GroupError::UnknownMemberId))],
        };
        self.deliver(replies);
        self.changed.notify();
        pending.done.wait().await;
        let reply = pending.reply.borrow_mut().take();
        let (error, message, assignment) = match reply {
            Some(Reply::Sync(_, Ok(a))) => (ErrorCode::NONE, None, a),
            Some(Reply::Sync(_, Err(e))) => (
                group_error_code(e),
                Some(e.to_string()),
                MemberAssignment::default(),
            ),
            _ => (
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                Some("the broker is shutting down".into()),
                MemberAssignment::default(),
            ),
        };
        BodyT::SyncGroupResponse(Box::new(SyncGroupResponseT {
            error,
            message,
            assignment: Some(assignment.raw.to_vec()),
            topics: Some(assignment_to_wire(&assignment.partitions)),
        }))
    }

    fn heartbeat(&self, req: HeartbeatRequestT) -> BodyT {
        let result = match self.groups.borrow_mut().get_mut(&req.group) {
            Some(g) => g.heartbeat(&req.member_id, req.generation, now_ms()),
            None => Err(GroupError::UnknownMemberId),
        };
        let (error, message) = match result {
            Ok(()) => (ErrorCode::NONE, None),
            Err(e) => (group_error_code(e), Some(e.to_string())),
        };
        BodyT::HeartbeatResponse(Box::new(HeartbeatResponseT { error, message }))
    }

    fn leave(&self, shard: &Shard, req: LeaveGroupRequestT) -> BodyT {
        let parts = |t: &str| partitions_of(shard, t);
        let (result, replies) = match self.groups.borrow_mut().get_mut(&req.group) {
            Some(g) => g.leave(&req.member_id, now_ms(), &parts),
            None => (Err(GroupError::UnknownMemberId), Vec::new()),
        };
        self.deliver(replies);
        self.forget_empty();
        self.changed.notify();
        let (error, message) = match result {
            Ok(()) => (ErrorCode::NONE, None),
            Err(e) => (group_error_code(e), Some(e.to_string())),
        };
        BodyT::LeaveGroupResponse(Box::new(LeaveGroupResponseT { error, message }))
    }

    async fn commit(&self, shard: &Shard, req: OffsetCommitRequestT) -> BodyT {
        let member = req.member_id.unwrap_or_default();
        let group_refusal = |code, message: String| {
            BodyT::OffsetCommitResponse(Box::new(OffsetCommitResponseT {
                error: code,
                message: Some(message),
                partitions: None,
            }))
        };
        let verdict = match self.groups.borrow().get(&req.group) {
            Some(g) => g.check_commit(&member, req.generation),
            None if member.is_empty() && req.generation < 0 => Ok(()),
            None => Err(GroupError::UnknownMemberId),
        };
        if let Err(e) = verdict {
            return group_refusal(group_error_code(e), e.to_string());
        }
        let p = offsets_partition(shard, &req.group);
        let store = match self.ensure_loaded(shard, p).await {
            Ok(s) => s,
            Err(e) => return group_refusal(e.code, e.message),
        };
        let now = now_ms();
        let mut results = Vec::new();
        let mut accepted = Vec::new();
        let mut batch = BatchBuilder::new();
        for c in req.partitions.unwrap_or_default() {
            let metadata = c.metadata.unwrap_or_default();
            let problem = if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some((
                    ErrorCode::OFFSET_METADATA_TOO_LARGE,
                    format!("metadata longer than {OFFSET_METADATA_MAX_BYTES} bytes"),
                ))
            } else if partitions_of(shard, &c.topic)
                .is_none_or(|n| c.partition < 0 || c.partition >= n)
            {
                Some((
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("{}-{} does not exist", c.topic, c.partition),
                ))
            } else {
                None
            };
            if let Some((error, message)) = problem {
                results.push(OffsetCommitPartitionResultT {
                    topic: c.topic,
                    partition: c.partition,
                    error,
                    message: Some(message),
                });
                continue;
            }
            let committed = Committed {
                offset: c.offset,
                metadata,
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
                Ok(bytes) => append(shard, p, bytes).await,
                Err(e) => Err(PartitionError::new(
                    ErrorCode::UNKNOWN_SERVER_ERROR,
                    e.to_string(),
                )),
            };
            let mut store = store.borrow_mut();
            for (topic, partition, committed) in accepted {
                let (error, message) = match &written {
                    Ok(()) => {
                        store.set((req.group.clone(), topic.clone(), partition), committed);
                        (ErrorCode::NONE, None)
                    }
                    Err(e) => (e.code, Some(e.message.clone())),
                };
                results.push(OffsetCommitPartitionResultT {
                    topic,
                    partition,
                    error,
                    message,
                });
            }
        }
        BodyT::OffsetCommitResponse(Box::new(OffsetCommitResponseT {
            error: ErrorCode::NONE,
            message: None,
            partitions: Some(results),
        }))
    }

    async fn fetch_offsets(&self, shard: &Shard, req: OffsetFetchRequestT) -> BodyT {
        let p = offsets_partition(shard, &req.group);
        let store = match self.ensure_loaded(shard, p).await {
            Ok(s) => s,
            Err(e) => {
                return BodyT::OffsetFetchResponse(Box::new(OffsetFetchResponseT {
                    error: e.code,
                    message: Some(e.message),
                    offsets: None,
                }))
            }
        };
        let store = store.borrow();
        let to_wire = |topic: String, partition: i32, c: Option<&Committed>| CommittedOffsetT {
            topic,
            partition,
            offset: c.map_or(-1, |c| c.offset),
            metadata: c.map(|c| c.metadata.clone()),
            commit_timestamp: c.map_or(-1, |c| c.commit_timestamp),
        };
        let offsets = match req.partitions.filter(|ps| !ps.is_empty()) {
            Some(ps) => ps
                .into_iter()
                .map(|tp| {
                    let c = store.get(&req.group, &tp.topic, tp.partition);
                    to_wire(tp.topic, tp.partition, c)
                })
                .collect(),
            None => store
                .of_group(&req.group)
                .into_iter()
                .map(|(t, p, c)| to_wire(t, p, Some(&c)))
                .collect(),
        };
        BodyT::OffsetFetchResponse(Box::new(OffsetFetchResponseT {
            error: ErrorCode::NONE,
            message: None,
            offsets: Some(offsets),
        }))
    }

    /// Groups of this shard: those with members, and those with only commits.
    async fn list(&self, shard: &Shard) -> BodyT {
        let mut listed: BTreeMap<String, GroupListingT> = BTreeMap::new();
        for p in owned_offsets_partitions(shard) {
            match self.ensure_loaded(shard, p).await {
                Ok(store) => {
                    for g in store.borrow().groups() {
                        listed.insert(
                            g.clone(),
                            GroupListingT {
                                group: g,
                                state: Some(GroupState::Empty.name().into()),
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
                GroupListingT {
                    group: id.clone(),
                    state: Some(g.state().name().into()),
                    protocol_type: g.protocol_type().map(str::to_string),
                    members: g.members().len() as i32,
                },
            );
        }
        BodyT::ListGroupsResponse(Box::new(ListGroupsResponseT {
            error: ErrorCode::NONE,
            message: None,
            groups: Some(listed.into_values().collect()),
        }))
    }

    async fn describe(&self, shard: &Shard, req: DescribeGroupsRequestT) -> BodyT {
        let mut out = Vec::new();
        for id in req.groups.unwrap_or_default() {
            let p = offsets_partition(shard, &id);
            let has_commits = match self.ensure_loaded(shard, p).await {
                Ok(store) => !store.borrow().of_group(&id).is_empty(),
                Err(_) => false,
            };
            let groups = self.groups.borrow();
            let d = match groups.get(&id) {
                Some(g) if !g.is_empty() || has_commits => GroupDescriptionT {
                    group: id.clone(),
                    error: ErrorCode::NONE,
                    message: None,
                    state: Some(g.state().name().into()),
                    protocol_type: g.protocol_type().map(str::to_string),
                    protocol: g.protocol().map(str::to_string),
                    generation: g.generation(),
                    leader: g.leader().map(str::to_string),
                    members: Some(
                        g.members()
                            .into_iter()
                            .map(|m| GroupMemberDescriptionT {
                                member_id: m.member_id,
                                client_id: Some(m.client_id),
                                client_host: Some(m.client_host),
                                assignment: Some(assignment_to_wire(&m.assignment)),
                            })
                            .collect(),
                    ),
                },
                None if has_commits => GroupDescriptionT {
                    group: id.clone(),
                    state: Some(GroupState::Empty.name().into()),
                    members: Some(Vec::new()),
                    ..Default::default()
                },
                _ => GroupDescriptionT {
                    group: id.clone(),
                    error: ErrorCode::GROUP_ID_NOT_FOUND,
                    message: Some(format!("group {id:?} does not exist")),
                    state: Some("Dead".into()),
                    ..Default::default()
                },
            };
            out.push(d);
        }
        BodyT::DescribeGroupsResponse(Box::new(DescribeGroupsResponseT { groups: Some(out) }))
    }

    async fn delete(&self, shard: &Shard, req: DeleteGroupsRequestT) -> BodyT {
        let mut results = Vec::new();
        for id in req.groups.unwrap_or_default() {
            let result = self.delete_one(shard, &id).await;
            let (error, message) = match result {
                Ok(()) => (ErrorCode::NONE, None),
                Err(e) => (e.code, Some(e.message)),
            };
            results.push(GroupResultT {
                group: id,
                error,
                message,
            });
        }
        BodyT::DeleteGroupsResponse(Box::new(DeleteGroupsResponseT {
            results: Some(results),
        }))
    }

    async fn delete_one(&self, shard: &Shard, id: &str) -> Result<(), PartitionError> {
        if self.groups.borrow().get(id).is_some_and(|g| !g.is_empty()) {
            return Err(PartitionError::new(
                ErrorCode::NON_EMPTY_GROUP,
                format!("group {id:?} has active members; stop them first"),
            ));
        }
        let p = offsets_partition(shard, id);
        let store = self.ensure_loaded(shard, p).await?;
        let keys: Vec<(String, i32)> = store
            .borrow()
            .of_group(id)
            .into_iter()
            .map(|(t, p, _)| (t, p))
            .collect();
        let known = self.groups.borrow().contains_key(id);
        if keys.is_empty() && !known {
            return Err(PartitionError::new(
                ErrorCode::GROUP_ID_NOT_FOUND,
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
                .map_err(|e| PartitionError::new(ErrorCode::UNKNOWN_SERVER_ERROR, e.to_string()))?;
            append(shard, p, bytes).await?;
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
        shard: &Shard,
        p: i32,
    ) -> Result<Rc<RefCell<OffsetStore>>, PartitionError> {
        if let Some(s) = self.stores.borrow().get(&p) {
            return Ok(s.clone());
        }
        let _one_at_a_time = self.loading.acquire_permit(1).await;
        if let Some(s) = self.stores.borrow().get(&p) {
            return Ok(s.clone());
        }
        let partition = shard.local_partition(&PartitionKey::new(OFFSETS_TOPIC, p))?;
        let mut store = OffsetStore::default();
        let start = partition.offsets().log_start;
        let mut skipped = 0u64;
        let mut replayed = 0u64;
        partition
            .replay(
                start,
                || partition.high_watermark(),
                LOAD_READ_BYTES,
                |batch| {
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
                    for r in records.into_iter().filter(|r| r.offset >= start) {
                        replayed += 1;
                        let applied = r
                            .key
                            .as_deref()
                            .map(|k| store.apply_record(k, r.value.as_deref()));
                        if !matches!(applied, Some(Ok(()))) {
                            skipped += 1;
                        }
                    }
                },
            )
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
        Ok(store)
    }
}

/// Partition count of `topic`, if it exists.
fn partitions_of(shard: &Shard, topic: &str) -> Option<i32> {
    shard
        .metadata
        .borrow()
        .topics
        .get(topic)
        .map(|t| t.partitions.len() as i32)
}

/// The `__consumer_offsets` partition of `group`: by the topic's partition count once
/// it exists, so a changed config never moves a group.
pub fn offsets_partition(shard: &Shard, group: &str) -> i32 {
    let n = partitions_of(shard, OFFSETS_TOPIC).unwrap_or(shard.config.offsets_topic_partitions);
    partition_for_group(group, n)
}

/// `__consumer_offsets` partitions this shard owns.
fn owned_offsets_partitions(shard: &Shard) -> Vec<i32> {
    let n = partitions_of(shard, OFFSETS_TOPIC).unwrap_or(0);
    (0..n)
        .filter(|p| {
            shard
                .owner_of(OFFSETS_TOPIC, *p)
                .is_ok_and(|s| s == shard.id)
        })
        .collect()
}

/// Appends records to a local `__consumer_offsets` partition, durable on return.
async fn append(shard: &Shard, p: i32, records: Bytes) -> Result<(), PartitionError> {
    let partition = shard.local_partition(&PartitionKey::new(OFFSETS_TOPIC, p))?;
    partition.produce(records).await.map(|_| ())
}
