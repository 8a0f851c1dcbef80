//! Conversions between the core's types and the inter-broker protocol's.

use std::collections::BTreeMap;

use ringlog_schema::peer::{
    AlterPartitionT, AlterTopicConfigsT, ConfigPairT, ElectLeadersT, IsrMemberT, NewTopicT,
    PeerError, TopicPartitionRefT, TopicResultT, TopicTotalT,
};

use crate::core::error::ErrorKind;
use crate::core::messages::{ConfigAlteration, NewTopic, PartitionError, TopicOutcome};
use crate::metadata::election::ElectionType;
use crate::metadata::records::IsrChange;
use crate::metadata::BrokerId;

/// The wire code of a core error; kinds an admin call cannot produce map to
/// UNKNOWN_SERVER_ERROR.
pub fn peer_error(kind: ErrorKind) -> PeerError {
    match kind {
        ErrorKind::UnknownTopicOrPartition => PeerError::UNKNOWN_TOPIC_OR_PARTITION,
        ErrorKind::OffsetOutOfRange => PeerError::OFFSET_OUT_OF_RANGE,
        ErrorKind::CorruptMessage => PeerError::CORRUPT_MESSAGE,
        ErrorKind::NotLeaderOrFollower => PeerError::NOT_LEADER_OR_FOLLOWER,
        ErrorKind::FencedLeaderEpoch => PeerError::FENCED_LEADER_EPOCH,
        ErrorKind::UnknownLeaderEpoch => PeerError::UNKNOWN_LEADER_EPOCH,
        ErrorKind::RequestTimedOut => PeerError::REQUEST_TIMED_OUT,
        ErrorKind::InvalidTopic => PeerError::INVALID_TOPIC,
        ErrorKind::TopicAlreadyExists => PeerError::TOPIC_ALREADY_EXISTS,
        ErrorKind::InvalidPartitions => PeerError::INVALID_PARTITIONS,
        ErrorKind::InvalidReplicationFactor => PeerError::INVALID_REPLICATION_FACTOR,
        ErrorKind::InvalidConfig => PeerError::INVALID_CONFIG,
        ErrorKind::NotController => PeerError::NOT_CONTROLLER,
        ErrorKind::InvalidRequest => PeerError::INVALID_REQUEST,
        ErrorKind::PolicyViolation => PeerError::POLICY_VIOLATION,
        ErrorKind::KafkaStorageError => PeerError::KAFKA_STORAGE_ERROR,
        ErrorKind::ShuttingDown => PeerError::SHUTTING_DOWN,
        ErrorKind::PreferredLeaderNotAvailable => PeerError::PREFERRED_LEADER_NOT_AVAILABLE,
        ErrorKind::EligibleLeadersNotAvailable => PeerError::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        ErrorKind::ElectionNotNeeded => PeerError::ELECTION_NOT_NEEDED,
        _ => PeerError::UNKNOWN_SERVER_ERROR,
    }
}

/// The core error of a wire code (`None` for NONE).
pub fn error_kind(code: PeerError) -> Option<ErrorKind> {
    Some(match code {
        PeerError::NONE => return None,
        PeerError::UNKNOWN_TOPIC_OR_PARTITION => ErrorKind::UnknownTopicOrPartition,
        PeerError::OFFSET_OUT_OF_RANGE => ErrorKind::OffsetOutOfRange,
        PeerError::CORRUPT_MESSAGE => ErrorKind::CorruptMessage,
        PeerError::NOT_LEADER_OR_FOLLOWER => ErrorKind::NotLeaderOrFollower,
        PeerError::FENCED_LEADER_EPOCH => ErrorKind::FencedLeaderEpoch,
        PeerError::UNKNOWN_LEADER_EPOCH => ErrorKind::UnknownLeaderEpoch,
        PeerError::REQUEST_TIMED_OUT => ErrorKind::RequestTimedOut,
        PeerError::INVALID_TOPIC => ErrorKind::InvalidTopic,
        PeerError::TOPIC_ALREADY_EXISTS => ErrorKind::TopicAlreadyExists,
        PeerError::INVALID_PARTITIONS => ErrorKind::InvalidPartitions,
        PeerError::INVALID_REPLICATION_FACTOR => ErrorKind::InvalidReplicationFactor,
        PeerError::INVALID_CONFIG => ErrorKind::InvalidConfig,
        PeerError::NOT_CONTROLLER => ErrorKind::NotController,
        PeerError::INVALID_REQUEST
        | PeerError::STALE_BROKER_EPOCH
        | PeerError::DUPLICATE_BROKER_REGISTRATION
        | PeerError::INCONSISTENT_CLUSTER_ID
        | PeerError::MALFORMED_FRAME => ErrorKind::InvalidRequest,
        PeerError::POLICY_VIOLATION => ErrorKind::PolicyViolation,
        PeerError::KAFKA_STORAGE_ERROR => ErrorKind::KafkaStorageError,
        PeerError::SHUTTING_DOWN => ErrorKind::ShuttingDown,
        PeerError::PREFERRED_LEADER_NOT_AVAILABLE => ErrorKind::PreferredLeaderNotAvailable,
        PeerError::ELIGIBLE_LEADERS_NOT_AVAILABLE => ErrorKind::EligibleLeadersNotAvailable,
        PeerError::ELECTION_NOT_NEEDED => ErrorKind::ElectionNotNeeded,
        _ => ErrorKind::UnknownServerError,
    })
}

pub fn error_of(code: PeerError, message: Option<String>) -> Option<PartitionError> {
    error_kind(code).map(|kind| PartitionError::new(kind, message.unwrap_or_default()))
}

