//! [`Client`]: the broker connection plus a metadata cache and the admin calls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use bytes::Bytes;
use ringlog_schema::frame::payload_slice;
use ringlog_schema::wire::*;

use crate::client::{ClientError, Connection};

/// A partition as metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub shard: u16,
    pub error: ErrorCode,
}

/// A topic as metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// A connection to the cluster with cached topic metadata. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    conn: Connection,
    /// The bootstrap broker's id (from its hello).
    me: Rc<Cell<i32>>,
    /// Every broker's native address, from metadata.
    brokers: Rc<RefCell<HashMap<i32, SocketAddr>>>,
    /// Connections to brokers other than the bootstrap one, made on first use.
    pool: Rc<RefCell<HashMap<i32, Connection>>>,
    topics: Rc<RefCell<HashMap<String, Rc<TopicInfo>>>>,
    /// Bumped whenever the topic cache changes, so callers that keep what they
    /// derived from it (the producer's partition counts) know when to look again.
    topics_generation: Rc<Cell<u64>>,
    /// Each group's coordinator (a broker id), as FindCoordinator last said.
    coordinators: Rc<RefCell<HashMap<String, i32>>>,
}

/// How long a client waits before asking again after a leader change or an
/// unreachable leader (Kafka's `retry.backoff.ms`).
pub const LEADERSHIP_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a request that keeps meeting a stale leadership is retried before its
/// error is returned (Kafka's `default.api.timeout.ms` is 60 s; an election here
/// takes the session timeout, 9 s by default).
pub const LEADERSHIP_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Resolves `host:port` to the first address.
pub fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    addr.to_socket_addrs()
        .map_err(|e| ClientError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ClientError::Connect {
            addr: addr.to_string(),
            reason: "no address".into(),
        })
}

