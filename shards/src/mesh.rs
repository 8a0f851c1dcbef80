//! The cross-shard mesh: request/response calls between executors over a glommio
//! full channel mesh.
//!
//! Each executor joins the mesh with a [`Handler`] that answers requests from peers.
//! [`Mesh::call_shard`] and [`Mesh::call_coordinator`] send a request to a peer and
//! await its answer; a call to oneself runs the handler directly, so callers need not
//! special-case the local shard. Calls are typed: a request carries the [`Answer`]
//! slot of its own answer type, and a handler returns [`Answered`], which only
//! filling (or refusing) that slot yields.
//! Every peer-to-peer channel is bounded (`mesh_capacity`): a sender waits when the
//! receiver falls behind. Receiving never waits on sending (answers are sent from the
//! handler's own task), so two shards calling each other cannot deadlock.
//!
//! Leaving is a barrier. An executor that stops answering while a peer still calls it
//! would leave that peer waiting forever: glommio keeps a task that waits on a channel
//! alive through the channel's waker, so an exited executor's channels are never
//! dropped and its peers never see it go. [`Mesh::leave`] therefore tells every peer
//! this executor makes no more calls, keeps answering until every peer has said the
//! same, and only then closes its channels. An executor that returns without leaving
//! (an error path) has its channels closed by the pool, and calls to it fail with
//! [`ShardError::PeerGone`] instead of hanging.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use tracing::debug;

use crate::{ShardError, ShardId};

/// An executor in the pool: a data shard or the coordination executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    Shard(ShardId),
    Coordinator,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Shard(s) => write!(f, "shard {s}"),
            Peer::Coordinator => f.write_str("coordinator"),
        }
    }
}

impl Peer {
    /// Position in the mesh: data shards first, the coordinator last.
    pub(crate) fn mesh_index(self, shards: u16) -> usize {
        match self {
            Peer::Shard(s) => s.index(),
            Peer::Coordinator => usize::from(shards),
        }
    }

    pub(crate) fn from_mesh_index(index: usize, shards: u16) -> Peer {
        if index >= usize::from(shards) {
            Peer::Coordinator
        } else {
            Peer::Shard(ShardId(u16::try_from(index).unwrap_or(u16::MAX)))
        }
    }
}

/// What travels between executors. Requests to data shards are `S`, requests to the
/// coordinator `C`; each carries the [`Answer`] its handler fills, so the wire only
/// says when an answer is ready, never what it is.
pub(crate) enum Wire<S, C> {
    ToShard {
        id: u64,
        body: S,
    },
    ToCoordinator {
        id: u64,
        body: C,
    },
    /// The handler of request `id` has returned: its answer (if any) is in its slot.
    Answered {
        id: u64,
    },
    /// The sender makes no more calls; it still answers until everyone has left.
    Leave,
}

/// The slot the answer to one request goes into: made by the caller, carried inside
/// the request, filled by the handler. The answer's type is fixed by the request
/// variant that carries it, so a handler cannot write an answer of another kind.
pub struct Answer<T> {
    slot: Arc<Mutex<Option<T>>>,
}

/// Proof that a handler disposed of its request's [`Answer`]: handlers return it,
/// so one that forgets to answer does not compile.
#[must_use = "a handler returns this to show it answered"]
pub struct Answered(());

impl<T> Answer<T> {
    fn new() -> (Self, Arc<Mutex<Option<T>>>) {
        let slot = Arc::new(Mutex::new(None));
        (Self { slot: slot.clone() }, slot)
    }

    /// Answers the request.
    pub fn send(self, value: T) -> Answered {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(value);
        }
        Answered(())
    }

    /// Declines to answer: the caller gets [`ShardError::Refused`]. For an executor
    /// that cannot serve at all (one whose start failed).
    pub fn refuse(self) -> Answered {
        Answered(())
    }
}

impl<T> fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answer")
    }
}

