//! A commit whose records are truncated away while it waits must fail with
//! `Truncated`, never report them durable: the broker answers such a produce with
//! NOT_LEADER_OR_FOLLOWER so the client retries against the new leader.

mod common;

use std::rc::Rc;

use common::*;
use ringlog_storage::{FlushPolicy, LogConfig, Offset, PartitionLog, StorageError};

#[test]
fn a_commit_overtaken_by_truncation_fails_with_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    run(move || async move {
        let config = LogConfig {
            flush: FlushPolicy::Batch,
            ..small_config(4 << 20)
        };
        let log = Rc::new(PartitionLog::open(&path, config).await.unwrap());
        let kept = log
            .append_committed(make_batch(1, 10, 50, 0))
            .await
            .unwrap();
        let cut = Offset(kept.last_offset.0 + 1);

        // The committer appends and starts writing its group; the truncation then
        // takes the flush lock first (the committer yields to let its group grow), so
        // by the time the committer may sync, its records are gone.
        let committer = {
            let log = log.clone();
            glommio::spawn_local(
                async move { log.append_committed(make_batch(2, 10, 50, 0)).await },
            )
        };
        let truncation = {
            let log = log.clone();
            glommio::spawn_local(async move { log.truncate_to(cut).await })
        };
        assert_eq!(truncation.await.unwrap(), cut);
        match committer.await {
            Err(StorageError::Truncated {
                offset, log_end, ..
            }) => {
                assert_eq!(log_end, cut.0);
                assert_eq!(offset, cut.0 + 9, "the last offset of the lost batch");
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), cut);
        assert_eq!(log.durable_offset(), cut);
        // The log goes on from the cut.
        let next = log.append_committed(make_batch(3, 1, 10, 0)).await.unwrap();
        assert_eq!(next.base_offset, cut);
        log.close().await.unwrap();
    });
}
