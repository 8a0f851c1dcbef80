//! One consumer group's membership: a pure state machine, Kafka's classic group
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, session timeouts,
//! generations) with time and topic metadata as inputs and no I/O.
//!
//! States, as in Kafka: `Empty` (no members) → `PreparingRebalance` (collecting
//! joins until every known member has rejoined, or the rebalance timeout removes the
//! rest) → `CompletingRebalance` (waiting for the leader's assignment, for client-side
//! assignment) or directly `Stable` (server-side assignment, the native protocol) →
//! any join, leave or expiry starts the next rebalance. Every completed rebalance
//! increments the generation; requests of an older generation are fenced
//! (`IllegalGeneration`).
//!
//! Join and Sync requests are held until the rebalance lets them be answered: the
//! caller passes a [`Token`] per request and gets [`Reply`]s, possibly for other
//! requests, from whichever call completes them.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::groups::assignor::{self, AssignmentStrategy, TopicPartitions};

/// The protocol type of groups that the broker assigns (the native consumer).
pub const SERVER_ASSIGNED_PROTOCOL_TYPE: &str = "ringlog";

/// Identifies a held request to the caller.
pub type Token = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// Kafka's names (DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Why a group request was refused (Kafka's error of the same name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the member id is not known to the group (it was removed, or never joined)")]
    UnknownMemberId,
    #[error("the generation is not the group's current one: rejoin the group")]
    IllegalGeneration,
    #[error("the group is rebalancing: rejoin the group")]
    RebalanceInProgress,
    #[error("the member's protocol type or assignment strategies do not match the group's")]
    InconsistentGroupProtocol,
    #[error("the session timeout is outside the broker's allowed range")]
    InvalidSessionTimeout,
    #[error("the group has reached its maximum size")]
    GroupMaxSizeReached,
}

/// Broker settings that bound groups (Kafka's `group.*` keys).
#[derive(Clone, Debug)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_min_ms: u64,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_max_ms: u64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
        }
    }
}

/// One assignment strategy a member offers, with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    /// Opaque to the broker for client-side assignment (returned to the leader).
    pub metadata: Bytes,
    /// Topics the member subscribes to: what server-side assignment assigns.
    pub subscription: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
}

/// A member's assignment: what it is told (`raw`, opaque for client-side groups) and
/// the partitions it means, as far as the broker knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberAssignment {
    pub raw: Bytes,
    pub partitions: TopicPartitions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol: only for the leader of a
    /// client-side group, which computes the assignment.
    pub members: Vec<(String, Bytes)>,
    /// Server-side groups: this member's assignment, final (no Sync needed).
    pub assignment: Option<MemberAssignment>,
}

/// An answer to a held (or immediately answerable) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join(Token, Result<JoinResult, GroupError>),
    Sync(Token, Result<MemberAssignment, GroupError>),
}

/// A member as `describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub assignment: TopicPartitions,
}

#[derive(Clone, Debug)]
struct Member {
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<Protocol>,
    last_heartbeat_ms: i64,
    /// Order of first join: the earliest remaining member leads.
    joined_seq: u64,
    join: Option<Token>,
    sync: Option<Token>,
    assignment: MemberAssignment,
}

/// One group's membership state.
#[derive(Clone, Debug)]
pub struct Group {
    id: String,
    limits: GroupLimits,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    rebalance_deadline_ms: Option<i64>,
    initial_delay_until_ms: Option<i64>,
    next_member_seq: u64,
}

impl Group {
    pub fn new(id: &str, limits: GroupLimits) -> Self {
        Self {
            id: id.to_string(),
            limits,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline_ms: None,
            initial_delay_until_ms: None,
            next_member_seq: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    pub fn members(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                assignment: m.assignment.partitions.clone(),
            })
            .collect()
    }