/// What this executor knows about one peer's end of the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerState {
    /// Calls and answers flow.
    Up,
    /// The peer makes no more calls (it sent [`Wire::Leave`]) but still answers.
    Left,
    /// The peer's channel to us closed: it answers nothing more.
    Gone,
}

thread_local! {
    /// Closes this executor's mesh channels; taken and run by the pool when the
    /// executor's body returns, so an executor that exits without [`Mesh::leave`]
    /// cannot leave its peers waiting.
    static CLOSE_ON_EXIT: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

/// Closes the mesh of the current executor if it joined one and has not left.
pub(crate) fn close_on_exit() {
    if let Some(close) = CLOSE_ON_EXIT.with(|c| c.borrow_mut().take()) {
        close();
    }
}

/// Answers a request from a peer. Runs as its own task on the receiving executor.
pub type Handler<M> = Rc<dyn Fn(Peer, M) -> Pin<Box<dyn Future<Output = Answered>>>>;

/// The requests this executor serves: a data shard's or the coordinator's.
pub(crate) enum Serves<S, C> {
    Shard(Handler<S>),
    Coordinator(Handler<C>),
}

struct Inner<S: Send + 'static, C: Send + 'static> {
    me: Peer,
    shards: u16,
    senders: Senders<Wire<S, C>>,
    serves: Serves<S, C>,
    /// Calls awaiting an answer: id -> (peer index, whom to tell it is ready).
    pending: RefCell<HashMap<u64, (usize, flume::Sender<()>)>>,
    next_id: Cell<u64>,
    /// State of each peer by mesh index (this executor's own entry stays `Up`).
    peers: RefCell<Vec<PeerState>>,
    /// Woken whenever a peer leaves or goes.
    peer_changed: (flume::Sender<()>, flume::Receiver<()>),
    /// Set once this executor closed its channels: calls fail from then on.
    closed: Cell<bool>,
}

impl<S: Send + 'static, C: Send + 'static> Inner<S, C> {
    fn set_peer(&self, index: usize, state: PeerState) {
        if let Some(p) = self.peers.borrow_mut().get_mut(index) {
            // `Gone` is final; `Left` never returns to `Up`.
            if *p != PeerState::Gone {
                *p = state;
            }
        }
        let _ = self.peer_changed.0.try_send(());
    }

    fn peer(&self, index: usize) -> PeerState {
        self.peers
            .borrow()
            .get(index)
            .copied()
            .unwrap_or(PeerState::Gone)
    }

    /// Closes this executor's outgoing channels: peers see it gone once they have
    /// drained what it sent.
    fn close(&self) {
        if !self.closed.replace(true) {
            self.senders.close();
        }
    }
}

/// This executor's end of the mesh. Cheap to clone; `!Send` (it belongs to one
/// executor). `S` are the requests data shards serve, `C` the coordinator's.
pub struct Mesh<S: Send + 'static, C: Send + 'static> {
    inner: Rc<Inner<S, C>>,
}

impl<S: Send + 'static, C: Send + 'static> Clone for Mesh<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Send + 'static, C: Send + 'static> Mesh<S, C> {
    /// Joins the mesh (a barrier until every executor has joined) and starts
    /// receiving from every peer.
    pub(crate) async fn join(
        builder: MeshBuilder<Wire<S, C>, Full>,
        me: Peer,
        shards: u16,
        serves: Serves<S, C>,
    ) -> Result<Self, ShardError> {
        let (senders, mut receivers) = builder
            .join()
            .await
            .map_err(|e| ShardError::PeerGone(format!("mesh join failed: {e}")))?;
        let inner = Rc::new(Inner {
            me,
            shards,
            senders,
            serves,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            peers: RefCell::new(vec![PeerState::Up; usize::from(shards) + 1]),
            peer_changed: flume::unbounded(),
            closed: Cell::new(false),
        });
        for (index, receiver) in receivers.streams() {
            let inner = inner.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = receiver.recv().await {
                    let from = Peer::from_mesh_index(index, inner.shards);
                    match msg {
                        Wire::ToShard { id, body } => {
                            let answer = match &inner.serves {
                                Serves::Shard(handler) => Some(handler(from, body)),
                                Serves::Coordinator(_) => None,
                            };
                            answer_when_done(&inner, index, id, answer);
                        }
                        Wire::ToCoordinator { id, body } => {
                            let answer = match &inner.serves {
                                Serves::Coordinator(handler) => Some(handler(from, body)),
                                Serves::Shard(_) => None,
                            };
                            answer_when_done(&inner, index, id, answer);
                        }
                        Wire::Answered { id } => {
                            if let Some((_, tx)) = inner.pending.borrow_mut().remove(&id) {
                                // The caller may have given up (dropped its future).
                                let _ = tx.try_send(());
                            }
                        }
                        Wire::Leave => inner.set_peer(index, PeerState::Left),
                    }
                }
                // The peer closed its channels: fail the calls still waiting on it;
                // `send` refuses new ones.
                debug!(peer = %Peer::from_mesh_index(index, inner.shards), "mesh peer gone");
                inner.set_peer(index, PeerState::Gone);
                inner.pending.borrow_mut().retain(|_, (p, _)| *p != index);
            })
            .detach();
        }
        let closer = Rc::downgrade(&inner);
        CLOSE_ON_EXIT.with(|c| {
            *c.borrow_mut() = Some(Box::new(move || {
                if let Some(inner) = closer.upgrade() {
                    inner.close();
                }
            }));
        });
        Ok(Self { inner })
    }

    /// Leaves the mesh: tells every peer this executor makes no more calls, keeps
    /// answering theirs until each has left too (or `bound` passes), then closes this
    /// executor's channels. Call it after this executor's own calls have finished.
    /// Returns the peers that had not left within `bound`.
    pub async fn leave(&self, bound: Duration) -> Result<(), ShardError> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Ok(());
        }
        let me = inner.me.mesh_index(inner.shards);
        let others: Vec<usize> = (0..=usize::from(inner.shards))
            .filter(|i| *i != me)
            .collect();
        let all_left = async {
            for &index in &others {
                // A peer that is gone needs no notice (and may never drain its channel).
                if inner.peer(index) != PeerState::Gone {
                    let _ = inner.senders.send_to(index, Wire::Leave).await;
                }
            }
            while others.iter().any(|i| inner.peer(*i) == PeerState::Up) {
                if inner.peer_changed.1.recv_async().await.is_err() {
                    break;
                }
            }
        };
        let timed_out = futures_lite::future::or(
            async {
                all_left.await;
                false
            },
            async {
                glommio::timer::sleep(bound).await;
                true
            },
        )
        .await;
        inner.close();
        CLOSE_ON_EXIT.with(|c| c.borrow_mut().take());
        if timed_out {
            let late: Vec<String> = others
                .iter()
                .filter(|i| inner.peer(**i) == PeerState::Up)
                .map(|i| Peer::from_mesh_index(*i, inner.shards).to_string())
                .collect();
            return Err(ShardError::LeaveTimeout(late.join(", ")));
        }
        Ok(())
    }

    /// This executor.
    pub fn me(&self) -> Peer {
        self.inner.me
    }

    /// Number of data shards.
    pub fn shards(&self) -> u16 {
        self.inner.shards
    }

    /// Sends data shard `shard` the request `request` builds around its answer slot
    /// and awaits the answer.
    pub async fn call_shard<T: Send + 'static>(
        &self,
        shard: ShardId,
        request: impl FnOnce(Answer<T>) -> S,
    ) -> Result<T, ShardError> {
        self.send_to_shard(shard, request).await?.recv().await
    }

    /// Hands data shard `shard` a request and returns once it is queued there,
    /// without waiting for the answer. Requests sent one after another from one task
    /// reach the shard's handler in that order (a call to oneself spawns the handler
    /// at once, in order with the peer channels' requests), which is what keeps a
    /// connection's produce requests in order.
    pub async fn send_to_shard<T: Send + 'static>(
        &self,
        shard: ShardId,
        request: impl FnOnce(Answer<T>) -> S,
    ) -> Result<Pending<T>, ShardError> {
        let (answer, slot) = Answer::new();
        let body = request(answer);
        let peer = Peer::Shard(shard);
        if let (true, Serves::Shard(handler)) = (peer == self.inner.me, &self.inner.serves) {
            return Ok(self.run_here(handler(peer, body), slot));
        }
        self.send_remote(peer, |id| Wire::ToShard { id, body }, slot)
            .await
    }

    /// Sends the coordinator a request and awaits the answer.
    pub async fn call_coordinator<T: Send + 'static>(
        &self,
        request: impl FnOnce(Answer<T>) -> C,
    ) -> Result<T, ShardError> {
        let (answer, slot) = Answer::new();
        let body = request(answer);
        let peer = Peer::Coordinator;
        let pending = match (peer == self.inner.me, &self.inner.serves) {
            (true, Serves::Coordinator(handler)) => self.run_here(handler(peer, body), slot),
            _ => {
                self.send_remote(peer, |id| Wire::ToCoordinator { id, body }, slot)
                    .await?
            }
        };
        pending.recv().await
    }

    /// Runs this executor's own handler on a request to itself.
    fn run_here<T>(
        &self,
        answer: Pin<Box<dyn Future<Output = Answered>>>,
        slot: Arc<Mutex<Option<T>>>,
    ) -> Pending<T> {
        let (tx, done) = flume::bounded(1);
        glommio::spawn_local(async move {
            let _answered = answer.await;
            let _ = tx.try_send(());
        })
        .detach();
        Pending {
            peer: self.inner.me,
            done,
            slot,
        }
    }

    async fn send_remote<T>(
        &self,
        peer: Peer,
        wire: impl FnOnce(u64) -> Wire<S, C>,
        slot: Arc<Mutex<Option<T>>>,
    ) -> Result<Pending<T>, ShardError> {
        let inner = &self.inner;
        let index = peer.mesh_index(inner.shards);
        if inner.closed.get() || inner.peer(index) == PeerState::Gone {
            return Err(ShardError::PeerGone(peer.to_string()));
        }
        let (tx, done) = flume::bounded(1);
        let id = inner.next_id.get();
        inner.next_id.set(id.wrapping_add(1));
        inner.pending.borrow_mut().insert(id, (index, tx));
        if inner.senders.send_to(index, wire(id)).await.is_err() {
            inner.pending.borrow_mut().remove(&id);
            return Err(ShardError::PeerGone(peer.to_string()));
        }
        Ok(Pending { peer, done, slot })
    }
}

