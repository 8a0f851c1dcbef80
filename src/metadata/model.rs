//! The metadata model and the pure operations on it (create and delete topics).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_LEN_MAX};
use crate::metadata::placement;

/// A broker's id (`broker.id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BrokerId(pub i32);

/// A broker as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: BrokerId,
    /// The native listener as clients reach it.
    pub host: String,
    pub port: u16,
    pub shards: u16,
    /// The Kafka listener as clients reach it (`host:port`), if it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
}

/// One partition's replicas and leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub partition: i32,
    /// Replica j of partition i is broker (i + j) mod N; replica 0 is the preferred
    /// leader.
    pub replicas: Vec<BrokerId>,
    /// `None` while the partition is offline.
    pub leader: Option<BrokerId>,
    /// Bumped by every election; stamped into the batches the leader appends.
    pub leader_epoch: i32,
    pub isr: Vec<BrokerId>,
    /// Bumped by every change of leader or ISR (Kafka's partition epoch, KIP-497):
    /// an ISR change proposed against an older epoch is refused.
    #[serde(default)]
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// This incarnation's id (Kafka's topic id, KIP-516), random, given by the
    /// coordinator at creation: a partition directory marked with another id belongs
    /// to a deleted topic of the same name and is never served as this one's.
    /// Empty in metadata written before ids existed; the coordinator fills it in.
    #[serde(default)]
    pub id: String,
    /// s0 of DESIGN §2: partition i lives on shard (s0 + i) mod S. Stored unreduced so
    /// a restart with another shard count still spreads the topic.
    pub start_shard: u32,
    /// Topic-level configs (`retention.ms`, ...), as given at creation.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionMeta>,
}

/// The whole cluster's metadata, versioned: every change bumps `version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub version: u64,
    pub cluster_id: String,
    pub brokers: BTreeMap<BrokerId, BrokerInfo>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// s0 for the next topic: the running total of partitions created, so many small
    /// topics spread over the shards too.
    pub next_start_shard: u32,
    /// Each registered broker's epoch and fencing (KIP-631); empty in metadata a
    /// single broker wrote before the cluster existed.
    #[serde(default)]
    pub registrations: BTreeMap<BrokerId, Registration>,
    /// The metadata log offset (Raft index) of the last record applied; 0 before any.
    #[serde(default)]
    pub applied_offset: u64,
}

/// A broker's registration with the controller (KIP-631).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The metadata offset of the registration record: a restarted broker registers
    /// again and gets a greater epoch, so requests carrying the old one are stale.
    pub epoch: u64,
    /// Random per process start: a retried registration of the same process is
    /// recognized and keeps its epoch.
    pub incarnation: u64,
    /// A fenced broker leads nothing and is in no ISR it can leave.
    pub fenced: bool,
}

/// Why a metadata change was refused. Each maps onto a wire error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid number of partitions {0}: must be in [1, {PARTITIONS_PER_TOPIC_MAX}]")]
    InvalidPartitions(i32),
    #[error("replication factor {factor} is invalid: {live} live broker(s)")]
    InvalidReplicationFactor { factor: i16, live: usize },
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("{0:?} is an internal topic: clients may not delete, repartition or write to it")]
    InternalTopic(String),
    #[error("topic {topic:?} has {current} partitions; it can only grow (asked for {asked})")]
    PartitionsCannotShrink {
        topic: String,
        current: i32,
        asked: i32,
    },
}

/// Topics the broker keeps for itself (Kafka's `Topic.isInternal`): clients may read
/// them, never delete, repartition or write to them.
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::groups::offsets::OFFSETS_TOPIC
}

