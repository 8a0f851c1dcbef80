//! Outbound links to the other voters: one connection per peer, kept open and
//! re-made after a failure, carrying Raft messages one way and the coordinator's
//! calls on a remote active controller (register, heartbeat, forwarded admin
//! changes) as requests with correlation ids.
//!
//! Raft messages are best effort: while a peer is unreachable they are dropped
//! (Raft sends again), and at most [`OUTBOX_FRAMES_MAX`] wait for a slow one. A
//! call waits for its answer at most its timeout and fails with
//! REQUEST_TIMED_OUT; a broken connection fails every call waiting on it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use raft::prelude::Message;
use ringlog_schema::peer::{
    BrokerHeartbeatT, CreatePartitionsT, CreateTopicsT, DeleteTopicsT, PeerBodyT, PeerEnvelopeT,
    PeerError, PeerHelloT, RaftMessageT, RaftMessagesT, RegisterBrokerT,
};
use ringlog_schema::peer_frame::encode_peer;
use tracing::{debug, info};

use crate::cluster::controller::{Heartbeat, HeartbeatAnswer};
use crate::cluster::quorum::QuorumNode;
use crate::core::error::ErrorKind;
use crate::core::messages::{PartitionError, TopicOutcome};
use crate::core::quorum_driver::RaftTransport;
use crate::core::remote::{AdminCall, LocalFuture, RemoteController};
use crate::metadata::{BrokerId, BrokerInfo};
use crate::net::SocketReader;
use crate::peer::codec;
use crate::peer::read_peer_frame;
use crate::sync::signal::Signal;

/// Frames waiting for a peer before the oldest are dropped.
pub const OUTBOX_FRAMES_MAX: usize = 1024;
/// Longest wait to connect to a peer.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Pause between failed connection attempts, doubling up to the maximum.
const RECONNECT_MS_MIN: u64 = 50;
const RECONNECT_MS_MAX: u64 = 1_000;

type Reply = Rc<RefCell<Option<Result<PeerBodyT, PartitionError>>>>;

/// A link to one peer broker.
pub struct PeerLink {
    me: i32,
    peer: i32,
    addr: SocketAddr,
    cluster_id: Rc<dyn Fn() -> String>,
    outbox: RefCell<VecDeque<Vec<u8>>>,
    outbox_signal: Signal,
    replies: RefCell<HashMap<u64, Reply>>,
    reply_signal: Signal,
    next_correlation: Cell<u64>,
    connected: Cell<bool>,
}

impl PeerLink {
    fn new(me: i32, peer: i32, addr: SocketAddr, cluster_id: Rc<dyn Fn() -> String>) -> Self {
        Self {
            me,
            peer,
            addr,
            cluster_id,
            outbox: RefCell::new(VecDeque::new()),
            outbox_signal: Signal::default(),
            replies: RefCell::new(HashMap::new()),
            reply_signal: Signal::default(),
            next_correlation: Cell::new(1),
            connected: Cell::new(false),
        }
    }

    /// Queues a whole frame; drops the oldest beyond the bound.
    fn push(&self, frame: Vec<u8>) {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.len() >= OUTBOX_FRAMES_MAX {
            outbox.pop_front();
        }
        outbox.push_back(frame);
        drop(outbox);
        self.outbox_signal.notify();
    }

