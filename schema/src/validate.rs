//! What a broker checks in a batch a client produced, beyond its integrity: the
//! checks of Apache Kafka's `LogValidator`, record by record, so that a batch that
//! passes its CRC but is malformed inside never reaches a consumer.
//!
//! - the offset range agrees with the record count (`lastOffsetDelta = count - 1`),
//!   and record `i` has offset delta `i` (stricter than Kafka, which rewrites
//!   compressed batches whose inner offsets are off; ringlog stores bytes as sent);
//! - every record's lengths lie inside its record, the records fill the section
//!   exactly, and there are exactly `recordCount` of them; compressed sections are
//!   decompressed (bounded) and checked the same way;
//! - no control batch, no transactional batch (transactions are not served), a
//!   known codec, and an idempotent batch carries a sequence;
//! - timestamps: a client may not claim LogAppendTime; under CreateTime each record
//!   lies within `message.timestamp.before.max.ms` / `after.max.ms` of now, and the
//!   header's maxTimestamp is the largest record timestamp (the time index relies
//!   on it);
//! - a compacted topic's records have keys.

use std::io::Read;

use crate::compression::{self, Codec};
use crate::records::{self, parse_record};
use crate::{BatchError, CheckedBatch, RecordBatch};

/// A batch's timestamps: the producer's (CreateTime) or the broker's append time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's `message.timestamp.type` values.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CreateTime" => Some(Self::CreateTime),
            "LogAppendTime" => Some(Self::LogAppendTime),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        }
    }
}

/// The record timestamp Kafka uses for "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;
/// Attribute bit: the batch's timestamps are the broker's append time.
pub const LOG_APPEND_TIME_FLAG: i16 = 0x08;
/// Attribute bit: the batch belongs to a transaction.
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit: the batch holds control records (transaction markers).
pub const CONTROL_FLAG: i16 = 0x20;

/// The topic's rules for produced batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducePolicy {
    /// `max.message.bytes`: largest batch, as sent (compressed).
    pub max_batch_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime may be.
    pub timestamp_after_max_ms: i64,
    /// Largest records section a compressed batch may expand to.
    pub decompressed_max_bytes: usize,
    /// A compacted topic (`cleanup.policy=compact`): every record needs a key.
    pub keys_required: bool,
}

/// Kafka's default `message.timestamp.after.max.ms` (since 4.0): one hour.
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;
/// Default bound on a compressed batch's expanded records section.
pub const DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT: usize = 64 << 20;

impl Default for ProducePolicy {
    fn default() -> Self {
        Self {
            max_batch_bytes: 1 << 20,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            decompressed_max_bytes: DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT,
            keys_required: false,
        }
    }
}

/// What validation learned about a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    pub records: i32,
    /// The largest record timestamp (`NO_TIMESTAMP` if none has one).
    pub max_timestamp: i64,
}

fn invalid(what: String) -> BatchError {
    BatchError::InvalidRecord(what)
}

/// [`validate_produced`], keeping the batch as checked for the append.
pub fn check_produced(
    batch: RecordBatch,
    policy: &ProducePolicy,
    now_ms: i64,
) -> Result<CheckedBatch, BatchError> {
    validate_produced(&batch, policy, now_ms)?;
    Ok(CheckedBatch::already_checked(batch))
}

/// Validates a batch a client produced (see the module doc), at `now_ms`.
pub fn validate_produced(
    batch: &RecordBatch,
    policy: &ProducePolicy,
    now_ms: i64,
) -> Result<BatchSummary, BatchError> {
    batch.validate(policy.max_batch_bytes)?;
    let count = batch.record_count();
    if batch.last_offset_delta() != count - 1 {
        return Err(invalid(format!(
            "inconsistent batch offset range: lastOffsetDelta {} for {count} records",
            batch.last_offset_delta()
        )));
    }
    let attributes = batch.attributes();
    if attributes & CONTROL_FLAG != 0 {
        return Err(invalid("clients may not write control batches".into()));
    }
    if attributes & TRANSACTIONAL_FLAG != 0 {
        return Err(invalid(
            "transactional batches are refused: this broker does not serve transactions".into(),
        ));
    }
    if attributes & LOG_APPEND_TIME_FLAG != 0 {
        return Err(BatchError::InvalidTimestamp(
            "producers may not set the LogAppendTime timestamp type".into(),
        ));
    }
    if batch.producer_id() >= 0 && batch.base_sequence() < 0 {
        return Err(invalid(format!(
            "sequence {} in a batch of producer {}",
            batch.base_sequence(),
            batch.producer_id()
        )));
    }
    let codec = Codec::from_id(batch.compression())
        .ok_or(BatchError::UnsupportedCompression(batch.compression()))?;
    let section = &batch.bytes()[crate::BATCH_HEADER_LEN..];
    let mut check = RecordCheck::new(batch, policy, now_ms);
    if codec == Codec::None {
        for r in records::records(section) {
            check.record(&r?)?;
        }
    } else {
        let limit = policy.decompressed_max_bytes;
        let mut stream = compression::reader(codec, section, limit)?.take(limit as u64 + 1);
        let mut body = Vec::new();
        while let Some(len) = read_length(&mut stream)? {
            if len as u64 > stream.limit() {
                return Err(BatchError::Decode(format!(
                    "{} records decompress to more than {limit} bytes",
                    codec.name()
                )));
            }
            body.resize(len, 0);
            stream
                .read_exact(&mut body)
                .map_err(|e| BatchError::Decode(format!("{} records: {e}", codec.name())))?;
            check.record(&parse_record(&body)?)?;
        }
    }
    check.finish()
}

