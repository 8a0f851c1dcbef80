//! Storage benchmarks (run: `cargo bench -p ringlog-storage --bench log_bench`).
//!
//! 1. Append throughput of 1 KiB records in 16 KiB / 64 KiB / 1 MiB batches, under
//!    `log.flush = os` and `batch`, with 1 and 8 concurrent appenders, against raw
//!    glommio `DmaStreamWriter` sequential writes of the same bytes in the same run.
//! 2. Recovery: opening a 1 GiB segment left without the clean-shutdown marker.
//! 3. Tail read: latency of reading a just-appended batch (served by the cache).
//!
//! `RINGLOG_BENCH_DIR` picks the file system (default: the system temp dir);
//! `RINGLOG_BENCH_SECONDS` caps each append case (default 3).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};
use hdrhistogram::Histogram;
use ringlog_schema::BatchBuilder;
use ringlog_storage::{FlushPolicy, LogConfig, Offset, PartitionLog};

const RECORD_BYTES: usize = 1024;
const CASE_BYTES_MAX: u64 = 1 << 30;

fn main() {
    let base = std::env::var_os("RINGLOG_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let seconds: u64 = std::env::var("RINGLOG_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir_in(base).expect("bench dir");
    let root = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(64 << 20)
        .spawn(move || async move { run_all(&root, Duration::from_secs(seconds)).await })
        .expect("executor")
        .join()
        .expect("bench");
}

async fn run_all(root: &Path, budget: Duration) {
    println!(
        "# ringlog-storage log_bench ({} s per case, 1 KiB records, dir {})",
        budget.as_secs(),
        root.display()
    );
    println!();
    println!(
        "| batch | policy | appenders | log MB/s | raw MB/s | log/raw | appends/s | fdatasyncs/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for batch_bytes in [16 << 10, 64 << 10, 1 << 20] {
        let batch = one_batch(batch_bytes);
        let raw = raw_stream_writer(root, &batch, budget).await;
        for policy in [FlushPolicy::Os, FlushPolicy::Batch] {
            for appenders in [1usize, 8] {
                let r = log_append(root, &batch, policy, appenders, budget).await;
                let name = match policy {
                    FlushPolicy::Os => "os",
                    FlushPolicy::Batch => "batch",
                    FlushPolicy::Interval(_) => "interval",
                };
                println!(
                    "| {} KiB | {name} | {appenders} | {:.0} | {:.0} | {:.0} % | {:.0} | {:.0} |",
                    batch_bytes >> 10,
                    r.mb_per_s,
                    raw,
                    100.0 * r.mb_per_s / raw,
                    r.appends_per_s,
                    r.syncs_per_s
                );
            }
        }
    }
    println!();
    recovery(root).await;
    tail_read(root).await;
}

/// A batch of 1 KiB records close to `bytes` in size.
fn one_batch(bytes: usize) -> Bytes {
    let mut b = BatchBuilder::new();
    let records = (bytes / (RECORD_BYTES + 16)).max(1);
    for i in 0..records {
        let value: Vec<u8> = (0..RECORD_BYTES).map(|j| (i * 31 + j * 7) as u8).collect();
        b.push(
            None,
            Some(Bytes::from(value)),
            &[],
            1_700_000_000_000 + i as i64,
        );
    }
    b.build().expect("batch")
}

struct AppendResult {
    mb_per_s: f64,
    appends_per_s: f64,
    syncs_per_s: f64,
}

async fn log_append(
    root: &Path,
    batch: &Bytes,
    flush: FlushPolicy,
    appenders: usize,
    budget: Duration,
) -> AppendResult {
    let dir = root.join(
        format!("log-{}-{:?}-{appenders}", batch.len(), flush).replace([' ', '(', ')', ':'], ""),
    );
    let config = LogConfig {
        flush,
        segment_ms: None,
        ..LogConfig::default()
    };
    let log = Rc::new(PartitionLog::open(&dir, config).await.expect("open"));
    let per_appender = CASE_BYTES_MAX / batch.len() as u64 / appenders as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..appenders {
        let (log, batch) = (log.clone(), batch.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut n = 0u64;
            while n < per_appender && start.elapsed() < budget {
                log.append_committed(batch.clone()).await.expect("append");
                n += 1;
            }
            n
        }));
    }
    let mut appends = 0;
    for t in tasks {
        appends += t.await;
    }
    // Whatever the policy, the case ends with the data durable.
    log.flush().await.expect("flush");
    let secs = start.elapsed().as_secs_f64();
    let syncs = log.fdatasync_count() as f64;
    log.close().await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
    AppendResult {
        mb_per_s: (appends * batch.len() as u64) as f64 / secs / 1e6,
        appends_per_s: appends as f64 / secs,
        syncs_per_s: syncs / secs,
    }
}