    /// Sends `body` as a request and waits for its answer, at most `timeout`.
    async fn call(&self, body: PeerBodyT, timeout: Duration) -> Result<PeerBodyT, PartitionError> {
        if !self.connected.get() {
            return Err(PartitionError::new(
                ErrorKind::NotController,
                format!("broker {} at {} is not reachable", self.peer, self.addr),
            ));
        }
        let correlation_id = self.next_correlation.get();
        self.next_correlation.set(correlation_id + 1);
        let reply: Reply = Rc::new(RefCell::new(None));
        self.replies
            .borrow_mut()
            .insert(correlation_id, reply.clone());
        self.push(encode_peer(&PeerEnvelopeT {
            correlation_id,
            body,
        }));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = reply.borrow_mut().take() {
                return r;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.replies.borrow_mut().remove(&correlation_id);
                return Err(PartitionError::new(
                    ErrorKind::RequestTimedOut,
                    format!(
                        "broker {} did not answer within {} ms",
                        self.peer,
                        timeout.as_millis()
                    ),
                ));
            }
            let wait = self.reply_signal.wait();
            futures_lite::future::or(wait, glommio::timer::sleep(left)).await;
        }
    }

    /// Fails every call waiting on this link.
    fn fail_calls(&self, why: &str) {
        for (_, r) in self.replies.borrow_mut().drain() {
            *r.borrow_mut() = Some(Err(PartitionError::new(
                ErrorKind::NotController,
                format!("connection to broker {} lost: {why}", self.peer),
            )));
        }
        self.reply_signal.notify();
    }

    /// Keeps the connection up for as long as the broker runs.
    async fn run(self: Rc<Self>) {
        let mut backoff = RECONNECT_MS_MIN;
        loop {
            match TcpStream::connect_timeout(self.addr, Duration::from_millis(CONNECT_TIMEOUT_MS))
                .await
            {
                Ok(stream) => {
                    backoff = RECONNECT_MS_MIN;
                    info!(peer = self.peer, addr = %self.addr, "connected to peer");
                    let why = self.serve(stream).await;
                    info!(peer = self.peer, reason = %why, "peer connection closed");
                    self.connected.set(false);
                    self.fail_calls(&why);
                }
                Err(e) => {
                    debug!(peer = self.peer, addr = %self.addr, error = %e, "cannot reach peer");
                    // Nothing queued for an unreachable peer is worth keeping.
                    self.outbox.borrow_mut().clear();
                }
            }
            glommio::timer::sleep(Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(RECONNECT_MS_MAX);
        }
    }

    /// Says hello, then writes queued frames and reads answers until either fails.
    async fn serve(&self, stream: TcpStream) -> String {
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let (reader, mut writer) = futures_lite::io::split(stream);
        let hello = encode_peer(&PeerEnvelopeT {
            correlation_id: 0,
            body: PeerBodyT::PeerHello(Box::new(PeerHelloT {
                cluster_id: Some((self.cluster_id)()),
                broker_id: self.me,
                protocol_version: 1,
                replica_shard: -1,
            })),
        });
        if let Err(e) = writer.write_all(&hello).await {
            return e.to_string();
        }
        self.connected.set(true);
        let mut reader = SocketReader::new(reader, fd);
        let read = async {
            loop {
                let env = match read_peer_frame(&mut reader).await {
                    Ok(Some(env)) => env,
                    Ok(None) => return "closed by the peer".to_string(),
                    Err(e) => return e,
                };
                if let PeerBodyT::PeerHelloResponse(h) = &env.body {
                    if h.error != PeerError::NONE {
                        return format!(
                            "refused: {:?} {}",
                            h.error,
                            h.message.clone().unwrap_or_default()
                        );
                    }
                    continue;
                }
                if let Some(r) = self.replies.borrow_mut().remove(&env.correlation_id) {
                    *r.borrow_mut() = Some(Ok(env.body));
                }
                self.reply_signal.notify();
            }
        };
        let write = async {
            loop {
                let next = self.outbox.borrow_mut().pop_front();
                match next {
                    Some(frame) => {
                        if let Err(e) = writer.write_all(&frame).await {
                            return e.to_string();
                        }
                    }
                    None => {
                        let _ = writer.flush().await;
                        let wait = self.outbox_signal.wait();
                        wait.await;
                    }
                }
            }
        };
        let why = futures_lite::future::or(read, write).await;
        crate::net::shutdown_both(fd);
        why
    }
}

/// The links from this broker to every other voter: the quorum's transport and
/// the coordinator's way to a remote controller.
pub struct PeerLinks {
    links: BTreeMap<i32, Rc<PeerLink>>,
    call_timeout: Duration,
    heartbeat_timeout: Duration,
}

impl PeerLinks {
    /// Links to `peers` (broker id, inter-broker address), each kept up by a task
    /// of the calling executor.
    pub fn start(
        me: i32,
        peers: &[(i32, SocketAddr)],
        cluster_id: Rc<dyn Fn() -> String>,
        call_timeout: Duration,
        heartbeat_timeout: Duration,
    ) -> Rc<Self> {
        let links: BTreeMap<i32, Rc<PeerLink>> = peers
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, addr)| {
                (
                    *id,
                    Rc::new(PeerLink::new(me, *id, *addr, cluster_id.clone())),
                )
            })
            .collect();
        for link in links.values() {
            glommio::spawn_local(link.clone().run()).detach();
        }
        Rc::new(Self {
            links,
            call_timeout,
            heartbeat_timeout,
        })
    }

    fn link(&self, broker: BrokerId) -> Result<&Rc<PeerLink>, PartitionError> {
        self.links.get(&broker.0).ok_or_else(|| {
            PartitionError::new(
                ErrorKind::NotController,
                format!("broker {} is not a known voter", broker.0),
            )
        })
    }
}

impl RaftTransport for PeerLinks {
    fn reachable(&self) -> Vec<u64> {
        self.links
            .iter()
            .filter(|(_, l)| l.connected.get())
            .map(|(id, _)| crate::core::coordinator::raft_id(*id))
            .collect()
    }

