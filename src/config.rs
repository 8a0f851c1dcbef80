//! Broker configuration: Kafka's key names where Kafka has the setting (DESIGN §9).
//!
//! Precedence, lowest first: built-in defaults, the TOML file, environment variables
//! (`RINGLOG_` + the key upper-cased with `.` -> `_`, e.g. `RINGLOG_LOG_DIRS`), then
//! command-line flags. TOML may spell a key dotted (`log.dirs = "x"`, which TOML nests)
//! or quoted (`"log.dirs" = "x"`); both mean the same key. An unknown key is an error,
//! never ignored, so a typo cannot silently leave a default in place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringlog_schema::validate::TimestampType;
use ringlog_storage::{CleanupPolicy, FlushPolicy, LogConfig};

use crate::groups::membership::GroupLimits;

/// Default native-protocol listener.
pub const NATIVE_ADDR_DEFAULT: &str = "127.0.0.1:9290";
/// Where the Kafka-protocol listener binds unless told otherwise (Kafka's port).
pub const KAFKA_ADDR_DEFAULT: &str = "127.0.0.1:9092";
/// Default admin HTTP listener (metrics, status, readiness; Redpanda's port).
pub const ADMIN_ADDR_DEFAULT: &str = "127.0.0.1:9644";
/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Most requests one connection may have in flight before the broker stops reading it.
pub const CONNECTION_INFLIGHT_MAX: usize = 1024;
/// Longest long-poll wait a fetch may ask for.
pub const FETCH_MAX_WAIT_MS_MAX: u32 = 60_000;
/// Bound on finishing in-flight requests at shutdown.
pub const SHUTDOWN_DRAIN_MS_MAX: u64 = 10_000;
/// Default inter-broker listener port (`inter.broker.listener`).
pub const CLUSTER_PORT_DEFAULT: u16 = 9293;
/// Kafka's `broker.heartbeat.interval.ms` default.
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 2_000;
/// Kafka's `broker.session.timeout.ms` default.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 9_000;
/// `metadata.commit.timeout.ms` default: how long an admin request waits for its
/// metadata record to commit before it fails with REQUEST_TIMED_OUT.
pub const METADATA_COMMIT_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Kafka's `replica.lag.time.max.ms` default: a follower not caught up for this
/// long leaves the ISR.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 30_000;
/// `controlled.shutdown.timeout.ms` default: how long a stopping broker waits for
/// the controller to move its leaderships (a fence commits in milliseconds; the
/// bound is for a cluster without a controller).
pub const CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Kafka's `leader.imbalance.check.interval.seconds` default: how often the
/// active controller looks for partitions to give back to their preferred leader.
pub const LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS_DEFAULT: u64 = 300;
/// Kafka's `leader.imbalance.per.broker.percentage` default: the share of a
/// broker's preferred partitions others may lead before a rebalance.
pub const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT: u32 = 10;
/// Kafka's `replica.high.watermark.checkpoint.interval.ms` default: how often a
/// replica writes a moved high watermark to its checkpoint.
pub const REPLICA_HW_CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Kafka's `replica.fetch.max.bytes` default: batches per partition per replica fetch.
pub const REPLICA_FETCH_MAX_BYTES_DEFAULT: usize = 1 << 20;
/// Kafka's `replica.fetch.response.max.bytes` default.
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES_DEFAULT: usize = 10 << 20;
/// Kafka's `replica.fetch.wait.max.ms` default: a replica fetch's long poll.
pub const REPLICA_FETCH_WAIT_MAX_MS_DEFAULT: u64 = 500;
/// Largest `replica.fetch.response.max.bytes`: what a replica fetch answer's
/// payload may carry (the first batch comes even when larger, up to
/// `message.max.bytes`); the follower refuses a payload past the inter-broker
/// protocol's own bound (128 MiB).
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES_MAX: usize = 64 << 20;
/// Most voters `controller.quorum.voters` may list.
pub const CONTROLLER_VOTERS_MAX: usize = 9;
/// Kafka's `connections.max.idle.ms` default (10 minutes).
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
/// Kafka's `producer.id.expiration.ms` default: a day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;
/// `queued.max.request.bytes` default: request bytes being read or handled, per
/// broker (split evenly across shards). Kafka's default is unbounded.
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: usize = 128 << 20;
/// `queued.max.response.bytes` default: fetch response bytes being read or queued on
/// sockets, per broker (split evenly across shards).
pub const QUEUED_MAX_RESPONSE_BYTES_DEFAULT: usize = 128 << 20;
/// Kafka's `fetch.max.bytes` default: the most one fetch response carries (55 MiB).
pub const FETCH_MAX_BYTES_DEFAULT: usize = 57_671_680;
/// Partitions one fetch or list-offsets request may name (a Java consumer asks for
/// every partition it is assigned; Kafka's own limit is the frame size).
pub const REQUEST_PARTITIONS_MAX: usize = 100_000;
/// `max.connections` default: open client connections per broker.
pub const MAX_CONNECTIONS_DEFAULT: usize = 10_000;

/// A configuration value or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key {key:?} (from {source_name})")]
    UnknownKey { key: String, source_name: String },
    #[error("invalid value {value:?} for {key} (from {source_name}): {reason}")]
    InvalidValue {
        key: String,
        value: String,
        source_name: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Keys a running broker applies on SIGHUP; any other changed key needs a restart.
pub const RELOADABLE_KEYS: &[&str] = &[
    "log.level",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
];

/// What a reload changes in a running broker, decided from the running and the newly
/// read configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// The new log filter, if it changed.
    pub log_level: Option<String>,
    /// The new `(retention.ms, retention.bytes)`, if either changed.
    pub retention: Option<(Option<u64>, Option<u64>)>,
    /// Keys set to other values that only a restart applies.
    pub needs_restart: Vec<String>,
}

impl ReloadPlan {
    pub fn from(running: &BrokerConfig, new: &BrokerConfig) -> Self {
        let old_retention = (running.log.retention_ms, running.log.retention_bytes);
        let new_retention = (new.log.retention_ms, new.log.retention_bytes);
        let mut keys: BTreeSet<&String> = running.explicit.keys().collect();
        keys.extend(new.explicit.keys());
        let needs_restart = keys
            .into_iter()
            .filter(|k| !RELOADABLE_KEYS.contains(&k.as_str()))
            .filter(|k| running.explicit.get(*k) != new.explicit.get(*k))
            .cloned()
            .collect();
        Self {
            log_level: new
                .log_level
                .clone()
                .filter(|_| new.log_level != running.log_level),
            retention: (new_retention != old_retention).then_some(new_retention),
            needs_restart,
        }
    }