/// The answer to a request handed over by [`Mesh::send_to_shard`].
pub struct Pending<T> {
    peer: Peer,
    done: flume::Receiver<()>,
    slot: Arc<Mutex<Option<T>>>,
}

impl<T> Pending<T> {
    /// Waits for the answer.
    pub async fn recv(self) -> Result<T, ShardError> {
        self.done
            .recv_async()
            .await
            .map_err(|_| ShardError::PeerGone(self.peer.to_string()))?;
        let answer = self.slot.lock().ok().and_then(|mut slot| slot.take());
        answer.ok_or_else(|| ShardError::Refused(self.peer.to_string()))
    }
}

/// Runs a request's handler (if this executor serves requests of its kind: the
/// typed calls only address executors that do) and tells the caller once it has
/// answered.
fn answer_when_done<S: Send + 'static, C: Send + 'static>(
    inner: &Rc<Inner<S, C>>,
    index: usize,
    id: u64,
    answer: Option<Pin<Box<dyn Future<Output = Answered>>>>,
) {
    let inner = inner.clone();
    glommio::spawn_local(async move {
        if let Some(answer) = answer {
            let _answered = answer.await;
        }
        // A failed send means the caller's executor exited; nobody waits for this.
        let _ = inner.senders.send_to(index, Wire::Answered { id }).await;
    })
    .detach();
}
