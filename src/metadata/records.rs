//! Metadata records: every change to the cluster's metadata is one record in the
//! controller's Raft log, applied in log order to the pure [`ClusterMetadata`]
//! (KRaft's model, KIP-500/631). The controller proposes a record and answers its
//! caller once the record is committed; every broker applies the same committed
//! records in the same order, so every broker ends in the same state.
//!
//! [`ClusterMetadata::apply`] is deterministic and total: a record that no longer
//! fits the state it meets (a topic created twice by two proposals raced in by a
//! leader change, a fence of a broker that re-registered since) changes nothing and
//! says why, on every broker alike. Records are encoded as JSON inside a versioned
//! envelope: they are small and rare, and a human can read the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metadata::model::{
    BrokerId, BrokerInfo, ClusterMetadata, PartitionMeta, Registration, TopicMeta,
};

/// The envelope version this code writes and reads.
pub const RECORD_VERSION: u16 = 1;

/// One change to the cluster's metadata.
// Externally tagged (`{"CreateTopic": {...}}`): an internally tagged enum buffers
// its content, and a map keyed by `BrokerId` does not deserialize from the buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The metadata a single broker kept before it was a cluster member, taken over
    /// whole as the first record of a cluster of one.
    Import {
        metadata: Box<ClusterMetadata>,
    },
    /// The cluster's id, written by the first controller of a new cluster.
    InitCluster {
        cluster_id: String,
    },
    /// A broker (re)registers; its epoch is this record's offset. It starts fenced.
    RegisterBroker {
        broker: BrokerInfo,
        incarnation: u64,
    },
    /// A registered broker caught up with the metadata log and may lead.
    UnfenceBroker {
        id: BrokerId,
        epoch: u64,
    },
    /// A broker missed its session (or shut down): it leads nothing from here on.
    FenceBroker {
        id: BrokerId,
        epoch: u64,
    },
    CreateTopic {
        topic: TopicMeta,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        topic: String,
        partitions: Vec<PartitionMeta>,
    },
    /// A partition's leader changes its ISR (Kafka's AlterPartition).
    AlterPartition(IsrChange),
    /// Unclean leader election: a partition left without a leader (no in-sync
    /// replica is alive) is given to `leader`, a live replica outside its ISR,
    /// which becomes its only ISR member; records only the old ISR held are lost.
    /// Proposed by the active controller where `unclean.leader.election.enable`
    /// allows it, in the leader epoch it saw.
    UncleanElection {
        topic: String,
        partition: i32,
        leader: BrokerId,
        leader_epoch: i32,
    },
    /// Preferred-leader election: the partition's first replica, live and in
    /// sync, leads again in a new epoch (ElectLeaders PREFERRED, or the
    /// controller's `auto.leader.rebalance.enable` check), decided in the leader
    /// epoch it saw.
    PreferredElection {
        topic: String,
        partition: i32,
        leader_epoch: i32,
    },
    /// A topic's configs are now these (the whole set: the controller computed it
    /// from the set it had and the change asked for, under its admin lock).
    AlterTopicConfigs {
        topic: String,
        configs: BTreeMap<String, String>,
    },
}

/// An ISR change a leader asks for, with the epochs it decided under: the
/// leader and partition epochs it saw (a change decided under older ones is
/// refused, KIP-497) and each new member's broker epoch (a broker that restarted
/// since, on an empty disk perhaps, must catch up again under its new epoch,
/// KIP-903).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The new ISR: each member with the broker epoch the leader knows it by.
    pub isr: Vec<(BrokerId, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u16,
    record: MetadataRecord,
}

/// A record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("metadata record version {0} is newer than this broker reads ({RECORD_VERSION})")]
    Version(u16),
    #[error("malformed metadata record: {0}")]
    Malformed(String),
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        let envelope = Envelope {
            v: RECORD_VERSION,
            record: self.clone(),
        };
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if envelope.v > RECORD_VERSION {
            return Err(RecordError::Version(envelope.v));
        }
        Ok(envelope.record)
    }
}

/// What applying a record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// The record did not fit the state it met and changed nothing.
    Ignored(String),
}