    /// The running configuration once the reloadable part of `new` is applied.
    pub fn applied(running: &BrokerConfig, new: &BrokerConfig) -> BrokerConfig {
        let mut out = running.clone();
        out.log_level = new.log_level.clone();
        out.log.retention_ms = new.log.retention_ms;
        out.log.retention_bytes = new.log.retention_bytes;
        for key in RELOADABLE_KEYS {
            match new.explicit.get(*key) {
                Some(v) => out.explicit.insert(key.to_string(), v.clone()),
                None => out.explicit.remove(*key),
            };
        }
        out
    }
}

/// Where the broker looks for `io-properties.toml` at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoPropertiesFile {
    /// `<log.dirs>/io-properties.toml`, if it exists (the default).
    InDataDir,
    /// This file, which must exist.
    At(PathBuf),
    /// Not read (`none`).
    Off,
}

/// File name `ringlog iotune` writes in the data directory.
pub const IO_PROPERTIES_FILE: &str = "io-properties.toml";

/// Everything `ringlog serve` needs.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `broker.id`.
    pub broker_id: i32,
    /// `log.dirs`: the data directory (one directory for now).
    pub data_dir: PathBuf,
    /// `shards`: data shards; 0 means one per available core.
    pub shards: u16,
    /// `cores`: CPU per shard, or `None` for shard i on CPU i.
    pub cores: Option<Vec<usize>>,
    /// `native.listener`.
    pub native_addr: SocketAddr,
    /// `advertised.native.listener`: what Metadata tells clients (default: bound address).
    pub advertised_native_addr: Option<SocketAddr>,
    /// `kafka.listener`: the Kafka-protocol listener; `none` turns it off.
    pub kafka_addr: Option<SocketAddr>,
    /// `advertised.kafka.listener`: what Kafka Metadata tells clients (default: the
    /// bound address).
    pub advertised_kafka_addr: Option<SocketAddr>,
    /// `controller.quorum.voters` (`id@host:port,...`, Kafka's key): the brokers
    /// whose coordination shards form the controller quorum, at their inter-broker
    /// listeners. Empty: a cluster of one, this broker its only voter.
    pub controller_voters: Vec<(i32, SocketAddr)>,
    /// `inter.broker.listener`: the inter-broker listener. `None` (the default with
    /// no voters configured): not bound, a cluster of one needs no peers.
    pub cluster_addr: Option<SocketAddr>,
    /// `advertised.inter.broker.listener`: what peers are told (default: bound).
    pub advertised_cluster_addr: Option<SocketAddr>,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: a broker not heard from this long is fenced.
    pub broker_session_timeout: Duration,
    /// `metadata.commit.timeout.ms`.
    pub metadata_commit_timeout: Duration,
    /// `admin.listener`: the admin HTTP listener (`/metrics`, `/v1/status`, `/v1/ready`,
    /// `/v1/live`); `none` turns it off.
    pub admin_addr: Option<SocketAddr>,
    /// `num.partitions`: partitions of auto-created topics and of creates that give -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i16,
    /// `controlled.shutdown.enable`: on SIGTERM, move this broker's leaderships
    /// away (it asks to be fenced) before stopping.
    pub controlled_shutdown: bool,
    /// `controlled.shutdown.timeout.ms`: the longest a stopping broker waits for
    /// that.
    pub controlled_shutdown_timeout: Duration,
    /// `unclean.leader.election.enable`: a partition with no live in-sync replica
    /// may be led by a live replica outside the ISR (records it lacks are lost).
    pub unclean_leader_election: bool,
    /// `auto.leader.rebalance.enable`: the active controller gives partitions
    /// back to their preferred leaders when a broker's imbalance is too high.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval: Duration,
    /// `leader.imbalance.per.broker.percentage` (0–100).
    pub leader_imbalance_per_broker_percentage: u32,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max: Duration,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub replica_hw_checkpoint_interval: Duration,
    /// `replica.fetch.max.bytes`.
    pub replica_fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`.
    pub replica_fetch_response_max_bytes: usize,
    /// `replica.fetch.wait.max.ms`.
    pub replica_fetch_wait_max: Duration,
    /// `socket.request.max.bytes`: largest frame accepted.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms`: a connection whose peer reads nothing of a pending
    /// response for this long is closed and what it had queued is released.
    pub connections_max_idle: Duration,
    /// `queued.max.request.bytes`: request bytes being read or handled, per broker.
    pub queued_max_request_bytes: usize,
    /// `queued.max.response.bytes`: fetch response bytes read or queued, per broker.
    pub queued_max_response_bytes: usize,
    /// `fetch.max.bytes`: the most one fetch response carries, whatever it asks.
    pub fetch_max_bytes: usize,
    /// `max.connections`: client connections open at once, per broker.
    pub max_connections: usize,
    /// `max.connections.per.ip`: client connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// `producer.id.expiration.ms`: an idempotent producer silent this long is
    /// forgotten.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval: Duration,
    /// Shard io_uring buffer memory (locked), `shard.io.memory.bytes`.
    pub io_memory_bytes: usize,
    /// `shard.open.files.max`: segment files a shard keeps open; colder ones are
    /// closed and reopened on use.
    pub shard_open_files_max: usize,
    /// `shard.preallocate.max.bytes`: bytes a shard's logs keep allocated (and
    /// zero-filled) past their data, in all.
    pub shard_preallocate_max_bytes: u64,
    /// Per-partition log settings (`log.segment.bytes`, `log.retention.*`,
    /// `message.max.bytes`, `log.flush`, ...). Topic configs override some.
    pub log: LogConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor`: replicas of each `__consumer_offsets`
    /// partition when the topic is created, capped at the brokers registered then
    /// (Kafka's default 3; a single broker gets 1).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets` (Kafka's
    /// 100 MiB: small, so compaction can clean it often).
    pub offsets_topic_segment_bytes: u64,
    /// `log.cleaner.backoff.ms`: how often compacted logs are looked at.
    pub log_cleaner_backoff: Duration,
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
    /// `group.initial.rebalance.delay.ms`, `group.max.size`.
    pub groups: GroupLimits,
    /// `io.properties.file`: where `ringlog iotune`'s measurements are read at start.
    pub io_properties_file: IoPropertiesFile,
    /// `log.level`: a `RUST_LOG`-style filter (`info,ringlog::kafka=debug`); `RUST_LOG`
    /// wins at start, a reload applies a changed value.
    pub log_level: Option<String>,
    /// Keys set by a file, the environment or a flag, with the value last set: measured
    /// io properties do not override them, and a reload compares them.
    pub explicit: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_id: 0,
            data_dir: PathBuf::from("./data"),
            shards: 0,
            cores: None,
            native_addr: parse_addr(NATIVE_ADDR_DEFAULT),
            advertised_native_addr: None,
            kafka_addr: Some(parse_addr(KAFKA_ADDR_DEFAULT)),
            advertised_kafka_addr: None,
            admin_addr: Some(parse_addr(ADMIN_ADDR_DEFAULT)),
            controller_voters: Vec::new(),
            cluster_addr: None,
            advertised_cluster_addr: None,
            broker_heartbeat_interval: Duration::from_millis(BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT),
            broker_session_timeout: Duration::from_millis(BROKER_SESSION_TIMEOUT_MS_DEFAULT),
            metadata_commit_timeout: Duration::from_millis(METADATA_COMMIT_TIMEOUT_MS_DEFAULT),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            controlled_shutdown: true,
            controlled_shutdown_timeout: Duration::from_millis(
                CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT,
            ),
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(
                LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS_DEFAULT,
            ),
            leader_imbalance_per_broker_percentage: LEADER_IMBALANCE_PER_BROKER_PERCENTAGE_DEFAULT,
            replica_lag_time_max: Duration::from_millis(REPLICA_LAG_TIME_MAX_MS_DEFAULT),
            replica_hw_checkpoint_interval: Duration::from_millis(
                REPLICA_HW_CHECKPOINT_INTERVAL_MS_DEFAULT,
            ),
            replica_fetch_max_bytes: REPLICA_FETCH_MAX_BYTES_DEFAULT,
            replica_fetch_response_max_bytes: REPLICA_FETCH_RESPONSE_MAX_BYTES_DEFAULT,
            replica_fetch_wait_max: Duration::from_millis(REPLICA_FETCH_WAIT_MAX_MS_DEFAULT),
            socket_request_max_bytes: ringlog_schema::frame::FRAME_BYTES_MAX_DEFAULT,
            connections_max_idle: Duration::from_millis(CONNECTIONS_MAX_IDLE_MS_DEFAULT),
            queued_max_request_bytes: QUEUED_MAX_REQUEST_BYTES_DEFAULT,
            queued_max_response_bytes: QUEUED_MAX_RESPONSE_BYTES_DEFAULT,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_connections_per_ip: MAX_CONNECTIONS_DEFAULT,
            retention_check_interval: Duration::from_millis(300_000),
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            producer_id_expiration_check_interval: Duration::from_millis(600_000),
            io_memory_bytes: 10 << 20,
            shard_open_files_max: ringlog_storage::shared::OPEN_FILES_MAX_DEFAULT,
            shard_preallocate_max_bytes: ringlog_storage::shared::PREALLOCATED_MAX_BYTES_DEFAULT,
            log: LogConfig::default(),
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 104_857_600,
            log_cleaner_backoff: Duration::from_millis(15_000),
            groups: GroupLimits::default(),
            io_properties_file: IoPropertiesFile::InDataDir,
            log_level: None,
            explicit: BTreeMap::new(),
        }
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Broker keys and the topic-level key each one sets by default, if any.
pub const BROKER_KEYS: &[&str] = &[
    "broker.id",
    "log.dirs",
    "log.dir",
    "shards",
    "cores",
    "native.listener",
    "advertised.native.listener",
    "kafka.listener",
    "advertised.kafka.listener",
    "listeners",
    "advertised.listeners",
    "admin.listener",
    "controller.quorum.voters",
    "inter.broker.listener",
    "advertised.inter.broker.listener",
    "broker.heartbeat.interval.ms",
    "broker.session.timeout.ms",
    "metadata.commit.timeout.ms",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "controlled.shutdown.enable",
    "controlled.shutdown.timeout.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "leader.imbalance.per.broker.percentage",
    "replica.lag.time.max.ms",
    "replica.high.watermark.checkpoint.interval.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "message.max.bytes",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "queued.max.request.bytes",
    "queued.max.response.bytes",
    "fetch.max.bytes",
    "max.connections",
    "max.connections.per.ip",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "producer.id.expiration.ms",
    "producer.id.expiration.check.interval.ms",
    "log.index.interval.bytes",
    "log.flush",
    "log.cache.bytes",
    "log.zero.ahead.bytes",
    "log.write.buffer.bytes",
    "log.write.inflight.max",
    "log.read.ahead.bytes",
    "log.message.timestamp.type",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.backoff.ms",
    "offsets.topic.segment.bytes",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "io.properties.file",
    "log.level",
    "shard.io.memory.bytes",
    "shard.open.files.max",
    "shard.preallocate.max.bytes",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
];

