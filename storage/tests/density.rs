//! Many logs on one shard cost what they hold: descriptors are closed when cold and
//! reopened on use, and space allocated ahead of the data grows with each log and
//! stays under the shard's bound.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use ringlog_storage::{LogConfig, LogShared, Offset, PartitionLog};

const LOGS: usize = 200;
const OPEN_FILES_MAX: usize = 16;
const PREALLOCATED_MAX: u64 = 8 << 20;

/// Bytes the file system allocated for every file under `dir`.
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            allocated_bytes(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

#[test]
fn many_small_logs_share_few_descriptors_and_little_space() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(move || async move {
        let shared = LogShared::new(OPEN_FILES_MAX, PREALLOCATED_MAX);
        let config = LogConfig::default();
        let mut logs = Vec::new();
        for i in 0..LOGS {
            let log = PartitionLog::open_shared(
                root.join(format!("t-{i}")),
                config.clone(),
                shared.clone(),
            )
            .await
            .unwrap();
            log.append_committed(make_batch(i as u64, 3, 20, 1_000 + i as i64))
                .await
                .unwrap();
            logs.push(log);
            assert!(
                shared.files.open_now() <= OPEN_FILES_MAX,
                "{} files open after {} logs",
                shared.files.open_now(),
                i + 1
            );
        }
        assert!(shared.space.unused() <= PREALLOCATED_MAX);
        // Every log still appends and reads back, reopening what was closed.
        for (i, log) in logs.iter().enumerate() {
            log.append_committed(make_batch(1000 + i as u64, 2, 20, 5_000))
                .await
                .unwrap();
            let got = read_all(log, 0).await;
            assert_eq!(got.len(), 2, "log {i}");
            assert_eq!(log.durable_offset(), Offset(5));
        }
        assert!(shared.files.reopened() > 0);
        assert!(shared.files.open_now() <= OPEN_FILES_MAX + 1);
        let allocated = allocated_bytes(&root);
        // Before: ~41 MB each (a 32 MiB step and 8 MiB of zeros).
        assert!(
            allocated < PREALLOCATED_MAX + (LOGS as u64) * (64 << 10),
            "{allocated} bytes allocated for {LOGS} logs of 5 records"
        );
        for log in &logs {
            log.close().await.unwrap();
        }
        assert_eq!(shared.space.unused(), 0);
        assert_eq!(shared.files.open_now(), 0);
    });
}
