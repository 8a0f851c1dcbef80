//! The coordination executor: this broker's view of the cluster metadata, and, on
//! the active controller, the controller itself (DESIGN §2, §5).
//!
//! Metadata is the controller quorum's log (`cluster::quorum`, driven by
//! `quorum_driver`): every change is a [`MetadataRecord`] proposed by the active
//! controller and applied, once committed, to [`ClusterMetadata`] on every broker
//! in log order. After each batch of applied records the result is pushed to every
//! data shard, which opens the partitions it now holds a replica of and closes the
//! ones it lost; an admin request is answered once its record is committed *and*
//! the shards adopted it. Admin requests are serialized.
//!
//! A broker with no `controller.quorum.voters` is a cluster of one, its own only
//! voter, on the same code path. Its data dir may hold the metadata file a single
//! broker wrote before the cluster existed (`cluster-metadata.json`): the first
//! leader of an empty log proposes it whole as an `Import` record and renames the
//! file, so such a data dir opens unchanged.
//!
//! The broker lifecycle (KIP-631) runs here too: once the cluster has an id the
//! broker registers (a new epoch per process start), heartbeats every
//! `broker.heartbeat.interval.ms`, and is ready once the controller unfenced it.
//! On the active controller, [`BrokerSessions`] turns heartbeats into unfencing and
//! silence into fencing.
//!
//! A deleted topic's partition directories are removed after the shards closed
//! them; a start-up sweep finishes removals a crash interrupted, and once the
//! broker has caught up with the log (it is unfenced), removes partition
//! directories the metadata no longer names.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use ringlog_shards::{Answered, Peer, ShardId};
use tracing::{debug, info, warn};

use crate::cluster::controller::{BrokerSessions, Heartbeat, HeartbeatAnswer};
use crate::cluster::quorum::{Committed, ProposeError, QuorumConfig};
use crate::config::{
    altered_topic_configs, topic_log_config, topic_unclean_leader_election, BrokerConfig,
};
use crate::core::error::{metadata_error, ErrorKind};
use crate::core::messages::{
    BrokerMesh, ClusterView, ConfigAlteration, CoordinatorRequest, NewTopic, PartitionError,
    ShardRequest, TopicOutcome,
};
use crate::core::partition::Partition;
use crate::core::partition_dir;
use crate::core::quorum_driver::{
    CommittedChange, CommittedSink, ProposalError, QuorumDriver, RaftTransport,
};
use crate::core::remote::{AdminCall, RemoteController};
use crate::metadata::election::{ElectionPlan, ElectionType};
use crate::metadata::model::MetadataError;
use crate::metadata::records::{Applied, IsrChange, MetadataRecord};
use crate::metadata::{store, BrokerId, BrokerInfo, ClusterMetadata, TopicMeta};
use crate::sync::join::join_all;
use crate::sync::signal::Signal;

/// How often the active controller looks for expired broker sessions.
const SESSION_CHECK_MS: u64 = 250;
/// How often a fenced or unregistered broker retries its registration or heartbeat.
const LIFECYCLE_RETRY_MS: u64 = 100;
/// How often a forwarded admin request looks for an active controller.
const CONTROLLER_WAIT_MS: u64 = 100;

/// What a lifecycle step did, and so when the next one runs.
enum Lifecycle {
    /// Something changed: the next step runs at once.
    Progressed,
    /// Waiting for the controller: retry soon.
    Retry,
    /// Registered and unfenced: the next heartbeat is due in an interval.
    Steady,
}

/// The coordination executor's state.
pub struct Coordinator {
    pub config: Arc<BrokerConfig>,
    metadata: RefCell<ClusterMetadata>,
    admin: Semaphore,
    mesh: OnceCell<BrokerMesh>,
    shards: u16,
    me: BrokerInfo,
    /// Random per process start (KIP-631's incarnation id).
    incarnation: u64,
    voters: Vec<(i32, std::net::SocketAddr)>,
    quorum: OnceCell<Rc<QuorumDriver>>,
    /// The links to the other voters (nothing in a cluster of one).
    transport: Rc<dyn RaftTransport>,
    /// The active controller when it is another broker (none in a cluster of one).
    remote: Option<Rc<dyn RemoteController>>,
    sessions: RefCell<BrokerSessions>,
    /// A single broker's metadata file, to import into an empty log.
    legacy: RefCell<Option<ClusterMetadata>>,
    /// This broker's registration epoch, once registered.
    epoch: Cell<Option<u64>>,
    /// The applied offset every data shard has adopted.
    published: Cell<u64>,
    /// Notified when records were applied (the publisher wakes).
    applied_signal: Signal,
    /// Notified when the shards adopted newer metadata.
    published_signal: Signal,
    /// Topics deleted by applied records, whose directories go after the shards
    /// closed them.
    removed: RefCell<Vec<TopicMeta>>,
    swept: Cell<bool>,
    started: Instant,
    /// The broker is stopping: heartbeats ask to be fenced (controlled shutdown).
    shutting_down: Cell<bool>,
}

/// The coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Quorum(String),
}

/// Hands committed records to the coordinator without keeping it alive.
struct SinkRef(Weak<Coordinator>);

impl CommittedSink for SinkRef {
    fn apply(&self, entry: &Committed) -> Applied {
        match self.0.upgrade() {
            Some(c) => c.apply_committed(entry),
            None => Applied::Ignored("the broker is stopping".into()),
        }
    }

    fn leadership(&self, ready: bool) {
        if let Some(c) = self.0.upgrade() {
            let now = c.now_ms();
            if ready {
                c.sessions.borrow_mut().take_over(&c.metadata.borrow(), now);
            } else {
                c.sessions.borrow_mut().step_down();
            }
        }
    }
}

/// A cluster of one has no peers to send to.
struct NoPeers;

impl RaftTransport for NoPeers {
    fn reachable(&self) -> Vec<u64> {
        Vec::new()
    }

