//! Leader elections the controller decides beyond the fencing rule (pure):
//! the preferred-leader election (Kafka's PREFERRED ElectLeaders and
//! `auto.leader.rebalance.enable`) and the unclean election an operator asks for
//! (ElectLeaders UNCLEAN, KIP-460). Each plan is a metadata record checked again
//! where it is applied, so a plan made on a stale view changes nothing.

use crate::metadata::model::{BrokerId, ClusterMetadata, PartitionMeta};
use crate::metadata::records::MetadataRecord;

/// Which election an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership back to the first replica (the preferred leader) where it
    /// is live, in the ISR and not leading already.
    Preferred,
    /// Give a partition without a leader to its first live replica even outside
    /// the ISR (records only the old ISR held are lost).
    Unclean,
}

/// What an election of one partition comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionPlan {
    /// Commit this record.
    Elect(MetadataRecord),
    /// The partition already has the leader this election would give it
    /// (Kafka's ELECTION_NOT_NEEDED).
    NotNeeded,
    /// No replica may lead (PREFERRED_LEADER_NOT_AVAILABLE /
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE), with the reason.
    NotAvailable(String),
    /// No such topic or partition.
    Unknown,
}

impl ClusterMetadata {
    /// Why `p`'s preferred leader cannot take over now, if it cannot; else that
    /// broker. Only an in-sync replica holds every committed record, and only an
    /// unfenced broker may lead.
    pub fn preferred_leader_of(&self, p: &PartitionMeta) -> Result<BrokerId, String> {
        let preferred = *p
            .replicas
            .first()
            .ok_or_else(|| "the partition has no replicas".to_string())?;
        if !self.is_unfenced(preferred) {
            return Err(format!("preferred leader {} is not live", preferred.0));
        }
        if !p.isr.contains(&preferred) {
            return Err(format!("preferred leader {} is not in sync", preferred.0));
        }
        Ok(preferred)
    }

