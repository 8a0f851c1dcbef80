//! Log compaction: the latest record of each key survives with its offset, older
//! ones go, tombstones go once older than `delete.retention.ms`, the active segment
//! is never touched, and the compacted log reopens (also when its index files are
//! missing, as after a crash between the swap and the index write).

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use ringlog_schema::{split_batches, BatchBuilder};
use ringlog_storage::{CleanupPolicy, LogConfig, Offset, PartitionLog};

const KEYS: usize = 20;
const TOMBSTONED: usize = 5;
const ROUNDS: usize = 200;
const TS0: i64 = 1_000_000;

fn config() -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
        },
        delete_retention_ms: 1_000,
        max_batch_bytes: 16 << 10,
        ..small_config(64 << 10)
    }
}

/// Round `round`: one batch writing every key (tombstones for the first keys from
/// round 150 on, and nothing for them after).
fn round_batch(round: usize) -> Option<Bytes> {
    let mut b = BatchBuilder::new();
    for k in 0..KEYS {
        if k < TOMBSTONED && round > 150 {
            continue;
        }
        let value = (!(k < TOMBSTONED && round == 150))
            .then(|| Bytes::from(format!("r{round}-k{k}-{}", "v".repeat(40))));
        b.push(
            Some(Bytes::from(format!("k{k}"))),
            value,
            &[],
            TS0 + round as i64,
        );
    }
    (!b.is_empty()).then(|| b.build().unwrap())
}

/// Every record: (offset, key, value).
async fn records(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    for chunk in read_all(log, 0).await {
        for batch in split_batches(chunk) {
            for r in batch.unwrap().records().unwrap() {
                out.push((
                    r.offset,
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                ));
            }
        }
    }
    out
}

#[test]
fn compaction_keeps_the_latest_record_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compacted-0");
    run(move || async move {
        let log = PartitionLog::open(&path, config()).await.unwrap();
        // offset of every record written: (key, round) -> offset
        let mut written: BTreeMap<(usize, usize), i64> = BTreeMap::new();
        for round in 0..ROUNDS {
            if let Some(batch) = round_batch(round) {
                let info = log.append_committed(batch).await.unwrap();
                let mut o = info.base_offset.0;
                for k in 0..KEYS {
                    if k < TOMBSTONED && round > 150 {
                        continue;
                    }
                    written.insert((k, round), o);
                    o += 1;
                }
            }
        }
        let end = log.log_end_offset();
        assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
        let before = log.size_bytes();
        let active = log.active_segment_base().0;

        // Tombstones younger than delete.retention.ms stay.
        let report = log
            .compact(TS0 + ROUNDS as i64)
            .await
            .unwrap()
            .expect("a pass");
        assert!(report.segments_rewritten >= 3, "{report:?}");
        assert!(
            log.size_bytes() < before / 2,
            "{} of {before} bytes",
            log.size_bytes()
        );
        assert_eq!(log.log_end_offset(), end);
        let got = records(&log).await;
        check(&got, &written, active, true);

        // Reopened cleanly, and again with a compacted segment's indexes missing.
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_eq!(records(&log).await, got);
        log.close().await.unwrap();
        let first = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "index"))
            .min()
            .unwrap();
        std::fs::remove_file(&first).unwrap();
        std::fs::remove_file(first.with_extension("timeindex")).unwrap();
        let log = PartitionLog::open(&path, config()).await.unwrap();
        assert_eq!(records(&log).await, got, "rescanned with its gaps");
        // Reading from an offset that compaction removed starts at the next one.
        let removed = written[&(7, 0)];
        let from = log.read(Offset(removed), 1 << 20).await.unwrap();
        assert!(!from.is_empty());

        // Nothing dirty: no pass. More data (a roll), later: the tombstones go.
        assert!(log.compact(i64::MAX / 2).await.unwrap().is_none());
        for round in ROUNDS..ROUNDS + 60 {
            log.append_committed(round_batch(round).unwrap())
                .await
                .unwrap();
        }
        let report = log
            .compact(TS0 + 10_000_000)
            .await
            .unwrap()
            .expect("a pass");
        assert!(report.records_removed > 0);
        let got = records(&log).await;
        for k in 0..TOMBSTONED {
            assert!(
                !got.iter().any(|(_, key, _)| key == &format!("k{k}")),
                "k{k}'s tombstone outlived delete.retention.ms"
            );
        }
        log.close().await.unwrap();
    });
}

/// The closed part holds at most the latest record per key, at the offset it was
/// written at; every key's latest record is present; the active segment is whole.
fn check(
    got: &[(i64, String, Option<String>)],
    written: &BTreeMap<(usize, usize), i64>,
    active: i64,
    tombstones_kept: bool,
) {
    let mut closed_per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for (offset, key, value) in got {
        if let Some(v) = value {
            let round: usize = v[1..v.find('-').unwrap()].parse().unwrap();
            let k: usize = key[1..].parse().unwrap();
            assert_eq!(written[&(k, round)], *offset, "{key} round {round} moved");
        }
        if *offset < active {
            *closed_per_key.entry(key).or_default() += 1;
        }
    }
    assert!(
        closed_per_key.values().all(|n| *n == 1),
        "{closed_per_key:?}"
    );
    for k in 0..KEYS {
        let key = format!("k{k}");
        let latest = got.iter().rev().find(|(_, kk, _)| *kk == key);
        if k < TOMBSTONED {
            if tombstones_kept {
                assert_eq!(latest.map(|l| &l.2), Some(&None), "{key}'s tombstone");
            }
        } else {
            let want = written[&(k, ROUNDS - 1)];
            assert_eq!(latest.map(|l| l.0), Some(want), "{key}'s latest");
        }
    }
    let active_records = got.iter().filter(|(o, _, _)| *o >= active).count();
    let written_active = written.values().filter(|o| **o >= active).count();
    assert_eq!(
        active_records, written_active,
        "the active segment was touched"
    );
}