impl Client {
    /// Connects to the bootstrap server and says hello.
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        let conn = Connection::connect(resolve(bootstrap)?).await?;
        let client = Self {
            conn,
            me: Rc::new(Cell::new(-1)),
            brokers: Rc::new(RefCell::new(HashMap::new())),
            pool: Rc::new(RefCell::new(HashMap::new())),
            topics: Rc::new(RefCell::new(HashMap::new())),
            topics_generation: Rc::new(Cell::new(0)),
            coordinators: Rc::new(RefCell::new(HashMap::new())),
        };
        let hello = client.hello().await?;
        client.me.set(hello.broker_id);
        Ok(client)
    }

    /// The connection to the bootstrap broker.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Every broker the last metadata named (the bootstrap one among them), by id.
    pub fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.brokers.borrow().keys().copied().collect();
        if !ids.contains(&self.me.get()) {
            ids.push(self.me.get());
        }
        ids.sort_unstable();
        ids
    }

    /// A connection to broker `id`: the bootstrap one, or one made on first use at
    /// the address metadata gave (metadata is fetched if the broker is unknown).
    /// A broken connection is made again (the bootstrap one too, at the address
    /// metadata gave for its broker).
    pub async fn connection_to(&self, id: i32) -> Result<Connection, ClientError> {
        if id < 0 || (id == self.me.get() && self.conn.check().is_ok()) {
            return Ok(self.conn.clone());
        }
        if !self.brokers.borrow().contains_key(&id) {
            self.metadata(Some(Vec::new()), false).await?;
        }
        self.known_connection(id).await
    }

    /// A pooled connection to broker `id`, made again if broken, at the address
    /// the metadata already gave (never fetches metadata).
    async fn known_connection(&self, id: i32) -> Result<Connection, ClientError> {
        if let Some(c) = self.pool.borrow().get(&id) {
            if c.check().is_ok() {
                return Ok(c.clone());
            }
        }
        let addr = self.brokers.borrow().get(&id).copied().ok_or_else(|| {
            ClientError::Protocol(format!("broker {id} is not in the cluster's metadata"))
        })?;
        let conn = Connection::connect(addr).await?;
        self.pool.borrow_mut().insert(id, conn.clone());
        Ok(conn)
    }

    /// A connection to the coordinator of `group` (the broker leading its
    /// `__consumer_offsets` partition), found with FindCoordinator on first use.
    pub async fn coordinator_connection(&self, group: &str) -> Result<Connection, ClientError> {
        let known = self.coordinators.borrow().get(group).copied();
        let id = match known {
            Some(id) => id,
            None => {
                let body = BodyT::FindCoordinatorRequest(Box::new(FindCoordinatorRequestT {
                    group: group.to_string(),
                }));
                let frame = self.conn.request(body, Vec::new()).await?;
                let r = match frame.envelope.body {
                    BodyT::FindCoordinatorResponse(r) if r.error == ErrorCode::NONE => r,
                    BodyT::FindCoordinatorResponse(r) => {
                        return Err(ClientError::broker(r.error, r.message))
                    }
                    other => return Err(unexpected(other)),
                };
                let addr = u16::try_from(r.port).ok().and_then(|port| {
                    let host = r.host.as_deref()?;
                    format!("{host}:{port}").parse::<SocketAddr>().ok()
                });
                if let Some(addr) = addr {
                    self.brokers.borrow_mut().insert(r.broker_id, addr);
                }
                self.coordinators
                    .borrow_mut()
                    .insert(group.to_string(), r.broker_id);
                r.broker_id
            }
        };
        self.connection_to(id).await
    }

    /// Forgets the coordinator of `group`, so the next request finds it again.
    pub fn forget_coordinator(&self, group: &str) {
        self.coordinators.borrow_mut().remove(group);
    }

    /// The connection to the leader of `topic`-`partition` (from cached metadata).
    pub async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Connection, ClientError> {
        let leader = self.leader_of(topic, partition).await?;
        self.connection_to(leader).await
    }

    /// The leader of `topic`-`partition` as cached metadata says (-1: none known,
    /// and the bootstrap broker answers).
    pub async fn leader_of(&self, topic: &str, partition: i32) -> Result<i32, ClientError> {
        let t = self.topic(topic, false).await?;
        Ok(t.partitions
            .iter()
            .find(|p| p.partition == partition)
            .map_or(-1, |p| p.leader))
    }

    /// Changes whenever the cached topic metadata changes.
    pub fn topics_generation(&self) -> u64 {
        self.topics_generation.get()
    }

    fn topics_changed(&self) {
        self.topics_generation.set(self.topics_generation.get() + 1);
    }

    /// Says hello: the broker's id, shard count and the shard serving this connection.
    pub async fn hello(&self) -> Result<HelloResponseT, ClientError> {
        let body = BodyT::HelloRequest(Box::new(HelloRequestT {
            client_id: Some("ringlog-client".into()),
            protocol_version: 1,
        }));
        match self.conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::HelloResponse(r) if r.error == ErrorCode::NONE => Ok(*r),
            BodyT::HelloResponse(r) => Err(ClientError::broker(r.error, None)),
            other => Err(unexpected(other)),
        }
    }

    /// Fetches metadata for `topics` (all when `None`), optionally asking the broker to
    /// create missing ones, and refreshes the cache.
    pub async fn metadata(
        &self,
        topics: Option<Vec<String>>,
        auto_create: bool,
    ) -> Result<MetadataResponseT, ClientError> {
        let body = BodyT::MetadataRequest(Box::new(MetadataRequestT {
            topics,
            allow_auto_topic_creation: auto_create,
        }));
        let conn = self.metadata_connection().await?;
        let resp = match conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::MetadataResponse(r) => *r,
            other => return Err(unexpected(other)),
        };
        self.topics_changed();
        {
            let mut brokers = self.brokers.borrow_mut();
            for b in resp.brokers.iter().flatten() {
                if let Ok(addr) = resolve(&format!("{}:{}", b.host, b.port)) {
                    brokers.insert(b.id, addr);
                }
            }
        }
        let mut cache = self.topics.borrow_mut();
        for t in resp.topics.iter().flatten() {
            if t.error != ErrorCode::NONE {
                cache.remove(&t.name);
                continue;
            }
            let info = TopicInfo {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .flatten()
                    .map(|p| PartitionInfo {
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone().unwrap_or_default(),
                        isr: p.isr.clone().unwrap_or_default(),
                        shard: p.shard,
                        error: p.error,
                    })
                    .collect(),
            };
            cache.insert(t.name.clone(), Rc::new(info));
        }
        Ok(resp)
    }

    /// A topic's metadata, from the cache or the broker.
    pub async fn topic(&self, name: &str, auto_create: bool) -> Result<Rc<TopicInfo>, ClientError> {
        if let Some(t) = self.topics.borrow().get(name) {
            return Ok(t.clone());
        }
        let resp = self
            .metadata(Some(vec![name.to_string()]), auto_create)
            .await?;
        if let Some(t) = resp.topics.iter().flatten().find(|t| t.name == name) {
            if t.error == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
                return Err(ClientError::UnknownTopic(name.to_string()));
            }
            if t.error != ErrorCode::NONE {
                return Err(ClientError::broker(t.error, t.message.clone()));
            }
        }
        self.topics
            .borrow()
            .get(name)
            .cloned()
            .ok_or_else(|| ClientError::UnknownTopic(name.to_string()))
    }

    /// Creates a topic; `configs` are topic-level settings (`retention.ms`, ...).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> Result<(), ClientError> {
        let body = BodyT::CreateTopicsRequest(Box::new(CreateTopicsRequestT {
            topics: Some(vec![NewTopicT {
                name: name.to_string(),
                partitions,
                replication_factor,
                configs: Some(
                    configs
                        .into_iter()
                        .map(|(key, value)| ConfigEntryT { key, value })
                        .collect(),
                ),
            }]),
            timeout_ms: 30_000,
            validate_only: false,
        }));
        match self.conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::CreateTopicsResponse(r) => first_result(r.results),
            BodyT::ErrorResponse(e) => Err(ClientError::broker(e.error, e.message)),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.topics.borrow_mut().remove(name);
        self.topics_changed();
        let body = BodyT::DeleteTopicsRequest(Box::new(DeleteTopicsRequestT {
            names: Some(vec![name.to_string()]),
            timeout_ms: 30_000,
        }));
        match self.conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::DeleteTopicsResponse(r) => first_result(r.results),
            BodyT::ErrorResponse(e) => Err(ClientError::broker(e.error, e.message)),
            other => Err(unexpected(other)),
        }
    }

    /// Changes a topic's configs: `set` ones to these values, `delete` ones back to
    /// the broker's default (answered once committed; only a check with
    /// `validate_only`).
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: Vec<(String, String)>,
        delete: Vec<String>,
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let body = BodyT::AlterTopicConfigsRequest(Box::new(AlterTopicConfigsRequestT {
            topic: name.to_string(),
            set: Some(
                set.into_iter()
                    .map(|(key, value)| ConfigEntryT { key, value })
                    .collect(),
            ),
            delete: Some(delete),
            validate_only,
        }));
        let conn = self.metadata_connection().await?;
        match conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::AlterTopicConfigsResponse(r) => first_result(r.result.map(|r| vec![*r])),
            other => Err(unexpected(other)),
        }
    }

    /// Elects leaders through the active controller: preferred (`unclean`
    /// false), or unclean for partitions without a leader. `partitions` `None`
    /// is every partition of every topic. One result per partition: `Ok` where
    /// the election was made, else why not (ELECTION_NOT_NEEDED,
    /// PREFERRED_LEADER_NOT_AVAILABLE, ...).
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<ElectionOutcome>, ClientError> {
        let body = BodyT::ElectLeadersRequest(Box::new(ElectLeadersRequestT {
            unclean,
            all: partitions.is_none(),
            partitions: partitions.map(|ps| {
                ps.into_iter()
                    .map(|(topic, partition)| TopicPartitionT { topic, partition })
                    .collect()
            }),
        }));
        let conn = self.metadata_connection().await?;
        match conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::ElectLeadersResponse(r) if r.error != ErrorCode::NONE => {
                Err(ClientError::broker(r.error, r.message))
            }
            BodyT::ElectLeadersResponse(r) => Ok(r
                .results
                .unwrap_or_default()
                .into_iter()
                .map(|e| ElectionOutcome {
                    topic: e.topic,
                    partition: e.partition,
                    result: if e.error == ErrorCode::NONE {
                        Ok(())
                    } else {
                        Err(ClientError::broker(e.error, e.message))
                    },
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Describes topics (all when `None`), with each partition's offsets.
    pub async fn describe_topics(
        &self,
        names: Option<Vec<String>>,
    ) -> Result<Vec<TopicDescriptionT>, ClientError> {
        let body = BodyT::DescribeTopicsRequest(Box::new(DescribeTopicsRequestT { names }));
        match self.conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::DescribeTopicsResponse(r) => Ok(r.topics.unwrap_or_default()),
            BodyT::ErrorResponse(e) => Err(ClientError::broker(e.error, e.message)),
            other => Err(unexpected(other)),
        }
    }

    /// Where metadata is asked: the bootstrap broker while it answers, else any
    /// other broker the last metadata named (as Kafka clients use any known node),
    /// so a client outlives the broker it bootstrapped from.
    async fn metadata_connection(&self) -> Result<Connection, ClientError> {
        let Err(broken) = self.conn.check() else {
            return Ok(self.conn.clone());
        };
        for id in self.broker_ids() {
            if let Ok(conn) = self.known_connection(id).await {
                return Ok(conn);
            }
        }
        Err(broken)
    }

    /// After a request met a stale leadership (`ClientError::is_stale_leadership`):
    /// waits `LEADERSHIP_RETRY_BACKOFF` (an election takes a moment, and a dead
    /// broker must not be dialled in a loop), then refreshes `topic`'s metadata.
    /// A refresh that fails is left for the next try to repeat.
    pub async fn refresh_leadership(&self, topic: &str) {
        glommio::timer::sleep(LEADERSHIP_RETRY_BACKOFF).await;
        let _ = self.metadata(Some(vec![topic.to_string()]), false).await;
    }

    /// Lists an offset: `timestamp` -2 = earliest, -1 = latest, else by time.
    /// Sent to the partition's leader, and again to the new one after a leader
    /// change, for up to `LEADERSHIP_RETRY_TIMEOUT`.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let deadline = std::time::Instant::now() + LEADERSHIP_RETRY_TIMEOUT;
        loop {
            match self.list_offset_once(topic, partition, timestamp).await {
                Err(e) if e.is_stale_leadership() && std::time::Instant::now() < deadline => {
                    self.refresh_leadership(topic).await;
                }
                done => return done,
            }
        }
    }

    async fn list_offset_once(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let body = BodyT::ListOffsetsRequest(Box::new(ListOffsetsRequestT {
            partitions: Some(vec![ListOffsetsPartitionT {
                topic: topic.to_string(),
                partition,
                timestamp,
            }]),
        }));
        let conn = self.leader_connection(topic, partition).await?;
        match conn.request(body, Vec::new()).await?.envelope.body {
            BodyT::ListOffsetsResponse(r) => {
                let p = r
                    .partitions
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::Protocol("empty ListOffsets answer".into()))?;
                if p.error != ErrorCode::NONE {
                    return Err(ClientError::broker(p.error, p.message));
                }
                Ok(p.offset)
            }
            BodyT::ErrorResponse(e) => Err(ClientError::broker(e.error, e.message)),
            other => Err(unexpected(other)),
        }
    }

    /// Sends one fetch to each leader of the partitions asked and returns, per
    /// partition, the result and its batches (grouped by leader, in leader order).
    pub async fn fetch(
        &self,
        partitions: Vec<FetchPartitionT>,
        max_wait_ms: u32,
        min_bytes: u32,
        max_bytes: u32,
    ) -> Result<Vec<(FetchPartitionResultT, Bytes)>, ClientError> {
        let mut by_leader: std::collections::BTreeMap<i32, Vec<FetchPartitionT>> =
            std::collections::BTreeMap::new();
        for p in partitions {
            let leader = self.leader_of(&p.topic, p.partition).await?;
            by_leader.entry(leader).or_default().push(p);
        }
        let mut pending = Vec::new();
        for (leader, partitions) in by_leader {
            let body = BodyT::FetchRequest(Box::new(FetchRequestT {
                max_wait_ms,
                min_bytes,
                max_bytes,
                partitions: Some(partitions),
            }));
            let conn = self.connection_to(leader).await?;
            pending.push(conn.send(body, Vec::new()).await?);
        }
        let mut out = Vec::new();
        for p in pending {
            out.extend(Self::fetch_results(p.await_response().await?)?);
        }
        Ok(out)
    }

    fn fetch_results(
        frame: ringlog_schema::Frame,
    ) -> Result<Vec<(FetchPartitionResultT, Bytes)>, ClientError> {
        match frame.envelope.body {
            BodyT::FetchResponse(r) => r
                .partitions
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    let data = match &p.records {
                        Some(range) if range.length > 0 => {
                            payload_slice(&frame.payload, Some(range), "records")
                                .map_err(|e| ClientError::Protocol(e.to_string()))?
                        }
                        _ => Bytes::new(),
                    };
                    Ok((p, data))
                })
                .collect(),
            BodyT::ErrorResponse(e) => Err(ClientError::broker(e.error, e.message)),
            other => Err(unexpected(other)),
        }
    }
}

/// One partition's answer to [`Client::elect_leaders`].
#[derive(Debug)]
pub struct ElectionOutcome {
    pub topic: String,
    pub partition: i32,
    pub result: Result<(), ClientError>,
}

fn first_result(results: Option<Vec<TopicResultT>>) -> Result<(), ClientError> {
    let r = results
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("empty answer".into()))?;
    if r.error == ErrorCode::NONE {
        Ok(())
    } else {
        Err(ClientError::broker(r.error, r.message))
    }
}

pub(crate) fn unexpected(body: BodyT) -> ClientError {
    match body {
        BodyT::ErrorResponse(e) => ClientError::broker(e.error, e.message),
        other => ClientError::Protocol(format!("unexpected answer {:?}", other.body_type())),
    }
}
