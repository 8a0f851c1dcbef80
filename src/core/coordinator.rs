//! The coordination executor: owner of this broker's cluster metadata (DESIGN §2, §5).
//!
//! It alone changes metadata. A change is validated against the pure model, persisted
//! (atomic file replace with fsyncs), then pushed to every data shard, and answered
//! only once every shard has adopted it (opened or closed its logs). Admin requests
//! are serialized. A topic deletion is durable (the metadata saved) before it is
//! answered; its partitions' directories are then renamed and removed
//! (`partition_dir`), and a start-up sweep finishes removals a crash interrupted.

use std::rc::Rc;
use std::sync::Arc;

use crate::core::error::ErrorKind;
use glommio::sync::Semaphore;
use ringlog_shards::{Answered, Peer, ShardId};
use tracing::{info, warn};

use crate::config::{topic_log_config, BrokerConfig};
use crate::core::error::metadata_error;
use crate::core::messages::{
    BrokerMesh, CoordinatorRequest, NewTopic, PartitionError, ShardRequest, TopicOutcome,
};
use crate::core::partition::Partition;
use crate::core::partition_dir;
use crate::metadata::model::MetadataError;
use crate::metadata::{store, ClusterMetadata};
use crate::sync::join::join_all;

/// The coordination executor's state.
pub struct Coordinator {
    pub config: Arc<BrokerConfig>,
    metadata: std::cell::RefCell<ClusterMetadata>,
    admin: Semaphore,
    mesh: std::cell::OnceCell<BrokerMesh>,
    shards: u16,
}

/// The coordinator could not load or save metadata.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CoordinatorError(#[from] store::StoreError);

impl Coordinator {
    /// Loads (or creates) the metadata and records this broker's address in it.
    pub fn load(
        config: Arc<BrokerConfig>,
        shards: u16,
        advertised: std::net::SocketAddr,
    ) -> Result<Self, CoordinatorError> {
        let me = crate::metadata::BrokerInfo {
            id: crate::metadata::BrokerId(config.broker_id),
            host: advertised.ip().to_string(),
            port: advertised.port(),
            shards,
        };
        let stored = store::load(&config.data_dir)?;
        let from_file = stored.is_some();
        let mut md = match stored {
            Some(md) => md,
            None => ClusterMetadata::new(new_cluster_id(), vec![me.clone()]),
        };
        md.upsert_broker(me);
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
        store::save(&config.data_dir, &md)?;
        // Finish deletions a crash interrupted; with metadata from its file, also
        // remove partition directories it no longer names.
        let known = |topic: &str, p: i32| {
            md.topics
                .get(topic)
                .is_some_and(|t| usize::try_from(p).is_ok_and(|p| p < t.partitions.len()))
        };
        partition_dir::sweep(
            &config.data_dir,
            from_file.then_some(&known as &dyn Fn(&str, i32) -> bool),
        );
        info!(cluster_id = %md.cluster_id, topics = md.topics.len(), version = md.version, "cluster metadata loaded");
        Ok(Self {
            config,
            metadata: std::cell::RefCell::new(md),
            admin: Semaphore::new(1),
            mesh: std::cell::OnceCell::new(),
            shards,
        })
    }

    pub fn set_mesh(&self, mesh: BrokerMesh) {
        let _ = self.mesh.set(mesh);
    }

    fn mesh(&self) -> &BrokerMesh {
        self.mesh
            .get()
            .expect("the mesh is joined before requests are served")
    }

