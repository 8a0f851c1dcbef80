//! Fetch with long polling: read every partition from its owner (one request per
//! owner shard); if fewer than `min_bytes` came back, wait (without polling) until
//! one of the partitions' high watermark moves or `max_wait_ms` passes, and read
//! again. Both listeners answer from what this returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::core::error::ErrorKind;
use bytes::Bytes;
use ringlog_schema::last_offset_in;
use ringlog_shards::ShardId;

use crate::config::FETCH_MAX_WAIT_MS_MAX;
use crate::core::error::unreachable_owner;
use crate::core::memory::Grant;
use crate::core::messages::{FetchData, PartitionError, PartitionKey, PartitionRead, ShardRequest};
use crate::core::routing::refused_partitions;
use crate::core::shard::Shard;
use crate::sync::join::join_all;

/// Reads every partition from its owner (one message per owner shard) within the
/// response's limit (`max_bytes`, at most `fetch.max.bytes`); while fewer than
/// `min_bytes` came back and no partition failed, waits (without polling) for any
/// partition to pass what was read, or for `max_wait_ms`, and reads again. The
/// response's memory is reserved from the shard's budget before each read and
/// comes back with the results, sized to them: the caller holds it until the
/// response is written. Shared by both protocols.
pub async fn long_poll(
    shard: &Shard,
    parts: &[PartitionRead],
    min_bytes: u32,
    max_wait_ms: u32,
    max_bytes: usize,
) -> (Vec<Result<FetchData, PartitionError>>, Grant) {
    let wait = Duration::from_millis(u64::from(max_wait_ms.min(FETCH_MAX_WAIT_MS_MAX)));
    let deadline = Instant::now() + wait;
    let limit = max_bytes.min(shard.config.fetch_max_bytes);
    let refused = refused_partitions(
        "fetch",
        parts
            .iter()
            .map(|p| (p.key.topic.as_str(), p.key.partition)),
    );
    loop {
        let mut memory = shard.response_memory.reserve(limit).await;
        let results = read_all(shard, parts, &refused, limit).await;
        let got: usize = results
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or(0, |d| d.batches.iter().map(Bytes::len).sum())
            })
            .sum();
        memory.resize_to(got);
        let any_error = results.iter().any(Result::is_err);
        let done = got >= min_bytes as usize
            || any_error
            || parts.is_empty()
            || Instant::now() >= deadline
            || shard.stopping.is_set();
        if done {
            return (results, memory);
        }
        drop(memory);
        // Wait for any partition to pass what was read, then read again.
        let waits = parts
            .iter()
            .zip(&results)
            .map(|(p, r)| {
                let next = r
                    .as_ref()
                    .ok()
                    .and_then(|d| d.batches.last().and_then(last_offset_in))
                    .map_or(p.offset, |last| last + 1);
                (p.key.clone(), next)
            })
            .collect::<Vec<_>>();
        wait_any(shard, waits, deadline).await;
    }
}

/// The partitions of a request grouped by their owner shard, keeping each one's
/// place in the request; a partition whose owner cannot be found gets its error.
fn by_owner<T>(
    shard: &Shard,
    items: impl Iterator<Item = (usize, PartitionKey, T)>,
    errors: &mut [Option<PartitionError>],
) -> BTreeMap<ShardId, Vec<(usize, T)>> {
    let mut owners: BTreeMap<ShardId, Vec<(usize, T)>> = BTreeMap::new();
    for (i, key, item) in items {
        match shard.owner_of(&key.topic, key.partition) {
            Ok(owner) => owners.entry(owner).or_default().push((i, item)),
            Err(e) => errors[i] = Some(e),
        }
    }
    owners
}

async fn read_all(
    shard: &Shard,
    parts: &[PartitionRead],
    refused: &[Option<PartitionError>],
    limit: usize,
) -> Vec<Result<FetchData, PartitionError>> {
    let mut errors: Vec<Option<PartitionError>> = refused.to_vec();
    let reads = parts
        .iter()
        .enumerate()
        .filter(|(i, _)| refused[*i].is_none())
        .map(|(i, p)| (i, p.key.clone(), p.clone()));
    let owners = by_owner(shard, reads, &mut errors);
    let mut pending = Vec::with_capacity(owners.len());
    for (owner, reads) in owners {
        let (places, reads): (Vec<usize>, Vec<PartitionRead>) = reads.into_iter().unzip();
        let sent = shard
            .mesh()
            .send_to_shard(owner, |answer| ShardRequest::Fetch {
                reads,
                limit,
                answer,
            })
            .await;
        pending.push((places, sent));
    }
    let mut results: Vec<Option<Result<FetchData, PartitionError>>> =
        errors.into_iter().map(|e| e.map(Err)).collect();
    let answers = join_all(
        pending
            .into_iter()
            .map(|(places, sent)| async move {
                let answer = match sent {
                    Ok(reply) => reply.recv().await,
                    Err(e) => Err(e),
                };
                (places, answer)
            })
            .collect(),
    )
    .await;
    for (places, answer) in answers {
        match answer {
            Ok(read) => {
                for (i, r) in places.into_iter().zip(read) {
                    results[i] = Some(r);
                }
            }
            Err(e) => {
                let e = unreachable_owner(&e);
                for i in places {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(PartitionError::new(
                    ErrorKind::UnknownServerError,
                    "partition not read",
                ))
            })
        })
        .collect()
}

/// Returns when the first owner says data arrived, at the deadline, or at
/// shutdown. One wait goes to each owner shard, for all its partitions; waits still
/// pending on other shards end by themselves at the deadline.
async fn wait_any(shard: &Shard, waits: Vec<(PartitionKey, i64)>, deadline: Instant) {
    let mut unused = vec![None; waits.len()];
    let owners = by_owner(
        shard,
        waits
            .into_iter()
            .enumerate()
            .map(|(i, (key, offset))| (i, key.clone(), (key, offset))),
        &mut unused,
    );
    let (tx, rx) = flume::bounded::<()>(owners.len().max(1));
    for (owner, waits) in owners {
        let waits = waits.into_iter().map(|(_, w)| w).collect();
        let sent = shard
            .mesh()
            .send_to_shard(owner, |answer| ShardRequest::WaitForData {
                waits,
                deadline,
                answer,
            })
            .await;
        if let Ok(reply) = sent {
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
