//! ListOffsets: earliest (-2), latest (-1), the record with the largest timestamp
//! (-3, v7) or the first record at or after a timestamp, with that record's
//! timestamp, per partition, from its owner.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::handlers::{call_owners, refused_partitions};
use crate::broker::messages::{PartitionError, PartitionKey, ShardRequest};
use crate::broker::shard::Shard;
use crate::core::error::ErrorKind;
use crate::kafka::api::{kafka_code, TopicEntries};

pub async fn handle(shard: &Shard, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let named: Vec<(&str, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.as_str(), p.partition_index))
        })
        .collect();
    let refused = refused_partitions("list offsets", named.into_iter());
    let mut keys = Vec::new();
    let mut asked = Vec::new();
    for (t, p) in req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
    {
        let key = PartitionKey::new(t.name.0.as_str(), p.partition_index);
        if refused[keys.len()].is_none() {
            let (asked_key, timestamp) = (key.clone(), p.timestamp);
            asked.push((key.clone(), move |answer| ShardRequest::ListOffset {
                key: asked_key,
                timestamp,
                answer,
            }));
        }
        keys.push(key);
    }
    let mut answers = call_owners(shard, asked).await.into_iter();
    let mut resp = ListOffsetsResponse::default();
    let mut topics = TopicEntries::default();
    for (key, refused) in keys.into_iter().zip(refused) {
        let answer = match refused {
            Some(e) => Err(e),
            None => answers.next().unwrap_or_else(|| {
                Err(PartitionError::new(
                    ErrorKind::UnknownServerError,
                    "not answered",
                ))
            }),
        };
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