    fn send(&self, messages: Vec<raft::prelude::Message>) {
        if !messages.is_empty() {
            warn!(
                count = messages.len(),
                "raft messages for peers in a cluster of one were dropped"
            );
        }
    }
}

/// The raft-rs id of a broker: raft-rs reserves 0, broker ids start at 0.
pub fn raft_id(broker: i32) -> u64 {
    u64::from(broker.unsigned_abs()) + 1
}

impl Coordinator {
    /// Reads what the data dir holds and opens the metadata log; [`Coordinator::start`]
    /// runs it once the mesh is joined.
    ///
    /// `peers` reaches the other voters (the inter-broker links); a quorum of
    /// several voters needs it.
    pub fn load(
        config: Arc<BrokerConfig>,
        shards: u16,
        advertised: std::net::SocketAddr,
        peers: Option<(Rc<dyn RaftTransport>, Rc<dyn RemoteController>)>,
    ) -> Result<Rc<Self>, CoordinatorError> {
        let me = BrokerInfo {
            id: BrokerId(config.broker_id),
            host: advertised.ip().to_string(),
            port: advertised.port(),
            shards,
            kafka: config.kafka_advertised().map(|a| a.to_string()),
        };
        let voters = if config.controller_voters.is_empty() {
            let at = config
                .cluster_addr
                .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            vec![(config.broker_id, at)]
        } else {
            config.controller_voters.clone()
        };
        if !voters.iter().any(|(id, _)| *id == config.broker_id) {
            return Err(CoordinatorError::Quorum(format!(
                "broker {} is not in controller.quorum.voters; brokers that only follow the metadata log are not built yet",
                config.broker_id
            )));
        }
        let (transport, remote): (Rc<dyn RaftTransport>, Option<Rc<dyn RemoteController>>) =
            match peers {
                Some((t, r)) => (t, Some(r)),
                None if voters.len() > 1 => {
                    return Err(CoordinatorError::Quorum(
                        "a controller quorum of several voters needs the inter-broker links".into(),
                    ))
                }
                None => (Rc::new(NoPeers), None),
            };
        let legacy = store::load(&config.data_dir)?.map(|md| upgrade_legacy(md, &config, &me));
        if voters.len() > 1 && legacy.as_ref().is_some_and(|md| !md.topics.is_empty()) {
            return Err(CoordinatorError::Quorum(format!(
                "{} holds the topics of a single broker ({}); it opens only as a cluster of one (no controller.quorum.voters)",
                config.data_dir.display(),
                store::METADATA_FILE
            )));
        }
        // Finish deletions a crash interrupted; orphans are swept once caught up.
        partition_dir::sweep(&config.data_dir, None);
        let coordinator = Rc::new(Self {
            sessions: RefCell::new(BrokerSessions::new(
                config.broker_session_timeout.as_millis() as u64,
            )),
            config: config.clone(),
            metadata: RefCell::new(ClusterMetadata::default()),
            admin: Semaphore::new(1),
            mesh: OnceCell::new(),
            shards,
            me,
            incarnation: random_u64(),
            voters: voters.clone(),
            quorum: OnceCell::new(),
            transport: transport.clone(),
            remote,
            legacy: RefCell::new(legacy),
            epoch: Cell::new(None),
            published: Cell::new(0),
            applied_signal: Signal::default(),
            published_signal: Signal::default(),
            removed: RefCell::new(Vec::new()),
            swept: Cell::new(false),
            started: Instant::now(),
            shutting_down: Cell::new(false),
        });
        let quorum_config = QuorumConfig {
            id: raft_id(config.broker_id),
            voters: voters.iter().map(|(id, _)| raft_id(*id)).collect(),
            fixed_election_ticks: None,
        };
        let sink: Rc<dyn CommittedSink> = Rc::new(SinkRef(Rc::downgrade(&coordinator)));
        let driver = QuorumDriver::open(&config.data_dir, &quorum_config, transport, sink)
            .map_err(|e| CoordinatorError::Quorum(e.to_string()))?;
        let _ = coordinator.quorum.set(Rc::new(driver));
        Ok(coordinator)
    }

    pub fn set_mesh(&self, mesh: BrokerMesh) {
        let _ = self.mesh.set(mesh);
    }