    /// When [`Group::tick`] next has something to do (a session or rebalance
    /// deadline), if ever.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join.is_none())
            .map(|m| m.last_heartbeat_ms + m.session_timeout_ms as i64);
        let rebalance = match self.state {
            GroupState::PreparingRebalance => {
                let all_joined = self.members.values().all(|m| m.join.is_some());
                if all_joined {
                    self.initial_delay_until_ms
                } else {
                    self.rebalance_deadline_ms
                }
            }
            _ => None,
        };
        sessions.chain(rebalance).min()
    }

    /// JoinGroup. The reply usually comes later, when the rebalance completes.
    pub fn join(
        &mut self,
        token: Token,
        req: JoinRequest,
        now_ms: i64,
        partitions: &dyn Fn(&str) -> Option<i32>,
    ) -> Vec<Reply> {
        let refuse = |e| vec![Reply::Join(token, Err(e))];
        if !(self.limits.session_timeout_min_ms..=self.limits.session_timeout_max_ms)
            .contains(&req.session_timeout_ms)
        {
            return refuse(GroupError::InvalidSessionTimeout);
        }
        if !self.protocols_fit(&req) {
            return refuse(GroupError::InconsistentGroupProtocol);
        }
        let member_id = if req.member_id.is_empty() {
            if self.members.len() >= self.limits.max_size {
                return refuse(GroupError::GroupMaxSizeReached);
            }
            self.next_member_seq += 1;
            format!("{}-{:016x}", req.client_id, self.next_member_seq)
        } else if self.members.contains_key(&req.member_id) {
            req.member_id.clone()
        } else {
            return refuse(GroupError::UnknownMemberId);
        };
        let mut replies = Vec::new();
        let seq = self.next_member_seq;
        let member = self.members.entry(member_id).or_insert_with(|| Member {
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: Vec::new(),
            last_heartbeat_ms: now_ms,
            joined_seq: seq,
            join: None,
            sync: None,
            assignment: MemberAssignment::default(),
        });
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols;
        member.last_heartbeat_ms = now_ms;
        if let Some(old) = member.join.replace(token) {
            replies.push(Reply::Join(old, Err(GroupError::RebalanceInProgress)));
        }
        self.protocol_type = Some(req.protocol_type);
        if self.state != GroupState::PreparingRebalance {
            let was_empty = self.state == GroupState::Empty;
            replies.extend(self.begin_rebalance(now_ms));
            if was_empty {
                self.initial_delay_until_ms =
                    Some(now_ms + self.limits.initial_rebalance_delay_ms as i64);
            }
        } else if let Some(until) = self.initial_delay_until_ms {
            // More members keep arriving: wait a little longer for the rest, within
            // the rebalance timeout.
            let extended = now_ms + self.limits.initial_rebalance_delay_ms as i64;
            let cap = self.rebalance_deadline_ms.unwrap_or(extended);
            self.initial_delay_until_ms = Some(until.max(extended.min(cap)));
        }
        replies.extend(self.try_complete_join(now_ms, partitions));
        replies
    }

    /// SyncGroup: the leader of a client-side group hands in every member's
    /// assignment; everyone gets their own.
    pub fn sync(
        &mut self,
        token: Token,
        member_id: &str,
        generation: i32,
        leader_assignments: BTreeMap<String, MemberAssignment>,
        now_ms: i64,
    ) -> Vec<Reply> {
        if let Err(e) = self.check_member(member_id, generation) {
            return vec![Reply::Sync(token, Err(e))];
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return vec![Reply::Sync(token, Err(GroupError::UnknownMemberId))];
        };
        member.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::Empty => vec![Reply::Sync(token, Err(GroupError::UnknownMemberId))],
            GroupState::PreparingRebalance => {
                vec![Reply::Sync(token, Err(GroupError::RebalanceInProgress))]
            }
            GroupState::Stable => vec![Reply::Sync(token, Ok(member.assignment.clone()))],
            GroupState::CompletingRebalance => {
                if let Some(old) = member.sync.replace(token) {
                    return vec![Reply::Sync(old, Err(GroupError::RebalanceInProgress))];
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Vec::new();
                }
                let mut given = leader_assignments;
                for (id, m) in self.members.iter_mut() {
                    m.assignment = given.remove(id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                self.members
                    .values_mut()
                    .filter_map(|m| {
                        m.sync
                            .take()
                            .map(|t| Reply::Sync(t, Ok(m.assignment.clone())))
                    })
                    .collect()
            }
        }
    }

    /// Heartbeat: keeps the member's session; tells it to rejoin during a rebalance.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// LeaveGroup: the member goes at once (no session timeout to wait for).
    pub fn leave(
        &mut self,
        member_id: &str,
        now_ms: i64,
        partitions: &dyn Fn(&str) -> Option<i32>,
    ) -> (Result<(), GroupError>, Vec<Reply>) {
        if !self.members.contains_key(member_id) {
            return (Err(GroupError::UnknownMemberId), Vec::new());
        }
        let replies = self.remove_members(&[member_id.to_string()], now_ms, partitions);
        (Ok(()), replies)
    }

    /// Advances time: expires members whose session lapsed and completes a
    /// rebalance whose deadline passed.
    pub fn tick(&mut self, now_ms: i64, partitions: &dyn Fn(&str) -> Option<i32>) -> Vec<Reply> {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.join.is_none() && now_ms >= m.last_heartbeat_ms + m.session_timeout_ms as i64
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut replies = Vec::new();
        if !expired.is_empty() {
            replies.extend(self.remove_members(&expired, now_ms, partitions));
        }
        replies.extend(self.try_complete_join(now_ms, partitions));
        replies
    }

    /// Whether an offset commit from `member_id` at `generation` is accepted: a
    /// member of the current generation, while the group is stable or collecting
    /// joins (the assignment of that generation still holds then). A
    /// commit with no member and generation -1 (an admin tool, or a consumer that
    /// manages its own partitions) is accepted only while the group has no members.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> Result<(), GroupError> {
        if member_id.is_empty() && generation < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        self.check_member(member_id, generation)?;
        match self.state {
            // While the group collects joins, members of the current generation may
            // still commit what they processed before giving their partitions up
            // (as in Kafka), so the next owner starts where they stopped.
            GroupState::Stable | GroupState::PreparingRebalance => Ok(()),
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
        }
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), GroupError> {
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// The request's protocol type matches the group's and at least one strategy is
    /// offered by every member, this one included (and, for server-side groups, is
    /// one the broker implements).
    fn protocols_fit(&self, req: &JoinRequest) -> bool {
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|(id, _)| **id != req.member_id)
            .map(|(_, m)| m)
            .collect();
        if !others.is_empty() && self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        let server = req.protocol_type == SERVER_ASSIGNED_PROTOCOL_TYPE;
        req.protocols.iter().any(|p| {
            (!server || AssignmentStrategy::from_name(&p.name).is_some())
                && others
                    .iter()
                    .all(|m| m.protocols.iter().any(|q| q.name == p.name))
        })
    }

    /// Starts a rebalance: members must rejoin within the rebalance timeout. Syncs
    /// waiting on the old round are told to rejoin.
    fn begin_rebalance(&mut self, now_ms: i64) -> Vec<Reply> {
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = Some(now_ms + timeout as i64);
        self.initial_delay_until_ms = None;
        self.members
            .values_mut()
            .filter_map(|m| {
                m.sync
                    .take()
                    .map(|t| Reply::Sync(t, Err(GroupError::RebalanceInProgress)))
            })
            .collect()
    }

    fn remove_members(
        &mut self,
        ids: &[String],
        now_ms: i64,
        partitions: &dyn Fn(&str) -> Option<i32>,
    ) -> Vec<Reply> {
        let mut replies = self.evict(ids);
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !self.members.contains_key(l))
        {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty();
                } else {
                    replies.extend(self.begin_rebalance(now_ms));
                }
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() {
                    self.become_empty();
                } else {
                    replies.extend(self.try_complete_join(now_ms, partitions));
                }
            }
            GroupState::Empty => {}
        }
        replies
    }

    /// Removes members; their held requests are told they are no longer members.
    fn evict(&mut self, ids: &[String]) -> Vec<Reply> {
        let mut replies = Vec::new();
        for id in ids {
            if let Some(m) = self.members.remove(id) {
                if let Some(t) = m.join {
                    replies.push(Reply::Join(t, Err(GroupError::UnknownMemberId)));
                }
                if let Some(t) = m.sync {
                    replies.push(Reply::Sync(t, Err(GroupError::UnknownMemberId)));
                }
            }
        }
        replies
    }

    /// No members left: a new generation with nothing in it (as Kafka does).
    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.generation += 1;
        self.protocol = None;
        self.protocol_type = None;
        self.leader = None;
        self.rebalance_deadline_ms = None;
        self.initial_delay_until_ms = None;
    }

    fn try_complete_join(
        &mut self,
        now_ms: i64,
        partitions: &dyn Fn(&str) -> Option<i32>,
    ) -> Vec<Reply> {
        if !self.join_complete(now_ms) {
            return Vec::new();
        }
        // Members that did not rejoin in time are out.
        let late: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut replies = self.evict(&late);
        if self.members.is_empty() {
            self.become_empty();
            return replies;
        }
        self.generation += 1;
        self.rebalance_deadline_ms = None;
        self.initial_delay_until_ms = None;
        let leader = self.choose_leader();
        let protocol = self.choose_protocol(&leader);
        let server = self.protocol_type.as_deref() == Some(SERVER_ASSIGNED_PROTOCOL_TYPE);
        if server {
            self.assign_on_server(&protocol, partitions);
            self.state = GroupState::Stable;
        } else {
            for m in self.members.values_mut() {
                m.assignment = MemberAssignment::default();
            }
            self.state = GroupState::CompletingRebalance;
        }
        replies.extend(self.answer_joins(now_ms, &leader, &protocol, server));
        replies
    }

    /// Whether the rebalance in preparation can end: every member rejoined (and an
    /// empty group's first delay is over), or the rebalance timeout passed.
    fn join_complete(&self, now_ms: i64) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let all_joined = self.members.values().all(|m| m.join.is_some());
        let delay_over = self.initial_delay_until_ms.is_none_or(|t| now_ms >= t);
        let deadline_over = self.rebalance_deadline_ms.is_some_and(|t| now_ms >= t);
        (all_joined && delay_over) || deadline_over
    }

    /// The leader stays while it is a member; otherwise the longest-standing member.
    fn choose_leader(&mut self) -> String {
        let leader = match self.leader.clone().filter(|l| self.members.contains_key(l)) {
            Some(l) => l,
            None => self
                .members
                .iter()
                .min_by_key(|(_, m)| m.joined_seq)
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
        };
        self.leader = Some(leader.clone());
        leader
    }

    /// The leader's most preferred strategy that every member offers (checked at
    /// join, so one exists).
    fn choose_protocol(&mut self, leader: &str) -> String {
        let protocol = self.members[leader]
            .protocols
            .iter()
            .map(|p| p.name.clone())
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|q| &q.name == name))
            })
            .unwrap_or_default();
        self.protocol = Some(protocol.clone());
        protocol
    }

    /// Server-side groups: the broker assigns partitions to the members'
    /// subscriptions with the chosen strategy.
    fn assign_on_server(&mut self, protocol: &str, partitions: &dyn Fn(&str) -> Option<i32>) {
        let strategy = AssignmentStrategy::from_name(protocol).unwrap_or(AssignmentStrategy::Range);
        let subscriptions: BTreeMap<String, Vec<String>> = self
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    chosen(m, protocol)
                        .map(|p| p.subscription)
                        .unwrap_or_default(),
                )
            })
            .collect();
        let mut assigned = assignor::assign(strategy, &subscriptions, partitions);
        for (id, m) in self.members.iter_mut() {
            m.assignment = MemberAssignment {
                raw: Bytes::new(),
                partitions: assigned.remove(id).unwrap_or_default(),
            };
        }
    }

    /// Answers every held join of the new generation: the leader of a client-side
    /// group gets every member's metadata to assign from; a server-side group's
    /// members get their assignment.
    fn answer_joins(
        &mut self,
        now_ms: i64,
        leader: &str,
        protocol: &str,
        server: bool,
    ) -> Vec<Reply> {
        let metadata: Vec<(String, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    chosen(m, protocol).map(|p| p.metadata).unwrap_or_default(),
                )
            })
            .collect();
        let generation = self.generation;
        let mut replies = Vec::new();
        for (id, m) in self.members.iter_mut() {
            m.last_heartbeat_ms = now_ms;
            let Some(token) = m.join.take() else {
                continue;
            };
            let is_leader = id == leader;
            replies.push(Reply::Join(
                token,
                Ok(JoinResult {
                    generation,
                    protocol: protocol.to_string(),
                    leader: leader.to_string(),
                    member_id: id.clone(),
                    members: if is_leader && !server {
                        metadata.clone()
                    } else {
                        Vec::new()
                    },
                    assignment: server.then(|| m.assignment.clone()),
                }),
            ));
        }
        replies
    }

    /// Every partition assigned in the current generation, with its owners: for the
    /// invariant checks of tests and for `describe`.
    pub fn owners(&self) -> BTreeMap<(String, i32), Vec<String>> {
        let mut out: BTreeMap<(String, i32), Vec<String>> = BTreeMap::new();
        for (id, m) in &self.members {
            for (topic, ps) in &m.assignment.partitions {
                for p in ps {
                    out.entry((topic.clone(), *p)).or_default().push(id.clone());
                }
            }
        }
        out
    }
}

/// The member's offer of the group's chosen strategy.
fn chosen(m: &Member, protocol: &str) -> Option<Protocol> {
    m.protocols.iter().find(|p| p.name == protocol).cloned()
}
