//! Zero-filling ahead of the writer: it runs while a log commits at a light pace, and
//! what was appended over and past the zeroed space reads back byte-identical, from
//! the cache, after a clean reopen and after a recovery scan.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use ringlog_storage::{FlushPolicy, LogConfig, Offset, PartitionLog};

fn config(zero_ahead_bytes: u64) -> LogConfig {
    LogConfig {
        flush: FlushPolicy::Batch,
        preallocate_bytes: 2 << 20,
        zero_ahead_bytes,
        ..small_config(8 << 20)
    }
}

/// Appends one small batch at a time, each committed before the next (the log idles
/// between commits), then bursts of large batches from concurrent appenders that run
/// into and past the zeroed space. Returns the batches as stored.
async fn light_then_heavy(log: &Rc<PartitionLog>) -> Vec<Bytes> {
    let mut expected = Vec::new();
    for seed in 0..300u64 {
        let batch = make_batch(seed, 3, 200, seed as i64);
        let info = log.append_committed(batch.clone()).await.unwrap();
        expected.push(with_base(&batch, info.base_offset.0));
    }
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let log = log.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut mine = Vec::new();
            for i in 0..40u64 {
                let seed = 1_000 + t * 100 + i;
                let batch = make_batch(seed, 40, 1_000, seed as i64);
                let info = log.append_committed(batch.clone()).await.unwrap();
                mine.push((info.base_offset.0, with_base(&batch, info.base_offset.0)));
            }
            mine
        }));
    }
    let mut heavy = Vec::new();
    for t in tasks {
        heavy.extend(t.await);
    }
    heavy.sort_by_key(|(base, _)| *base);
    expected.extend(heavy.into_iter().map(|(_, b)| b));
    expected
}

fn assert_same(got: &[Bytes], expected: &[Bytes]) {
    assert_eq!(got.len(), expected.len(), "batch count");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(g == e, "batch {i} differs from what was appended");
    }
}

#[test]
fn zero_filled_space_is_overwritten_by_data_that_reads_back_after_reopen_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    run(move || async move {
        let log = Rc::new(PartitionLog::open(&path, config(2 << 20)).await.unwrap());
        let expected = light_then_heavy(&log).await;
        assert!(
            log.zero_fill_writes() > 0,
            "a log committing one batch at a time has idle time to zero-fill"
        );
        assert_same(&read_all(&log, 0).await, &expected);
        log.close().await.unwrap();
        drop(log);

        let log = PartitionLog::open(&path, config(2 << 20)).await.unwrap();
        assert!(log.open_report().clean);
        assert_same(&read_all(&log, 0).await, &expected);
        // More commits after the reopen, then a crash-like exit: no close, so the next
        // open scans the segment and must stop at the zeros past the data.
        let batch = make_batch(9_999, 5, 100, 0);
        let info = log.append_committed(batch.clone()).await.unwrap();
        let mut expected = expected;
        expected.push(with_base(&batch, info.base_offset.0));
        let end = log.log_end_offset();
        drop(log);

        let log = PartitionLog::open(&path, config(2 << 20)).await.unwrap();
        assert!(!log.open_report().clean);
        assert!(log.open_report().segments_scanned >= 1);
        assert_eq!(log.log_end_offset(), end);
        assert_same(&read_all(&log, 0).await, &expected);
        log.close().await.unwrap();
    });
}

#[test]
fn zero_ahead_bytes_zero_writes_no_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    run(move || async move {
        let log = Rc::new(PartitionLog::open(&path, config(0)).await.unwrap());
        let expected = light_then_heavy(&log).await;
        assert_eq!(log.zero_fill_writes(), 0);
        assert_same(&read_all(&log, 0).await, &expected);
        assert_eq!(log.durable_offset(), Offset(log.log_end_offset().0));
        log.close().await.unwrap();
    });
}