    /// This broker's data shards.
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// Hands a welcomed replica-fetch connection (`fd`, which the callee owns from
    /// now on) to data shard `shard`, which serves `follower` on it.
    pub async fn adopt_replica_connection(
        &self,
        shard: u16,
        fd: i32,
        follower: BrokerId,
    ) -> Result<(), String> {
        let pending = self
            .mesh()
            .send_to_shard(ringlog_shards::ShardId(shard), |answer| {
                ShardRequest::AdoptReplicaConnection {
                    fd,
                    follower,
                    answer,
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        pending.recv().await.map_err(|e| e.to_string())
    }

    fn mesh(&self) -> &BrokerMesh {
        self.mesh
            .get()
            .expect("the mesh is joined before requests are served")
    }

    fn quorum(&self) -> &Rc<QuorumDriver> {
        self.quorum.get().expect("the quorum is opened by load")
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn broker_id(&self) -> i32 {
        self.me.id.0
    }

    /// The cluster's id, empty until the first controller gave it one.
    pub fn cluster_id(&self) -> String {
        self.metadata.borrow().cluster_id.clone()
    }

    /// A voter's configured inter-broker address.
    pub fn voter_addr(&self, broker: i32) -> Option<std::net::SocketAddr> {
        self.voters
            .iter()
            .find(|(id, _)| *id == broker)
            .map(|(_, a)| *a)
    }

    /// Steps a Raft message from a peer into the quorum.
    pub fn step_raft(&self, message: raft::prelude::Message) {
        self.quorum().step(message);
    }

    /// This broker is the active controller, caught up with its own term.
    pub fn is_active_controller(&self) -> bool {
        self.quorum().leader_ready()
    }

    /// The active controller as this broker knows it.
    pub fn controller_leader(&self) -> Option<BrokerId> {
        self.quorum()
            .leader()
            .map(|raft| BrokerId(i32::try_from(raft.saturating_sub(1)).unwrap_or(-1)))
    }

    pub fn not_controller(&self) -> PartitionError {
        PartitionError::new(
            ErrorKind::NotController,
            format!(
                "broker {} is not the active controller (leader: {:?})",
                self.me.id.0,
                self.controller_leader().map(|b| b.0)
            ),
        )
    }

    /// Whether a majority of the voters (this one included) has a connection up.
    /// An admin change is proposed only then: a record appended by a leader cut
    /// off from its quorum would wait uncommitted past its caller's timeout and
    /// could commit after the caller was told it failed.
    fn majority_reachable(&self) -> bool {
        let reachable = self.transport.reachable();
        let up = 1 + self
            .voters
            .iter()
            .filter(|(id, _)| *id != self.me.id.0 && reachable.contains(&raft_id(*id)))
            .count();
        up * 2 > self.voters.len()
    }

    fn no_majority(&self) -> PartitionError {
        PartitionError::new(
            ErrorKind::RequestTimedOut,
            format!(
                "no majority of controller.quorum.voters ({}) is reachable; nothing was changed",
                self.voters.len()
            ),
        )
    }

    /// Serves an admin change as the active controller (a forwarded one must not
    /// be forwarded again).
    pub async fn admin_as_controller(
        &self,
        call: AdminCall,
    ) -> Result<Vec<TopicOutcome>, PartitionError> {
        if !self.is_active_controller() {
            return Err(self.not_controller());
        }
        if !self.majority_reachable()
            || !self
                .quorum()
                .confirm_leadership(self.config.metadata_commit_timeout)
                .await
        {
            return Err(self.no_majority());
        }
        Ok(match call {
            AdminCall::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(topics, validate_only).await,
            AdminCall::DeleteTopics { names } => self.delete_topics(names).await,
            AdminCall::CreatePartitions {
                topics,
                validate_only,
            } => self.create_partitions(topics, validate_only).await,
            AdminCall::AlterPartition(change) => self.alter_partition(change).await,
            AdminCall::AlterTopicConfigs {
                topic,
                alteration,
                validate_only,
            } => {
                self.alter_topic_configs(topic, alteration, validate_only)
                    .await
            }
            AdminCall::ElectLeaders { kind, partitions } => {
                self.elect_leaders(kind, partitions).await
            }
        })
    }

    /// Plans each partition's election on this controller's metadata and commits
    /// the elections due, all at once; one outcome per partition, in order.
    async fn elect_leaders(
        &self,
        kind: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let partitions = partitions.unwrap_or_else(|| self.metadata.borrow().partitions_of(None));
        let plans: Vec<ElectionPlan> = {
            let md = self.metadata.borrow();
            partitions
                .iter()
                .map(|(topic, p)| md.plan_election(kind, topic, *p))
                .collect()
        };
        let not_available = match kind {
            ElectionType::Preferred => ErrorKind::PreferredLeaderNotAvailable,
            ElectionType::Unclean => ErrorKind::EligibleLeadersNotAvailable,
        };
        let decided = plans.into_iter().map(|plan| async move {
            match plan {
                ElectionPlan::Elect(record) => match self.commit(&record).await {
                    Ok(committed) => match committed.applied {
                        Applied::Changed => (None, committed.offset),
                        Applied::Ignored(reason) => {
                            (Some(PartitionError::new(not_available, reason)), 0)
                        }
                    },
                    Err(e) => (Some(e), 0),
                },
                ElectionPlan::NotNeeded => (
                    Some(PartitionError::new(
                        ErrorKind::ElectionNotNeeded,
                        "the partition already has that leader",
                    )),
                    0,
                ),
                ElectionPlan::NotAvailable(reason) => {
                    (Some(PartitionError::new(not_available, reason)), 0)
                }
                ElectionPlan::Unknown => (
                    Some(PartitionError::new(
                        ErrorKind::UnknownTopicOrPartition,
                        "no such topic or partition",
                    )),
                    0,
                ),
            }
        });
        let decided = crate::sync::join::join_all(decided.collect()).await;
        let last = decided.iter().map(|(_, offset)| *offset).max().unwrap_or(0);
        let outcomes = partitions
            .into_iter()
            .zip(decided)
            .map(|((name, partition), (error, _))| TopicOutcome {
                name,
                partition: Some(partition),
                error,
            })
            .collect();
        self.answer_after_publish(outcomes, last).await
    }

    /// Commits a leader's ISR change if it fits the metadata as it is (checked
    /// here for a precise answer, and again where the record is applied).
    async fn alter_partition(&self, change: IsrChange) -> Vec<TopicOutcome> {
        let name = change.topic.clone();
        let refused = |message: String| {
            vec![TopicOutcome {
                name: name.clone(),
                partition: None,
                error: Some(PartitionError::new(ErrorKind::InvalidRequest, message)),
            }]
        };
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        if let Err(reason) = self.metadata.borrow().check_isr_change(&change) {
            return refused(reason);
        }
        let record = MetadataRecord::AlterPartition(change);
        match self.commit(&record).await {
            Ok(committed) => {
                let error = self.outcome_of(&committed, &name);
                self.answer_after_publish(
                    vec![TopicOutcome {
                        name,
                        partition: None,
                        error,
                    }],
                    committed.offset,
                )
                .await
            }
            Err(e) => vec![TopicOutcome {
                name,
                partition: None,
                error: Some(e),
            }],
        }
    }

    /// An admin change from a client of this broker: served here when this broker
    /// is the active controller, else forwarded to it; waits for a controller to
    /// be elected at most `metadata.commit.timeout.ms`. A forwarded change is
    /// answered once this broker's shards hold its result too.
    async fn admin(&self, call: AdminCall) -> Result<Vec<TopicOutcome>, PartitionError> {
        let deadline = Instant::now() + self.config.metadata_commit_timeout;
        loop {
            if self.is_active_controller() && self.majority_reachable() {
                return self.admin_as_controller(call).await;
            }
            let leader = self.controller_leader().filter(|l| *l != self.me.id);
            if let (Some(leader), Some(remote)) = (leader, &self.remote) {
                match remote.admin(leader, call.clone()).await {
                    Ok(outcomes) => {
                        self.wait_caught_up().await;
                        return Ok(outcomes);
                    }
                    Err(e) if e.code == ErrorKind::NotController => {}
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() >= deadline {
                if self.is_active_controller() {
                    return Err(self.no_majority());
                }
                return Err(PartitionError::new(
                    ErrorKind::RequestTimedOut,
                    format!(
                        "no active controller answered within {} ms (is a majority of controller.quorum.voters up?)",
                        self.config.metadata_commit_timeout.as_millis()
                    ),
                ));
            }
            glommio::timer::sleep(Duration::from_millis(CONTROLLER_WAIT_MS)).await;
        }
    }

    /// After a forwarded change: waits (bounded) until this broker applied and
    /// published what the leader had committed, so the client that asked here
    /// sees its change here.
    async fn wait_caught_up(&self) {
        let target = self.quorum().commit_index();
        let deadline = Instant::now() + self.config.metadata_commit_timeout;
        loop {
            let applied = self.metadata.borrow().applied_offset;
            if applied >= target && self.published.get() >= applied {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let wait = self.published_signal.wait();
            futures_lite::future::or(
                wait,
                glommio::timer::sleep(left.min(Duration::from_millis(CONTROLLER_WAIT_MS))),
            )
            .await;
        }
    }

    /// Replays the log, starts the quorum's tasks and this broker's lifecycle, and
    /// returns once the broker is registered, unfenced and its shards hold the
    /// metadata (or the quorum failed).
    pub async fn start(self: &Rc<Self>) -> Result<(), String> {
        let quorum = self.quorum().clone();
        quorum.pump();
        if self.voters.len() == 1 {
            quorum.campaign();
        }
        glommio::spawn_local(quorum.clone().run_ticks()).detach();
        glommio::spawn_local(self.clone().run_publisher()).detach();
        glommio::spawn_local(self.clone().run_lifecycle()).detach();
        glommio::spawn_local(self.clone().run_session_checks()).detach();
        loop {
            if let Some(f) = quorum.failure() {
                return Err(format!("metadata log: {f}"));
            }
            if self.is_ready() {
                info!(broker_id = self.me.id.0, epoch = ?self.epoch.get(), cluster_id = %self.metadata.borrow().cluster_id, "registered and unfenced");
                return Ok(());
            }
            let wait = self.published_signal.wait();
            futures_lite::future::or(wait, glommio::timer::sleep(Duration::from_millis(50))).await;
        }
    }

    /// Registered with the current epoch, unfenced, and the shards hold it.
    fn is_ready(&self) -> bool {
        let md = self.metadata.borrow();
        let registered = md
            .registrations
            .get(&self.me.id)
            .is_some_and(|r| Some(r.epoch) == self.epoch.get() && !r.fenced);
        registered && self.published.get() >= md.applied_offset
    }

    /// Applies one committed entry (the sink of the quorum driver).
    fn apply_committed(&self, entry: &Committed) -> Applied {
        let record = match MetadataRecord::decode(&entry.data) {
            Ok(r) => r,
            Err(e) => {
                warn!(offset = entry.index, error = %e, "metadata record not applied");
                let mut md = self.metadata.borrow_mut();
                md.applied_offset = entry.index;
                return Applied::Ignored(e.to_string());
            }
        };
        let deleted = match &record {
            MetadataRecord::DeleteTopic { name } => {
                self.metadata.borrow().topics.get(name).cloned()
            }
            _ => None,
        };
        let applied = self.metadata.borrow_mut().apply(entry.index, &record);
        if let Applied::Ignored(reason) = &applied {
            info!(offset = entry.index, reason = %reason, "metadata record changed nothing");
        }
        if applied == Applied::Changed {
            if let Some(t) = deleted {
                self.removed.borrow_mut().push(t);
            }
            if let MetadataRecord::UncleanElection {
                topic,
                partition,
                leader,
                ..
            } = &record
            {
                warn!(topic = %topic, partition, leader = leader.0,
                      "unclean leader election: a replica outside the ISR leads; records only the old ISR held are lost");
                if self.is_active_controller() {
                    crate::metrics::count_unclean_election();
                }
            }
            if let MetadataRecord::PreferredElection {
                topic, partition, ..
            } = &record
            {
                info!(topic = %topic, partition, "preferred leader election: the first replica leads again");
            }
            if let MetadataRecord::RegisterBroker { broker, .. } = &record {
                let epoch = self
                    .metadata
                    .borrow()
                    .registrations
                    .get(&broker.id)
                    .map(|r| r.epoch);
                if let Some(epoch) = epoch {
                    let now = self.now_ms();
                    self.sessions.borrow_mut().registered(broker.id, epoch, now);
                }
            }
        }
        self.sessions.borrow_mut().settled(&record);
        self.applied_signal.notify();
        applied
    }

    /// Pushes applied metadata to the shards whenever it changed, then removes the
    /// directories of deleted topics.
    async fn run_publisher(self: Rc<Self>) {
        loop {
            let behind = self.metadata.borrow().applied_offset > self.published.get()
                || !self.removed.borrow().is_empty();
            if !behind {
                let wait = self.applied_signal.wait();
                wait.await;
                continue;
            }
            let snapshot = self.metadata.borrow().clone();
            let offset = snapshot.applied_offset;
            self.publish_snapshot(Arc::new(snapshot)).await;
            let removed = std::mem::take(&mut *self.removed.borrow_mut());
            for topic in &removed {
                for p in &topic.partitions {
                    let dir = Partition::dir(&self.config.data_dir, &topic.name, p.partition);
                    partition_dir::remove(&self.config.data_dir, &dir);
                }
            }
            if !removed.is_empty() {
                if let Err(e) = store::sync_dir(&self.config.data_dir) {
                    warn!(error = %e, "fsync of the data directory after topic deletion failed");
                }
            }
            self.published.set(offset);
            if !self.swept.get() && self.is_ready() {
                self.swept.set(true);
                self.sweep_orphans();
            }
            self.published_signal.notify();
        }
    }

    /// Removes partition directories the caught-up metadata does not name.
    fn sweep_orphans(&self) {
        let md = self.metadata.borrow();
        let known = |topic: &str, p: i32| {
            md.topics
                .get(topic)
                .is_some_and(|t| usize::try_from(p).is_ok_and(|p| p < t.partitions.len()))
        };
        partition_dir::sweep(&self.config.data_dir, Some(&known));
    }

    /// Sends the metadata to every data shard and waits until all adopted it.
    async fn publish_snapshot(&self, snapshot: Arc<ClusterMetadata>) {
        let calls = (0..self.shards).map(|s| {
            let metadata = snapshot.clone();
            async move {
                let adopted = self
                    .mesh()
                    .call_shard(ShardId(s), |answer| ShardRequest::Apply {
                        metadata,
                        answer,
                    })
                    .await;
                if let Err(e) = adopted {
                    warn!(shard = s, error = %e, "shard did not adopt metadata");
                }
            }
        });
        join_all(calls.collect()).await;
    }

    /// Waits until the shards hold metadata through `offset`. Not bounded by the
    /// commit timeout: the record is committed, and what is left is this broker's
    /// own shards opening or closing logs (10,000 new partitions take seconds).
    async fn wait_published(&self, offset: u64) {
        while self.published.get() < offset {
            let wait = self.published_signal.wait();
            wait.await;
        }
    }

    /// Controlled shutdown (Kafka's, KIP-631's WantShutDown): before the broker
    /// stops, its heartbeats ask the active controller to fence it, which moves
    /// every partition it leads to another in-sync replica in a new epoch; the
    /// broker waits until it sees itself fenced in the applied metadata, at most
    /// `controlled.shutdown.timeout.ms`, so clients meet only retriable errors and
    /// the new leaders at once instead of a session's wait. A cluster of one has
    /// nowhere to move anything.
    pub async fn controlled_shutdown(&self) {
        if !self.config.controlled_shutdown || self.voters.len() <= 1 {
            return;
        }
        self.shutting_down.set(true);
        let deadline = Instant::now() + self.config.controlled_shutdown_timeout;
        while Instant::now() < deadline {
            if self.quorum().failure().is_some() || self.epoch.get().is_none() {
                break;
            }
            if !self.majority_reachable() {
                // The last brokers of a cluster stopping: no controller can commit
                // a fence, and waiting would only delay the stop.
                warn!("controlled shutdown: no majority of controllers reachable; stopping without moving leaderships");
                return;
            }
            if self.fenced() {
                info!("controlled shutdown: fenced; this broker's partitions have other leaders");
                return;
            }
            self.lifecycle_step().await;
            glommio::timer::sleep(Duration::from_millis(LIFECYCLE_RETRY_MS)).await;
        }
        warn!(
            timeout_ms = self.config.controlled_shutdown_timeout.as_millis() as u64,
            "controlled shutdown: not fenced in time (no controller?); stopping anyway"
        );
    }

    /// Registration and heartbeats of this broker (KIP-631).
    async fn run_lifecycle(self: Rc<Self>) {
        loop {
            if self.quorum().failure().is_some() {
                return;
            }
            let pause = match self.lifecycle_step().await {
                Lifecycle::Progressed => continue,
                Lifecycle::Retry => Duration::from_millis(LIFECYCLE_RETRY_MS),
                Lifecycle::Steady => self.config.broker_heartbeat_interval,
            };
            glommio::timer::sleep(pause).await;
        }
    }

    /// One step of the lifecycle: initialize the cluster, register, or heartbeat.
    async fn lifecycle_step(&self) -> Lifecycle {
        let quorum = self.quorum().clone();
        if !quorum.leader_ready() {
            return self.remote_lifecycle_step().await;
        }
        if self.metadata.borrow().cluster_id.is_empty() {
            return match self.initialize_cluster().await {
                true => Lifecycle::Progressed,
                false => Lifecycle::Retry,
            };
        }
        match self.epoch.get() {
            None => {
                let r = self
                    .controller_register(self.me.clone(), self.incarnation)
                    .await;
                self.registration_answered(r, self.me.id)
            }
            Some(epoch) => {
                let answer = self.controller_heartbeat(self.heartbeat(epoch));
                // The unfence this heartbeat asked for may have committed at once.
                if answer == (HeartbeatAnswer::Ok { fenced: true }) && !self.fenced() {
                    return Lifecycle::Progressed;
                }
                self.heartbeat_answered(epoch, Ok(answer))
            }
        }
    }

    /// A lifecycle step with the active controller on another broker.
    async fn remote_lifecycle_step(&self) -> Lifecycle {
        let leader = self.controller_leader().filter(|l| *l != self.me.id);
        let (Some(leader), Some(remote)) = (leader, &self.remote) else {
            return Lifecycle::Retry;
        };
        if self.metadata.borrow().cluster_id.is_empty() {
            // Registration waits for the cluster's id (the log brings it).
            return Lifecycle::Retry;
        }
        match self.epoch.get() {
            None => {
                let r = remote
                    .register(leader, self.me.clone(), self.incarnation)
                    .await;
                self.registration_answered(r, leader)
            }
            Some(epoch) => {
                let answer = remote.heartbeat(leader, self.heartbeat(epoch)).await;
                self.heartbeat_answered(epoch, answer)
            }
        }
    }

    fn heartbeat(&self, epoch: u64) -> Heartbeat {
        Heartbeat {
            broker: self.me.id,
            epoch,
            applied_offset: self.metadata.borrow().applied_offset,
            want_shutdown: self.shutting_down.get(),
        }
    }

    /// What a registration's answer (from `controller`) means for the lifecycle.
    fn registration_answered(
        &self,
        result: Result<u64, PartitionError>,
        controller: BrokerId,
    ) -> Lifecycle {
        match result {
            Ok(epoch) => {
                info!(
                    broker_id = self.me.id.0,
                    epoch,
                    controller = controller.0,
                    "registered with the controller"
                );
                self.epoch.set(Some(epoch));
                Lifecycle::Progressed
            }
            Err(e) => {
                debug!(error = %e.message, "registration failed; retrying");
                Lifecycle::Retry
            }
        }
    }

    /// What a heartbeat's answer means for the lifecycle.
    fn heartbeat_answered(
        &self,
        epoch: u64,
        answer: Result<HeartbeatAnswer, PartitionError>,
    ) -> Lifecycle {
        match answer {
            Ok(HeartbeatAnswer::StaleEpoch) => {
                warn!(
                    epoch,
                    "the controller no longer knows this broker's epoch; registering again"
                );
                self.epoch.set(None);
                Lifecycle::Progressed
            }
            Ok(HeartbeatAnswer::Ok { fenced: true }) => Lifecycle::Retry,
            Ok(HeartbeatAnswer::Ok { fenced: false }) => Lifecycle::Steady,
            Err(e) => {
                debug!(error = %e.message, "heartbeat failed; retrying");
                Lifecycle::Retry
            }
        }
    }

    /// Whether the applied metadata has this broker fenced (or not registered).
    fn fenced(&self) -> bool {
        !self
            .metadata
            .borrow()
            .registrations
            .get(&self.me.id)
            .is_some_and(|r| Some(r.epoch) == self.epoch.get() && !r.fenced)
    }

    /// The first leader of an empty log gives the cluster its id, or imports the
    /// metadata a single broker kept in this data dir; returns whether it did.
    async fn initialize_cluster(&self) -> bool {
        let legacy = self.legacy.borrow_mut().take();
        let imported = legacy.is_some();
        let record = match legacy {
            Some(md) => MetadataRecord::Import {
                metadata: Box::new(md),
            },
            None => MetadataRecord::InitCluster {
                cluster_id: new_cluster_id(),
            },
        };
        match self
            .quorum()
            .propose(&record, self.config.metadata_commit_timeout)
            .await
        {
            Ok(_) if imported => {
                let from = self.config.data_dir.join(store::METADATA_FILE);
                let to = self
                    .config
                    .data_dir
                    .join(format!("{}.imported", store::METADATA_FILE));
                match std::fs::rename(&from, &to) {
                    Ok(()) => {
                        info!(file = %to.display(), "single-broker metadata imported into the metadata log")
                    }
                    Err(e) => {
                        warn!(error = %e, "metadata imported; the old file could not be renamed")
                    }
                }
                true
            }
            Ok(_) => true,
            Err(e) => {
                if let MetadataRecord::Import { metadata } = record {
                    *self.legacy.borrow_mut() = Some(*metadata);
                }
                warn!(error = %e, "cannot initialize the cluster metadata; retrying");
                false
            }
        }
    }

    /// The active controller: fences brokers whose sessions ran out, proposes
    /// the unclean elections the topics allow, and every
    /// `leader.imbalance.check.interval.seconds` the preferred elections of
    /// `auto.leader.rebalance.enable` (each once while in flight, as the fences:
    /// `BrokerSessions::not_in_flight`).
    async fn run_session_checks(self: Rc<Self>) {
        // The first imbalance check waits a whole interval, as Kafka's: brokers
        // that just started are still catching up.
        let mut next_rebalance_check =
            self.now_ms() + self.config.leader_imbalance_check_interval.as_millis() as u64;
        loop {
            glommio::timer::sleep(Duration::from_millis(SESSION_CHECK_MS)).await;
            let quorum = self.quorum().clone();
            if quorum.failure().is_some() {
                return;
            }
            if !quorum.leader_ready() {
                continue;
            }
            let now = self.now_ms();
            let mut records = self
                .sessions
                .borrow_mut()
                .expire(&self.metadata.borrow(), now);
            // Partitions with no live in-sync replica, where the topic (or this
            // controller's broker default) allows a replica outside the ISR.
            let default = self.config.unclean_leader_election;
            let elections = self
                .metadata
                .borrow()
                .unclean_elections(|t| topic_unclean_leader_election(default, &t.configs));
            records.extend(self.sessions.borrow_mut().not_in_flight(elections));
            if self.config.auto_leader_rebalance && now >= next_rebalance_check {
                next_rebalance_check =
                    now + self.config.leader_imbalance_check_interval.as_millis() as u64;
                let elections = self
                    .metadata
                    .borrow()
                    .rebalance_elections(self.config.leader_imbalance_per_broker_percentage);
                if !elections.is_empty() {
                    info!(
                        partitions = elections.len(),
                        "leader imbalance: giving partitions back to their preferred leaders"
                    );
                }
                records.extend(self.sessions.borrow_mut().not_in_flight(elections));
            }
            for r in records {
                if let MetadataRecord::FenceBroker { id, epoch } = &r {
                    warn!(
                        broker_id = id.0,
                        epoch, "broker session expired; fencing it"
                    );
                }
                if quorum.propose_detached(&r).is_err() {
                    self.sessions.borrow_mut().settled(&r);
                }
            }
        }
    }

    /// The active controller registers a broker; returns its epoch.
    pub async fn controller_register(
        &self,
        broker: BrokerInfo,
        incarnation: u64,
    ) -> Result<u64, PartitionError> {
        let id = broker.id;
        let now = self.now_ms();
        if !self
            .sessions
            .borrow()
            .may_register(&self.metadata.borrow(), id, incarnation, now)
        {
            return Err(PartitionError::new(
                ErrorKind::InvalidRequest,
                format!("broker id {} is registered by another live broker (DUPLICATE_BROKER_REGISTRATION)", id.0),
            ));
        }
        let record = MetadataRecord::RegisterBroker {
            broker,
            incarnation,
        };
        self.quorum()
            .propose(&record, self.config.metadata_commit_timeout)
            .await
            .map_err(|e| proposal_error(&e))?;
        let md = self.metadata.borrow();
        match md.registrations.get(&id) {
            Some(r) if r.incarnation == incarnation => Ok(r.epoch),
            _ => Err(PartitionError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "broker id {} was registered by another process meanwhile",
                    id.0
                ),
            )),
        }
    }

    /// The active controller takes a heartbeat.
    pub fn controller_heartbeat(&self, hb: Heartbeat) -> HeartbeatAnswer {
        let now = self.now_ms();
        let (answer, record) =
            self.sessions
                .borrow_mut()
                .heartbeat(&self.metadata.borrow(), hb, now);
        if let Some(r) = record {
            if self.quorum().propose_detached(&r).is_err() {
                self.sessions.borrow_mut().settled(&r);
            }
        }
        answer
    }

    /// Answers a request from a data shard.
    pub async fn handle(self: Rc<Self>, _from: Peer, request: CoordinatorRequest) -> Answered {
        match request {
            CoordinatorRequest::CreateTopics {
                topics,
                validate_only,
                answer,
            } => {
                let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
                let call = AdminCall::CreateTopics {
                    topics,
                    validate_only,
                };
                answer.send(every_or_error(names, self.admin(call).await))
            }
            CoordinatorRequest::DeleteTopics { names, answer } => {
                let call = AdminCall::DeleteTopics {
                    names: names.clone(),
                };
                answer.send(every_or_error(names, self.admin(call).await))
            }
            CoordinatorRequest::CreatePartitions {
                topics,
                validate_only,
                answer,
            } => {
                let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
                let call = AdminCall::CreatePartitions {
                    topics,
                    validate_only,
                };
                answer.send(every_or_error(names, self.admin(call).await))
            }
            CoordinatorRequest::AlterTopicConfigs {
                topic,
                alteration,
                validate_only,
                answer,
            } => {
                let call = AdminCall::AlterTopicConfigs {
                    topic: topic.clone(),
                    alteration,
                    validate_only,
                };
                answer.send(every_or_error(vec![topic], self.admin(call).await))
            }
            CoordinatorRequest::AlterPartition { change, answer } => {
                let name = change.topic.clone();
                let result = self.admin(AdminCall::AlterPartition(change)).await;
                answer.send(match result {
                    Ok(outcomes) => match outcomes.into_iter().find(|o| o.name == name) {
                        Some(TopicOutcome { error: None, .. }) => Ok(()),
                        Some(TopicOutcome { error: Some(e), .. }) => Err(e),
                        None => Err(PartitionError::new(
                            ErrorKind::UnknownServerError,
                            "the controller gave no outcome for the ISR change",
                        )),
                    },
                    Err(e) => Err(e),
                })
            }
            CoordinatorRequest::ElectLeaders {
                kind,
                partitions,
                answer,
            } => answer.send(
                self.admin(AdminCall::ElectLeaders { kind, partitions })
                    .await,
            ),
            CoordinatorRequest::DescribeCluster { answer } => answer.send(ClusterView {
                metadata: Arc::new(self.metadata()),
                controller: self.controller_leader(),
                term: self.quorum().term(),
            }),
            CoordinatorRequest::AutoCreate { names, answer } => {
                if !self.config.auto_create_topics {
                    return answer.send(Vec::new());
                }
                let topics = names
                    .iter()
                    .map(|name| NewTopic {
                        name: name.clone(),
                        ..NewTopic::default()
                    })
                    .collect();
                let call = AdminCall::CreateTopics {
                    topics,
                    validate_only: false,
                };
                answer.send(every_or_error(names, self.admin(call).await))
            }
        }
    }

    /// Proposes `record` as the active controller and waits for it to commit;
    /// `Ok` carries what applying it did.
    async fn commit(&self, record: &MetadataRecord) -> Result<CommittedChange, PartitionError> {
        self.quorum()
            .propose(record, self.config.metadata_commit_timeout)
            .await
            .map_err(|e| proposal_error(&e))
    }

    async fn create_topics(&self, topics: Vec<NewTopic>, validate_only: bool) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let mut results = Vec::new();
        let mut last = 0;
        for t in topics {
            let partitions = t.partitions.unwrap_or(self.config.num_partitions);
            let rf = t
                .replication_factor
                .unwrap_or(self.config.default_replication_factor);
            let planned = topic_log_config(&self.config.log, &t.configs)
                .map_err(MetadataError::InvalidConfig)
                .and_then(|_| {
                    self.metadata
                        .borrow()
                        .plan_topic(&t.name, partitions, rf, t.configs)
                });
            let error = match planned {
                Err(e) => Some(metadata_error(&e)),
                Ok(_) if validate_only => None,
                Ok(mut topic) => {
                    topic.id = new_topic_id();
                    info!(topic = %topic.name, partitions, replication_factor = rf, "creating topic");
                    match self.commit(&MetadataRecord::CreateTopic { topic }).await {
                        Ok(c) => {
                            last = last.max(c.offset);
                            self.outcome_of(&c, &t.name)
                        }
                        Err(e) => Some(e),
                    }
                }
            };
            results.push(TopicOutcome {
                name: t.name,
                partition: None,
                error,
            });
        }
        self.answer_after_publish(results, last).await
    }

    /// Changes a topic's configs: the new set (the current one with the change
    /// applied) must be valid, and only keys that take effect on open partitions
    /// may change (`ALTERABLE_TOPIC_KEYS`); the whole new set is one record.
    async fn alter_topic_configs(
        &self,
        topic: String,
        alteration: ConfigAlteration,
        validate_only: bool,
    ) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let planned = self
            .metadata
            .borrow()
            .topics
            .get(&topic)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.clone()))
            .and_then(|t| {
                altered_topic_configs(
                    &self.config.log,
                    &t.configs,
                    &alteration.set,
                    &alteration.delete,
                )
                .map_err(MetadataError::InvalidConfig)
            });
        let error = match planned {
            Err(e) => Some(metadata_error(&e)),
            Ok(_) if validate_only => None,
            Ok(configs) => {
                info!(topic = %topic, ?configs, "altering topic configs");
                let record = MetadataRecord::AlterTopicConfigs {
                    topic: topic.clone(),
                    configs,
                };
                match self.commit(&record).await {
                    Ok(c) => {
                        let error = self.outcome_of(&c, &topic);
                        return self
                            .answer_after_publish(
                                vec![TopicOutcome {
                                    name: topic,
                                    partition: None,
                                    error,
                                }],
                                c.offset,
                            )
                            .await;
                    }
                    Err(e) => Some(e),
                }
            }
        };
        vec![TopicOutcome {
            name: topic,
            partition: None,
            error,
        }]
    }

    /// Grows topics; the shards open the new partitions when they adopt the result.
    async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let mut results = Vec::new();
        let mut last = 0;
        for (name, total) in topics {
            let planned = self.metadata.borrow().plan_partitions(&name, total);
            let error = match planned {
                Err(e) => Some(metadata_error(&e)),
                Ok(_) if validate_only => None,
                Ok(partitions) => {
                    info!(topic = %name, partitions = total, "adding partitions");
                    let record = MetadataRecord::CreatePartitions {
                        topic: name.clone(),
                        partitions,
                    };
                    match self.commit(&record).await {
                        Ok(c) => {
                            last = last.max(c.offset);
                            self.outcome_of(&c, &name)
                        }
                        Err(e) => Some(e),
                    }
                }
            };
            results.push(TopicOutcome {
                name,
                partition: None,
                error,
            });
        }
        self.answer_after_publish(results, last).await
    }

