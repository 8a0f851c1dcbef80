//! OffsetForLeaderEpoch (v2–4) for clients: where each asked leader epoch ends in
//! the partition leader's log, with the asker's current epoch checked (KIP-320).
//! librdkafka and the Java consumer ask it after a leader change to detect a log
//! truncated under their position.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::core::epoch_ends::epoch_ends;
use crate::core::messages::{EpochQuery, PartitionKey};
use crate::core::shard::Shard;
use crate::kafka::api::{kafka_code, TopicEntries};

pub async fn handle(
    shard: &Shard,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let asked: Vec<(PartitionKey, EpochQuery)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    PartitionKey::new(t.topic.0.as_str(), p.partition),
                    EpochQuery {
                        current_leader_epoch: p.current_leader_epoch,
                        leader_epoch: p.leader_epoch,
                    },
                )
            })
        })
        .collect();
    let keys: Vec<PartitionKey> = asked.iter().map(|(k, _)| k.clone()).collect();
    let answers = epoch_ends(shard, asked).await;
    let mut topics = TopicEntries::default();
    for (key, answer) in keys.into_iter().zip(answers) {
        let mut p = EpochEndOffset::default();
        p.partition = key.partition;
        match answer {
            Ok((epoch, end)) => {
                p.leader_epoch = epoch;
                p.end_offset = end;
            }
            Err(e) => p.error_code = kafka_code(e.code),
        }
        topics
            .entry(&key.topic, || {
                let mut t = OffsetForLeaderTopicResult::default();
                t.topic = kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(key.topic.clone()),
                );
                t
            })
            .partitions
            .push(p);
    }
    let mut resp = OffsetForLeaderEpochResponse::default();
    resp.topics = topics.into_vec();
    resp
}
