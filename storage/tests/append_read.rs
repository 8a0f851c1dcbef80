//! Acceptance 1: a million records in batches of varied sizes across several segment
//! rolls read back in order, contiguous and byte-identical, before and after reopen.

mod common;

use bytes::Bytes;
use common::*;
use ringlog_schema::RecordBatch;
use ringlog_storage::{Offset, PartitionLog};

const RECORDS: usize = 1_000_000;

#[test]
fn a_million_records_across_rolls_read_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    run(move || async move {
        let config = small_config(4 << 20);
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let mut expected: Vec<Bytes> = Vec::new();
        let mut records = 0usize;
        let mut seed = 1u64;
        while records < RECORDS {
            // Batch sizes cycle through 1..=997 records of 0..=40-byte values.
            let n = ((seed * 7919) % 997 + 1) as usize;
            let n = n.min(RECORDS - records);
            let batch = make_batch(seed, n, (seed % 41) as usize, 1_000_000 + records as i64);
            let info = log.append(batch.clone()).await.unwrap();
            assert_eq!(info.base_offset, Offset(records as i64));
            assert_eq!(info.last_offset, Offset((records + n - 1) as i64));
            expected.push(with_base(&batch, records as i64));
            records += n;
            seed += 1;
            if seed % 50 == 0 {
                log.flush().await.unwrap();
            }
        }
        log.flush().await.unwrap();
        assert_eq!(log.log_end_offset(), Offset(RECORDS as i64));
        assert_eq!(log.durable_offset(), Offset(RECORDS as i64));
        assert!(
            log.segment_count() >= 4,
            "at least 3 rolls, got {} segments",
            log.segment_count()
        );
        check(&log, &expected).await;
        log.close().await.unwrap();

        let log = PartitionLog::open(&path, config).await.unwrap();
        assert!(log.open_report().clean);
        assert_eq!(log.open_report().segments_scanned, 0);
        check(&log, &expected).await;
        log.close().await.unwrap();
    });
}

async fn check(log: &PartitionLog, expected: &[Bytes]) {
    let got = read_all(log, 0).await;
    assert_eq!(got.len(), expected.len(), "batch count");
    let mut next = 0i64;
    let mut records = 0i64;
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let view = RecordBatch::parse(g.clone()).unwrap();
        assert_eq!(view.base_offset(), next, "batch {i} contiguous");
        next = view.last_offset() + 1;
        records += i64::from(view.record_count());
        assert!(g == e, "batch {i} differs from what was appended");
    }
    assert_eq!(records, RECORDS as i64);
}
