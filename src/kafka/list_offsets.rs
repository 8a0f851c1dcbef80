//! ListOffsets: earliest (-2), latest (-1), the record with the largest timestamp
//! (-3, v7) or the first record at or after a timestamp, with that record's
//! timestamp, per partition, from its owner.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::core::list_offsets::list_offsets;
use crate::core::messages::PartitionKey;
use crate::core::shard::Shard;
use crate::kafka::api::{kafka_code, TopicEntries};

pub async fn handle(shard: &Shard, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let asked: Vec<(PartitionKey, i64)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    PartitionKey::new(t.name.0.as_str(), p.partition_index),
                    p.timestamp,
                )
            })
        })
        .collect();
    let keys: Vec<PartitionKey> = asked.iter().map(|(k, _)| k.clone()).collect();
    let answers = list_offsets(shard, asked).await;
    let mut resp = ListOffsetsResponse::default();
    let mut topics = TopicEntries::default();
    for (key, answer) in keys.into_iter().zip(answers) {
        let mut p = ListOffsetsPartitionResponse::default();
        p.partition_index = key.partition;
        // Fields beyond the asked version must keep their defaults (the codec
        // refuses to encode them): the timestamp exists from v1 (all served).
        match answer {
            Ok((offset, timestamp)) => {
                p.offset = offset;
                p.timestamp = timestamp;
            }
            Err(e) => {
                p.error_code = kafka_code(e.code);
                p.offset = -1;
            }
        }
        topics
            .entry(&key.topic, || {
                let mut t = ListOffsetsTopicResponse::default();
                t.name = kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(key.topic.clone()),
                );
                t
            })
            .partitions
            .push(p);
    }
    resp.topics = topics.into_vec();
    resp
}