/// Checks a topic name against Kafka's rules: 1..=249 characters of
/// `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let bad = |reason: &str| {
        Err(MetadataError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return bad("longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl ClusterMetadata {
    /// A cluster of the given brokers with no topics.
    pub fn new(cluster_id: String, brokers: Vec<BrokerInfo>) -> Self {
        Self {
            version: 1,
            cluster_id,
            brokers: brokers.into_iter().map(|b| (b.id, b)).collect(),
            topics: BTreeMap::new(),
            next_start_shard: 0,
            registrations: BTreeMap::new(),
            applied_offset: 0,
        }
    }

    /// Records a broker's current address and shard count.
    pub fn upsert_broker(&mut self, broker: BrokerInfo) {
        if self.brokers.get(&broker.id) != Some(&broker) {
            self.brokers.insert(broker.id, broker);
            self.version += 1;
        }
    }

    /// The topic as it would be created, without changing anything (validate only).
    pub fn plan_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, MetadataError> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(MetadataError::InvalidPartitions(partitions));
        }
        let brokers = self.placeable_brokers();
        let replicas = placement::assign_replicas(partitions, replication_factor, &brokers)?;
        let partitions = replicas
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| PartitionMeta {
                partition: i32::try_from(i).unwrap_or(i32::MAX),
                leader: replicas.first().copied(),
                leader_epoch: 0,
                isr: replicas.clone(),
                partition_epoch: 0,
                replicas,
            })
            .collect();
        Ok(TopicMeta {
            name: name.to_string(),
            id: String::new(),
            start_shard: self.next_start_shard,
            configs,
            partitions,
        })
    }

    /// The partitions `topic` gains to have `total` in all, placed by the seed rule
    /// (partition i's replicas depend on i only, so the existing ones do not move),
    /// with the topic's replication factor. Validates only.
    pub fn plan_partitions(
        &self,
        topic: &str,
        total: i32,
    ) -> Result<Vec<PartitionMeta>, MetadataError> {
        if is_internal_topic(topic) {
            return Err(MetadataError::InternalTopic(topic.to_string()));
        }
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        let current = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        if total <= current {
            return Err(MetadataError::PartitionsCannotShrink {
                topic: topic.to_string(),
                current,
                asked: total,
            });
        }
        if total > PARTITIONS_PER_TOPIC_MAX {
            return Err(MetadataError::InvalidPartitions(total));
        }
        let rf = t.partitions.first().map_or(1, |p| p.replicas.len() as i16);
        let brokers = self.placeable_brokers();
        let replicas = placement::assign_replicas(total, rf, &brokers)?;
        Ok(replicas
            .into_iter()
            .enumerate()
            .skip(t.partitions.len())
            .map(|(i, replicas)| PartitionMeta {
                partition: i32::try_from(i).unwrap_or(i32::MAX),
                leader: replicas.first().copied(),
                leader_epoch: 0,
                isr: replicas.clone(),
                partition_epoch: 0,
                replicas,
            })
            .collect())
    }

    /// Appends planned partitions to a topic.
    pub fn add_partitions(&mut self, topic: &str, partitions: Vec<PartitionMeta>) {
        if let Some(t) = self.topics.get_mut(topic) {
            t.partitions.extend(partitions);
            self.version += 1;
        }
    }

    /// Adds a planned topic.
    pub fn add_topic(&mut self, topic: TopicMeta) {
        let n = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
        self.next_start_shard = self.next_start_shard.wrapping_add(n);
        self.topics.insert(topic.name.clone(), topic);
        self.version += 1;
    }

    /// Removes a topic and returns it.
    pub fn remove_topic(&mut self, name: &str) -> Result<TopicMeta, MetadataError> {
        if is_internal_topic(name) {
            return Err(MetadataError::InternalTopic(name.to_string()));
        }
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.version += 1;
        Ok(topic)
    }

    /// The shard owning `partition` of `topic` on a broker with `shards` data shards.
    pub fn shard_of(topic: &TopicMeta, partition: i32, shards: u16) -> ringlog_shards::ShardId {
        let s0 = u16::try_from(topic.start_shard % u32::from(shards.max(1))).unwrap_or(0);
        ringlog_shards::shard_for_partition(u32::try_from(partition).unwrap_or(0), s0, shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_broker() -> ClusterMetadata {
        ClusterMetadata::new(
            "c".into(),
            vec![BrokerInfo {
                id: BrokerId(0),
                host: "127.0.0.1".into(),
                port: 9290,
                shards: 2,
                kafka: None,
            }],
        )
    }

    #[test]
    fn partitions_grow_by_the_seed_rule_and_never_shrink() {
        let mut md = ClusterMetadata::new(
            "c".into(),
            (0..3)
                .map(|i| BrokerInfo {
                    id: BrokerId(i),
                    host: "h".into(),
                    port: 9290,
                    shards: 1,
                    kafka: None,
                })
                .collect(),
        );
        let t = md.plan_topic("a", 2, 2, BTreeMap::new()).unwrap();
        md.add_topic(t);
        let v = md.version;
        let added = md.plan_partitions("a", 5).unwrap();
        assert_eq!(
            added.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        // Replica j of partition i on broker (i + j) mod 3, replication factor kept.
        for p in &added {
            let i = p.partition;
            assert_eq!(p.replicas, vec![BrokerId(i % 3), BrokerId((i + 1) % 3)]);
            assert_eq!(p.leader, Some(BrokerId(i % 3)));
        }
        md.add_partitions("a", added);
        assert_eq!(md.topics["a"].partitions.len(), 5);
        assert!(md.version > v);
        for bad in [5, 3, 0] {
            assert!(matches!(
                md.plan_partitions("a", bad),
                Err(MetadataError::PartitionsCannotShrink { .. })
            ));
        }
        assert!(matches!(
            md.plan_partitions("nope", 9),
            Err(MetadataError::UnknownTopic(_))
        ));
        assert!(matches!(
            md.plan_partitions("a", PARTITIONS_PER_TOPIC_MAX + 1),
            Err(MetadataError::InvalidPartitions(_))
        ));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "x_y-z", &"a".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"a".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_assigns_leaders_isr_and_rotates_start_shard() {
        let mut md = one_broker();
        let t = md.plan_topic("a", 3, 1, BTreeMap::new()).unwrap();
        assert_eq!(t.start_shard, 0);
        assert!(t
            .partitions
            .iter()
            .all(|p| p.leader == Some(BrokerId(0)) && p.isr == vec![BrokerId(0)]));
        md.add_topic(t);
        let t = md.plan_topic("b", 1, 1, BTreeMap::new()).unwrap();
        assert_eq!(t.start_shard, 3);
        assert_eq!(ClusterMetadata::shard_of(&t, 0, 2).0, 1);
        assert!(matches!(
            md.plan_topic("a", 1, 1, BTreeMap::new()),
            Err(MetadataError::TopicExists(_))
        ));
        assert!(matches!(
            md.plan_topic("c", 1, 3, BTreeMap::new()),
            Err(MetadataError::InvalidReplicationFactor { .. })
        ));
        assert!(matches!(
            md.plan_topic("c", 0, 1, BTreeMap::new()),
            Err(MetadataError::InvalidPartitions(0))
        ));
        let v = md.version;
        md.remove_topic("a").unwrap();
        assert!(md.version > v);
        assert!(md.remove_topic("a").is_err());
    }
}