impl BrokerConfig {
    /// The Kafka listener's address as clients should use it, if it is on.
    pub fn kafka_advertised(&self) -> Option<SocketAddr> {
        self.kafka_addr
            .map(|a| self.advertised_kafka_addr.unwrap_or(a))
    }

    /// Applies one `key = value` from `source_name` (a file, the environment, a flag).
    pub fn set(&mut self, key: &str, value: &str, source_name: &str) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            source_name: source_name.to_string(),
            reason,
        };
        let v = value.trim();
        match key {
            "broker.id" => self.broker_id = num(v).map_err(bad)?,
            "log.dirs" | "log.dir" => {
                if v.contains(',') {
                    return Err(bad("only one data directory is supported".into()));
                }
                if v.is_empty() {
                    return Err(bad("must not be empty".into()));
                }
                self.data_dir = PathBuf::from(v);
            }
            "shards" => self.shards = num(v).map_err(bad)?,
            "cores" => {
                let cores: Result<Vec<usize>, _> = v
                    .split(',')
                    .filter(|c| !c.trim().is_empty())
                    .map(|c| num::<usize>(c.trim()))
                    .collect();
                self.cores = Some(cores.map_err(bad)?);
            }
            "native.listener" => self.native_addr = addr(v).map_err(bad)?,
            "advertised.native.listener" => {
                self.advertised_native_addr = Some(addr(v).map_err(bad)?)
            }
            "kafka.listener" => {
                self.kafka_addr = match v {
                    "" | "none" => None,
                    _ => Some(addr(v).map_err(bad)?),
                }
            }
            "advertised.kafka.listener" => self.advertised_kafka_addr = Some(addr(v).map_err(bad)?),
            // Kafka's own keys for the same: `PLAINTEXT://host:port` (one listener).
            "listeners" => self.kafka_addr = Some(kafka_listener(v).map_err(bad)?),
            "advertised.listeners" => {
                self.advertised_kafka_addr = Some(kafka_listener(v).map_err(bad)?)
            }
            "admin.listener" => {
                self.admin_addr = match v {
                    "" | "none" => None,
                    _ => Some(addr(v).map_err(bad)?),
                }
            }
            "controller.quorum.voters" => self.controller_voters = voters(v).map_err(bad)?,
            "inter.broker.listener" => {
                self.cluster_addr = match v {
                    "" | "none" => None,
                    _ => Some(addr(v).map_err(bad)?),
                }
            }
            "advertised.inter.broker.listener" => {
                self.advertised_cluster_addr = Some(addr(v).map_err(bad)?)
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval = Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout = Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "metadata.commit.timeout.ms" => {
                self.metadata_commit_timeout = Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "num.partitions" => self.num_partitions = num(v).map_err(bad)?,
            "default.replication.factor" => {
                self.default_replication_factor = num(v).map_err(bad)?
            }
            "auto.create.topics.enable" => self.auto_create_topics = boolean(v).map_err(bad)?,
            "min.insync.replicas" => self.min_insync_replicas = num(v).map_err(bad)?,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election = boolean(v).map_err(bad)?
            }
            "controlled.shutdown.enable" => self.controlled_shutdown = boolean(v).map_err(bad)?,
            "controlled.shutdown.timeout.ms" => {
                self.controlled_shutdown_timeout =
                    Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance = boolean(v).map_err(bad)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval =
                    Duration::from_secs(positive_ms(v).map_err(bad)?)
            }
            "leader.imbalance.per.broker.percentage" => {
                let pct: u32 = num(v).map_err(bad)?;
                if pct > 100 {
                    return Err(bad("must be at most 100".to_string()));
                }
                self.leader_imbalance_per_broker_percentage = pct
            }
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max = Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replica_hw_checkpoint_interval =
                    Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = num(v).map_err(bad)?,
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes = num(v).map_err(bad)?
            }
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max = Duration::from_millis(positive_ms(v).map_err(bad)?)
            }
            "message.max.bytes" => self.log.max_batch_bytes = num(v).map_err(bad)?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = num(v).map_err(bad)?,
            "connections.max.idle.ms" => {
                let ms: u64 = num(v).map_err(bad)?;
                if ms == 0 {
                    return Err(bad("must be > 0".into()));
                }
                self.connections_max_idle = Duration::from_millis(ms);
            }
            "queued.max.request.bytes" => self.queued_max_request_bytes = num(v).map_err(bad)?,
            "queued.max.response.bytes" => self.queued_max_response_bytes = num(v).map_err(bad)?,
            "fetch.max.bytes" => self.fetch_max_bytes = num(v).map_err(bad)?,
            "max.connections" => self.max_connections = num(v).map_err(bad)?,
            "max.connections.per.ip" => self.max_connections_per_ip = num(v).map_err(bad)?,
            "log.segment.bytes" => self.log.segment_bytes = num(v).map_err(bad)?,
            "log.cleanup.policy" => self.log.cleanup = cleanup_policy(v).map_err(bad)?,
            "log.cleaner.delete.retention.ms" => {
                self.log.delete_retention_ms = num(v).map_err(bad)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                self.log.min_cleanable_dirty_ratio = num(v).map_err(bad)?
            }
            "log.cleaner.backoff.ms" => {
                let ms: u64 = num(v).map_err(bad)?;
                if ms == 0 {
                    return Err(bad("must be > 0".into()));
                }
                self.log_cleaner_backoff = Duration::from_millis(ms);
            }
            "offsets.topic.segment.bytes" => {
                self.offsets_topic_segment_bytes = num(v).map_err(bad)?
            }
            "log.message.timestamp.type" => {
                self.log.timestamp_type = timestamp_type(v).map_err(bad)?
            }
            "log.message.timestamp.before.max.ms" => {
                self.log.timestamp_before_max_ms = num(v).map_err(bad)?
            }
            "log.message.timestamp.after.max.ms" => {
                self.log.timestamp_after_max_ms = num(v).map_err(bad)?
            }
            "log.roll.ms" => self.log.segment_ms = Some(num(v).map_err(bad)?),
            "log.roll.hours" => self.log.segment_ms = Some(hours(v).map_err(bad)?),
            "log.retention.ms" => self.log.retention_ms = optional_ms(v, 1).map_err(bad)?,
            "log.retention.minutes" => {
                self.log.retention_ms = optional_ms(v, 60_000).map_err(bad)?
            }
            "log.retention.hours" => {
                self.log.retention_ms = optional_ms(v, 3_600_000).map_err(bad)?
            }
            "log.retention.bytes" => {
                let n: i64 = num(v).map_err(bad)?;
                self.log.retention_bytes = u64::try_from(n).ok();
            }
            "producer.id.expiration.ms" => {
                let ms: i64 = num(v).map_err(bad)?;
                if ms <= 0 {
                    return Err(bad("must be > 0".into()));
                }
                self.producer_id_expiration_ms = ms;
            }
            "producer.id.expiration.check.interval.ms" => {
                let ms: u64 = num(v).map_err(bad)?;
                if ms == 0 {
                    return Err(bad("must be > 0".into()));
                }
                self.producer_id_expiration_check_interval = Duration::from_millis(ms);
            }
            "log.retention.check.interval.ms" => {
                let ms: u64 = num(v).map_err(bad)?;
                if ms == 0 {
                    return Err(bad("must be > 0".into()));
                }
                self.retention_check_interval = Duration::from_millis(ms);
            }
            "log.index.interval.bytes" => self.log.index_interval_bytes = num(v).map_err(bad)?,
            "log.flush" => {
                self.log.flush = v.parse::<FlushPolicy>().map_err(|e| bad(e.to_string()))?;
            }
            "log.cache.bytes" => self.log.cache_bytes = num(v).map_err(bad)?,
            "log.zero.ahead.bytes" => self.log.zero_ahead_bytes = num(v).map_err(bad)?,
            "log.write.buffer.bytes" => self.log.write_buffer_bytes = num(v).map_err(bad)?,
            "log.write.inflight.max" => self.log.inflight_writes_max = num(v).map_err(bad)?,
            "log.read.ahead.bytes" => self.log.read_ahead_bytes = num(v).map_err(bad)?,
            "log.level" => {
                tracing_subscriber::EnvFilter::try_new(v).map_err(|e| bad(e.to_string()))?;
                self.log_level = Some(v.to_string());
            }
            "io.properties.file" => {
                self.io_properties_file = match v {
                    "" | "none" => IoPropertiesFile::Off,
                    _ => IoPropertiesFile::At(PathBuf::from(v)),
                }
            }
            "shard.io.memory.bytes" => self.io_memory_bytes = num(v).map_err(bad)?,
            "shard.open.files.max" => self.shard_open_files_max = num(v).map_err(bad)?,
            "shard.preallocate.max.bytes" => {
                self.shard_preallocate_max_bytes = num(v).map_err(bad)?
            }
            "offsets.topic.num.partitions" => {
                let n: i32 = num(v).map_err(bad)?;
                if n < 1 {
                    return Err(bad("must be at least 1".into()));
                }
                self.offsets_topic_partitions = n;
            }
            "offsets.topic.replication.factor" => {
                let n: i16 = num(v).map_err(bad)?;
                if n < 1 {
                    return Err(bad("must be at least 1".into()));
                }
                self.offsets_topic_replication_factor = n;
            }
            "group.min.session.timeout.ms" => {
                self.groups.session_timeout_min_ms = num(v).map_err(bad)?
            }
            "group.max.session.timeout.ms" => {
                self.groups.session_timeout_max_ms = num(v).map_err(bad)?
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms = num(v).map_err(bad)?
            }
            "group.max.size" => {
                let n: usize = num(v).map_err(bad)?;
                if n < 1 {
                    return Err(bad("must be at least 1".into()));
                }
                self.groups.max_size = n;
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                    source_name: source_name.to_string(),
                })
            }
        }
        self.explicit.insert(key.to_string(), v.to_string());
        Ok(())
    }

    /// Whether `key` was set by a file, the environment or a flag (not a default).
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains_key(key)
    }

    /// Applies a TOML file.
    pub fn apply_toml_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.apply_toml(&text, &path.display().to_string())
    }

    /// Applies TOML text; nested tables are flattened into dotted keys.
    pub fn apply_toml(&mut self, text: &str, source_name: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: PathBuf::from(source_name),
                reason: e.to_string(),
            })?;
        let mut flat = BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value, source_name)?;
        }
        Ok(())
    }

    /// Applies `RINGLOG_*` variables that name a known key.
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("RINGLOG_") else {
                continue;
            };
            // RUST_LOG-style logging variables are not config keys.
            if rest == "LOG" || rest == "LOG_FORMAT" {
                continue;
            }
            let key = BROKER_KEYS
                .iter()
                .find(|k| k.replace('.', "_").eq_ignore_ascii_case(rest))
                .ok_or_else(|| ConfigError::UnknownKey {
                    key: name.clone(),
                    source_name: "environment".into(),
                })?;
            self.set(key, &value, &format!("environment {name}"))?;
        }
        Ok(())
    }

    /// The data-shard count after resolving 0 to one per available core.
    pub fn shard_count(&self) -> u16 {
        if self.shards > 0 {
            return self.shards;
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        u16::try_from(ncpu).unwrap_or(u16::MAX)
    }

    /// Checks the values against each other; called once at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError::Invalid(m));
        if self.broker_id < 0 {
            return fail(format!("broker.id = {} must be >= 0", self.broker_id));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&self.num_partitions) {
            return fail(format!(
                "num.partitions = {} must be in [1, {PARTITIONS_PER_TOPIC_MAX}]",
                self.num_partitions
            ));
        }
        if self.default_replication_factor < 1 {
            return fail("default.replication.factor must be >= 1".into());
        }
        if self.broker_session_timeout <= self.broker_heartbeat_interval {
            return fail(format!(
                "broker.session.timeout.ms = {} must exceed broker.heartbeat.interval.ms = {}",
                self.broker_session_timeout.as_millis(),
                self.broker_heartbeat_interval.as_millis()
            ));
        }
        if !self.controller_voters.is_empty() && self.cluster_addr.is_none() {
            return fail(
                "controller.quorum.voters is set: inter.broker.listener must be set too (peers reach this broker there)".into(),
            );
        }
        if self.min_insync_replicas < 1 {
            return fail("min.insync.replicas must be >= 1".into());
        }
        if self.offsets_topic_partitions > PARTITIONS_PER_TOPIC_MAX {
            return fail(format!(
                "offsets.topic.num.partitions = {} must be at most {PARTITIONS_PER_TOPIC_MAX}",
                self.offsets_topic_partitions
            ));
        }
        if self.groups.session_timeout_min_ms > self.groups.session_timeout_max_ms {
            return fail(
                "group.min.session.timeout.ms must not exceed group.max.session.timeout.ms".into(),
            );
        }
        if self.socket_request_max_bytes < self.log.max_batch_bytes + 1024 {
            return fail(format!(
                "socket.request.max.bytes = {} must exceed message.max.bytes = {} by at least 1 KiB",
                self.socket_request_max_bytes, self.log.max_batch_bytes
            ));
        }
        for (key, v) in [
            ("queued.max.request.bytes", self.queued_max_request_bytes),
            ("queued.max.response.bytes", self.queued_max_response_bytes),
            ("fetch.max.bytes", self.fetch_max_bytes),
            ("replica.fetch.max.bytes", self.replica_fetch_max_bytes),
            (
                "replica.fetch.response.max.bytes",
                self.replica_fetch_response_max_bytes,
            ),
            ("max.connections", self.max_connections),
            ("max.connections.per.ip", self.max_connections_per_ip),
            ("shard.open.files.max", self.shard_open_files_max),
        ] {
            if v == 0 {
                return fail(format!("{key} must be > 0"));
            }
        }
        if self.replica_fetch_response_max_bytes > REPLICA_FETCH_RESPONSE_MAX_BYTES_MAX {
            return fail(format!(
                "replica.fetch.response.max.bytes must be at most {REPLICA_FETCH_RESPONSE_MAX_BYTES_MAX}"
            ));
        }
        if self.replica_fetch_wait_max.as_millis() > u128::from(FETCH_MAX_WAIT_MS_MAX) {
            return fail(format!(
                "replica.fetch.wait.max.ms must be at most {FETCH_MAX_WAIT_MS_MAX}"
            ));
        }
        if self.socket_request_max_bytes > u32::MAX as usize {
            return fail("socket.request.max.bytes must fit in 32 bits".into());
        }
        if let Some(cores) = &self.cores {
            if self.shards != 0 && cores.len() != usize::from(self.shards) {
                return fail(format!(
                    "{} cores listed for {} shards",
                    cores.len(),
                    self.shards
                ));
            }
        }
        self.log
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), joined.join(","));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn num<T: std::str::FromStr>(v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.replace('_', "").parse::<T>().map_err(|e| e.to_string())
}

