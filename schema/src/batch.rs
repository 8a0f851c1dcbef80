//! Apache Kafka RecordBatch v2 (magic 2), byte for byte.
//!
//! ```text
//! off len field                    covered by CRC
//!   0   8 baseOffset               no  (patched by the broker)
//!   8   4 batchLength              no  (bytes after this field)
//!  12   4 partitionLeaderEpoch     no  (stamped by the leader)
//!  16   1 magic (= 2)              no
//!  17   4 crc (CRC-32C)            -
//!  21   2 attributes               yes
//!  23   4 lastOffsetDelta          yes
//!  27   8 baseTimestamp            yes
//!  35   8 maxTimestamp             yes
//!  43   8 producerId               yes
//!  51   2 producerEpoch            yes
//!  53   4 baseSequence             yes
//!  57   4 recordCount              yes
//!  61   - records                  yes
//! ```
//!
//! All integers are big-endian. Because the CRC starts at `attributes`, the broker can
//! assign offsets by rewriting the first 8 bytes and never re-checksums: both protocols
//! then serve the stored bytes unchanged (zero-copy fetch).

use bytes::Bytes;

use crate::compression::{self, Codec};
use crate::validate::DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT;
use crate::BatchError;

/// Bytes before `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// Length of the baseOffset field, the only bytes the broker rewrites on append.
pub const BASE_OFFSET_LEN: usize = 8;
/// Size of the fixed batch header; records follow it.
pub const BATCH_HEADER_LEN: usize = 61;
/// The CRC covers `attributes` to the end of the batch.
pub const CRC_COVERAGE_START: usize = 21;
/// The only record-batch format ringlog stores.
pub const MAGIC_V2: i8 = 2;
/// Smallest possible encoded record: length, attributes, timestampDelta, offsetDelta,
/// key length, value length and header count, one byte each.
pub const MIN_RECORD_LEN: usize = 7;

pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORD_COUNT_AT: usize = 57;
const COMPRESSION_MASK: i16 = 0x07;

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Total size in bytes (header included) of the batch starting at `buf[0]`, read from its
/// `batchLength` field; `None` if fewer than [`LOG_OVERHEAD`] bytes are available.
/// The value is untrusted: callers bound it before using it.
pub(crate) fn declared_total_len(buf: &[u8]) -> Option<i64> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    Some(i64::from(be_i32(buf, LENGTH_AT)) + LOG_OVERHEAD as i64)
}

/// The header fields that scanners and indexes need, read from a borrowed slice.
///
/// Untrusted until the batch is validated: `baseOffset` is not covered by the CRC, so
/// derived values saturate instead of overflowing on damaged input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The epoch of the leader that appended the batch (outside the CRC).
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
}

impl BatchHeader {
    /// Reads the header at `buf[0]`; `None` if fewer than 61 bytes are present.
    pub fn read(buf: &[u8]) -> Option<Self> {
        if buf.len() < BATCH_HEADER_LEN {
            return None;
        }
        Some(Self {
            base_offset: be_i64(buf, 0),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
        })
    }

    /// baseOffset + lastOffsetDelta, saturating on damaged input.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
}

/// One record decoded from a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<crate::RecordHeader>,
}

