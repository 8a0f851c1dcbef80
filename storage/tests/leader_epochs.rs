//! Issue 17 §5: the log stamps its leader epoch into every batch it appends and
//! keeps the epoch cache (`leader-epoch-checkpoint`) through restart and
//! truncation.

mod common;

use common::*;
use ringlog_schema::BatchHeader;
use ringlog_storage::epochs::EpochEntry;
use ringlog_storage::{Offset, PartitionLog};

fn entries(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e: &EpochEntry| (e.epoch, e.start_offset))
        .collect()
}

#[test]
fn epochs_are_stamped_checkpointed_and_cut_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    run(move || async move {
        let config = small_config(1 << 20);
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        log.begin_leader_epoch(3).await.unwrap();
        for i in 0..4 {
            log.append(make_batch(i, 5, 10, 1_000)).await.unwrap();
        }
        log.begin_leader_epoch(7).await.unwrap();
        for i in 0..2 {
            log.append(make_batch(i, 5, 10, 1_000)).await.unwrap();
        }
        log.flush().await.unwrap();
        assert_eq!(entries(&log), [(3, 0), (7, 20)]);
        let stamped: Vec<i32> = read_all(&log, 0)
            .await
            .iter()
            .map(|b| BatchHeader::read(b).unwrap().partition_leader_epoch)
            .collect();
        assert_eq!(stamped, [3, 3, 3, 3, 7, 7]);
        assert_eq!(log.end_offset_for_epoch(3), (3, 20));
        assert_eq!(log.end_offset_for_epoch(5), (3, 20), "unknown: its floor");
        assert_eq!(log.end_offset_for_epoch(7), (7, 30), "latest: the log end");
        log.close().await.unwrap();

        // A restart keeps them.
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        assert_eq!(entries(&log), [(3, 0), (7, 20)]);

        // A leadership that appended nothing leaves an empty epoch at the end;
        // truncating at the end removes it (found by the replication simulation:
        // kept, it made a follower diverge at the same offset forever).
        log.begin_leader_epoch(9).await.unwrap();
        assert_eq!(entries(&log), [(3, 0), (7, 20), (9, 30)]);
        assert_eq!(log.truncate_to(Offset(30)).await.unwrap(), Offset(30));
        assert_eq!(entries(&log), [(3, 0), (7, 20)]);

        // Truncating into epoch 3 removes epoch 7 and survives a crash.
        log.truncate_to(Offset(12)).await.unwrap();
        assert_eq!(entries(&log), [(3, 0)]);
        drop(log);
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(
            log.log_end_offset(),
            Offset(10),
            "cut at the batch boundary"
        );
        assert_eq!(entries(&log), [(3, 0)]);
        log.close().await.unwrap();
    });
}