/// `controller.quorum.voters`: `id@host:port,...`, ids distinct, at most
/// [`CONTROLLER_VOTERS_MAX`].
fn voters(v: &str) -> Result<Vec<(i32, SocketAddr)>, String> {
    let mut out: Vec<(i32, SocketAddr)> = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, at) = part
            .split_once('@')
            .ok_or_else(|| format!("{part:?} is not id@host:port"))?;
        let id: i32 = num(id.trim())?;
        if id < 0 {
            return Err(format!("voter id {id} must be >= 0"));
        }
        let at = addr(at.trim())?;
        if out.iter().any(|(other, _)| *other == id) {
            return Err(format!("voter id {id} is listed twice"));
        }
        out.push((id, at));
    }
    if out.len() > CONTROLLER_VOTERS_MAX {
        return Err(format!(
            "{} voters; at most {CONTROLLER_VOTERS_MAX}",
            out.len()
        ));
    }
    Ok(out)
}

fn positive_ms(v: &str) -> Result<u64, String> {
    let ms: u64 = num(v)?;
    if ms == 0 {
        return Err("must be > 0".into());
    }
    Ok(ms)
}

fn boolean(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn addr(v: &str) -> Result<SocketAddr, String> {
    v.parse::<SocketAddr>()
        .map_err(|e| format!("{e}: expected HOST:PORT with a numeric IP (port 0 = ephemeral)"))
}

fn hours(v: &str) -> Result<u64, String> {
    let h: u64 = num(v)?;
    h.checked_mul(3_600_000)
        .ok_or_else(|| "too large".to_string())
}

/// Kafka's convention: -1 means "no limit".
fn optional_ms(v: &str, unit_ms: u64) -> Result<Option<u64>, String> {
    let n: i64 = num(v)?;
    if n < 0 {
        return Ok(None);
    }
    if n == 0 {
        return Err("must be > 0, or -1 for no limit".into());
    }
    u64::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .map(Some)
        .ok_or_else(|| "too large".into())
}

/// A Kafka `listeners` value: one `PLAINTEXT://host:port` (or a bare `host:port`).
fn kafka_listener(v: &str) -> Result<SocketAddr, String> {
    if v.contains(',') {
        return Err("one listener only (PLAINTEXT://host:port)".into());
    }
    let hostport = match v.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("PLAINTEXT") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme} listeners are not supported; use PLAINTEXT"
            ))
        }
        None => v,
    };
    addr(hostport)
}