/// Raw glommio DmaStreamWriter: the same batches written back to back, then one sync.
async fn raw_stream_writer(root: &Path, batch: &Bytes, budget: Duration) -> f64 {
    let path = root.join(format!("raw-{}", batch.len()));
    let file = DmaFile::create(&path).await.expect("create");
    // Same buffer geometry as the log (LogConfig defaults), so the comparison is fair.
    let defaults = LogConfig::default();
    let mut w = DmaStreamWriterBuilder::new(file)
        .with_buffer_size(defaults.write_buffer_bytes)
        .with_write_behind(defaults.inflight_writes_max)
        .build();
    let start = Instant::now();
    let mut written = 0u64;
    while written < CASE_BYTES_MAX && start.elapsed() < budget {
        w.write_all(batch).await.expect("write");
        written += batch.len() as u64;
    }
    w.sync().await.expect("sync");
    let secs = start.elapsed().as_secs_f64();
    w.close().await.expect("close");
    let _ = std::fs::remove_file(&path);
    written as f64 / secs / 1e6
}

async fn recovery(root: &Path) {
    let dir = root.join("recovery");
    let config = LogConfig {
        flush: FlushPolicy::Os,
        segment_bytes: (1 << 30) + (16 << 20),
        segment_ms: None,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(&dir, config.clone())
        .await
        .expect("open");
    let batch = one_batch(1 << 20);
    let mut bytes = 0u64;
    while bytes < 1 << 30 {
        log.append(batch.clone()).await.expect("append");
        bytes += batch.len() as u64;
    }
    log.flush().await.expect("flush");
    assert_eq!(log.segment_count(), 1);
    let end = log.log_end_offset();
    drop(log); // no clean-shutdown marker: the next open scans the segment
    let start = Instant::now();
    let log = PartitionLog::open(&dir, config).await.expect("reopen");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.open_report().segments_scanned, 1);
    println!(
        "recovery: opened a {:.2} GiB segment without the clean-shutdown marker in {:.3} s ({:.2} GB/s, every batch CRC-checked)",
        bytes as f64 / f64::from(1u32 << 30),
        secs,
        bytes as f64 / secs / 1e9
    );
    log.close().await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn tail_read(root: &Path) {
    let dir = root.join("tail");
    let config = LogConfig {
        flush: FlushPolicy::Os,
        segment_ms: None,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(&dir, config).await.expect("open");
    let batch = one_batch(16 << 10);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    for _ in 0..100_000 {
        let info = log.append(batch.clone()).await.expect("append");
        let t = Instant::now();
        let got = log
            .read(Offset(info.base_offset.0), 1 << 20)
            .await
            .expect("read");
        let ns = t.elapsed().as_nanos() as u64;
        assert_eq!(got.len(), 1);
        hist.record(ns.max(1)).expect("record");
    }
    println!(
        "tail read (16 KiB batch just appended, from the cache): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns over {} reads",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
        hist.len()
    );
    log.close().await.expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}