    /// The plan for electing `topic`-`partition` by `kind`.
    pub fn plan_election(&self, kind: ElectionType, topic: &str, partition: i32) -> ElectionPlan {
        let Some(p) = self.topics.get(topic).and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
        }) else {
            return ElectionPlan::Unknown;
        };
        match kind {
            ElectionType::Preferred => {
                if p.leader.is_some() && p.leader == p.replicas.first().copied() {
                    return ElectionPlan::NotNeeded;
                }
                match self.preferred_leader_of(p) {
                    Ok(_) => ElectionPlan::Elect(MetadataRecord::PreferredElection {
                        topic: topic.to_string(),
                        partition,
                        leader_epoch: p.leader_epoch,
                    }),
                    Err(reason) => ElectionPlan::NotAvailable(reason),
                }
            }
            ElectionType::Unclean => {
                if p.leader.is_some() {
                    return ElectionPlan::NotNeeded;
                }
                match p.replicas.iter().find(|b| self.is_unfenced(**b)) {
                    Some(b) => ElectionPlan::Elect(MetadataRecord::UncleanElection {
                        topic: topic.to_string(),
                        partition,
                        leader: *b,
                        leader_epoch: p.leader_epoch,
                    }),
                    None => ElectionPlan::NotAvailable("no replica is live".into()),
                }
            }
        }
    }

    /// Every partition of every topic, or of `topic` only, in order.
    pub fn partitions_of(&self, topic: Option<&str>) -> Vec<(String, i32)> {
        self.topics
            .values()
            .filter(|t| topic.is_none_or(|name| t.name == name))
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
            .collect()
    }

    /// The preferred elections `auto.leader.rebalance.enable` proposes (Kafka's
    /// check): for each broker, the share of the partitions it prefers to lead
    /// that another broker leads; where that share exceeds `percentage` %, each
    /// of those partitions whose preferred leader may take over goes back to it.
    pub fn rebalance_elections(&self, percentage: u32) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for broker in self.brokers.keys() {
            let preferred: Vec<(&str, &PartitionMeta)> = self
                .topics
                .values()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p)))
                .filter(|(_, p)| p.replicas.first() == Some(broker))
                .collect();
            let led_elsewhere: Vec<&(&str, &PartitionMeta)> = preferred
                .iter()
                .filter(|(_, p)| p.leader != Some(*broker))
                .collect();
            if preferred.is_empty()
                || (led_elsewhere.len() as u64) * 100
                    <= u64::from(percentage) * preferred.len() as u64
            {
                continue;
            }
            for (topic, p) in led_elsewhere {
                if let ElectionPlan::Elect(r) =
                    self.plan_election(ElectionType::Preferred, topic, p.partition)
                {
                    out.push(r);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::model::BrokerInfo;

    /// Brokers 1..=3 unfenced; topic "t" of `partitions` placed on them, RF 3.
    fn cluster(partitions: i32) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for id in 1..=3 {
            let broker = BrokerInfo {
                id: BrokerId(id),
                host: "127.0.0.1".into(),
                port: 9000,
                shards: 1,
                kafka: None,
            };
            let offset = md.applied_offset + 1;
            md.apply(
                offset,
                &MetadataRecord::RegisterBroker {
                    broker,
                    incarnation: id as u64,
                },
            );
            md.apply(
                offset + 1,
                &MetadataRecord::UnfenceBroker {
                    id: BrokerId(id),
                    epoch: offset,
                },
            );
        }
        let topic = md
            .plan_topic("t", partitions, 3, Default::default())
            .unwrap();
        let offset = md.applied_offset + 1;
        md.apply(offset, &MetadataRecord::CreateTopic { topic });
        md
    }

    fn epoch_of(md: &ClusterMetadata, id: i32) -> u64 {
        md.registrations[&BrokerId(id)].epoch
    }

    fn fence(md: &mut ClusterMetadata, id: i32) {
        let epoch = epoch_of(md, id);
        let offset = md.applied_offset + 1;
        md.apply(
            offset,
            &MetadataRecord::FenceBroker {
                id: BrokerId(id),
                epoch,
            },
        );
    }

    /// Broker `id` comes back (unfenced) and its leader lets it rejoin every ISR.
    fn rejoin(md: &mut ClusterMetadata, id: i32) {
        let epoch = epoch_of(md, id);
        let offset = md.applied_offset + 1;
        md.apply(
            offset,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(id),
                epoch,
            },
        );
        let t = md.topics["t"].clone();
        for p in &t.partitions {
            let mut isr: Vec<(BrokerId, u64)> = p
                .isr
                .iter()
                .map(|b| (*b, md.registrations[b].epoch))
                .collect();
            isr.push((BrokerId(id), epoch));
            let change = crate::metadata::records::IsrChange {
                topic: "t".into(),
                partition: p.partition,
                leader: p.leader.unwrap(),
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr,
            };
            let offset = md.applied_offset + 1;
            md.apply(offset, &MetadataRecord::AlterPartition(change));
        }
    }

    fn apply_all(md: &mut ClusterMetadata, records: &[MetadataRecord]) {
        for r in records {
            let offset = md.applied_offset + 1;
            assert_eq!(
                md.apply(offset, r),
                crate::metadata::records::Applied::Changed
            );
        }
    }

    #[test]
    fn a_preferred_election_is_needed_only_where_another_broker_leads() {
        let mut md = cluster(3);
        for p in 0..3 {
            assert_eq!(
                md.plan_election(ElectionType::Preferred, "t", p),
                ElectionPlan::NotNeeded
            );
        }
        assert_eq!(
            md.plan_election(ElectionType::Preferred, "t", 3),
            ElectionPlan::Unknown
        );
        assert_eq!(
            md.plan_election(ElectionType::Preferred, "nope", 0),
            ElectionPlan::Unknown
        );
        fence(&mut md, 1);
        let p0 = md.topics["t"].partitions[0].clone();
        assert_eq!(p0.replicas[0], BrokerId(1));
        assert_ne!(p0.leader, Some(BrokerId(1)));
        // Fenced, then back but not yet in sync: not available either way.
        assert!(matches!(
            md.plan_election(ElectionType::Preferred, "t", 0),
            ElectionPlan::NotAvailable(r) if r.contains("not live")
        ));
        let epoch = epoch_of(&md, 1);
        let offset = md.applied_offset + 1;
        md.apply(
            offset,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(1),
                epoch,
            },
        );
        assert!(matches!(
            md.plan_election(ElectionType::Preferred, "t", 0),
            ElectionPlan::NotAvailable(r) if r.contains("not in sync")
        ));
    }

    #[test]
    fn a_preferred_election_gives_the_partition_back_in_a_new_epoch() {
        let mut md = cluster(3);
        fence(&mut md, 1);
        rejoin(&mut md, 1);
        let before = md.topics["t"].partitions[0].clone();
        let ElectionPlan::Elect(record) = md.plan_election(ElectionType::Preferred, "t", 0) else {
            panic!("an election is due");
        };
        apply_all(&mut md, std::slice::from_ref(&record));
        let after = &md.topics["t"].partitions[0];
        assert_eq!(after.leader, Some(BrokerId(1)));
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        assert_eq!(after.partition_epoch, before.partition_epoch + 1);
        assert_eq!(after.isr, before.isr);
        // The same record again (a retry, a second controller): nothing changes.
        let offset = md.applied_offset + 1;
        assert!(matches!(
            md.apply(offset, &record),
            crate::metadata::records::Applied::Ignored(_)
        ));
    }

    #[test]
    fn a_preferred_election_planned_on_a_stale_view_changes_nothing() {
        let mut md = cluster(3);
        fence(&mut md, 1);
        rejoin(&mut md, 1);
        let ElectionPlan::Elect(record) = md.plan_election(ElectionType::Preferred, "t", 0) else {
            panic!("an election is due");
        };
        // Broker 1 drops out again before the record applies.
        fence(&mut md, 1);
        let before = md.topics["t"].partitions[0].clone();
        let offset = md.applied_offset + 1;
        assert!(matches!(
            md.apply(offset, &record),
            crate::metadata::records::Applied::Ignored(_)
        ));
        assert_eq!(md.topics["t"].partitions[0], before);
    }

    #[test]
    fn rebalance_moves_leadership_back_only_past_the_imbalance_threshold() {
        // 10 partitions: broker 1 prefers 0, 3, 6, 9.
        let mut md = cluster(10);
        assert!(md.rebalance_elections(10).is_empty(), "balanced");
        fence(&mut md, 1);
        rejoin(&mut md, 1);
        // Broker 1 leads none of its 4: 100 % imbalance.
        let records = md.rebalance_elections(10);
        let partitions: Vec<i32> = records
            .iter()
            .map(|r| match r {
                MetadataRecord::PreferredElection { partition, .. } => *partition,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(partitions, [0, 3, 6, 9]);
        // 1 of 4 led elsewhere is 25 %: above 10 %, not above 25 %.
        apply_all(&mut md, &records[..3]);
        assert_eq!(md.rebalance_elections(10).len(), 1);
        assert!(md.rebalance_elections(25).is_empty());
        apply_all(&mut md, &records[3..]);
        assert!(md.rebalance_elections(0).is_empty(), "balanced again");
    }

    #[test]
    fn rebalance_leaves_a_preferred_leader_that_is_not_in_sync() {
        let mut md = cluster(3);
        fence(&mut md, 1);
        let epoch = epoch_of(&md, 1);
        let offset = md.applied_offset + 1;
        md.apply(
            offset,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(1),
                epoch,
            },
        );
        assert!(md.rebalance_elections(0).is_empty());
    }

    #[test]
    fn an_unclean_election_is_planned_only_for_a_partition_without_leader() {
        let mut md = cluster(1);
        assert_eq!(
            md.plan_election(ElectionType::Unclean, "t", 0),
            ElectionPlan::NotNeeded
        );
        // Broker 3 falls out of the ISR, then 1 and 2 are fenced: no leader.
        let p = md.topics["t"].partitions[0].clone();
        let change = crate::metadata::records::IsrChange {
            topic: "t".into(),
            partition: 0,
            leader: BrokerId(1),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![
                (BrokerId(1), epoch_of(&md, 1)),
                (BrokerId(2), epoch_of(&md, 2)),
            ],
        };
        apply_all(&mut md, &[MetadataRecord::AlterPartition(change)]);
        fence(&mut md, 1);
        fence(&mut md, 2);
        assert_eq!(md.topics["t"].partitions[0].leader, None);
        let ElectionPlan::Elect(record) = md.plan_election(ElectionType::Unclean, "t", 0) else {
            panic!("broker 3 is live");
        };
        apply_all(&mut md, &[record]);
        assert_eq!(md.topics["t"].partitions[0].leader, Some(BrokerId(3)));
        fence(&mut md, 3);
        assert!(matches!(
            md.plan_election(ElectionType::Unclean, "t", 0),
            ElectionPlan::NotAvailable(_)
        ));
    }
}