impl ClusterMetadata {
    /// Why `change` cannot apply to this metadata, if it cannot: the partition
    /// must exist, be led by the asking leader in the same leader and partition
    /// epochs, and the new ISR must hold the leader, only replicas, and only
    /// unfenced brokers under their current broker epochs (KIP-841, KIP-903).
    pub fn check_isr_change(&self, change: &IsrChange) -> Result<(), String> {
        let p = self
            .topics
            .get(&change.topic)
            .and_then(|t| {
                usize::try_from(change.partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            })
            .ok_or_else(|| format!("{}-{} does not exist", change.topic, change.partition))?;
        if p.leader != Some(change.leader) || p.leader_epoch != change.leader_epoch {
            return Err(format!(
                "broker {} in epoch {} is not the leader (leader {:?}, epoch {})",
                change.leader.0,
                change.leader_epoch,
                p.leader.map(|b| b.0),
                p.leader_epoch
            ));
        }
        if p.partition_epoch != change.partition_epoch {
            return Err(format!(
                "partition epoch {} is stale (now {})",
                change.partition_epoch, p.partition_epoch
            ));
        }
        if !change.isr.iter().any(|(b, _)| *b == change.leader) {
            return Err("the new ISR must hold the leader".into());
        }
        for (i, (b, epoch)) in change.isr.iter().enumerate() {
            if !p.replicas.contains(b) {
                return Err(format!("broker {} is not a replica", b.0));
            }
            if change.isr[..i].iter().any(|(other, _)| other == b) {
                return Err(format!("broker {} is listed twice", b.0));
            }
            match self.registrations.get(b) {
                Some(r) if r.fenced => return Err(format!("broker {} is fenced", b.0)),
                Some(r) if r.epoch != *epoch => {
                    return Err(format!(
                        "broker {} epoch {epoch} is stale (now {})",
                        b.0, r.epoch
                    ))
                }
                Some(_) => {}
                None => return Err(format!("broker {} is not registered", b.0)),
            }
        }
        Ok(())
    }

    /// Whether `id` may lead: registered and unfenced. A broker listed without a
    /// registration comes from metadata a single broker wrote and is live.
    pub fn is_unfenced(&self, id: BrokerId) -> bool {
        self.brokers.contains_key(&id) && self.registrations.get(&id).is_none_or(|r| !r.fenced)
    }

    /// The brokers new replicas may go to: the unfenced ones, sorted by id.
    pub fn placeable_brokers(&self) -> Vec<BrokerId> {
        self.brokers
            .keys()
            .copied()
            .filter(|b| self.is_unfenced(*b))
            .collect()
    }

    /// Applies the record at metadata offset `offset` (its Raft index).
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> Applied {
        let applied = self.apply_inner(offset, record);
        self.applied_offset = offset;
        if applied == Applied::Changed {
            self.version += 1;
        }
        applied
    }

    fn apply_inner(&mut self, offset: u64, record: &MetadataRecord) -> Applied {
        match record {
            MetadataRecord::Import { metadata } => {
                if !self.topics.is_empty()
                    || !self.cluster_id.is_empty()
                    || !self.registrations.is_empty()
                {
                    return Applied::Ignored("the cluster already has metadata".into());
                }
                let version = self.version;
                *self = (**metadata).clone();
                self.version = version.max(metadata.version);
                Applied::Changed
            }
            MetadataRecord::InitCluster { cluster_id } => {
                if !self.cluster_id.is_empty() {
                    return Applied::Ignored("the cluster id is set".into());
                }
                self.cluster_id = cluster_id.clone();
                Applied::Changed
            }
            MetadataRecord::RegisterBroker {
                broker,
                incarnation,
            } => {
                if let Some(r) = self.registrations.get(&broker.id) {
                    if r.incarnation == *incarnation {
                        // A retry of the same process's registration: same epoch.
                        self.brokers.insert(broker.id, broker.clone());
                        return Applied::Changed;
                    }
                }
                self.brokers.insert(broker.id, broker.clone());
                self.registrations.insert(
                    broker.id,
                    Registration {
                        epoch: offset,
                        incarnation: *incarnation,
                        fenced: true,
                    },
                );
                // Its old incarnation led until now; that process is gone.
                self.fence_leaderships(broker.id);
                Applied::Changed
            }
            MetadataRecord::UnfenceBroker { id, epoch } => match self.registrations.get_mut(id) {
                Some(r) if r.epoch == *epoch => {
                    if !r.fenced {
                        return Applied::Ignored(format!("broker {} is unfenced", id.0));
                    }
                    r.fenced = false;
                    self.elect_offline_with(*id);
                    Applied::Changed
                }
                _ => Applied::Ignored(format!("broker {} epoch {epoch} is not current", id.0)),
            },
            MetadataRecord::FenceBroker { id, epoch } => match self.registrations.get_mut(id) {
                Some(r) if r.epoch == *epoch => {
                    if r.fenced {
                        return Applied::Ignored(format!("broker {} is fenced", id.0));
                    }
                    r.fenced = true;
                    self.fence_leaderships(*id);
                    Applied::Changed
                }
                _ => Applied::Ignored(format!("broker {} epoch {epoch} is not current", id.0)),
            },
            MetadataRecord::CreateTopic { topic } => {
                if self.topics.contains_key(&topic.name) {
                    return Applied::Ignored(format!("topic {:?} exists", topic.name));
                }
                let mut topic = topic.clone();
                for p in &mut topic.partitions {
                    p.leader = p.replicas.iter().copied().find(|b| self.is_unfenced(*b));
                }
                self.add_topic(topic);
                Applied::Changed
            }
            MetadataRecord::DeleteTopic { name } => match self.remove_topic(name) {
                Ok(_) => Applied::Changed,
                Err(e) => Applied::Ignored(e.to_string()),
            },
            MetadataRecord::CreatePartitions { topic, partitions } => {
                let Some(t) = self.topics.get(topic) else {
                    return Applied::Ignored(format!("topic {topic:?} does not exist"));
                };
                let next = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
                if partitions.first().map(|p| p.partition) != Some(next) {
                    return Applied::Ignored(format!(
                        "topic {topic:?} has {next} partitions; the record adds from another"
                    ));
                }
                let mut partitions = partitions.clone();
                for p in &mut partitions {
                    p.leader = p.replicas.iter().copied().find(|b| self.is_unfenced(*b));
                }
                self.add_partitions(topic, partitions);
                Applied::Changed
            }
            MetadataRecord::UncleanElection {
                topic,
                partition,
                leader,
                leader_epoch,
            } => {
                let live = self.is_unfenced(*leader);
                let Some(p) = self.topics.get_mut(topic).and_then(|t| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                }) else {
                    return Applied::Ignored(format!("{topic}-{partition} does not exist"));
                };
                if p.leader.is_some() || p.leader_epoch != *leader_epoch {
                    return Applied::Ignored(format!(
                        "{topic}-{partition} has a leader or a newer epoch than {leader_epoch}"
                    ));
                }
                if !live || !p.replicas.contains(leader) {
                    return Applied::Ignored(format!(
                        "broker {} is not a live replica of {topic}-{partition}",
                        leader.0
                    ));
                }
                p.leader = Some(*leader);
                p.isr = vec![*leader];
                p.leader_epoch += 1;
                p.partition_epoch += 1;
                Applied::Changed
            }
            MetadataRecord::PreferredElection {
                topic,
                partition,
                leader_epoch,
            } => {
                let Some(p) = self.topics.get(topic).and_then(|t| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                }) else {
                    return Applied::Ignored(format!("{topic}-{partition} does not exist"));
                };
                if p.leader_epoch != *leader_epoch {
                    return Applied::Ignored(format!(
                        "{topic}-{partition} is in epoch {}, not {leader_epoch}",
                        p.leader_epoch
                    ));
                }
                if p.leader.is_some() && p.leader == p.replicas.first().copied() {
                    return Applied::Ignored(format!(
                        "{topic}-{partition} is led by its preferred leader"
                    ));
                }
                let preferred = match self.preferred_leader_of(p) {
                    Ok(b) => b,
                    Err(reason) => return Applied::Ignored(reason),
                };
                if let Some(p) = self.topics.get_mut(topic).and_then(|t| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                }) {
                    p.leader = Some(preferred);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
                Applied::Changed
            }
            MetadataRecord::AlterTopicConfigs { topic, configs } => {
                let Some(t) = self.topics.get_mut(topic) else {
                    return Applied::Ignored(format!("topic {topic:?} does not exist"));
                };
                t.configs = configs.clone();
                Applied::Changed
            }
            MetadataRecord::AlterPartition(change) => {
                if let Err(reason) = self.check_isr_change(change) {
                    return Applied::Ignored(reason);
                }
                let Some(p) = self.topics.get_mut(&change.topic).and_then(|t| {
                    usize::try_from(change.partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                }) else {
                    return Applied::Ignored("the partition is gone".into());
                };
                // Kept in replica order, like the ISR a topic starts with.
                let members: Vec<BrokerId> = change.isr.iter().map(|(b, _)| *b).collect();
                p.isr = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| members.contains(b))
                    .collect();
                p.partition_epoch += 1;
                Applied::Changed
            }
        }
    }

    /// A fenced broker leads nothing and leaves every ISR unless it is the last
    /// member (the ISR is never empty: its last member is where the data is). Each
    /// partition it led is given to the first unfenced ISR member in replica order
    /// (Kafka's clean election: every ISR member holds every committed record), in
    /// a new leader epoch; with none, it has no leader until an ISR member is
    /// unfenced.
    fn fence_leaderships(&mut self, id: BrokerId) {
        let live: Vec<BrokerId> = self
            .registrations
            .iter()
            .filter(|(_, r)| !r.fenced)
            .map(|(b, _)| *b)
            .collect();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&id) {
                    p.isr.retain(|b| *b != id);
                    changed = true;
                }
                if p.leader == Some(id) {
                    p.leader = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|b| *b != id && p.isr.contains(b) && live.contains(b));
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// An unfenced broker leads the partitions that have no leader and keep it in
    /// their ISR: their data is on it.
    fn elect_offline_with(&mut self, id: BrokerId) {
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader.is_none() && p.isr.contains(&id) {
                    p.leader = Some(id);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// The unclean elections to propose now: for each partition without a leader
    /// in a topic where `allowed` says unclean election is enabled, its first live
    /// replica in replica order. A leaderless partition has no live ISR member
    /// (fencing and unfencing give it to one when there is), so this replica is
    /// outside the ISR and may lack committed records.
    pub fn unclean_elections(&self, allowed: impl Fn(&TopicMeta) -> bool) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for t in self.topics.values().filter(|t| allowed(t)) {
            for p in t.partitions.iter().filter(|p| p.leader.is_none()) {
                if let Some(b) = p.replicas.iter().find(|b| self.is_unfenced(**b)) {
                    out.push(MetadataRecord::UncleanElection {
                        topic: t.name.clone(),
                        partition: p.partition,
                        leader: *b,
                        leader_epoch: p.leader_epoch,
                    });
                }
            }
        }
        out
    }

    /// Every partition's leader as a map, for checks.
    pub fn leaders(&self) -> BTreeMap<(String, i32), Option<BrokerId>> {
        self.topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| ((t.name.clone(), p.partition), p.leader))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> BrokerInfo {
        BrokerInfo {
            id: BrokerId(id),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            shards: 1,
            kafka: None,
        }
    }

    fn register(md: &mut ClusterMetadata, offset: u64, id: i32, incarnation: u64) {
        let r = MetadataRecord::RegisterBroker {
            broker: broker(id),
            incarnation,
        };
        assert_eq!(md.apply(offset, &r), Applied::Changed);
    }

    fn three_unfenced() -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for id in 0..3 {
            register(&mut md, 10 + id as u64, id, 1);
            let u = MetadataRecord::UnfenceBroker {
                id: BrokerId(id),
                epoch: 10 + id as u64,
            };
            assert_eq!(md.apply(20 + id as u64, &u), Applied::Changed);
        }
        md
    }

    #[test]
    fn records_round_trip_and_garbage_or_future_versions_are_errors() {
        let r = MetadataRecord::FenceBroker {
            id: BrokerId(2),
            epoch: 7,
        };
        assert_eq!(MetadataRecord::decode(&r.encode()).unwrap(), r);
        assert!(matches!(
            MetadataRecord::decode(b"{\"v\":1"),
            Err(RecordError::Malformed(_))
        ));
        let future = br#"{"v":99,"record":{"DeleteTopic":{"name":"x"}}}"#;
        assert!(matches!(
            MetadataRecord::decode(future),
            Err(RecordError::Version(99))
        ));
    }

    #[test]
    fn every_record_round_trips_including_a_whole_imported_metadata() {
        let mut md = three_unfenced();
        let t = md.plan_topic("t", 2, 2, BTreeMap::new()).unwrap();
        md.apply(30, &MetadataRecord::CreateTopic { topic: t.clone() });
        let records = [
            MetadataRecord::Import {
                metadata: Box::new(md.clone()),
            },
            MetadataRecord::InitCluster {
                cluster_id: "c".into(),
            },
            MetadataRecord::RegisterBroker {
                broker: broker(4),
                incarnation: u64::MAX,
            },
            MetadataRecord::UnfenceBroker {
                id: BrokerId(4),
                epoch: 1,
            },
            MetadataRecord::FenceBroker {
                id: BrokerId(4),
                epoch: 1,
            },
            MetadataRecord::CreateTopic { topic: t },
            MetadataRecord::DeleteTopic { name: "t".into() },
            MetadataRecord::CreatePartitions {
                topic: "t".into(),
                partitions: md.plan_partitions("t", 3).unwrap(),
            },
            MetadataRecord::AlterTopicConfigs {
                topic: "t".into(),
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
        ];
        for r in records {
            assert_eq!(MetadataRecord::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn a_topics_configs_are_replaced_whole_and_only_if_it_exists() {
        let mut md = three_unfenced();
        let t = md.plan_topic(
            "t",
            1,
            1,
            BTreeMap::from([("retention.ms".into(), "5".into())]),
        );
        md.apply(30, &MetadataRecord::CreateTopic { topic: t.unwrap() });
        let configs = BTreeMap::from([("retention.bytes".into(), "9".into())]);
        let alter = |topic: &str| MetadataRecord::AlterTopicConfigs {
            topic: topic.into(),
            configs: configs.clone(),
        };
        assert_eq!(md.apply(31, &alter("t")), Applied::Changed);
        assert_eq!(md.topics["t"].configs, configs);
        assert!(matches!(md.apply(32, &alter("gone")), Applied::Ignored(_)));
    }

    #[test]
    fn a_broker_starts_fenced_and_its_epoch_is_its_registration_offset() {
        let mut md = ClusterMetadata::default();
        register(&mut md, 5, 1, 77);
        assert_eq!(md.registrations[&BrokerId(1)].epoch, 5);
        assert!(!md.is_unfenced(BrokerId(1)));
        // A retry by the same process keeps the epoch; a new process gets a new one.
        register(&mut md, 6, 1, 77);
        assert_eq!(md.registrations[&BrokerId(1)].epoch, 5);
        register(&mut md, 9, 1, 78);
        assert_eq!(md.registrations[&BrokerId(1)].epoch, 9);
        // An unfence for the old epoch is stale.
        let stale = MetadataRecord::UnfenceBroker {
            id: BrokerId(1),
            epoch: 5,
        };
        assert!(matches!(md.apply(10, &stale), Applied::Ignored(_)));
        assert!(!md.is_unfenced(BrokerId(1)));
        assert_eq!(md.applied_offset, 10);
    }

    #[test]
    fn fencing_moves_leadership_to_the_isr_and_never_empties_it() {
        let mut md = three_unfenced();
        let t = md.plan_topic("t", 3, 2, BTreeMap::new()).unwrap();
        md.apply(30, &MetadataRecord::CreateTopic { topic: t });
        let p0 = md.topics["t"].partitions[0].clone();
        assert_eq!(p0.leader, Some(BrokerId(0)));
        assert_eq!(p0.isr, vec![BrokerId(0), BrokerId(1)]);
        let fence = MetadataRecord::FenceBroker {
            id: BrokerId(0),
            epoch: 10,
        };
        assert_eq!(md.apply(31, &fence), Applied::Changed);
        let p0 = &md.topics["t"].partitions[0];
        assert_eq!(
            p0.leader,
            Some(BrokerId(1)),
            "the next ISR member leads, in a new epoch"
        );
        assert_eq!(p0.isr, vec![BrokerId(1)]);
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
        // Partition 2 is on brokers 2 and 0: 0 leaves its ISR, 2 still leads.
        let p2 = &md.topics["t"].partitions[2];
        assert_eq!(
            (p2.leader, p2.isr.clone()),
            (Some(BrokerId(2)), vec![BrokerId(2)])
        );
        // Fencing 1 too: partition 0's ISR keeps its last member, and has no leader.
        md.apply(
            32,
            &MetadataRecord::FenceBroker {
                id: BrokerId(1),
                epoch: 11,
            },
        );
        let p0 = &md.topics["t"].partitions[0];
        assert_eq!((p0.leader, p0.isr.clone()), (None, vec![BrokerId(1)]));
        assert_eq!(p0.leader_epoch, 2);
        // Broker 1 comes back (new process): it leads what it is the ISR of.
        register(&mut md, 40, 1, 2);
        md.apply(
            41,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(1),
                epoch: 40,
            },
        );
        let p0 = &md.topics["t"].partitions[0];
        assert_eq!(p0.leader, Some(BrokerId(1)));
        assert_eq!(p0.leader_epoch, 3);
    }

    #[test]
    fn an_unclean_election_gives_a_leaderless_partition_to_a_live_replica_only_where_allowed() {
        let mut md = three_unfenced();
        let t = md.plan_topic("t", 1, 2, BTreeMap::new()).unwrap();
        md.apply(30, &MetadataRecord::CreateTopic { topic: t });
        // Partition 0 on brokers 0 and 1; 1 leaves the ISR, then 0 is fenced: the
        // ISR keeps 0, nothing leads.
        let p0 = &md.topics["t"].partitions[0];
        let change = IsrChange {
            topic: "t".into(),
            partition: 0,
            leader: BrokerId(0),
            leader_epoch: p0.leader_epoch,
            partition_epoch: p0.partition_epoch,
            isr: vec![(BrokerId(0), 10)],
        };
        assert_eq!(
            md.apply(31, &MetadataRecord::AlterPartition(change)),
            Applied::Changed
        );
        let fence = |id: i32, epoch: u64| MetadataRecord::FenceBroker {
            id: BrokerId(id),
            epoch,
        };
        md.apply(32, &fence(0, 10));
        let p0 = md.topics["t"].partitions[0].clone();
        assert_eq!((p0.leader, p0.isr.clone()), (None, vec![BrokerId(0)]));

        // Not allowed: nothing to propose. Allowed: broker 1, the live replica.
        assert!(md.unclean_elections(|_| false).is_empty());
        let records = md.unclean_elections(|_| true);
        let want = MetadataRecord::UncleanElection {
            topic: "t".into(),
            partition: 0,
            leader: BrokerId(1),
            leader_epoch: p0.leader_epoch,
        };
        assert_eq!(records, vec![want.clone()]);
        assert_eq!(MetadataRecord::decode(&want.encode()).unwrap(), want);
        assert_eq!(md.apply(33, &want), Applied::Changed);
        let p = &md.topics["t"].partitions[0];
        assert_eq!(
            (p.leader, p.isr.clone()),
            (Some(BrokerId(1)), vec![BrokerId(1)])
        );
        assert_eq!(p.leader_epoch, p0.leader_epoch + 1);
        assert!(p.partition_epoch > p0.partition_epoch);
        // The same record again (a retried proposal) meets a leader: ignored.
        assert!(matches!(md.apply(34, &want), Applied::Ignored(_)));
        assert!(md.unclean_elections(|_| true).is_empty());

        // With no live replica at all there is no one to elect; a record naming a
        // fenced broker changes nothing.
        md.apply(35, &fence(1, 11));
        let p = md.topics["t"].partitions[0].clone();
        assert_eq!(p.leader, None);
        assert!(md.unclean_elections(|_| true).is_empty());
        let stale = MetadataRecord::UncleanElection {
            topic: "t".into(),
            partition: 0,
            leader: BrokerId(1),
            leader_epoch: p.leader_epoch,
        };
        assert!(matches!(md.apply(36, &stale), Applied::Ignored(_)));
    }

    #[test]
    fn isr_changes_are_checked_against_every_epoch() {
        let mut md = three_unfenced();
        let t = md.plan_topic("t", 1, 3, BTreeMap::new()).unwrap();
        md.apply(30, &MetadataRecord::CreateTopic { topic: t });
        let p = md.topics["t"].partitions[0].clone();
        assert_eq!(p.isr, vec![BrokerId(0), BrokerId(1), BrokerId(2)]);
        let change = |isr: &[(i32, u64)], leader_epoch: i32, partition_epoch: i32| {
            MetadataRecord::AlterPartition(IsrChange {
                topic: "t".into(),
                partition: 0,
                leader: BrokerId(0),
                leader_epoch,
                partition_epoch,
                isr: isr.iter().map(|(b, e)| (BrokerId(*b), *e)).collect(),
            })
        };
        // Shrink to the leader and broker 1.
        assert_eq!(
            md.apply(31, &change(&[(0, 10), (1, 11)], 0, 0)),
            Applied::Changed
        );
        let p = &md.topics["t"].partitions[0];
        assert_eq!(
            (p.isr.clone(), p.partition_epoch),
            (vec![BrokerId(0), BrokerId(1)], 1)
        );
        // The same change again: its partition epoch is stale now.
        assert!(matches!(
            md.apply(32, &change(&[(0, 10)], 0, 0)),
            Applied::Ignored(_)
        ));
        // A stale leader epoch, a missing leader, a non-replica, a stale broker
        // epoch (KIP-903), a duplicate: all refused, nothing changes.
        for bad in [
            change(&[(0, 10), (2, 12)], 5, 1),
            change(&[(1, 11), (2, 12)], 0, 1),
            change(&[(0, 10), (7, 1)], 0, 1),
            change(&[(0, 10), (2, 3)], 0, 1),
            change(&[(0, 10), (2, 12), (2, 12)], 0, 1),
        ] {
            assert!(matches!(md.apply(33, &bad), Applied::Ignored(_)), "{bad:?}");
        }
        // Broker 2 restarts: its new registration is fenced and its old epoch stale.
        register(&mut md, 40, 2, 9);
        assert!(matches!(
            md.apply(41, &change(&[(0, 10), (1, 11), (2, 40)], 0, 1)),
            Applied::Ignored(_)
        ));
        md.apply(
            42,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(2),
                epoch: 40,
            },
        );
        assert!(matches!(
            md.apply(43, &change(&[(0, 10), (1, 11), (2, 12)], 0, 1)),
            Applied::Ignored(_)
        ));
        // Under its new epoch it rejoins; the ISR stays in replica order.
        assert_eq!(
            md.apply(44, &change(&[(2, 40), (0, 10), (1, 11)], 0, 1)),
            Applied::Changed
        );
        let p = &md.topics["t"].partitions[0];
        assert_eq!(p.isr, vec![BrokerId(0), BrokerId(1), BrokerId(2)]);
    }

    #[test]
    fn a_topic_raced_in_twice_is_created_once_everywhere() {
        let mut md = three_unfenced();
        let t = md.plan_topic("t", 2, 1, BTreeMap::new()).unwrap();
        let r = MetadataRecord::CreateTopic { topic: t };
        assert_eq!(md.apply(30, &r), Applied::Changed);
        let before = md.clone();
        assert!(matches!(md.apply(31, &r), Applied::Ignored(_)));
        assert_eq!(md.topics, before.topics);
        let grow = MetadataRecord::CreatePartitions {
            topic: "t".into(),
            partitions: md.plan_partitions("t", 3).unwrap(),
        };
        assert_eq!(md.apply(32, &grow), Applied::Changed);
        assert!(matches!(md.apply(33, &grow), Applied::Ignored(_)));
        assert_eq!(md.topics["t"].partitions.len(), 3);
        assert_eq!(
            md.apply(34, &MetadataRecord::DeleteTopic { name: "t".into() }),
            Applied::Changed
        );
        assert!(md.topics.is_empty());
    }

    #[test]
    fn a_new_partition_on_a_fenced_broker_is_led_by_its_first_live_replica() {
        let mut md = three_unfenced();
        md.apply(
            30,
            &MetadataRecord::FenceBroker {
                id: BrokerId(0),
                epoch: 10,
            },
        );
        // Placement uses the unfenced brokers: 1 and 2.
        assert_eq!(md.placeable_brokers(), vec![BrokerId(1), BrokerId(2)]);
        let mut t = md.plan_topic("t", 1, 1, BTreeMap::new()).unwrap();
        // A topic planned before the fence still names broker 0 first.
        t.partitions[0].replicas = vec![BrokerId(0), BrokerId(2)];
        md.apply(31, &MetadataRecord::CreateTopic { topic: t });
        assert_eq!(md.topics["t"].partitions[0].leader, Some(BrokerId(2)));
    }
}
