//! ListOffsets: earliest (-2), latest (-1), the record with the largest timestamp
//! (-3, v7) or the first record at or after a timestamp, with that record's
//! timestamp, per partition, from its owner.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::handlers::call_owners;
use crate::broker::messages::{PartitionKey, ShardMsg};
use crate::broker::shard::Shard;
use crate::kafka::api::{codes, kafka_code, topic_entry};

pub async fn handle(shard: &Shard, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut asked = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let key = PartitionKey::new(t.name.0.as_str(), p.partition_index);
            asked.push((
                key.clone(),
                ShardMsg::ListOffset {
                    key,
                    timestamp: p.timestamp,
                },
            ));
        }
    }
    let keys: Vec<PartitionKey> = asked.iter().map(|(k, _)| k.clone()).collect();
    let answers = call_owners(shard, asked).await;
    let mut resp = ListOffsetsResponse::default();
    for (key, answer) in keys.into_iter().zip(answers) {
        let mut p = ListOffsetsPartitionResponse::default();
        p.partition_index = key.partition;
        // Fields beyond the asked version must keep their defaults (the codec
        // refuses to encode them): the timestamp exists from v1 (all served).
        match answer {
            Ok(ShardMsg::Offset(Ok((offset, timestamp)))) => {
                p.offset = offset;
                p.timestamp = timestamp;
            }
            Ok(ShardMsg::Offset(Err(e))) | Err(e) => {
                p.error_code = kafka_code(e.code);
                p.offset = -1;
            }
            Ok(_) => {
                p.error_code = codes::UNKNOWN_SERVER_ERROR;
                p.offset = -1;
            }
        }
        topic_entry(
            &mut resp.topics,
            &key.topic,
            |t| t.name.0.as_str(),
            || {
                let mut t = ListOffsetsTopicResponse::default();
                t.name = kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(key.topic.clone()),
                );
                t
            },
        )
        .partitions
        .push(p);
    }
    resp
}
