//! The controller quorum's Raft node, driven sans-I/O (DESIGN §5).
//!
//! [`QuorumNode`] wraps raft-rs's `RawNode` and does no I/O of its own: the caller
//! ticks it from a timer, [`QuorumNode::step`]s the messages peers sent, and calls
//! [`QuorumNode::process`] with the node's durable storage. `process` runs one
//! `Ready` in the order Raft's safety needs:
//! 1. messages that may leave before persistence (a leader's appends) are handed out;
//! 2. entries and the hard state are written and **synced** (fdatasync) — only then
//! 3. the messages that promise persisted state (votes, append acknowledgements);
//! 4. committed entries are returned for the caller to apply, in log order.
//!
//! Proposals are tracked by (term, index): a proposal resolves when the entry at
//! its index commits — as itself when the committed entry has its term, as lost
//! when another leader overwrote the index. A new leader reports itself ready
//! ([`QuorumNode::leader_ready`]) only once it has applied the first entry of its
//! own term: before that its view of the metadata may lack records a previous
//! leader committed, and it must not decide anything from it.
//!
//! The same code runs in the broker (durable storage in `raft_file`) and in the
//! seeded simulation (durable storage in memory that a crash cuts back to what was
//! synced).

use std::collections::BTreeMap;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, EntryType, HardState, Message};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};

/// A voter's id in the quorum: its broker id.
pub type NodeId = u64;

/// Raft ticks per election timeout (randomized up to twice this) and per heartbeat.
/// With the broker's 100 ms tick: a leader is suspected after 1–2 s, as KRaft's
/// `controller.quorum.election.timeout.ms` (1 s).
pub const ELECTION_TICKS: usize = 10;
pub const HEARTBEAT_TICKS: usize = 2;
/// Largest append message (bytes of entries) a leader sends a follower.
pub const MAX_APPEND_BYTES: u64 = 1 << 20;
/// Appends in flight to one follower.
pub const MAX_INFLIGHT_APPENDS: usize = 256;

/// What a node needs from its durable storage. `append` and `set_hard_state` may
/// buffer; only `sync` makes them durable, and a crash loses what was not synced.
pub trait RaftDurable {
    /// Stores `entries`; the first one's index may be at or below the stored last
    /// index, replacing the stored suffix from there (a new leader's overwrite).
    fn append(&mut self, entries: &[Entry]) -> Result<(), DurableError>;
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), DurableError>;
    fn sync(&mut self) -> Result<(), DurableError>;
}

/// Durable Raft storage failed: the node must stop (it may have promised what it
/// cannot keep).
#[derive(Debug, thiserror::Error)]
#[error("raft storage: {0}")]
pub struct DurableError(pub String);

/// A leader knows this voter acknowledged entries its log no longer holds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "this controller voter lost metadata log entries it had acknowledged: leader {leader} \
     says index {commit} is committed here but the log ends at {last_index} (was the data \
     directory emptied or restored from an old copy?); a voter cannot rejoin the quorum \
     without its log"
)]
pub struct LostEntries {
    pub leader: NodeId,
    pub commit: u64,
    pub last_index: u64,
}

/// What a node found in its durable storage at start.
#[derive(Clone, Debug, Default)]
pub struct DurableState {
    pub hard_state: HardState,
    /// Contiguous from index 1.
    pub entries: Vec<Entry>,
}

/// A proposal's place in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId {
    pub term: u64,
    pub index: u64,
}

/// A committed entry for the caller to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub term: u64,
    pub data: Vec<u8>,
}

/// How a proposal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalOutcome {
    Committed,
    /// Another leader's entry took its index.
    Overwritten,
}

/// One `process` round's results.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send, in order (the post-sync ones after the others).
    pub messages: Vec<Message>,
    /// Committed entries with data, in log order (Raft's empty entries skipped).
    pub committed: Vec<Committed>,
    pub proposals: Vec<(ProposalId, ProposalOutcome)>,
    /// Contexts of [`QuorumNode::confirm_leadership`] calls a quorum confirmed.
    pub confirmed: Vec<Vec<u8>>,
}

/// A proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the controller leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the controller leader has not caught up with its own term yet")]
    NotReady,
    #[error("raft refused the proposal: {0}")]
    Refused(String),
}

/// The quorum's static shape.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub id: NodeId,
    pub voters: Vec<NodeId>,
    /// A fixed election timeout in ticks instead of raft-rs's random one (drawn
    /// from the thread's RNG): the simulation gives each node its own from its
    /// seed, so a run replays exactly.
    pub fixed_election_ticks: Option<usize>,
}

