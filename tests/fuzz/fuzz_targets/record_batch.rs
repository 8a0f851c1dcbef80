//! The RecordBatch view and validator over arbitrary bytes: framing, CRC, every
//! record (decompressed within its bound), timestamp lookups, the produce
//! validator under each policy, LogAppendTime stamping and compaction's filter.
//! Input: one byte choosing the policy (bit 7: seal the CRCs, see `seal`), then
//! batches.
#![no_main]

mod seal;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringlog_schema::compact::{filter_records, Filtered};
use ringlog_schema::validate::{validate_produced, ProducePolicy, TimestampType};
use ringlog_schema::{split_batches, RecordBatch};

const NOW_MS: i64 = 1_780_000_000_000;
/// Small bounds so inputs reach the limits, not just the happy path.
const MAX_BATCH_BYTES: usize = 1 << 16;
const DECOMPRESSED_MAX_BYTES: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&policy_bits, batch)) = data.split_first() else {
        return;
    };
    let mut batch = batch.to_vec();
    if policy_bits & 0x80 != 0 {
        seal::seal_batches(&mut batch);
    }
    let batch = &batch[..];
    let policy = ProducePolicy {
        max_batch_bytes: MAX_BATCH_BYTES,
        timestamp_type: if policy_bits & 1 == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        },
        timestamp_before_max_ms: if policy_bits & 2 == 0 {
            i64::MAX
        } else {
            60_000
        },
        timestamp_after_max_ms: 3_600_000,
        decompressed_max_bytes: DECOMPRESSED_MAX_BYTES,
        keys_required: policy_bits & 4 != 0,
    };
    let _ = RecordBatch::peek_size(batch, MAX_BATCH_BYTES);
    let _ = RecordBatch::validate_slice(batch, MAX_BATCH_BYTES);
    for parsed in split_batches(Bytes::copy_from_slice(batch)) {
        let Ok(b) = parsed else { break };
        let valid = b.validate(MAX_BATCH_BYTES).is_ok();
        let _ = b.records();
        let _ = b.first_record_at_or_after(i64::from(policy_bits & 0x7f) << 34);
        let _ = b.max_timestamp_record();
        let accepted = validate_produced(&b, &policy, NOW_MS).is_ok();
        if accepted {
            assert!(
                valid,
                "the produce validator accepted a batch that fails validate"
            );
            // A stamped batch is still a valid batch with the same records.
            let stamped = b.with_log_append_time(NOW_MS);
            assert!(stamped.validate(MAX_BATCH_BYTES).is_ok());
            assert_eq!(stamped.record_count(), b.record_count());
        }
        // Compaction's filter: keeping everything changes nothing; a rewrite is a
        // valid batch holding the records kept.
        if let Ok(all) = filter_records(&b, |_, _| true) {
            assert_eq!(all, Filtered::Unchanged);
        }
        let mut kept = 0i32;
        if let Ok(Filtered::Rewritten(bytes)) = filter_records(&b, |offset, _| {
            let keep = offset % 2 == 0;
            kept += i32::from(keep);
            keep
        }) {
            let rewritten = RecordBatch::parse(bytes).expect("a rewritten batch parses");
            // Compaction only rewrites batches the produce validator accepted.
            if accepted {
                if let Err(e) = rewritten.validate(usize::MAX) {
                    panic!("compaction rewrote a valid batch into an invalid one: {e}");
                }
                assert_eq!(rewritten.record_count(), kept);
            }
        }
    }
});
