//! Rewriting a batch with some of its records removed, as log compaction does.
//!
//! The kept records are copied as they are encoded: their offset and timestamp
//! deltas stay relative to the batch's unchanged base offset and base timestamp, so
//! every kept record keeps its offset. The header keeps its fields (lastOffsetDelta,
//! producer id, epoch and base sequence, which consumers and producer-state replay
//! rely on), with a new record count, length and CRC; a compressed batch is
//! recompressed with its codec.

use bytes::{Bytes, BytesMut};

use crate::batch::{CRC_AT, LENGTH_AT};
use crate::compression::{self, Codec};
use crate::records::{framed_records, RecordRef};
use crate::validate::DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT;
use crate::{BatchError, RecordBatch, BATCH_HEADER_LEN, CRC_COVERAGE_START, LOG_OVERHEAD};

const RECORD_COUNT_AT: usize = 57;

/// What filtering left of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every record kept: the batch as it was.
    Unchanged,
    /// No record kept.
    Empty,
    /// Some records kept: the rewritten batch.
    Rewritten(Bytes),
}

/// Keeps the records of `batch` for which `keep(offset, record)` is true.
pub fn filter_records(
    batch: &RecordBatch,
    mut keep: impl FnMut(i64, &RecordRef<'_>) -> bool,
) -> Result<Filtered, BatchError> {
    let codec = Codec::from_id(batch.compression())
        .ok_or(BatchError::UnsupportedCompression(batch.compression()))?;
    let raw = &batch.bytes()[BATCH_HEADER_LEN..];
    let section = match codec {
        Codec::None => std::borrow::Cow::Borrowed(raw),
        c => std::borrow::Cow::Owned(compression::decompress(
            c,
            raw,
            DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT,
        )?),
    };
    let mut kept = Vec::with_capacity(section.len());
    let (mut total, mut count) = (0i32, 0i32);
    for r in framed_records(&section) {
        let (record, encoded) = r?;
        total += 1;
        let offset = batch
            .base_offset()
            .saturating_add(i64::from(record.offset_delta));
        if keep(offset, &record) {
            kept.extend_from_slice(encoded);
            count += 1;
        }
    }
    if count == total {
        return Ok(Filtered::Unchanged);
    }
    if count == 0 {
        return Ok(Filtered::Empty);
    }
    let records = match codec {
        Codec::None => kept,
        c => compression::compress(c, &kept)?,
    };
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + records.len());
    out.extend_from_slice(&batch.bytes()[..BATCH_HEADER_LEN]);
    out.extend_from_slice(&records);
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| BatchError::Build("rewritten batch over 2 GiB".into()))?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_COVERAGE_START..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Filtered::Rewritten(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchBuilder;

    fn batch(codec: Codec) -> RecordBatch {
        let mut b = BatchBuilder::new();
        b.compression(codec);
        for i in 0..10 {
            let value = (i % 3 != 0).then(|| Bytes::from(format!("v{i}")));
            b.push(
                Some(Bytes::from(format!("k{}", i % 4))),
                value,
                &[],
                1_000 + i,
            );
        }
        let mut bytes = BytesMut::from(&b.build().unwrap()[..]);
        RecordBatch::set_base_offset(&mut bytes, 500);
        RecordBatch::parse(bytes.freeze()).unwrap()
    }

    #[test]
    fn kept_records_keep_their_offsets_timestamps_and_header() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let b = batch(codec);
            let even = filter_records(&b, |offset, _| offset % 2 == 0).unwrap();
            let Filtered::Rewritten(bytes) = even else {
                panic!("{codec:?}: {even:?}");
            };
            let r = RecordBatch::parse(bytes).unwrap();
            r.validate(1 << 20).unwrap();
            assert_eq!(r.compression(), codec as i16);
            assert_eq!(
                (r.base_offset(), r.last_offset(), r.record_count()),
                (500, 509, 5)
            );
            let records = r.records().unwrap();
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [500, 502, 504, 506, 508]);
            assert_eq!(records[1].timestamp, 1_002);
            assert_eq!(records[1].value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(records[0].value, None, "a tombstone kept as one");
            assert_eq!(
                filter_records(&b, |_, _| true).unwrap(),
                Filtered::Unchanged
            );
            assert_eq!(filter_records(&b, |_, _| false).unwrap(), Filtered::Empty);
        }
    }
}