/// Topic-level configs accepted by CreateTopics, applied over the broker's log config.
pub const TOPIC_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "index.interval.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// Topic configs that may change on an existing topic: the ones its open
/// partitions pick up when the metadata changes (retention by the shards, the
/// ISR minimum by each leader). The others are fixed at creation for now.
pub const ALTERABLE_TOPIC_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// A topic's configs after an alteration: `current` with `set` over it and the
/// `delete` keys removed, refused when a changed key is not alterable or the
/// result is not a valid topic config over the broker's `base`.
pub fn altered_topic_configs(
    base: &LogConfig,
    current: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    delete: &[String],
) -> Result<BTreeMap<String, String>, String> {
    for key in set.keys().chain(delete) {
        if !TOPIC_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "unknown topic config {key:?}; known: {}",
                TOPIC_KEYS.join(", ")
            ));
        }
        if !ALTERABLE_TOPIC_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{key} is set when a topic is created and cannot change yet; alterable: {}",
                ALTERABLE_TOPIC_KEYS.join(", ")
            ));
        }
    }
    if let Some(key) = delete.iter().find(|k| set.contains_key(*k)) {
        return Err(format!("{key} is both set and deleted"));
    }
    let mut configs = current.clone();
    for key in delete {
        configs.remove(key);
    }
    configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    topic_log_config(base, &configs)?;
    Ok(configs)
}

