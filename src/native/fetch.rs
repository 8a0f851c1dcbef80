//! Fetch on the native protocol: the core's long poll (`core::fetch`), answered
//! with the batches themselves as the response's payload (cached or disk-read
//! `Bytes`), never copied.

use ringlog_schema::frame::push_payload;
use ringlog_schema::wire::{
    BodyT, FetchPartitionResultT, FetchPartitionT, FetchRequestT, FetchResponseT,
};

use crate::core::fetch::long_poll;
use crate::core::messages::{FetchData, PartitionError, PartitionKey, PartitionRead};
use crate::core::shard::Shard;
use crate::native::{wire_code, Response};

pub async fn handle(shard: &Shard, req: FetchRequestT) -> Response {
    let parts = req.partitions.unwrap_or_default();
    let reads: Vec<PartitionRead> = parts
        .iter()
        .map(|p| PartitionRead {
            key: PartitionKey::new(&p.topic, p.partition),
            offset: p.offset,
            max_bytes: p.max_bytes,
        })
        .collect();
    let (results, memory) = long_poll(
        shard,
        &reads,
        req.min_bytes,
        req.max_wait_ms,
        req.max_bytes as usize,
    )
    .await;
    let mut response = respond(&parts, results, req.max_bytes as usize);
    response.memory = Some(memory);
    response
}

fn respond(
    parts: &[FetchPartitionT],
    results: Vec<Result<FetchData, PartitionError>>,
    max_bytes: usize,
) -> Response {
    let mut payload = Vec::new();
    let mut payload_len = 0usize;
    let mut out = Vec::with_capacity(parts.len());
    for (p, r) in parts.iter().zip(results) {
        let mut result = FetchPartitionResultT {
            topic: p.topic.clone(),
            partition: p.partition,
            ..Default::default()
        };
        match r {
            Ok(data) => {
                result.high_watermark = data.offsets.high_watermark;
                result.log_start = data.offsets.log_start;
                let start = payload_len;
                for b in data.batches {
                    // The response limit is soft for the first data, as in Kafka:
                    // a consumer must always be able to make progress.
                    if payload_len > 0 && payload_len + b.len() > max_bytes {
                        break;
                    }
                    push_payload(&mut payload, &mut payload_len, b);
                }
                result.records = Some(ringlog_schema::wire::PayloadRangeT {
                    offset: u32::try_from(start).unwrap_or(u32::MAX),
                    length: u32::try_from(payload_len - start).unwrap_or(u32::MAX),
                });
            }
            Err(e) => {
                result.error = wire_code(e.code);
                result.message = Some(e.message);
            }
        }
        out.push(result);
    }
    Response {
        body: BodyT::FetchResponse(Box::new(FetchResponseT {
            partitions: Some(out),
        })),
        payload,
        memory: None,
    }
}