/// One voter's Raft state machine.
pub struct QuorumNode {
    raw: RawNode<MemStorage>,
    pending: BTreeMap<u64, ProposalId>,
    /// Index of the first entry this node appended as leader of the current term.
    term_start: Option<(u64, u64)>,
    applied: u64,
    ready_to_lead: bool,
}

impl QuorumNode {
    /// A node resuming from `durable` (empty for a new node).
    pub fn new(
        config: &QuorumConfig,
        durable: DurableState,
        logger: &slog::Logger,
    ) -> Result<Self, raft::Error> {
        for (i, e) in durable.entries.iter().enumerate() {
            if e.index != i as u64 + 1 {
                return Err(raft::Error::ConfigInvalid(format!(
                    "the stored raft log is not contiguous: entry {} holds index {}",
                    i + 1,
                    e.index
                )));
            }
        }
        let last = durable.entries.last().map_or(0, |e| e.index);
        if durable.hard_state.commit > last {
            return Err(raft::Error::ConfigInvalid(format!(
                "the stored raft state says index {} committed but the log ends at {last}",
                durable.hard_state.commit
            )));
        }
        let storage = MemStorage::new_with_conf_state(ConfState::from((
            config.voters.clone(),
            Vec::<u64>::new(),
        )));
        {
            let mut core = storage.wl();
            core.append(&durable.entries)?;
            core.set_hardstate(durable.hard_state.clone());
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            // Committed entries are applied again from the start: the metadata
            // is rebuilt from the log.
            applied: 0,
            max_size_per_msg: MAX_APPEND_BYTES,
            max_inflight_msgs: MAX_INFLIGHT_APPENDS,
            check_quorum: true,
            pre_vote: true,
            min_election_tick: config.fixed_election_ticks.unwrap_or(0),
            max_election_tick: config.fixed_election_ticks.map_or(0, |t| t + 1),
            ..raft::Config::default()
        };
        raft_config.validate()?;
        let raw = RawNode::new(&raft_config, storage, logger)?;
        Ok(Self {
            raw,
            pending: BTreeMap::new(),
            term_start: None,
            applied: 0,
            ready_to_lead: false,
        })
    }

    pub fn id(&self) -> NodeId {
        self.raw.raft.id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        let l = self.raw.raft.leader_id;
        (l != raft::INVALID_ID).then_some(l)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// A leader that has applied its own term's first entry: its metadata holds
    /// every record committed before it, so it may decide and answer.
    pub fn leader_ready(&self) -> bool {
        self.is_leader() && self.ready_to_lead
    }

    /// The index of the last entry applied through [`Output::committed`].
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Takes a message from a peer. Messages for another node, or that Raft finds
    /// stale, are dropped: the network may deliver anything.
    /// Steps a peer's message in. A heartbeat that says this voter holds more
    /// than its log does is refused: the leader's commit in a heartbeat is at most
    /// what this voter acknowledged, so it means this voter lost entries it had
    /// made durable (its data dir was emptied or damaged). raft-rs would panic on
    /// it, and going on would let the voter vote and ack again without that
    /// history; the caller stops the quorum with the error instead.
    pub fn step(&mut self, message: Message) -> Result<(), LostEntries> {
        if message.to != self.id() {
            return Ok(());
        }
        let last_index = self.raw.raft.raft_log.last_index();
        if message.get_msg_type() == raft::prelude::MessageType::MsgHeartbeat
            && message.commit > last_index
        {
            return Err(LostEntries {
                leader: message.from,
                commit: message.commit,
                last_index,
            });
        }
        let _ = self.raw.step(message);
        Ok(())
    }

    /// Decodes a peer's message from its wire bytes.
    pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
        Message::parse_from_bytes(bytes).map_err(|e| e.to_string())
    }

    pub fn encode_message(message: &Message) -> Vec<u8> {
        message.write_to_bytes().unwrap_or_default()
    }