/// The effective value of topic config `key` (one of `TOPIC_KEYS`) in `log`,
/// `min_insync` and `unclean` (the topic's `min.insync.replicas` and
/// `unclean.leader.election.enable`), as DescribeConfigs shows it (-1 for "no
/// limit").
pub fn topic_config_value(log: &LogConfig, min_insync: i16, unclean: bool, key: &str) -> String {
    let or_none = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    match key {
        "retention.ms" => or_none(log.retention_ms).to_string(),
        "retention.bytes" => or_none(log.retention_bytes).to_string(),
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => or_none(log.segment_ms).to_string(),
        "max.message.bytes" => log.max_batch_bytes.to_string(),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "cleanup.policy" => log.cleanup.name().to_string(),
        "delete.retention.ms" => log.delete_retention_ms.to_string(),
        "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio.to_string(),
        "message.timestamp.type" => log.timestamp_type.name().to_string(),
        "message.timestamp.before.max.ms" => log.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => log.timestamp_after_max_ms.to_string(),
        "min.insync.replicas" => min_insync.to_string(),
        "unclean.leader.election.enable" => unclean.to_string(),
        other => format!("<{other}: not a topic config>"),
    }
}

/// A topic's `unclean.leader.election.enable`: its own setting, else the broker's
/// `broker_default` (validated when set, as `topic_min_insync_replicas`).
pub fn topic_unclean_leader_election(
    broker_default: bool,
    configs: &BTreeMap<String, String>,
) -> bool {
    configs
        .get("unclean.leader.election.enable")
        .and_then(|v| boolean(v.trim()).ok())
        .unwrap_or(broker_default)
}

/// A topic's `min.insync.replicas`: its own setting, else the broker's
/// `broker_default`. Topic configs are validated when set, so a value that does
/// not parse here cannot be stored; it would count as unset.
pub fn topic_min_insync_replicas(broker_default: i16, configs: &BTreeMap<String, String>) -> i16 {
    configs
        .get("min.insync.replicas")
        .and_then(|v| min_insync_replicas(v).ok())
        .unwrap_or(broker_default)
}