    async fn delete_topics(&self, names: Vec<String>) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let mut results = Vec::new();
        let mut last = 0;
        for name in names {
            // Checked first so the answer names the reason (unknown, internal).
            let check = {
                let md = self.metadata.borrow();
                if crate::metadata::model::is_internal_topic(&name) {
                    Err(MetadataError::InternalTopic(name.clone()))
                } else if !md.topics.contains_key(&name) {
                    Err(MetadataError::UnknownTopic(name.clone()))
                } else {
                    Ok(())
                }
            };
            let error = match check {
                Err(e) => Some(metadata_error(&e)),
                Ok(()) => {
                    info!(topic = %name, "deleting topic");
                    let record = MetadataRecord::DeleteTopic { name: name.clone() };
                    match self.commit(&record).await {
                        Ok(c) => {
                            last = last.max(c.offset);
                            self.outcome_of(&c, &name)
                        }
                        Err(e) => Some(e),
                    }
                }
            };
            results.push(TopicOutcome {
                name,
                partition: None,
                error,
            });
        }
        self.answer_after_publish(results, last).await
    }

    /// The error for a committed record that changed nothing (another change to the
    /// same topic committed first).
    fn outcome_of(&self, change: &CommittedChange, topic: &str) -> Option<PartitionError> {
        match &change.applied {
            Applied::Changed => None,
            Applied::Ignored(reason) => Some(PartitionError::new(
                ErrorKind::InvalidRequest,
                format!("topic {topic:?}: {reason}"),
            )),
        }
    }

    /// Answers once every shard adopted the metadata through `offset`.
    async fn answer_after_publish(
        &self,
        results: Vec<TopicOutcome>,
        offset: u64,
    ) -> Vec<TopicOutcome> {
        self.wait_published(offset).await;
        results
    }

    /// The metadata as this broker has applied it (for `cluster describe`).
    pub fn metadata(&self) -> ClusterMetadata {
        self.metadata.borrow().clone()
    }
}