/// A zero-copy view over one complete RecordBatch v2 held in [`Bytes`].
///
/// Construction ([`RecordBatch::parse`]) checks only that the bytes hold exactly one
/// batch header's worth of structure; [`RecordBatch::validate`] does the full check
/// (magic, size limit, record count, CRC-32C) and must pass before a batch is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl RecordBatch {
    /// Wraps `bytes`, which must hold exactly one batch: at least the 61-byte header and
    /// a `batchLength` that accounts for every byte.
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        Self::check_framing(&bytes)?;
        Ok(Self { bytes })
    }

    /// The framing check of [`RecordBatch::parse`] on a borrowed slice.
    pub fn check_framing(buf: &[u8]) -> Result<(), BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                available: buf.len(),
                needed: BATCH_HEADER_LEN,
            });
        }
        let declared = declared_total_len(buf).unwrap_or(0);
        if declared != buf.len() as i64 {
            return Err(BatchError::LengthMismatch {
                declared,
                available: buf.len(),
            });
        }
        Ok(())
    }

    /// Size of the batch starting at `buf[0]` as its header declares it, checked against
    /// the header size and `max_bytes`; `Ok(None)` when fewer than 12 bytes are present.
    /// Scanners (recovery, reads) use this to step from batch to batch.
    pub fn peek_size(buf: &[u8], max_bytes: usize) -> Result<Option<usize>, BatchError> {
        let Some(declared) = declared_total_len(buf) else {
            return Ok(None);
        };
        if declared < BATCH_HEADER_LEN as i64 {
            return Err(BatchError::LengthMismatch {
                declared,
                available: buf.len(),
            });
        }
        if declared > max_bytes as i64 {
            return Err(BatchError::TooLarge {
                size: usize::try_from(declared).unwrap_or(usize::MAX),
                max: max_bytes,
            });
        }
        // declared is within [61, max_bytes], so it fits in usize.
        Ok(Some(declared as usize))
    }

    /// Full validation of one batch in a borrowed slice (exactly one batch): framing,
    /// size limit, magic, record count plausibility and CRC-32C.
    pub fn validate_slice(buf: &[u8], max_bytes: usize) -> Result<(), BatchError> {
        Self::check_framing(buf)?;
        if buf.len() > max_bytes {
            return Err(BatchError::TooLarge {
                size: buf.len(),
                max: max_bytes,
            });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let count = be_i32(buf, RECORD_COUNT_AT);
        let last_offset_delta = be_i32(buf, LAST_OFFSET_DELTA_AT);
        let records_bytes = buf.len() - BATCH_HEADER_LEN;
        let compressed = be_i16(buf, ATTRIBUTES_AT) & COMPRESSION_MASK != 0;
        // Compressed records can be smaller than MIN_RECORD_LEN each, so the size bound
        // only applies to uncompressed batches. lastOffsetDelta may exceed count - 1
        // after compaction, never fall below it.
        let size_allows =
            compressed || (count as i64) * (MIN_RECORD_LEN as i64) <= records_bytes as i64;
        if count < 1 || last_offset_delta < count - 1 || !size_allows {
            return Err(BatchError::InvalidRecordCount {
                count,
                last_offset_delta,
                records_bytes,
            });
        }
        let stored = be_i32(buf, CRC_AT) as u32;
        CRC_CHECKS.with(|n| n.set(n.get() + 1));
        let computed = crc32c::crc32c(&buf[CRC_COVERAGE_START..]);
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }

    /// Full validation: see [`RecordBatch::validate_slice`].
    pub fn validate(&self, max_bytes: usize) -> Result<(), BatchError> {
        Self::validate_slice(&self.bytes, max_bytes)
    }

    /// Rewrites the baseOffset field of the batch at `buf[0..8]`. The CRC does not cover
    /// it, so the batch stays valid.
    ///
    /// # Panics
    /// If `buf` is shorter than 8 bytes: callers patch only batches they validated.
    pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
        buf[..BASE_OFFSET_LEN].copy_from_slice(&base_offset.to_be_bytes());
    }

    /// Rewrites the partitionLeaderEpoch field (not covered by the CRC either).
    pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
        buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
    }

    /// The batch bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Gives the bytes back.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
    /// Total size in bytes, header included.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        be_i64(&self.bytes, 0)
    }
    /// Offset of the last record: baseOffset + lastOffsetDelta.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// Leader epoch stamped by the leader that appended the batch.
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(&self.bytes, LEADER_EPOCH_AT)
    }
    /// Format version; 2 for every batch ringlog stores.
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_AT] as i8
    }
    /// The stored CRC-32C.
    pub fn crc(&self) -> u32 {
        be_i32(&self.bytes, CRC_AT) as u32
    }
    /// Compression codec (bits 0-2), timestamp type (bit 3), transactional (4), control (5).
    pub fn attributes(&self) -> i16 {
        be_i16(&self.bytes, ATTRIBUTES_AT)
    }
    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes() & COMPRESSION_MASK
    }
    /// Offset delta of the last record.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(&self.bytes, LAST_OFFSET_DELTA_AT)
    }
    /// Timestamp of the first record.
    pub fn base_timestamp(&self) -> i64 {
        be_i64(&self.bytes, BASE_TIMESTAMP_AT)
    }
    /// Largest record timestamp in the batch.
    pub fn max_timestamp(&self) -> i64 {
        be_i64(&self.bytes, MAX_TIMESTAMP_AT)
    }
    /// Idempotent producer id, -1 if none.
    pub fn producer_id(&self) -> i64 {
        be_i64(&self.bytes, PRODUCER_ID_AT)
    }
    /// Idempotent producer epoch, -1 if none.
    pub fn producer_epoch(&self) -> i16 {
        be_i16(&self.bytes, PRODUCER_EPOCH_AT)
    }
    /// Sequence number of the first record, -1 if none.
    pub fn base_sequence(&self) -> i32 {
        be_i32(&self.bytes, BASE_SEQUENCE_AT)
    }
    /// Number of records.
    pub fn record_count(&self) -> i32 {
        be_i32(&self.bytes, RECORD_COUNT_AT)
    }

    /// Whether the timestamps are the broker's append time (attribute bit 3): then
    /// every record's timestamp is the batch's maxTimestamp.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & crate::validate::LOG_APPEND_TIME_FLAG != 0
    }

    /// The records section, decompressed when the batch is compressed (to at most
    /// `limit` bytes).
    fn records_section(&self, limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, BatchError> {
        let section = &self.bytes[BATCH_HEADER_LEN..];
        match Codec::from_id(self.compression()) {
            Some(Codec::None) => Ok(std::borrow::Cow::Borrowed(section)),
            Some(codec) => {
                compression::decompress(codec, section, limit).map(std::borrow::Cow::Owned)
            }
            None => Err(BatchError::UnsupportedCompression(self.compression())),
        }
    }

    /// Each record's offset and timestamp, in order, with the record itself.
    fn each_record<T>(
        &self,
        limit: usize,
        mut f: impl FnMut(i64, i64, &crate::records::RecordRef<'_>) -> Option<T>,
    ) -> Result<Option<T>, BatchError> {
        let section = self.records_section(limit)?;
        let log_append = self.is_log_append_time();
        for r in crate::records::records(&section) {
            let r = r?;
            let offset = self.base_offset().saturating_add(i64::from(r.offset_delta));
            let ts = if log_append {
                self.max_timestamp()
            } else {
                self.base_timestamp().saturating_add(r.timestamp_delta)
            };
            if let Some(out) = f(offset, ts, &r) {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// Decodes the records, decompressing a compressed batch (up to
    /// `DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT` bytes).
    pub fn records(&self) -> Result<Vec<DecodedRecord>, BatchError> {
        let mut out =
            Vec::with_capacity(usize::try_from(self.record_count()).unwrap_or(0).min(4096));
        self.each_record(
            DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT,
            |offset, timestamp, r| {
                out.push(DecodedRecord {
                    offset,
                    timestamp,
                    key: r.key.map(Bytes::copy_from_slice),
                    value: r.value.map(Bytes::copy_from_slice),
                    headers: r
                        .headers()
                        .map(|(k, v)| crate::RecordHeader {
                            key: String::from_utf8_lossy(k).into_owned(),
                            value: v.map(Bytes::copy_from_slice),
                        })
                        .collect(),
                });
                None::<()>
            },
        )?;
        Ok(out)
    }

    /// The first record whose timestamp is `>= ts`, as (offset, timestamp), if any:
    /// exact inside compressed batches too (they are decompressed).
    pub fn first_record_at_or_after(&self, ts: i64) -> Result<Option<(i64, i64)>, BatchError> {
        if self.max_timestamp() < ts {
            return Ok(None);
        }
        self.each_record(DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT, |offset, t, _| {
            (t >= ts).then_some((offset, t))
        })
    }

    /// The record with the largest timestamp (the first of equals), as (offset,
    /// timestamp).
    pub fn max_timestamp_record(&self) -> Result<Option<(i64, i64)>, BatchError> {
        let max = self.max_timestamp();
        self.each_record(DECOMPRESSED_BATCH_BYTES_MAX_DEFAULT, |offset, t, _| {
            (t == max).then_some((offset, t))
        })
    }

    /// A copy of `batch` marked LogAppendTime with `now_ms` as its maxTimestamp and
    /// its CRC recomputed (a topic with `message.timestamp.type=LogAppendTime`).
    pub fn with_log_append_time(&self, now_ms: i64) -> RecordBatch {
        let mut b = bytes::BytesMut::from(&self.bytes[..]);
        let attributes = self.attributes() | crate::validate::LOG_APPEND_TIME_FLAG;
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_COVERAGE_START..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        RecordBatch { bytes: b.freeze() }
    }
}

thread_local! {
    static CRC_CHECKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Batch CRCs checked on this thread so far. Each shard is one thread, so a test
/// can tell how many times a path checks a batch (the produce path: once).
pub fn crc_checks_on_this_thread() -> u64 {
    CRC_CHECKS.with(|n| n.get())
}

/// A batch whose framing and CRC were checked ([`RecordBatch::checked`], or the
/// produce validation that includes it). Only this crate makes one, by checking,
/// so a layer handed one (storage's append) need not check it again: a produced
/// batch's CRC is computed once on the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedBatch(RecordBatch);

impl RecordBatch {
    /// Checks framing, CRC and record count ([`RecordBatch::validate`]).
    pub fn checked(self, max_bytes: usize) -> Result<CheckedBatch, BatchError> {
        self.validate(max_bytes)?;
        Ok(CheckedBatch(self))
    }
}

impl CheckedBatch {
    /// For the produce validation, which has just checked it.
    pub(crate) fn already_checked(batch: RecordBatch) -> Self {
        Self(batch)
    }

    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// [`RecordBatch::with_log_append_time`]: the CRC is recomputed, so it stays checked.
    pub fn with_log_append_time(&self, now_ms: i64) -> CheckedBatch {
        CheckedBatch(self.0.with_log_append_time(now_ms))
    }
}

impl std::ops::Deref for CheckedBatch {
    type Target = RecordBatch;
    fn deref(&self) -> &RecordBatch {
        &self.0
    }
}

/// Splits a buffer of concatenated batches (as a fetch returns them) into batch views
/// sharing the buffer. Yields an error, then stops, at the first bad framing.
pub fn split_batches(bytes: Bytes) -> impl Iterator<Item = Result<RecordBatch, BatchError>> {
    let mut rest = bytes;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let size = match RecordBatch::peek_size(&rest, i32::MAX as usize) {
            Ok(Some(size)) if size <= rest.len() => size,
            Ok(Some(size)) => {
                failed = true;
                return Some(Err(BatchError::LengthMismatch {
                    declared: size as i64,
                    available: rest.len(),
                }));
            }
            Ok(None) => {
                failed = true;
                return Some(Err(BatchError::Truncated {
                    available: rest.len(),
                    needed: BATCH_HEADER_LEN,
                }));
            }
            Err(e) => {
                failed = true;
                return Some(Err(e));
            }
        };
        Some(RecordBatch::parse(rest.split_to(size)))
    })
}

/// The last offset of the last batch in `chunk` (whole batches, as a log read
/// returns them); `None` for an empty or malformed chunk.
pub fn last_offset_in(chunk: &Bytes) -> Option<i64> {
    let mut last = None;
    for b in split_batches(chunk.clone()) {
        last = Some(b.ok()?.last_offset());
    }
    last
}