    fn send(&self, messages: Vec<Message>) {
        let mut by_peer: BTreeMap<u64, Vec<RaftMessageT>> = BTreeMap::new();
        for m in messages {
            by_peer.entry(m.to).or_default().push(RaftMessageT {
                bytes: QuorumNode::encode_message(&m),
            });
        }
        for (to, messages) in by_peer {
            let broker = i32::try_from(to.saturating_sub(1)).unwrap_or(-1);
            if let Some(link) = self.links.get(&broker) {
                link.push(encode_peer(&PeerEnvelopeT {
                    correlation_id: 0,
                    body: PeerBodyT::RaftMessages(Box::new(RaftMessagesT { messages })),
                }));
            }
        }
    }
}

fn unexpected(body: &PeerBodyT) -> PartitionError {
    PartitionError::new(
        ErrorKind::UnknownServerError,
        format!("unexpected answer from the controller: {body:?}"),
    )
}

impl RemoteController for PeerLinks {
    fn register(
        &self,
        leader: BrokerId,
        broker: BrokerInfo,
        incarnation: u64,
    ) -> LocalFuture<'_, Result<u64, PartitionError>> {
        Box::pin(async move {
            let body = PeerBodyT::RegisterBroker(Box::new(RegisterBrokerT {
                broker_id: broker.id.0,
                host: broker.host,
                port: broker.port,
                shards: broker.shards,
                incarnation,
                kafka: broker.kafka,
            }));
            match self.link(leader)?.call(body, self.call_timeout).await? {
                PeerBodyT::RegisterBrokerResponse(r) => match codec::error_of(r.error, r.message) {
                    None => Ok(r.epoch),
                    Some(e) => Err(e),
                },
                other => Err(unexpected(&other)),
            }
        })
    }

    fn heartbeat(
        &self,
        leader: BrokerId,
        hb: Heartbeat,
    ) -> LocalFuture<'_, Result<HeartbeatAnswer, PartitionError>> {
        Box::pin(async move {
            let body = PeerBodyT::BrokerHeartbeat(Box::new(BrokerHeartbeatT {
                broker_id: hb.broker.0,
                epoch: hb.epoch,
                applied_offset: hb.applied_offset,
                want_shutdown: hb.want_shutdown,
            }));
            match self
                .link(leader)?
                .call(body, self.heartbeat_timeout)
                .await?
            {
                PeerBodyT::BrokerHeartbeatResponse(r) => {
                    match r.error {
                        PeerError::NONE => Ok(HeartbeatAnswer::Ok { fenced: r.fenced }),
                        PeerError::STALE_BROKER_EPOCH => Ok(HeartbeatAnswer::StaleEpoch),
                        code => Err(codec::error_of(code, None)
                            .unwrap_or_else(|| unexpected(&PeerBodyT::NONE))),
                    }
                }
                other => Err(unexpected(&other)),
            }
        })
    }

    fn admin(
        &self,
        leader: BrokerId,
        call: AdminCall,
    ) -> LocalFuture<'_, Result<Vec<TopicOutcome>, PartitionError>> {
        Box::pin(async move {
            let body = match call {
                AdminCall::CreateTopics {
                    topics,
                    validate_only,
                } => PeerBodyT::CreateTopics(Box::new(CreateTopicsT {
                    topics: topics.iter().map(codec::new_topic_to_wire).collect(),
                    validate_only,
                })),
                AdminCall::DeleteTopics { names } => {
                    PeerBodyT::DeleteTopics(Box::new(DeleteTopicsT { names }))
                }
                AdminCall::CreatePartitions {
                    topics,
                    validate_only,
                } => PeerBodyT::CreatePartitions(Box::new(CreatePartitionsT {
                    topics: codec::totals_to_wire(&topics),
                    validate_only,
                })),
                AdminCall::AlterPartition(change) => {
                    PeerBodyT::AlterPartition(Box::new(codec::isr_change_to_wire(&change)))
                }
                AdminCall::AlterTopicConfigs {
                    topic,
                    alteration,
                    validate_only,
                } => PeerBodyT::AlterTopicConfigs(Box::new(codec::alteration_to_wire(
                    &topic,
                    &alteration,
                    validate_only,
                ))),
                AdminCall::ElectLeaders { kind, partitions } => PeerBodyT::ElectLeaders(Box::new(
                    codec::election_to_wire(kind, partitions.as_deref()),
                )),
            };
            match self.link(leader)?.call(body, self.call_timeout).await? {
                PeerBodyT::AdminResponse(r) => match codec::error_of(r.error, r.message) {
                    None => Ok(r
                        .results
                        .unwrap_or_default()
                        .into_iter()
                        .map(codec::outcome_from_wire)
                        .collect()),
                    Some(e) => Err(e),
                },
                other => Err(unexpected(&other)),
            }
        })
    }
}
