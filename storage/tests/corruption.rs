//! Acceptance 3: after a crash, a torn or damaged tail is truncated at the first bad
//! batch and everything before it is intact; damage below the tail is reported as
//! corruption naming the segment and the position, never truncated away.
//!
//! A "crash" here is dropping the log without `close`: no clean-shutdown marker and
//! no sealed indexes, exactly what a killed process leaves (the kill -9 test covers
//! real processes).

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use ringlog_storage::{Offset, PartitionLog, StorageError};

const BATCHES: usize = 40;

/// Writes BATCHES batches, flushes, and crashes. Returns the stored batches and their
/// file positions in the (single) segment.
fn crashed_log(dir: &Path) -> (Vec<Bytes>, Vec<u64>, PathBuf) {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(64 << 20))
            .await
            .unwrap();
        let mut stored = Vec::new();
        let mut positions = Vec::new();
        let mut pos = 0u64;
        for i in 0..BATCHES {
            let b = make_batch(i as u64 + 1, 5, 200, 10_000 + i as i64);
            let info = log.append(b.clone()).await.unwrap();
            positions.push(pos);
            pos += b.len() as u64;
            stored.push(with_base(&b, info.base_offset.0));
        }
        log.flush().await.unwrap();
        assert_eq!(log.segment_count(), 1);
        drop(log);
        (stored, positions, dir.join("00000000000000000000.log"))
    })
}

fn reopen(dir: &Path) -> Result<(Vec<Bytes>, ringlog_storage::OpenReport, i64), StorageError> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(64 << 20)).await?;
        let got = read_all(&log, 0).await;
        let report = log.open_report().clone();
        let end = log.log_end_offset().0;
        log.close().await?;
        Ok((got, report, end))
    })
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5A]).unwrap();
    f.sync_all().unwrap();
}

fn expect_truncated_before_last(dir: &Path, stored: &[Bytes]) {
    let (got, report, end) = reopen(dir).unwrap();
    assert!(!report.clean);
    assert_eq!(report.segments_scanned, 1);
    assert!(report.truncated_bytes > 0, "the bad tail was cut");
    assert_eq!(got.len(), BATCHES - 1);
    assert_eq!(
        &got[..],
        &stored[..BATCHES - 1],
        "everything before is intact"
    );
    assert_eq!(end, 5 * (BATCHES as i64 - 1));
    // The log appends after the cut as usual.
    let dir = dir.to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&dir, small_config(64 << 20))
            .await
            .unwrap();
        let info = log.append(make_batch(999, 2, 10, 0)).await.unwrap();
        assert_eq!(info.base_offset, Offset(end));
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_mid_batch_is_cut_at_the_torn_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, positions, seg) = crashed_log(dir.path());
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(positions[BATCHES - 1] + 100).unwrap();
    expect_truncated_before_last(dir.path(), &stored);
}

#[test]
fn garbage_after_the_last_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, _, seg) = crashed_log(dir.path());
    let end: u64 = stored.iter().map(|b| b.len() as u64).sum();
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.seek(SeekFrom::Start(end)).unwrap();
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 | 1)
        .collect();
    f.write_all(&garbage).unwrap();
    f.sync_all().unwrap();
    let (got, report, log_end) = reopen(dir.path()).unwrap();
    assert!(report.truncated_bytes >= garbage.len() as u64);
    assert_eq!(got, stored, "every batch kept");
    assert_eq!(log_end, 5 * BATCHES as i64);
}

#[test]
fn a_flipped_byte_in_the_last_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (stored, positions, seg) = crashed_log(dir.path());
    flip_byte(&seg, positions[BATCHES - 1] + 150);
    expect_truncated_before_last(dir.path(), &stored);
}

#[test]
fn a_flipped_byte_below_the_durable_offset_is_reported_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (_, positions, seg) = crashed_log(dir.path());
    let victim = positions[17];
    flip_byte(&seg, victim + 300);
    let err = reopen(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StorageError::Corruption { position, .. } if position == victim),
        "{text}"
    );
    assert!(
        text.contains("00000000000000000000.log") && text.contains(&victim.to_string()),
        "{text}"
    );
    // Nothing was cut: the file still holds every batch.
    assert!(std::fs::metadata(&seg).unwrap().len() > positions[BATCHES - 1]);
}

#[test]
fn after_a_clean_shutdown_damage_is_found_by_the_read_crc_check() {
    let dir = tempfile::tempdir().unwrap();
    let (_, positions, seg) = crashed_log(dir.path());
    // Recover once and close cleanly: the next open trusts the files without a scan.
    reopen(dir.path()).unwrap();
    flip_byte(&seg, positions[3] + 120);
    let d = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&d, small_config(64 << 20))
            .await
            .unwrap();
        assert!(log.open_report().clean);
        assert_eq!(log.open_report().segments_scanned, 0);
        let err = log.read(Offset(15), 1 << 20).await.unwrap_err();
        assert!(
            matches!(err, StorageError::Corruption { position, .. } if position == positions[3]),
            "{err}"
        );
        // Other batches still read.
        assert_eq!(log.read(Offset(100), 1).await.unwrap().len(), 1);
    });
}

#[test]
fn a_segment_file_shorter_than_its_index_says_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let first_segment = run(move || async move {
        let log = PartitionLog::open(&d, small_config(64 * 1024))
            .await
            .unwrap();
        for i in 0..80u64 {
            log.append(make_batch(i, 5, 200, 0)).await.unwrap();
        }
        assert!(log.segment_count() >= 2);
        log.close().await.unwrap();
        d.join("00000000000000000000.log")
    });
    // Cut the closed first segment behind the log's back; its index still says more.
    let len = std::fs::metadata(&first_segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first_segment)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let d = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&d, small_config(64 * 1024))
            .await
            .unwrap();
        let mut at = 0i64;
        let err = loop {
            match log.read(Offset(at), 16 * 1024).await {
                Ok(chunks) => {
                    assert!(
                        !chunks.is_empty(),
                        "the first segment cannot end early without an error"
                    );
                    let last = chunks
                        .iter()
                        .flat_map(|c| ringlog_schema::split_batches(c.clone()))
                        .map(|b| b.unwrap().last_offset())
                        .max()
                        .unwrap();
                    at = last + 1;
                }
                Err(e) => break e,
            }
        };
        assert!(matches!(err, StorageError::Corruption { .. }), "{err}");
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
    });
}