    /// Proposes `data` as the next entry; only a ready leader accepts.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        if !self.ready_to_lead {
            return Err(ProposeError::NotReady);
        }
        self.raw
            .propose(Vec::new(), data)
            .map_err(|e| ProposeError::Refused(e.to_string()))?;
        let id = ProposalId {
            term: self.term(),
            index: self.raw.raft.raft_log.last_index(),
        };
        self.pending.insert(id.index, id);
        Ok(id)
    }

    /// Runs the pending `Ready`, if any: see the module doc for the order.
    pub fn process(&mut self, durable: &mut dyn RaftDurable) -> Result<Output, DurableError> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        if let Some(ss) = ready.ss() {
            if ss.raft_state == StateRole::Leader {
                // become_leader appended its empty entry: the term starts there.
                self.term_start = Some((self.term(), self.raw.raft.raft_log.last_index()));
            } else {
                self.term_start = None;
            }
            self.ready_to_lead = false;
        }
        out.messages.extend(ready.take_messages());
        out.confirmed
            .extend(ready.take_read_states().into_iter().map(|r| r.request_ctx));
        self.apply(ready.take_committed_entries(), &mut out);
        let entries = ready.take_entries();
        if !entries.is_empty() {
            durable.append(&entries)?;
            self.raw
                .mut_store()
                .wl()
                .append(&entries)
                .map_err(|e| DurableError(e.to_string()))?;
        }
        if let Some(hs) = ready.hs() {
            durable.set_hard_state(hs)?;
            self.raw.mut_store().wl().set_hardstate(hs.clone());
        }
        if ready.must_sync() || !entries.is_empty() {
            durable.sync()?;
        }
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.store().rl().hard_state().clone();
            hs.set_commit(commit);
            // The commit index need not be durable (a restart learns it again); it
            // is written so a restart replays more without waiting for the leader.
            durable.set_hard_state(&hs)?;
            self.raw.mut_store().wl().set_hardstate(hs);
        }
        out.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out);
        self.raw.advance_apply();
        Ok(out)
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) {
        for e in entries {
            self.applied = e.index;
            if let Some(p) = self.pending.remove(&e.index) {
                let outcome = if p.term == e.term {
                    ProposalOutcome::Committed
                } else {
                    ProposalOutcome::Overwritten
                };
                out.proposals.push((p, outcome));
            }
            if let Some((term, start)) = self.term_start {
                if e.term == term && e.index >= start && self.term() == term {
                    self.ready_to_lead = true;
                }
            }
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                out.committed.push(Committed {
                    index: e.index,
                    term: e.term,
                    data: e.data.to_vec(),
                });
            }
        }
        // Proposals below the applied index that never showed up were dropped by a
        // leader change before they reached the log.
        let stale: Vec<u64> = self
            .pending
            .range(..=self.applied)
            .map(|(i, _)| *i)
            .collect();
        for i in stale {
            if let Some(p) = self.pending.remove(&i) {
                out.proposals.push((p, ProposalOutcome::Overwritten));
            }
        }
    }

    /// Proposals still waiting, for the caller's timeouts.
    pub fn pending_proposals(&self) -> impl Iterator<Item = &ProposalId> {
        self.pending.values()
    }

    /// Forgets a proposal whose caller gave up; its entry may still commit.
    pub fn forget(&mut self, id: ProposalId) {
        if self.pending.get(&id.index) == Some(&id) {
            self.pending.remove(&id.index);
        }
    }

    /// Asks a quorum to confirm this node still leads (Raft's ReadIndex, a
    /// heartbeat round): `ctx` comes back in [`Output::confirmed`] once a majority
    /// answered. A leader cut off from its voters never sees it.
    pub fn confirm_leadership(&mut self, ctx: Vec<u8>) {
        self.raw.read_index(ctx);
    }

    /// Starts an election now (a cluster of one does so at start).
    pub fn campaign(&mut self) {
        let _ = self.raw.campaign();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::MessageType;

    fn heartbeat(commit: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = 2;
        m.to = 1;
        m.term = 1;
        m.commit = commit;
        m
    }

    /// A voter restarted on an emptied data dir: the leader still counts the
    /// entries it acknowledged before. raft-rs would panic on that heartbeat.
    #[test]
    fn a_heartbeat_past_this_voters_log_is_refused_as_lost_entries() {
        let config = QuorumConfig {
            id: 1,
            voters: vec![1, 2, 3],
            fixed_election_ticks: Some(ELECTION_TICKS),
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = QuorumNode::new(&config, DurableState::default(), &logger).expect("node");
        assert_eq!(
            node.step(heartbeat(9)),
            Err(LostEntries {
                leader: 2,
                commit: 9,
                last_index: 0
            })
        );
        assert_eq!(node.step(heartbeat(0)), Ok(()));
        assert_eq!(node.leader(), Some(2));
    }
}
