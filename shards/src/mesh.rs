//! The cross-shard mesh: request/response calls between executors over a glommio
//! full channel mesh.
//!
//! Each executor joins the mesh with a [`Handler`] that answers requests from peers.
//! [`Mesh::call`] sends a request to a peer and awaits its answer; a call to oneself
//! runs the handler directly, so callers need not special-case the local shard.
//! Every peer-to-peer channel is bounded (`mesh_capacity`): a sender waits when the
//! receiver falls behind. Receiving never waits on sending (answers are sent from the
//! handler's own task), so two shards calling each other cannot deadlock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

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

/// What travels between executors.
pub(crate) enum Wire<M> {
    Request { id: u64, body: M },
    Response { id: u64, body: M },
}

/// Answers a request from a peer. Runs as its own task on the receiving executor.
pub type Handler<M> = Rc<dyn Fn(Peer, M) -> Pin<Box<dyn Future<Output = M>>>>;

struct Inner<M: Send + 'static> {
    me: Peer,
    shards: u16,
    senders: Senders<Wire<M>>,
    handler: Handler<M>,
    /// Calls awaiting an answer: id -> (peer index, where to deliver it).
    pending: RefCell<HashMap<u64, (usize, flume::Sender<M>)>>,
    next_id: Cell<u64>,
}

/// This executor's end of the mesh. Cheap to clone; `!Send` (it belongs to one
/// executor).
pub struct Mesh<M: Send + 'static> {
    inner: Rc<Inner<M>>,
}

impl<M: Send + 'static> Clone for Mesh<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Send + 'static> Mesh<M> {
    /// Joins the mesh (a barrier until every executor has joined) and starts
    /// receiving from every peer.
    pub(crate) async fn join(
        builder: MeshBuilder<Wire<M>, Full>,
        me: Peer,
        shards: u16,
        handler: Handler<M>,
    ) -> Result<Self, ShardError> {
        let (senders, mut receivers) = builder
            .join()
            .await
            .map_err(|e| ShardError::PeerGone(format!("mesh join failed: {e}")))?;
        let inner = Rc::new(Inner {
            me,
            shards,
            senders,
            handler,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        for (index, receiver) in receivers.streams() {
            let inner = inner.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = receiver.recv().await {
                    match msg {
                        Wire::Request { id, body } => serve(&inner, index, id, body),
                        Wire::Response { id, body } => {
                            if let Some((_, tx)) = inner.pending.borrow_mut().remove(&id) {
                                // The caller may have given up (dropped its future).
                                let _ = tx.try_send(body);
                            }
                        }
                    }
                }
                // The peer's executor exited: fail the calls still waiting on it.
                debug!(peer = %Peer::from_mesh_index(index, inner.shards), "mesh peer gone");
                inner.pending.borrow_mut().retain(|_, (p, _)| *p != index);
            })
            .detach();
        }
        Ok(Self { inner })
    }

    /// This executor.
    pub fn me(&self) -> Peer {
        self.inner.me
    }

    /// Number of data shards.
    pub fn shards(&self) -> u16 {
        self.inner.shards
    }

    /// Sends `msg` to `peer` and awaits the answer of its handler.
    pub async fn call(&self, peer: Peer, msg: M) -> Result<M, ShardError> {
        self.send(peer, msg).await?.recv().await
    }

    /// Hands `msg` to `peer` and returns once it is queued there, without waiting for
    /// the answer. Requests sent one after another from one task reach the peer's
    /// handler in that order (a call to oneself spawns the handler at once, in order
    /// with the peer channels' requests), which is what keeps a connection's produce
    /// requests in order.
    pub async fn send(&self, peer: Peer, msg: M) -> Result<Reply<M>, ShardError> {
        let inner = &self.inner;
        let (tx, rx) = flume::bounded(1);
        if peer == inner.me {
            let answer = (inner.handler)(peer, msg);
            glommio::spawn_local(async move {
                let _ = tx.try_send(answer.await);
            })
            .detach();
            return Ok(Reply { peer, rx });
        }
        let index = peer.mesh_index(inner.shards);
        let id = inner.next_id.get();
        inner.next_id.set(id.wrapping_add(1));
        inner.pending.borrow_mut().insert(id, (index, tx));
        if inner
            .senders
            .send_to(index, Wire::Request { id, body: msg })
            .await
            .is_err()
        {
            inner.pending.borrow_mut().remove(&id);
            return Err(ShardError::PeerGone(peer.to_string()));
        }
        Ok(Reply { peer, rx })
    }
}

/// The answer to a request handed over by [`Mesh::send`].
pub struct Reply<M> {
    peer: Peer,
    rx: flume::Receiver<M>,
}

impl<M> Reply<M> {
    /// Waits for the answer.
    pub async fn recv(self) -> Result<M, ShardError> {
        self.rx
            .recv_async()
            .await
            .map_err(|_| ShardError::PeerGone(self.peer.to_string()))
    }
}

fn serve<M: Send + 'static>(inner: &Rc<Inner<M>>, index: usize, id: u64, body: M) {
    let from = Peer::from_mesh_index(index, inner.shards);
    let answer = (inner.handler)(from, body);
    let inner = inner.clone();
    glommio::spawn_local(async move {
        let body = answer.await;
        // A failed send means the caller's executor exited; nobody waits for this.
        let _ = inner
            .senders
            .send_to(index, Wire::Response { id, body })
            .await;
    })
    .detach();
}