    /// Sends the current metadata to every data shard and waits until all adopted it.
    pub async fn publish(&self) {
        let snapshot = Arc::new(self.metadata.borrow().clone());
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

    /// Answers a request from a data shard.
    pub async fn handle(self: Rc<Self>, _from: Peer, request: CoordinatorRequest) -> Answered {
        match request {
            CoordinatorRequest::CreateTopics {
                topics,
                validate_only,
                answer,
            } => answer.send(self.create_topics(topics, validate_only).await),
            CoordinatorRequest::DeleteTopics { names, answer } => {
                answer.send(self.delete_topics(names).await)
            }
            CoordinatorRequest::CreatePartitions {
                topics,
                validate_only,
                answer,
            } => answer.send(self.create_partitions(topics, validate_only).await),
            CoordinatorRequest::AutoCreate { names, answer } => {
                if !self.config.auto_create_topics {
                    return answer.send(Vec::new());
                }
                let topics = names
                    .into_iter()
                    .map(|name| NewTopic {
                        name,
                        ..NewTopic::default()
                    })
                    .collect();
                answer.send(self.create_topics(topics, false).await)
            }
        }
    }

    async fn create_topics(&self, topics: Vec<NewTopic>, validate_only: bool) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let mut results = Vec::new();
        let mut changed = false;
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
                Ok(mut topic) => {
                    if !validate_only {
                        topic.id = new_topic_id();
                        info!(topic = %topic.name, partitions, replication_factor = rf, "creating topic");
                        self.metadata.borrow_mut().add_topic(topic);
                        changed = true;
                    }
                    None
                }
                Err(e) => Some(metadata_error(&e)),
            };
            results.push(TopicOutcome {
                name: t.name,
                error,
            });
        }
        if changed && self.persist_or_roll_back(&mut results, "topic creation") {
            self.publish().await;
        }
        results
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
        let mut changed = false;
        for (name, total) in topics {
            let planned = self.metadata.borrow().plan_partitions(&name, total);
            let error = match planned {
                Ok(parts) => {
                    if !validate_only {
                        info!(topic = %name, partitions = total, "adding partitions");
                        self.metadata.borrow_mut().add_partitions(&name, parts);
                        changed = true;
                    }
                    None
                }
                Err(e) => Some(metadata_error(&e)),
            };
            results.push(TopicOutcome { name, error });
        }
        if changed && self.persist_or_roll_back(&mut results, "partition creation") {
            self.publish().await;
        }
        results
    }

    async fn delete_topics(&self, names: Vec<String>) -> Vec<TopicOutcome> {
        let Ok(_permit) = self.admin.acquire_permit(1).await else {
            return Vec::new();
        };
        let mut results = Vec::new();
        let mut removed = Vec::new();
        for name in names {
            let r = self.metadata.borrow_mut().remove_topic(&name);
            let error = match r {
                Ok(topic) => {
                    info!(topic = %name, "deleting topic");
                    removed.push(topic);
                    None
                }
                Err(e) => Some(metadata_error(&e)),
            };
            results.push(TopicOutcome { name, error });
        }
        if removed.is_empty() || !self.persist_or_roll_back(&mut results, "topic deletion") {
            return results;
        }
        // The shards close the logs, then the directories go.
        self.publish().await;
        for topic in removed {
            for p in &topic.partitions {
                let dir = Partition::dir(&self.config.data_dir, &topic.name, p.partition);
                partition_dir::remove(&self.config.data_dir, &dir);
            }
        }
        if let Err(e) = store::sync_dir(&self.config.data_dir) {
            warn!(error = %e, "fsync of the data directory after topic deletion failed");
        }
        results
    }

    /// Saves the changed metadata. When it cannot be saved, the change is undone
    /// (what is on disk is read again) and every outcome that had succeeded says
    /// why it did not; returns whether the change stands.
    fn persist_or_roll_back(&self, results: &mut [TopicOutcome], change: &str) -> bool {
        let Err(e) = store::save(&self.config.data_dir, &self.metadata.borrow()) else {
            return true;
        };
        warn!(error = %e, "cannot persist metadata; {change} rolled back");
        if let Ok(Some(md)) = store::load(&self.config.data_dir) {
            *self.metadata.borrow_mut() = md;
        }
        for r in results.iter_mut().filter(|r| r.error.is_none()) {
            r.error = Some(PartitionError::new(
                ErrorKind::KafkaStorageError,
                format!("cannot persist metadata: {e}"),
            ));
        }
        false
    }
}

/// A new topic id: 128 random bits, hex.
fn new_topic_id() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // No kernel randomness (never on Linux >= 3.17): time and a counter are unique
        // enough to tell two incarnations of a name apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = crate::time::now_nanos();
        let c = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("{nanos:x}{c:x}{:x}", std::process::id());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_cluster_id() -> String {
    let nanos = crate::time::now_nanos();
    format!("ringlog-{:x}-{:x}", nanos, std::process::id())
}
