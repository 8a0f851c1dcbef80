//! Fetch (v4–v12: topics by name) with long polling, through the core's
//! `long_poll`: a fetch with data available is answered at once, not held for
//! `max_wait_ms`. Each partition answers with its high watermark, log start and the
//! stored batches.
//!
//! The crate's response type holds one `Bytes` per partition, so a partition's
//! batches are joined into one buffer here: one copy on this path that the native
//! protocol does not make (its response writes the stored buffers themselves).

use crate::core::fetch::long_poll;
use crate::core::memory::Grant;
use crate::core::messages::{PartitionKey, PartitionRead};
use crate::core::shard::Shard;
use crate::kafka::api::{kafka_code, TopicEntries};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

/// The response and the shard memory its records hold (from the response budget).
pub async fn handle(shard: &Shard, req: FetchRequest, version: i16) -> (FetchResponse, Grant) {
    let mut parts = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            parts.push(PartitionRead {
                key: PartitionKey::new(t.topic.0.as_str(), p.partition),
                offset: p.fetch_offset,
                max_bytes: u32::try_from(p.partition_max_bytes).unwrap_or(0),
            });
        }
    }
    let min_bytes = u32::try_from(req.min_bytes).unwrap_or(0);
    let max_wait = u32::try_from(req.max_wait_ms).unwrap_or(0);
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0);
    let (results, memory) = long_poll(shard, &parts, min_bytes, max_wait, max_bytes).await;
    let mut budget = usize::try_from(req.max_bytes).unwrap_or(0);
    let mut first = true;
    let mut resp = FetchResponse::default();
    let mut topics = TopicEntries::default();
    for (asked, result) in parts.into_iter().zip(results) {
        let mut p = PartitionData::default();
        p.partition_index = asked.key.partition;
        p.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
        match result {
            Ok(data) => {
                p.high_watermark = data.offsets.high_watermark;
                p.last_stable_offset = data.offsets.high_watermark;
                if version >= 5 {
                    p.log_start_offset = data.offsets.log_start;
                }
                let size: usize = data.batches.iter().map(Bytes::len).sum();
                // Within the response's max_bytes, except that the first data always
                // goes out (as in Kafka), so a large batch cannot stall a consumer.
                if size > 0 && (first || size <= budget) {
                    budget = budget.saturating_sub(size);
                    first = false;
                    let mut joined = BytesMut::with_capacity(size);
                    for b in &data.batches {
                        joined.extend_from_slice(b);
                    }
                    p.records = Some(joined.freeze());
                } else {
                    p.records = Some(Bytes::new());
                }
            }
            Err(e) => {
                p.error_code = kafka_code(e.code);
                p.high_watermark = -1;
                p.last_stable_offset = -1;
                p.records = Some(Bytes::new());
            }
        }
        topics
            .entry(&asked.key.topic, || {
                let mut t = FetchableTopicResponse::default();
                t.topic = kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_string(asked.key.topic.clone()),
                );
                t
            })
            .partitions
            .push(p);
    }
    resp.responses = topics.into_vec();
    (resp, memory)
}