/// `min.insync.replicas`: at least 1.
fn min_insync_replicas(v: &str) -> Result<i16, String> {
    let n: i16 = num(v.trim())?;
    if n < 1 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
fn cleanup_policy(v: &str) -> Result<CleanupPolicy, String> {
    CleanupPolicy::parse(v).ok_or_else(|| "expected delete, compact or compact,delete".to_string())
}

/// `message.timestamp.type`: `CreateTime` or `LogAppendTime`.
fn timestamp_type(v: &str) -> Result<TimestampType, String> {
    TimestampType::parse(v).ok_or_else(|| "expected CreateTime or LogAppendTime".to_string())
}

/// The log config of a topic: the broker's, overridden by the topic's configs.
pub fn topic_log_config(
    base: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut log = base.clone();
    for (key, value) in configs {
        let v = value.trim();
        let bad = |reason: String| format!("invalid value {value:?} for {key}: {reason}");
        match key.as_str() {
            "retention.ms" => log.retention_ms = optional_ms(v, 1).map_err(bad)?,
            "retention.bytes" => {
                let n: i64 = num(v).map_err(bad)?;
                log.retention_bytes = u64::try_from(n).ok();
            }
            "segment.bytes" => log.segment_bytes = num(v).map_err(bad)?,
            "segment.ms" => log.segment_ms = Some(num(v).map_err(bad)?),
            "max.message.bytes" => log.max_batch_bytes = num(v).map_err(bad)?,
            "index.interval.bytes" => log.index_interval_bytes = num(v).map_err(bad)?,
            "message.timestamp.type" => log.timestamp_type = timestamp_type(v).map_err(bad)?,
            "message.timestamp.before.max.ms" => {
                log.timestamp_before_max_ms = num(v).map_err(bad)?
            }
            "message.timestamp.after.max.ms" => log.timestamp_after_max_ms = num(v).map_err(bad)?,
            "cleanup.policy" => log.cleanup = cleanup_policy(v).map_err(bad)?,
            "delete.retention.ms" => log.delete_retention_ms = num(v).map_err(bad)?,
            "min.cleanable.dirty.ratio" => log.min_cleanable_dirty_ratio = num(v).map_err(bad)?,
            // Not log settings: validated here, read by `topic_min_insync_replicas`
            // and `topic_unclean_leader_election`.
            "min.insync.replicas" => {
                min_insync_replicas(v).map_err(bad)?;
            }
            "unclean.leader.election.enable" => {
                boolean(v).map_err(bad)?;
            }
            _ => {
                return Err(format!(
                    "unknown topic config {key:?}; known: {}",
                    TOPIC_KEYS.join(", ")
                ))
            }
        }
    }
    log.validate().map_err(|e| e.to_string())?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> BrokerConfig {
        let mut c = BrokerConfig::default();
        c.apply_toml(text, "t").unwrap();
        c
    }

    #[test]
    fn a_reload_applies_level_and_retention_and_names_what_needs_a_restart() {
        let running = from_toml("shards = 2\n\"log.retention.hours\" = 1\n");
        // Nothing changed.
        let same = from_toml("shards = 2\n\"log.retention.hours\" = 1\n");
        assert_eq!(ReloadPlan::from(&running, &same), ReloadPlan::default());
        // Retention in other units but the same value is no change either.
        let same = from_toml("shards = 2\n\"log.retention.minutes\" = 60\n");
        assert_eq!(ReloadPlan::from(&running, &same).retention, None);

        let new = from_toml(
            "shards = 4\n\"log.retention.ms\" = 1000\n\"log.retention.bytes\" = 5\n\"log.level\" = \"debug\"\nnum.partitions = 3\n",
        );
        let plan = ReloadPlan::from(&running, &new);
        assert_eq!(plan.log_level.as_deref(), Some("debug"));
        assert_eq!(plan.retention, Some((Some(1000), Some(5))));
        assert_eq!(plan.needs_restart, vec!["num.partitions", "shards"]);
        // The running config takes only the reloadable part: asked again, the same
        // restart keys are named and nothing else changes.
        let after = ReloadPlan::applied(&running, &new);
        assert_eq!(after.shards, 2);
        assert_eq!(after.log.retention_ms, Some(1000));
        let again = ReloadPlan::from(&after, &new);
        assert_eq!(again.log_level, None);
        assert_eq!(again.retention, None);
        assert_eq!(again.needs_restart, vec!["num.partitions", "shards"]);
        // A key removed from the file counts as changed.
        let fewer = from_toml("\"log.retention.hours\" = 1\n");
        assert_eq!(
            ReloadPlan::from(&running, &fewer).needs_restart,
            vec!["shards"]
        );
    }

    #[test]
    fn log_level_must_be_a_valid_filter() {
        let mut c = BrokerConfig::default();
        c.set("log.level", "info,ringlog::kafka=debug", "t")
            .unwrap();
        assert_eq!(c.log_level.as_deref(), Some("info,ringlog::kafka=debug"));
        assert!(c.set("log.level", "info,=[", "t").is_err());
    }

    #[test]
    fn kafka_listeners_take_kafkas_key_names_and_none_turns_them_off() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.kafka_addr, Some("127.0.0.1:9092".parse().unwrap()));
        c.set("listeners", "PLAINTEXT://127.0.0.1:19092", "t")
            .unwrap();
        c.set("advertised.listeners", "PLAINTEXT://10.0.0.5:9092", "t")
            .unwrap();
        assert_eq!(c.kafka_addr, Some("127.0.0.1:19092".parse().unwrap()));
        assert_eq!(c.kafka_advertised(), Some("10.0.0.5:9092".parse().unwrap()));
        c.set("listeners", "127.0.0.1:0", "t").unwrap();
        assert_eq!(c.kafka_addr, Some("127.0.0.1:0".parse().unwrap()));
        for bad in [
            "SSL://127.0.0.1:9093",
            "PLAINTEXT://a:1,PLAINTEXT://b:2",
            "nonsense",
        ] {
            assert!(c.set("listeners", bad, "t").is_err(), "{bad}");
        }
        c.set("kafka.listener", "none", "t").unwrap();
        assert_eq!(c.kafka_addr, None);
        assert_eq!(c.kafka_advertised(), None);
    }

    #[test]
    fn toml_dotted_and_quoted_keys_mean_the_same() {
        let mut a = BrokerConfig::default();
        a.apply_toml("log.dirs = \"/x\"\nnum.partitions = 6\n", "a.toml")
            .unwrap();
        let mut b = BrokerConfig::default();
        b.apply_toml("\"log.dirs\" = \"/x\"\n\"num.partitions\" = 6\n", "b.toml")
            .unwrap();
        assert_eq!(a.data_dir, PathBuf::from("/x"));
        assert_eq!(b.data_dir, a.data_dir);
        assert_eq!(a.num_partitions, 6);
        assert_eq!(b.num_partitions, 6);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let mut c = BrokerConfig::default();
        let e = c.apply_toml("log.dirz = \"/x\"", "f.toml").unwrap_err();
        assert!(e.to_string().contains("log.dirz"), "{e}");
        let e = c.set("num.partitions", "many", "flag").unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = c
            .apply_env([("RINGLOG_NOPE".to_string(), "1".to_string())].into_iter())
            .unwrap_err();
        assert!(e.to_string().contains("RINGLOG_NOPE"), "{e}");
    }

    #[test]
    fn leader_rebalance_keys_take_kafkas_names_and_bounds() {
        let mut c = BrokerConfig::default();
        assert!(c.auto_leader_rebalance);
        assert_eq!(c.leader_imbalance_check_interval, Duration::from_secs(300));
        assert_eq!(c.leader_imbalance_per_broker_percentage, 10);
        c.set("auto.leader.rebalance.enable", "false", "flag")
            .unwrap();
        c.set("leader.imbalance.check.interval.seconds", "5", "flag")
            .unwrap();
        c.set("leader.imbalance.per.broker.percentage", "0", "flag")
            .unwrap();
        assert!(!c.auto_leader_rebalance);
        assert_eq!(c.leader_imbalance_check_interval, Duration::from_secs(5));
        assert_eq!(c.leader_imbalance_per_broker_percentage, 0);
        for (key, bad) in [
            ("leader.imbalance.per.broker.percentage", "101"),
            ("leader.imbalance.check.interval.seconds", "0"),
            ("auto.leader.rebalance.enable", "yes"),
        ] {
            let e = c.set(key, bad, "flag").unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn env_names_map_onto_keys() {
        let mut c = BrokerConfig::default();
        c.apply_env(
            [
                ("RINGLOG_LOG_DIRS".to_string(), "/e".to_string()),
                (
                    "RINGLOG_AUTO_CREATE_TOPICS_ENABLE".to_string(),
                    "false".to_string(),
                ),
                ("PATH".to_string(), "/bin".to_string()),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/e"));
        assert!(!c.auto_create_topics);
    }

    #[test]
    fn controller_voters_parse_as_kafka_writes_them_and_bad_lists_are_refused() {
        let mut c = BrokerConfig::default();
        c.set(
            "controller.quorum.voters",
            "1@127.0.0.1:9293, 2@127.0.0.2:9293,3@127.0.0.3:9293",
            "t",
        )
        .unwrap();
        assert_eq!(c.controller_voters.len(), 3);
        assert_eq!(c.controller_voters[1].0, 2);
        assert_eq!(c.controller_voters[1].1.to_string(), "127.0.0.2:9293");
        // Voters need the listener peers reach them on.
        assert!(c.validate().is_err());
        c.set("inter.broker.listener", "127.0.0.1:9293", "t")
            .unwrap();
        c.validate().unwrap();
        for bad in [
            "1@127.0.0.1:1,1@127.0.0.2:1",
            "x@127.0.0.1:1",
            "1-127.0.0.1:1",
            "1@nohost",
            "-1@127.0.0.1:1",
            "0@127.0.0.1:1,1@127.0.0.1:1,2@127.0.0.1:1,3@127.0.0.1:1,4@127.0.0.1:1,5@127.0.0.1:1,6@127.0.0.1:1,7@127.0.0.1:1,8@127.0.0.1:1,9@127.0.0.1:1",
        ] {
            assert!(
                c.set("controller.quorum.voters", bad, "t").is_err(),
                "{bad}"
            );
        }
        c.set("broker.session.timeout.ms", "1000", "t").unwrap();
        c.set("broker.heartbeat.interval.ms", "1000", "t").unwrap();
        assert!(
            c.validate().is_err(),
            "the session must outlast a heartbeat"
        );
        assert!(c.set("broker.heartbeat.interval.ms", "0", "t").is_err());
    }

    #[test]
    fn retention_minus_one_means_unlimited_and_validate_checks_relations() {
        let mut c = BrokerConfig::default();
        c.set("log.retention.hours", "-1", "t").unwrap();
        assert_eq!(c.log.retention_ms, None);
        c.set("log.retention.hours", "2", "t").unwrap();
        assert_eq!(c.log.retention_ms, Some(7_200_000));
        c.validate().unwrap();
        c.set("socket.request.max.bytes", "1000", "t").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn topic_configs_override_and_unknown_ones_are_refused() {
        let base = LogConfig::default();
        let mut m = BTreeMap::new();
        m.insert("retention.ms".to_string(), "1000".to_string());
        assert_eq!(
            topic_log_config(&base, &m).unwrap().retention_ms,
            Some(1000)
        );
        m.insert("bogus".to_string(), "1".to_string());
        assert!(topic_log_config(&base, &m).unwrap_err().contains("bogus"));
    }

    #[test]
    fn every_topic_key_describes_its_effective_value() {
        let mut m = BTreeMap::new();
        m.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        m.insert(
            "message.timestamp.after.max.ms".to_string(),
            "5".to_string(),
        );
        m.insert("min.insync.replicas".to_string(), "2".to_string());
        let log = topic_log_config(&LogConfig::default(), &m).unwrap();
        let min_insync = topic_min_insync_replicas(1, &m);
        for key in TOPIC_KEYS {
            let value = topic_config_value(&log, min_insync, false, key);
            assert!(!value.starts_with('<'), "{key}: {value}");
        }
        assert_eq!(
            topic_config_value(&log, min_insync, false, "message.timestamp.type"),
            "LogAppendTime"
        );
        assert_eq!(
            topic_config_value(&log, min_insync, false, "message.timestamp.after.max.ms"),
            "5"
        );
        assert_eq!(
            topic_config_value(&log, min_insync, false, "min.insync.replicas"),
            "2"
        );
        assert_eq!(topic_min_insync_replicas(3, &BTreeMap::new()), 3);
        for bad in ["0", "-1", "x", "40000"] {
            m.insert("min.insync.replicas".to_string(), bad.to_string());
            assert!(
                topic_log_config(&LogConfig::default(), &m).is_err(),
                "{bad}"
            );
        }
        m.insert("min.insync.replicas".to_string(), "2".to_string());
        m.insert("message.timestamp.type".to_string(), "Later".to_string());
        assert!(topic_log_config(&LogConfig::default(), &m).is_err());
    }
}
