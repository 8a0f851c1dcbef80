//! Fetch with long polling: read every partition from its owner; if fewer than
//! `min_bytes` came back, wait (without polling) until one of the partitions'
//! high watermark moves or `max_wait_ms` passes, and read again. The response's
//! payload is the batches themselves (cached or disk-read `Bytes`), never copied.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringlog_schema::frame::push_payload;
use ringlog_schema::wire::{
    BodyT, ErrorCode, FetchPartitionResultT, FetchPartitionT, FetchRequestT, FetchResponseT,
};

use crate::broker::handlers::{call_owners, Response};
use crate::broker::messages::{FetchData, PartitionError, PartitionKey, ShardMsg};
use crate::broker::shard::Shard;
use crate::config::FETCH_MAX_WAIT_MS_MAX;

pub async fn handle(shard: &Shard, req: FetchRequestT) -> Response {
    let parts = req.partitions.unwrap_or_default();
    let results = long_poll(shard, &parts, req.min_bytes, req.max_wait_ms).await;
    respond(&parts, results, req.max_bytes as usize)
}

/// Reads every partition from its owner; while fewer than `min_bytes` came back and
/// no partition failed, waits (without polling) for any partition to pass what was
/// read, or for `max_wait_ms`, and reads again. Shared by both protocols.
pub async fn long_poll(
    shard: &Shard,
    parts: &[FetchPartitionT],
    min_bytes: u32,
    max_wait_ms: u32,
) -> Vec<Result<FetchData, PartitionError>> {
    let wait = Duration::from_millis(u64::from(max_wait_ms.min(FETCH_MAX_WAIT_MS_MAX)));
    let deadline = Instant::now() + wait;
    loop {
        let results = read_all(shard, parts).await;
        let got: usize = results
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or(0, |d| d.batches.iter().map(Bytes::len).sum())
            })
            .sum();
        let any_error = results.iter().any(Result::is_err);
        let done = got >= min_bytes as usize
            || any_error
            || parts.is_empty()
            || Instant::now() >= deadline
            || shard.stopping.is_set();
        if done {
            return results;
        }
        // Wait for any partition to pass what was read, then read again.
        let waits = parts
            .iter()
            .zip(&results)
            .map(|(p, r)| {
                let next = r
                    .as_ref()
                    .ok()
                    .and_then(|d| last_offset(&d.batches))
                    .map_or(p.offset, |last| last + 1);
                let key = PartitionKey::new(&p.topic, p.partition);
                (
                    key.clone(),
                    ShardMsg::WaitForData {
                        key,
                        offset: next,
                        deadline,
                    },
                )
            })
            .collect::<Vec<_>>();
        wait_any(shard, waits, deadline).await;
    }
}

async fn read_all(
    shard: &Shard,
    parts: &[FetchPartitionT],
) -> Vec<Result<FetchData, PartitionError>> {
    let requests = parts
        .iter()
        .map(|p| {
            let key = PartitionKey::new(&p.topic, p.partition);
            (
                key.clone(),
                ShardMsg::Fetch {
                    key,
                    offset: p.offset,
                    max_bytes: p.max_bytes,
                },
            )
        })
        .collect();
    call_owners(shard, requests)
        .await
        .into_iter()
        .map(|a| match a {
            Ok(ShardMsg::Fetched(r)) => r,
            Ok(_) => Err(PartitionError::new(
                ErrorCode::UNKNOWN_SERVER_ERROR,
                "unexpected answer",
            )),
            Err(e) => Err(e),
        })
        .collect()
}

/// Returns when the first wait resolves (data arrived), at the deadline, or at
/// shutdown. Waits still pending on other shards end by themselves at the deadline.
async fn wait_any(shard: &Shard, waits: Vec<(PartitionKey, ShardMsg)>, deadline: Instant) {
    let (tx, rx) = flume::bounded::<()>(waits.len().max(1));
    for (key, msg) in waits {
        if let Ok(reply) = shard.send_to_owner(&key, msg).await {
            let tx = tx.clone();
            glommio::spawn_local(async move {
                let _ = reply.recv().await;
                let _ = tx.try_send(());
            })
            .detach();
        }
    }
    drop(tx);
    let now = Instant::now();
    let timer = async move {
        glommio::timer::sleep(deadline.saturating_duration_since(now)).await;
    };
    let arrived = async move {
        // All senders gone (every wait failed) also ends the wait: re-read then.
        let _ = rx.recv_async().await;
    };
    let stopping = async {
        shard.stopping.wait().await;
    };
    futures_lite::future::or(futures_lite::future::or(arrived, timer), stopping).await;
}

fn last_offset(batches: &[Bytes]) -> Option<i64> {
    let last = batches.last()?;
    ringlog_schema::split_batches(last.clone())
        .filter_map(Result::ok)
        .last()
        .map(|b| b.last_offset())
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
                result.error = e.code;
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
    }
}
