//! Acceptance 4 (retention by bytes and time removes only whole closed segments, the
//! log start advances, reads below it are OffsetOutOfRange) and acceptance 5
//! (`offset_for_timestamp` returns the first offset with timestamp >= t, across
//! segments).

mod common;

use std::rc::Rc;

use common::*;
use ringlog_schema::split_batches;
use ringlog_storage::{Clock, LogConfig, Offset, PartitionLog, StorageError};

fn config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        cache_bytes: 64 * 1024,
        ..small_config(64 * 1024)
    }
}

/// Appends 100 batches of 10 records (~2.3 KiB each); batch i has timestamps
/// 1000 + 100 * i + (0..10).
async fn filled(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    let log = PartitionLog::open(dir, config).await.unwrap();
    for i in 0..100u64 {
        log.append(make_batch(i, 10, 200, 1000 + 100 * i as i64))
            .await
            .unwrap();
    }
    log.flush().await.unwrap();
    log
}

#[test]
fn retention_by_bytes_deletes_whole_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            retention_bytes: Some(90 * 1024),
            ..config()
        };
        let log = filled(&d, cfg).await;
        let before = log.segment_count();
        assert!(before >= 3, "{before} segments");
        let size_before = log.size_bytes();
        let end = log.log_end_offset();
        let deleted = log.enforce_retention(0).await.unwrap();
        assert!(
            deleted >= 1 && deleted < before,
            "deleted {deleted} of {before}"
        );
        assert_eq!(log.segment_count(), before - deleted);
        assert!(log.size_bytes() >= 90 * 1024 && log.size_bytes() < size_before);
        assert_eq!(
            log.log_end_offset(),
            end,
            "the active segment and the end stay"
        );
        let start = log.log_start_offset();
        assert!(
            start.0 > 0 && start.0 % 10 == 0,
            "starts at a segment boundary: {start}"
        );
        let err = log.read(Offset(start.0 - 1), 1 << 20).await.unwrap_err();
        assert!(
            matches!(err, StorageError::OffsetOutOfRange { offset, log_start, .. } if offset == start.0 - 1 && log_start == start.0)
        );
        assert_eq!(
            read_all(&log, start.0).await.len() as i64,
            (end.0 - start.0) / 10
        );
        assert_eq!(log.enforce_retention(0).await.unwrap(), 0, "idempotent");
        log.close().await.unwrap();
        // The deletion survives a restart.
        let log = PartitionLog::open(&d, config()).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_by_time_deletes_expired_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            retention_ms: Some(1000),
            ..config()
        };
        let log = filled(&d, cfg).await;
        let segments = log.segment_count();
        // At now = 5000 the horizon is 4000: only segments whose newest record is
        // older than 4000 go; the first kept segment has a record at or after it.
        let deleted = log.enforce_retention(5000).await.unwrap();
        assert!(deleted >= 1);
        let start = log.log_start_offset().0;
        let newest_deleted = 1000 + 100 * (start / 10 - 1) + 9;
        assert!(
            newest_deleted < 4000,
            "deleted a segment with a record at {newest_deleted}"
        );
        let kept = read_all(&log, start).await;
        let kept_first_segment_max = kept
            .iter()
            .flat_map(|b| split_batches(b.clone()))
            .map(|b| b.unwrap())
            .take_while(|b| b.base_offset() < start + 280)
            .map(|b| b.max_timestamp())
            .max()
            .unwrap();
        assert!(kept_first_segment_max >= 4000);
        // Far in the future everything but the active segment expires.
        let more = log.enforce_retention(1_000_000).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(deleted + more, segments - 1);
        assert_eq!(log.log_end_offset(), Offset(1000));
        log.close().await.unwrap();
    });
}

#[test]
fn segment_ms_rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            segment_ms: Some(60_000),
            ..config()
        };
        let clock = Rc::new(std::cell::Cell::new(0i64));
        struct Shared(Rc<std::cell::Cell<i64>>);
        impl Clock for Shared {
            fn now_ms(&self) -> i64 {
                self.0.get()
            }
        }
        let log = PartitionLog::open_with_clock(&d, cfg, Rc::new(Shared(clock.clone())))
            .await
            .unwrap();
        log.append(make_batch(1, 1, 10, 0)).await.unwrap();
        clock.set(59_999);
        log.append(make_batch(2, 1, 10, 0)).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        clock.set(60_000);
        log.append(make_batch(3, 1, 10, 0)).await.unwrap();
        assert_eq!(log.segment_count(), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&d, config()).await.unwrap();
        // Records: batch i has 10 records with timestamps base_i + j. Timestamps mostly
        // rise, with a dip every 7th batch (CreateTime is set by producers).
        let mut records: Vec<(i64, i64)> = Vec::new();
        for i in 0..60i64 {
            let base_ts = if i % 7 == 6 {
                1000 + 50 * i - 400
            } else {
                1000 + 50 * i
            };
            let info = log
                .append(make_batch(i as u64, 10, 200, base_ts))
                .await
                .unwrap();
            for j in 0..10 {
                records.push((info.base_offset.0 + j, base_ts + j));
            }
        }
        log.flush().await.unwrap();
        assert!(log.segment_count() >= 3);
        let max = records.iter().map(|&(_, ts)| ts).max();
        assert_eq!(log.max_timestamp(), max);
        let expect = |t: i64| {
            records
                .iter()
                .find(|&&(_, ts)| ts >= t)
                .map(|&(o, ts)| (Offset(o), ts))
        };
        for t in [
            i64::MIN,
            0,
            1000,
            1001,
            1009,
            1010,
            1049,
            1050,
            1333,
            2000,
            2345,
            3000,
            3600,
            3955,
            3959,
            3960,
            10_000,
        ] {
            assert_eq!(
                log.offset_for_timestamp(t).await.unwrap(),
                expect(t),
                "t = {t}"
            );
        }
        // After a restart (indexes from files, nothing cached) the answers hold.
        log.close().await.unwrap();
        let log = PartitionLog::open(&d, config()).await.unwrap();
        for t in (900..4000).step_by(37) {
            assert_eq!(
                log.offset_for_timestamp(t).await.unwrap(),
                expect(t),
                "t = {t} after reopen"
            );
        }
        log.close().await.unwrap();
    });
}