/// The outcomes of an admin call, or its one error for every topic it named.
fn every_or_error(
    names: Vec<String>,
    result: Result<Vec<TopicOutcome>, PartitionError>,
) -> Vec<TopicOutcome> {
    match result {
        Ok(outcomes) => outcomes,
        Err(e) => names
            .into_iter()
            .map(|name| TopicOutcome {
                name,
                partition: None,
                error: Some(e.clone()),
            })
            .collect(),
    }
}

/// The error a client sees for a proposal that did not take effect.
fn proposal_error(e: &ProposalError) -> PartitionError {
    let code = match e {
        ProposalError::Refused(ProposeError::NotLeader { .. })
        | ProposalError::Refused(ProposeError::NotReady)
        | ProposalError::Overwritten => ErrorKind::NotController,
        ProposalError::Refused(ProposeError::Refused(_)) => ErrorKind::UnknownServerError,
        ProposalError::TimedOut(_) => ErrorKind::RequestTimedOut,
        ProposalError::Failed(_) => ErrorKind::KafkaStorageError,
    };
    PartitionError::new(code, e.to_string())
}

/// A single broker's metadata file as the first record of its log: topic ids
/// filled in, `__consumer_offsets` compacted, this broker's address current.
fn upgrade_legacy(
    mut md: ClusterMetadata,
    config: &BrokerConfig,
    me: &BrokerInfo,
) -> ClusterMetadata {
    md.upsert_broker(me.clone());
    for t in md.topics.values_mut().filter(|t| t.id.is_empty()) {
        t.id = new_topic_id();
    }
    // `__consumer_offsets` made before it was compacted becomes so.
    if let Some(t) = md.topics.get_mut(crate::groups::offsets::OFFSETS_TOPIC) {
        if !t.configs.contains_key("cleanup.policy") {
            let defaults = crate::groups::offsets::offsets_topic_configs(
                config.offsets_topic_segment_bytes,
                config.log.max_batch_bytes,
            );
            t.configs
                .insert("cleanup.policy".into(), defaults["cleanup.policy"].clone());
            info!("{} is now compacted (cleanup.policy=compact)", t.name);
        }
    }
    if md.cluster_id.is_empty() {
        md.cluster_id = new_cluster_id();
    }
    md.registrations.clear();
    md.applied_offset = 0;
    md
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return crate::time::now_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}

/// A new topic id: 128 random bits, hex.
fn new_topic_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

fn new_cluster_id() -> String {
    let nanos = crate::time::now_nanos();
    format!("ringlog-{:x}-{:x}", nanos, std::process::id())
}
