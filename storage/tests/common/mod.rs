//! Helpers shared by the storage acceptance tests.
#![allow(dead_code)]

use std::future::Future;

use bytes::Bytes;
use ringlog_schema::{split_batches, BatchBuilder, RecordBatch};
use ringlog_storage::{LogConfig, Offset, PartitionLog};

/// Runs `make()` on a fresh glommio executor and returns its output.
pub fn run<F, Fut, T>(make: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(make)
        .expect("start a glommio executor")
        .join()
        .expect("executor thread")
}

/// Small segments so tests roll often.
pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        max_batch_bytes: (256 * 1024).min(segment_bytes as usize),
        write_buffer_bytes: 64 * 1024,
        cache_bytes: 256 * 1024,
        preallocate_bytes: 1 << 20,
        ..LogConfig::default()
    }
}

/// A batch of `n` records whose values are derived from `seed`, timestamps from `ts`.
pub fn make_batch(seed: u64, n: usize, value_len: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        let mut v = vec![0u8; value_len];
        let mut x = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(i as u64 + 1);
        for byte in v.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        let key = Bytes::from(format!("k{seed}-{i}"));
        b.push(Some(key), Some(Bytes::from(v)), &[], ts + i as i64);
    }
    b.build().expect("non-empty batch")
}

/// The bytes a log stores for `batch` appended at `base`.
pub fn with_base(batch: &Bytes, base: i64) -> Bytes {
    let mut v = batch.to_vec();
    RecordBatch::set_base_offset(&mut v, base);
    Bytes::from(v)
}

/// Every batch from `from` to the log end, as separate `Bytes`.
pub async fn read_all(log: &PartitionLog, from: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let chunks = log.read(Offset(at), 1 << 20).await.expect("read");
        if chunks.is_empty() {
            return out;
        }
        for chunk in chunks {
            for batch in split_batches(chunk) {
                let batch = batch.expect("framing");
                at = batch.last_offset() + 1;
                out.push(batch.into_bytes());
            }
        }
    }
}
