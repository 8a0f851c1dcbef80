//! Drives this voter's [`QuorumNode`] on the coordination executor: the I/O around
//! the sans-I/O node (DESIGN §5).
//!
//! - A timer ticks the node every [`TICK_MS`].
//! - Peer messages are stepped in as they arrive ([`QuorumDriver::step`]).
//! - After either, [`QuorumDriver::pump`] runs every pending `Ready`: the node's
//!   storage is the [`RaftFile`] (written and fdatasync'd before the messages that
//!   promise it leave), outgoing messages go to the [`RaftTransport`], committed
//!   records go to the [`CommittedSink`] (the coordinator), in log order.
//! - [`QuorumDriver::propose`] appends a record and waits, bounded, until it
//!   commits (or another leader overwrites its index).
//!
//! A storage failure stops the quorum for good: the node may have promised what
//! it cannot keep, so it must not go on voting or acknowledging.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use raft::prelude::Message;
use tracing::{error, info};

use crate::cluster::quorum::{
    Committed, DurableError, NodeId, ProposalId, ProposalOutcome, ProposeError, QuorumConfig,
    QuorumNode,
};
use crate::cluster::raft_file::RaftFile;
use crate::metadata::records::{Applied, MetadataRecord};
use crate::sync::signal::Signal;

/// The quorum's logical clock period; Raft's election timeout is
/// [`crate::cluster::quorum::ELECTION_TICKS`] of these.
pub const TICK_MS: u64 = 100;

/// Sends Raft messages to other voters (best effort: Raft retries).
pub trait RaftTransport {
    fn send(&self, messages: Vec<Message>);
    /// The raft ids of the peers a connection is up to now.
    fn reachable(&self) -> Vec<u64>;
}

/// Receives committed records in log order, and leadership changes.
pub trait CommittedSink {
    /// Applies a committed entry; returns what it did.
    fn apply(&self, entry: &Committed) -> Applied;
    /// This node became a ready leader (`true`) or stopped being one.
    fn leadership(&self, ready: bool);
}

/// Why a proposal did not take effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error(transparent)]
    Refused(#[from] ProposeError),
    #[error("the controller lost leadership before the change committed")]
    Overwritten,
    #[error("the change did not commit within {0} ms (no quorum of controllers?)")]
    TimedOut(u64),
    #[error("the metadata log failed: {0}")]
    Failed(String),
}

/// What a committed proposal did when applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedChange {
    pub offset: u64,
    pub applied: Applied,
}

type Waiter = Rc<RefCell<Option<Result<CommittedChange, ProposalError>>>>;

/// One voter's quorum node with its storage and transport.
pub struct QuorumDriver {
    node: RefCell<QuorumNode>,
    file: RefCell<RaftFile>,
    transport: Rc<dyn RaftTransport>,
    sink: Rc<dyn CommittedSink>,
    waiters: RefCell<BTreeMap<ProposalId, Waiter>>,
    /// Set when a proposal resolves or the node's role changes.
    changed: Signal,
    /// Applied results of this node's own proposals, handed to their waiters.
    results: RefCell<BTreeMap<u64, Applied>>,
    was_ready: Cell<bool>,
    failed: RefCell<Option<String>>,
    /// Leadership confirmations asked and the ones a quorum answered.
    next_confirmation: Cell<u64>,
    confirmed: RefCell<std::collections::BTreeSet<u64>>,
}

impl QuorumDriver {
    /// Opens the voter's storage and builds its node; the committed entries it
    /// already has are applied by the first [`QuorumDriver::pump`].
    pub fn open(
        data_dir: &std::path::Path,
        config: &QuorumConfig,
        transport: Rc<dyn RaftTransport>,
        sink: Rc<dyn CommittedSink>,
    ) -> Result<Self, DurableError> {
        let (file, state, report) = RaftFile::open(data_dir)?;
        info!(
            frames = report.frames,
            entries = state.entries.len(),
            term = state.hard_state.term,
            commit = state.hard_state.commit,
            voters = ?config.voters,
            "metadata log opened"
        );
        let logger = crate::cluster::slog_tracing::logger();
        let node = QuorumNode::new(config, state, &logger)
            .map_err(|e| DurableError(format!("cannot start the quorum node: {e}")))?;
        Ok(Self {
            node: RefCell::new(node),
            file: RefCell::new(file),
            transport,
            sink,
            waiters: RefCell::new(BTreeMap::new()),
            changed: Signal::default(),
            results: RefCell::new(BTreeMap::new()),
            was_ready: Cell::new(false),
            failed: RefCell::new(None),
            next_confirmation: Cell::new(1),
            confirmed: RefCell::new(std::collections::BTreeSet::new()),
        })
    }

    pub fn id(&self) -> NodeId {
        self.node.borrow().id()
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.node.borrow().leader()
    }

    pub fn term(&self) -> u64 {
        self.node.borrow().term()
    }

    pub fn leader_ready(&self) -> bool {
        self.node.borrow().leader_ready()
    }

    pub fn applied(&self) -> u64 {
        self.node.borrow().applied()
    }

    pub fn commit_index(&self) -> u64 {
        self.node.borrow().commit_index()
    }

    /// Why the quorum stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Starts an election now: a lone voter leads at once instead of after a timeout.
    pub fn campaign(&self) {
        self.node.borrow_mut().campaign();
        self.pump();
    }

