//! Acceptance 7: random sequences of append / flush / truncate_to / reopen (clean or
//! after a crash) / retention keep the invariants `log_start <= durable <= log_end`,
//! contiguous offsets, and reads equal to what was appended (a model of the log).

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use ringlog_schema::RecordBatch;
use ringlog_storage::{LogConfig, Offset, PartitionLog};

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: usize,
        value_len: usize,
    },
    Flush,
    /// Truncate at `fraction` (per mille) of the way from log start to log end.
    TruncateTo {
        per_mille: u64,
    },
    Reopen {
        clean: bool,
    },
    Retention {
        keep_bytes: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..40, 0usize..300).prop_map(|(records, value_len)| Op::Append { records, value_len }),
        2 => Just(Op::Flush),
        1 => (0u64..=1100).prop_map(|per_mille| Op::TruncateTo { per_mille }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0u64..300_000).prop_map(|keep_bytes| Op::Retention { keep_bytes }),
    ]
}

fn config(retention_bytes: Option<u64>) -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        retention_bytes,
        cache_bytes: 32 * 1024,
        ..small_config(64 * 1024)
    }
}

/// The model: stored batches in offset order and the log start.
struct Model {
    batches: Vec<Bytes>,
    start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.start, |b| {
            RecordBatch::parse(b.clone()).unwrap().last_offset() + 1
        })
    }
}

async fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    let (start, durable, end) = (
        log.log_start_offset(),
        log.durable_offset(),
        log.log_end_offset(),
    );
    prop_assert!(
        start <= durable && durable <= end,
        "start {start} durable {durable} end {end}"
    );
    prop_assert_eq!(start, Offset(model.start));
    prop_assert_eq!(end, Offset(model.end()));
    let got = read_all(log, start.0).await;
    prop_assert_eq!(got.len(), model.batches.len());
    for (g, m) in got.iter().zip(&model.batches) {
        prop_assert!(g == m, "read differs from appended");
    }
    Ok(())
}

async fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(None)).await.unwrap();
    let mut model = Model {
        batches: Vec::new(),
        start: 0,
    };
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append { records, value_len } => {
                let b = make_batch(i as u64, records, value_len, i as i64);
                let info = log.append(b.clone()).await.unwrap();
                prop_assert_eq!(info.base_offset, Offset(model.end()));
                model.batches.push(with_base(&b, info.base_offset.0));
            }
            Op::Flush => {
                let durable = log.flush().await.unwrap();
                prop_assert_eq!(durable, log.log_end_offset());
            }
            Op::TruncateTo { per_mille } => {
                let (s, e) = (model.start, model.end());
                let target = s + ((e - s) as u64 * per_mille / 1000) as i64;
                let new_end = log.truncate_to(Offset(target)).await.unwrap();
                if target < e {
                    model
                        .batches
                        .retain(|b| RecordBatch::parse(b.clone()).unwrap().last_offset() < target);
                    if target <= s {
                        model.batches.clear();
                        model.start = target;
                    }
                }
                prop_assert_eq!(new_end, Offset(model.end()));
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().await.unwrap();
                } else {
                    // Crash after a flush: no marker, no sealed indexes; recovery scans.
                    log.flush().await.unwrap();
                    drop(log);
                }
                log = PartitionLog::open(dir.path(), config(None)).await.unwrap();
                prop_assert_eq!(log.open_report().clean, clean);
            }
            Op::Retention { keep_bytes } => {
                log.close().await.unwrap();
                let with_retention = PartitionLog::open(dir.path(), config(Some(keep_bytes)))
                    .await
                    .unwrap();
                with_retention.enforce_retention(0).await.unwrap();
                let start = with_retention.log_start_offset().0;
                model
                    .batches
                    .retain(|b| RecordBatch::parse(b.clone()).unwrap().base_offset() >= start);
                if model.batches.is_empty() {
                    prop_assert_eq!(start, model.end().max(model.start));
                }
                model.start = start;
                log = with_retention;
            }
        }
        check(&log, &model).await?;
    }
    log.close().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_log_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        run(move || run_ops(ops))?;
    }
}