pub fn new_topic_to_wire(t: &NewTopic) -> NewTopicT {
    NewTopicT {
        name: t.name.clone(),
        partitions: t.partitions.unwrap_or(-1),
        replication_factor: t.replication_factor.unwrap_or(-1),
        configs: Some(
            t.configs
                .iter()
                .map(|(k, v)| ConfigPairT {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        ),
    }
}

pub fn new_topic_from_wire(t: NewTopicT) -> NewTopic {
    NewTopic {
        name: t.name,
        partitions: (t.partitions >= 0).then_some(t.partitions),
        replication_factor: (t.replication_factor >= 0).then_some(t.replication_factor),
        configs: t
            .configs
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.key, c.value))
            .collect::<BTreeMap<_, _>>(),
    }
}

pub fn alteration_to_wire(
    topic: &str,
    alteration: &ConfigAlteration,
    validate_only: bool,
) -> AlterTopicConfigsT {
    AlterTopicConfigsT {
        topic: topic.to_string(),
        set: Some(
            alteration
                .set
                .iter()
                .map(|(k, v)| ConfigPairT {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        ),
        delete: Some(alteration.delete.clone()),
        validate_only,
    }
}

/// (topic, alteration, validate_only).
pub fn alteration_from_wire(a: AlterTopicConfigsT) -> (String, ConfigAlteration, bool) {
    let alteration = ConfigAlteration {
        set: a
            .set
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.key, c.value))
            .collect(),
        delete: a.delete.unwrap_or_default(),
    };
    (a.topic, alteration, a.validate_only)
}

pub fn election_to_wire(kind: ElectionType, partitions: Option<&[(String, i32)]>) -> ElectLeadersT {
    ElectLeadersT {
        unclean: kind == ElectionType::Unclean,
        all: partitions.is_none(),
        partitions: partitions.map(|ps| {
            ps.iter()
                .map(|(topic, partition)| TopicPartitionRefT {
                    topic: topic.clone(),
                    partition: *partition,
                })
                .collect()
        }),
    }
}

/// (kind, partitions: `None` for every partition).
pub fn election_from_wire(e: ElectLeadersT) -> (ElectionType, Option<Vec<(String, i32)>>) {
    let kind = if e.unclean {
        ElectionType::Unclean
    } else {
        ElectionType::Preferred
    };
    let partitions = (!e.all).then(|| {
        e.partitions
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect()
    });
    (kind, partitions)
}

pub fn totals_to_wire(topics: &[(String, i32)]) -> Vec<TopicTotalT> {
    topics
        .iter()
        .map(|(name, total)| TopicTotalT {
            name: name.clone(),
            total: *total,
        })
        .collect()
}

pub fn outcome_to_wire(o: &TopicOutcome) -> TopicResultT {
    TopicResultT {
        name: o.name.clone(),
        error: o
            .error
            .as_ref()
            .map_or(PeerError::NONE, |e| peer_error(e.code)),
        message: o.error.as_ref().map(|e| e.message.clone()),
        partition: o.partition.unwrap_or(-1),
    }
}

pub fn outcome_from_wire(r: TopicResultT) -> TopicOutcome {
    TopicOutcome {
        name: r.name,
        partition: (r.partition >= 0).then_some(r.partition),
        error: error_of(r.error, r.message),
    }
}

pub fn isr_change_to_wire(c: &IsrChange) -> AlterPartitionT {
    AlterPartitionT {
        topic: c.topic.clone(),
        partition: c.partition,
        leader: c.leader.0,
        leader_epoch: c.leader_epoch,
        partition_epoch: c.partition_epoch,
        isr: c
            .isr
            .iter()
            .map(|(b, epoch)| IsrMemberT {
                broker_id: b.0,
                broker_epoch: *epoch,
            })
            .collect(),
    }
}

pub fn isr_change_from_wire(a: AlterPartitionT) -> IsrChange {
    IsrChange {
        topic: a.topic,
        partition: a.partition,
        leader: BrokerId(a.leader),
        leader_epoch: a.leader_epoch,
        partition_epoch: a.partition_epoch,
        isr: a
            .isr
            .into_iter()
            .map(|m| (BrokerId(m.broker_id), m.broker_epoch))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_types_round_trip_and_error_codes_map_back() {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "5".to_string());
        for t in [
            NewTopic {
                name: "a".into(),
                partitions: Some(3),
                replication_factor: Some(2),
                configs,
            },
            NewTopic {
                name: "b".into(),
                ..NewTopic::default()
            },
        ] {
            assert_eq!(new_topic_from_wire(new_topic_to_wire(&t)), t);
        }
        for kind in [
            ErrorKind::TopicAlreadyExists,
            ErrorKind::InvalidReplicationFactor,
            ErrorKind::NotController,
            ErrorKind::RequestTimedOut,
            ErrorKind::KafkaStorageError,
            ErrorKind::ElectionNotNeeded,
            ErrorKind::PreferredLeaderNotAvailable,
            ErrorKind::EligibleLeadersNotAvailable,
        ] {
            assert_eq!(error_kind(peer_error(kind)), Some(kind));
        }
        let o = TopicOutcome {
            name: "x".into(),
            partition: Some(3),
            error: Some(PartitionError::new(ErrorKind::InvalidConfig, "bad")),
        };
        assert_eq!(outcome_from_wire(outcome_to_wire(&o)), o);
        let change = IsrChange {
            topic: "t".into(),
            partition: 4,
            leader: BrokerId(2),
            leader_epoch: 7,
            partition_epoch: 9,
            isr: vec![(BrokerId(2), 11), (BrokerId(0), 3)],
        };
        assert_eq!(isr_change_from_wire(isr_change_to_wire(&change)), change);
    }
}