    /// Steps a peer's message in and runs what it made ready.
    pub fn step(&self, message: Message) {
        if self.failed.borrow().is_some() {
            return;
        }
        let stepped = self.node.borrow_mut().step(message);
        if let Err(e) = stepped {
            self.fail(e.to_string());
            return;
        }
        self.pump();
    }

    /// Stops the quorum for good: every waiting proposal fails with `why`.
    fn fail(&self, why: String) {
        error!(error = %why, "this controller stops");
        *self.failed.borrow_mut() = Some(why.clone());
        for (_, w) in std::mem::take(&mut *self.waiters.borrow_mut()) {
            *w.borrow_mut() = Some(Err(ProposalError::Failed(why.clone())));
        }
        self.changed.notify();
    }

    /// Ticks the node every [`TICK_MS`] until the quorum fails.
    pub async fn run_ticks(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
            if self.failed.borrow().is_some() {
                return;
            }
            self.node.borrow_mut().tick();
            self.pump();
        }
    }

    /// Runs every pending `Ready` (see the module doc).
    pub fn pump(&self) {
        loop {
            if self.failed.borrow().is_some() {
                return;
            }
            let out = {
                let mut node = self.node.borrow_mut();
                let mut file = self.file.borrow_mut();
                node.process(&mut *file)
            };
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    self.fail(format!("the metadata log cannot be written: {e}"));
                    return;
                }
            };
            let idle = out.messages.is_empty()
                && out.committed.is_empty()
                && out.proposals.is_empty()
                && out.confirmed.is_empty();
            for ctx in &out.confirmed {
                if let Ok(bytes) = <[u8; 8]>::try_from(ctx.as_slice()) {
                    self.confirmed
                        .borrow_mut()
                        .insert(u64::from_le_bytes(bytes));
                }
                self.changed.notify();
            }
            if !out.messages.is_empty() {
                self.transport.send(out.messages);
            }
            for entry in &out.committed {
                let applied = self.sink.apply(entry);
                if self.waiters.borrow().keys().any(|p| p.index == entry.index) {
                    self.results.borrow_mut().insert(entry.index, applied);
                }
            }
            for (id, outcome) in out.proposals {
                let applied = self.results.borrow_mut().remove(&id.index);
                if let Some(w) = self.waiters.borrow_mut().remove(&id) {
                    *w.borrow_mut() = Some(match outcome {
                        ProposalOutcome::Committed => Ok(CommittedChange {
                            offset: id.index,
                            applied: applied.unwrap_or(Applied::Changed),
                        }),
                        ProposalOutcome::Overwritten => Err(ProposalError::Overwritten),
                    });
                }
                self.changed.notify();
            }
            let ready = self.node.borrow().leader_ready();
            if ready != self.was_ready.get() {
                self.was_ready.set(ready);
                if ready {
                    info!(term = self.term(), "this broker is the active controller");
                } else {
                    info!(term = self.term(), leader = ?self.leader(), "this broker is no longer the active controller");
                }
                self.sink.leadership(ready);
                self.changed.notify();
            }
            if idle {
                return;
            }
        }
    }

    /// Proposes `record` and waits until it commits, at most `timeout`.
    pub async fn propose(
        &self,
        record: &MetadataRecord,
        timeout: Duration,
    ) -> Result<CommittedChange, ProposalError> {
        if let Some(f) = self.failure() {
            return Err(ProposalError::Failed(f));
        }
        let id = self.node.borrow_mut().propose(record.encode())?;
        let waiter: Waiter = Rc::new(RefCell::new(None));
        self.waiters.borrow_mut().insert(id, waiter.clone());
        self.pump();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(result) = waiter.borrow_mut().take() {
                return result;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                self.waiters.borrow_mut().remove(&id);
                self.results.borrow_mut().remove(&id.index);
                self.node.borrow_mut().forget(id);
                return Err(ProposalError::TimedOut(timeout.as_millis() as u64));
            }
            self.wait_changed(left).await;
        }
    }

    /// Whether a majority of the voters confirms, within `timeout`, that this node
    /// still leads. Asked before an admin change is appended, so a leader cut off
    /// from its quorum refuses the change instead of appending a record that could
    /// commit after its caller was told it failed.
    pub async fn confirm_leadership(&self, timeout: Duration) -> bool {
        let id = self.next_confirmation.get();
        self.next_confirmation.set(id + 1);
        self.node
            .borrow_mut()
            .confirm_leadership(id.to_le_bytes().to_vec());
        self.pump();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.confirmed.borrow_mut().remove(&id) {
                return self.leader_ready();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !self.leader_ready() {
                // An answer arriving later finds nobody waiting: drop it then.
                self.confirmed.borrow_mut().remove(&id);
                return false;
            }
            self.wait_changed(left).await;
        }
    }

    /// Waits for the next change (a resolved proposal, a confirmation, a role
    /// change), at most `left` and at most a tick.
    async fn wait_changed(&self, left: Duration) {
        let wait = self.changed.wait();
        futures_lite::future::or(
            async {
                wait.await;
            },
            glommio::timer::sleep(left.min(Duration::from_millis(TICK_MS))),
        )
        .await;
    }

    /// Proposes `record` without waiting (a decision the next heartbeat or session
    /// check repeats if it is lost).
    pub fn propose_detached(&self, record: &MetadataRecord) -> Result<ProposalId, ProposeError> {
        let id = self.node.borrow_mut().propose(record.encode())?;
        self.pump();
        Ok(id)
    }
}