/// A record length (zigzag varint) read from a stream; `None` at a clean end.
fn read_length(stream: &mut impl Read) -> Result<Option<usize>, BatchError> {
    let mut raw: u64 = 0;
    for i in 0..5 {
        let mut byte = [0u8];
        let n = stream
            .read(&mut byte)
            .map_err(|e| BatchError::Decode(format!("compressed records: {e}")))?;
        if n == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(invalid("a record length is cut short".into()))
            };
        }
        raw |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            let v = (raw >> 1) as i64 ^ -((raw & 1) as i64);
            return usize::try_from(v)
                .map(Some)
                .map_err(|_| invalid(format!("record of negative length {v}")));
        }
    }
    Err(invalid("a record length longer than 5 bytes".into()))
}

/// The per-record checks, in record order.
struct RecordCheck<'a> {
    policy: &'a ProducePolicy,
    now_ms: i64,
    base_timestamp: i64,
    declared_count: i32,
    declared_max_timestamp: i64,
    seen: i32,
    max_timestamp: i64,
}

impl<'a> RecordCheck<'a> {
    fn new(batch: &RecordBatch, policy: &'a ProducePolicy, now_ms: i64) -> Self {
        Self {
            policy,
            now_ms,
            base_timestamp: batch.base_timestamp(),
            declared_count: batch.record_count(),
            declared_max_timestamp: batch.max_timestamp(),
            seen: 0,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    fn record(&mut self, r: &records::RecordRef<'_>) -> Result<(), BatchError> {
        if self.seen == self.declared_count {
            return Err(invalid(format!(
                "more records than the batch's count of {}",
                self.declared_count
            )));
        }
        if self.policy.keys_required && r.key.is_none() {
            return Err(invalid(format!(
                "record {}: a compacted topic cannot accept a record without a key",
                self.seen
            )));
        }
        if r.offset_delta != self.seen {
            return Err(invalid(format!(
                "record {} has offset delta {}",
                self.seen, r.offset_delta
            )));
        }
        let ts = self.base_timestamp.saturating_add(r.timestamp_delta);
        if self.policy.timestamp_type == TimestampType::CreateTime && ts != NO_TIMESTAMP {
            let (now, before, after) = (
                self.now_ms,
                self.policy.timestamp_before_max_ms,
                self.policy.timestamp_after_max_ms,
            );
            if now.saturating_sub(ts) > before || ts.saturating_sub(now) > after {
                return Err(BatchError::InvalidTimestamp(format!(
                    "timestamp {ts} of record {} is out of range: it must be within [{}, {}]",
                    self.seen,
                    now.saturating_sub(before),
                    now.saturating_add(after)
                )));
            }
        }
        self.max_timestamp = self.max_timestamp.max(ts);
        self.seen += 1;
        Ok(())
    }

    fn finish(self) -> Result<BatchSummary, BatchError> {
        if self.seen != self.declared_count {
            return Err(invalid(format!(
                "the batch declares {} records and holds {}",
                self.declared_count, self.seen
            )));
        }
        if self.policy.timestamp_type == TimestampType::CreateTime
            && self.declared_max_timestamp != self.max_timestamp
        {
            return Err(invalid(format!(
                "maxTimestamp {} is not the largest record timestamp {}",
                self.declared_max_timestamp, self.max_timestamp
            )));
        }
        Ok(BatchSummary {
            records: self.seen,
            max_timestamp: self.max_timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::compress;
    use crate::records::put_varint;
    use crate::BatchBuilder;
    use bytes::{BufMut, Bytes, BytesMut};

    const NOW: i64 = 1_700_000_000_000;

    /// Header fields of a hand-made batch.
    #[derive(Clone, Copy)]
    struct Header {
        attributes: i16,
        last_offset_delta: i32,
        base_timestamp: i64,
        max_timestamp: i64,
        producer_id: i64,
        base_sequence: i32,
        count: i32,
    }

    impl Default for Header {
        fn default() -> Self {
            Self {
                attributes: 0,
                last_offset_delta: 1,
                base_timestamp: NOW,
                max_timestamp: NOW + 1,
                producer_id: -1,
                base_sequence: -1,
                count: 2,
            }
        }
    }

    fn record(ts_delta: i64, offset_delta: i64, value: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, ts_delta);
        put_varint(&mut body, offset_delta);
        put_varint(&mut body, -1);
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0);
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i64);
        out.extend(body);
        out
    }

    fn two_records() -> Vec<u8> {
        let mut s = record(0, 0, b"a");
        s.extend(record(1, 1, b"b"));
        s
    }

    /// A batch with a correct length and CRC around whatever `h` and `section` say.
    fn batch(h: Header, section: &[u8]) -> RecordBatch {
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32((crate::BATCH_HEADER_LEN - crate::LOG_OVERHEAD + section.len()) as i32);
        b.put_i32(-1);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(h.attributes);
        b.put_i32(h.last_offset_delta);
        b.put_i64(h.base_timestamp);
        b.put_i64(h.max_timestamp);
        b.put_i64(h.producer_id);
        b.put_i16(if h.producer_id >= 0 { 0 } else { -1 });
        b.put_i32(h.base_sequence);
        b.put_i32(h.count);
        b.extend_from_slice(section);
        let crc = crc32c::crc32c(&b[crate::CRC_COVERAGE_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        RecordBatch::parse(b.freeze()).unwrap()
    }

    fn check(b: &RecordBatch) -> Result<BatchSummary, BatchError> {
        validate_produced(b, &ProducePolicy::default(), NOW)
    }

    fn refused(b: &RecordBatch, words: &str) {
        let e = check(b).unwrap_err();
        assert!(e.to_string().contains(words), "{e} should say {words:?}");
    }

    #[test]
    fn a_well_formed_batch_passes_with_its_summary() {
        let s = check(&batch(Header::default(), &two_records())).unwrap();
        assert_eq!(
            s,
            BatchSummary {
                records: 2,
                max_timestamp: NOW + 1
            }
        );
    }

    #[test]
    fn offsets_must_match_the_record_count_and_each_record_index() {
        let h = Header::default();
        // Kafka's "inconsistent batch offset range"; a huge delta would wrap the
        // segment's relative offsets.
        for delta in [0, 2, i32::MAX] {
            let b = batch(
                Header {
                    last_offset_delta: delta,
                    ..h
                },
                &two_records(),
            );
            refused(&b, "lastOffsetDelta");
        }
        let mut skipped = record(0, 0, b"a");
        skipped.extend(record(1, 5, b"b"));
        refused(&batch(h, &skipped), "offset delta 5");
    }

    #[test]
    fn the_count_must_match_the_records_held() {
        let h = Header::default();
        let one = record(0, 0, b"a single record long enough to pass the size check");
        let b = batch(
            Header {
                count: 1,
                last_offset_delta: 0,
                max_timestamp: NOW,
                ..h
            },
            &two_records(),
        );
        refused(&b, "more records");
        let short = batch(h, &one);
        refused(&short, "declares 2 records and holds 1");
    }

    #[test]
    fn record_lengths_must_stay_inside_their_record() {
        let mut section = two_records();
        // The first record's length grows by one: it swallows the next one's first byte.
        section[0] += 2;
        assert!(matches!(
            check(&batch(Header::default(), &section)),
            Err(BatchError::InvalidRecord(_))
        ));
        // Trailing garbage after the last record.
        let mut section = two_records();
        section.push(0x02);
        assert!(check(&batch(Header::default(), &section)).is_err());
    }

    #[test]
    fn control_transactional_and_log_append_time_batches_are_refused() {
        let h = Header::default();
        refused(
            &batch(
                Header {
                    attributes: CONTROL_FLAG,
                    ..h
                },
                &two_records(),
            ),
            "control",
        );
        refused(
            &batch(
                Header {
                    attributes: TRANSACTIONAL_FLAG,
                    ..h
                },
                &two_records(),
            ),
            "transactions",
        );
        let e = check(&batch(
            Header {
                attributes: LOG_APPEND_TIME_FLAG,
                ..h
            },
            &two_records(),
        ));
        assert!(matches!(e, Err(BatchError::InvalidTimestamp(_))), "{e:?}");
        let e = check(&batch(Header { attributes: 6, ..h }, &two_records()));
        assert_eq!(e, Err(BatchError::UnsupportedCompression(6)));
        refused(
            &batch(
                Header {
                    producer_id: 7,
                    ..h
                },
                &two_records(),
            ),
            "sequence -1",
        );
    }

    #[test]
    fn create_times_out_of_range_and_a_wrong_max_timestamp_are_refused() {
        let h = Header::default();
        let future = Header {
            base_timestamp: NOW + TIMESTAMP_AFTER_MAX_MS_DEFAULT + 1,
            max_timestamp: NOW + TIMESTAMP_AFTER_MAX_MS_DEFAULT + 2,
            ..h
        };
        let e = check(&batch(future, &two_records())).unwrap_err();
        assert!(matches!(e, BatchError::InvalidTimestamp(_)), "{e}");
        // The past is unbounded by default, bounded when configured.
        let old = Header {
            base_timestamp: 1_000,
            max_timestamp: 1_001,
            ..h
        };
        check(&batch(old, &two_records())).unwrap();
        let strict = ProducePolicy {
            timestamp_before_max_ms: 60_000,
            ..ProducePolicy::default()
        };
        assert!(validate_produced(&batch(old, &two_records()), &strict, NOW).is_err());
        // LogAppendTime topics take any producer time (the broker stamps its own).
        let append = ProducePolicy {
            timestamp_type: TimestampType::LogAppendTime,
            ..ProducePolicy::default()
        };
        validate_produced(&batch(future, &two_records()), &append, NOW).unwrap();
        refused(
            &batch(
                Header {
                    max_timestamp: NOW + 9,
                    ..h
                },
                &two_records(),
            ),
            "maxTimestamp",
        );
    }

    #[test]
    fn compressed_batches_are_checked_record_by_record() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let h = Header {
                attributes: codec as i16,
                ..Header::default()
            };
            check(&batch(h, &compress(codec, &two_records()).unwrap())).unwrap();
            let mut skipped = record(0, 0, b"a");
            skipped.extend(record(1, 3, b"b"));
            refused(
                &batch(h, &compress(codec, &skipped).unwrap()),
                "offset delta 3",
            );
            refused(
                &batch(h, &compress(codec, &record(0, 0, b"a")).unwrap()),
                "holds 1",
            );
            let e = check(&batch(h, b"not compressed at all, but flagged so")).unwrap_err();
            assert!(
                matches!(e, BatchError::Decode(_) | BatchError::InvalidRecord(_)),
                "{e}"
            );
        }
        // A bomb: a small batch that expands past the bound is refused.
        let zeros = vec![0u8; 8 << 20];
        let bomb = batch(
            Header {
                attributes: Codec::Zstd as i16,
                ..Header::default()
            },
            &compress(Codec::Zstd, &zeros).unwrap(),
        );
        let small = ProducePolicy {
            decompressed_max_bytes: 1 << 20,
            ..ProducePolicy::default()
        };
        assert!(validate_produced(&bomb, &small, NOW).is_err());
    }

    #[test]
    fn built_compressed_batches_validate_and_decode() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let mut b = BatchBuilder::new();
            b.compression(codec);
            for i in 0..300i64 {
                b.push(
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(format!("value {i} {}", "x".repeat(40)))),
                    &[],
                    NOW + i,
                );
            }
            let batch = RecordBatch::parse(b.build().unwrap()).unwrap();
            assert_eq!(batch.compression(), codec as i16);
            let summary = check(&batch).unwrap();
            assert_eq!((summary.records, summary.max_timestamp), (300, NOW + 299));
            let records = batch.records().unwrap();
            assert_eq!(records.len(), 300);
            assert_eq!(
                records[123].value.as_deref(),
                Some(format!("value 123 {}", "x".repeat(40)).as_bytes())
            );
            assert_eq!(records[123].key.as_deref(), Some(&b"k123"[..]));
            // Exact by timestamp inside the batch, compressed or not.
            assert_eq!(
                batch.first_record_at_or_after(NOW + 200).unwrap(),
                Some((200, NOW + 200))
            );
            assert_eq!(
                batch.max_timestamp_record().unwrap(),
                Some((299, NOW + 299))
            );
            if codec != Codec::None {
                let plain: usize = records
                    .iter()
                    .map(|r| r.value.as_ref().map_or(0, Bytes::len))
                    .sum();
                assert!(batch.size() < plain, "{codec:?} did not compress");
            }
        }
    }

    #[test]
    fn log_append_time_stamps_a_valid_batch() {
        let b = batch(Header::default(), &two_records());
        let stamped = b.with_log_append_time(NOW + 50);
        stamped.validate(1 << 20).unwrap();
        assert!(stamped.is_log_append_time());
        assert_eq!(stamped.max_timestamp(), NOW + 50);
        let records = stamped.records().unwrap();
        assert!(records.iter().all(|r| r.timestamp == NOW + 50));
    }
}
