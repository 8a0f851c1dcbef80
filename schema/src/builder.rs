//! Encodes records into one RecordBatch v2, for clients, tools and tests.
//!
//! Each record is encoded into the batch buffer as it is pushed (one copy of its
//! key and value, no per-record allocation); `build` then writes the 61-byte
//! header in front and the CRC-32C over it, once per batch. The layout is
//! Kafka's (see `records.rs`); tests check the output against kafka-python's and
//! the `kafka-protocol` crate's decoders.

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{
    ATTRIBUTES_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT, CRC_AT, LAST_OFFSET_DELTA_AT,
    LEADER_EPOCH_AT, LENGTH_AT, MAGIC_AT, MAX_TIMESTAMP_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT,
    RECORD_COUNT_AT,
};
use crate::compression::{self, Codec};
use crate::{BatchError, BATCH_HEADER_LEN, CRC_COVERAGE_START, LOG_OVERHEAD, MAGIC_V2};

/// No producer id / epoch / sequence / leader epoch (Kafka's -1).
const NONE: i64 = -1;

/// One record header (Kafka headers are ordered key/value pairs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// Accumulates records and encodes them as a single batch with base offset 0 (the
/// broker assigns the real one on append).
pub struct BatchBuilder {
    /// The header's room, then the encoded records.
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Capacity to give the next batch's buffer: the last batch's size.
    next_capacity: usize,
    /// Idempotent producer id, epoch and base sequence of the next batch built.
    producer: Option<(i64, i16, i32)>,
    /// Codec of the records section.
    codec: Option<Codec>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            next_capacity: 1024,
            producer: None,
            codec: None,
        }
    }

    /// Adds a record. `timestamp_ms` is the CreateTime in milliseconds since the epoch.
    pub fn push(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: &[RecordHeader],
        timestamp_ms: i64,
    ) -> &mut Self {
        self.push_slices(key.as_deref(), value.as_deref(), headers, timestamp_ms)
    }

    /// Adds a record from borrowed bytes (copied into the batch).
    pub fn push_slices(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        timestamp_ms: i64,
    ) -> &mut Self {
        if self.count == 0 {
            if self.buf.capacity() == 0 {
                self.buf = BytesMut::with_capacity(self.next_capacity);
            }
            self.buf.put_bytes(0, BATCH_HEADER_LEN);
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let offset_delta = i64::from(self.count);
        let bytes_len =
            |b: Option<&[u8]>| b.map_or(varint_len(-1), |b| varint_len(b.len() as i64) + b.len());
        let body_len = 1
            + varint_len(timestamp_delta)
            + varint_len(offset_delta)
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(headers.len() as i64)
            + headers
                .iter()
                .map(|h| {
                    varint_len(h.key.len() as i64) + h.key.len() + bytes_len(h.value.as_deref())
                })
                .sum::<usize>();
        let buf = &mut self.buf;
        buf.reserve(varint_len(body_len as i64) + body_len);
        put_varint(buf, body_len as i64);
        buf.put_u8(0); // attributes: unused for records
        put_varint(buf, timestamp_delta);
        put_varint(buf, offset_delta);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i64);
        for h in headers {
            put_bytes(buf, Some(h.key.as_bytes()));
            put_bytes(buf, h.value.as_deref());
        }
        self.count += 1;
        self
    }

    /// An upper estimate of one record's encoded size (varint framing included), so
    /// producers can refuse an oversized record before pushing it.
    pub fn record_size_estimate(
        key: Option<&Bytes>,
        value: Option<&Bytes>,
        headers: &[RecordHeader],
    ) -> usize {
        Self::record_size_estimate_of(key.map(Bytes::len), value.map(Bytes::len), headers)
    }

    /// `record_size_estimate` from the key's and value's lengths.
    pub fn record_size_estimate_of(
        key_len: Option<usize>,
        value_len: Option<usize>,
        headers: &[RecordHeader],
    ) -> usize {
        16 + key_len.unwrap_or(0)
            + value_len.unwrap_or(0)
            + headers
                .iter()
                .map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded size so far, header included (exact for an uncompressed batch).
    pub fn estimated_size(&self) -> usize {
        self.buf.len().max(BATCH_HEADER_LEN)
    }

    /// Makes the next batch built an idempotent producer's: its id, epoch and the
    /// sequence of its first record.
    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer = Some((id, epoch, base_sequence));
        self
    }

    /// Compresses the records section of every batch built with `codec`.
    pub fn compression(&mut self, codec: Codec) -> &mut Self {
        self.codec = Some(codec).filter(|c| *c != Codec::None);
        self
    }

    /// Encodes the records into one batch and empties the builder.
    pub fn build(&mut self) -> Result<Bytes, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Build(
                "a batch needs at least one record".into(),
            ));
        }
        let (producer_id, producer_epoch, base_sequence) =
            self.producer
                .take()
                .unwrap_or((NONE, NONE as i16, NONE as i32));
        let mut buf = std::mem::take(&mut self.buf);
        self.next_capacity = buf.len();
        let count = std::mem::replace(&mut self.count, 0);
        let length = i32::try_from(buf.len() - LOG_OVERHEAD)
            .map_err(|_| BatchError::Build("batch over 2 GiB".into()))?;
        let h = &mut buf[..BATCH_HEADER_LEN];
        h[..8].copy_from_slice(&0i64.to_be_bytes());
        h[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        h[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&(NONE as i32).to_be_bytes());
        h[MAGIC_AT] = MAGIC_V2 as u8;
        h[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&0i16.to_be_bytes());
        h[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&(count - 1).to_be_bytes());
        h[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
        h[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&producer_epoch.to_be_bytes());
        h[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
        h[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        if let Some(codec) = self.codec {
            // compress_batch writes its own length, attributes and CRC.
            return compress_batch(&buf, codec);
        }
        let crc = crc32c::crc32c(&buf[CRC_COVERAGE_START..]);
        buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

/// Bytes of `v` as a zigzag varint (varlong).
fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    // 7 bits per byte; at least one byte.
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

/// A varint length then the bytes; -1 for null.
fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
        None => put_varint(buf, -1),
    }
}

/// The uncompressed batch `plain` with its records section compressed by `codec`:
/// same header fields, the codec in the attributes, new length and CRC.
fn compress_batch(plain: &[u8], codec: Codec) -> Result<Bytes, BatchError> {
    let records = compression::compress(codec, &plain[crate::BATCH_HEADER_LEN..])?;
    let mut out = BytesMut::with_capacity(crate::BATCH_HEADER_LEN + records.len());
    out.extend_from_slice(&plain[..crate::BATCH_HEADER_LEN]);
    out.extend_from_slice(&records);
    let length = i32::try_from(out.len() - crate::LOG_OVERHEAD)
        .map_err(|_| BatchError::Build("compressed batch over 2 GiB".into()))?;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let attributes =
        i16::from_be_bytes([out[ATTRIBUTES_AT], out[ATTRIBUTES_AT + 1]]) | codec as i16;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[crate::CRC_COVERAGE_START..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordBatch;

    #[test]
    fn built_batch_validates_and_reports_its_header() {
        let mut b = BatchBuilder::new();
        b.push(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"v1")),
            &[],
            1_000,
        );
        b.push(None, Some(Bytes::from_static(b"v2")), &[], 1_005);
        let bytes = b.build().unwrap();
        assert!(b.is_empty());
        let batch = RecordBatch::parse(bytes).unwrap();
        batch.validate(1 << 20).unwrap();
        assert_eq!(batch.record_count(), 2);
        assert_eq!(batch.base_offset(), 0);
        assert_eq!(batch.last_offset_delta(), 1);
        assert_eq!(batch.base_timestamp(), 1_000);
        assert_eq!(batch.max_timestamp(), 1_005);
        assert_eq!(batch.magic(), 2);
        assert_eq!(batch.producer_id(), -1);
    }

    #[test]
    fn every_field_round_trips_through_the_decoder_including_long_varints() {
        let mut b = BatchBuilder::new();
        let big = Bytes::from(vec![7u8; 70_000]);
        let header = RecordHeader {
            key: "h".into(),
            value: None,
        };
        // Out of order timestamps: the base is the first, deltas may be negative.
        b.push(None, Some(big.clone()), &[], 5_000);
        b.push(
            Some(Bytes::from_static(b"k")),
            None,
            std::slice::from_ref(&header),
            4_000,
        );
        b.push_slices(Some(b""), Some(b"v"), &[], 9_000);
        b.producer(77, 3, 1_000);
        let estimated = b.estimated_size();
        let bytes = b.build().unwrap();
        assert_eq!(bytes.len(), estimated, "an uncompressed estimate is exact");
        let batch = RecordBatch::parse(bytes).unwrap();
        batch.validate(1 << 20).unwrap();
        assert_eq!(
            (batch.base_timestamp(), batch.max_timestamp()),
            (5_000, 9_000)
        );
        assert_eq!(
            (
                batch.producer_id(),
                batch.producer_epoch(),
                batch.base_sequence()
            ),
            (77, 3, 1_000)
        );
        assert_eq!(batch.partition_leader_epoch(), -1);
        let records = batch.records().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].value.as_ref(), Some(&big));
        assert_eq!(records[0].key, None);
        assert_eq!((records[1].offset, records[1].timestamp), (1, 4_000));
        assert_eq!(records[1].value, None);
        assert_eq!(records[1].headers, vec![header]);
        assert_eq!(records[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(records[2].timestamp, 9_000);
        // The builder starts over: a second batch has no producer and its own records.
        b.push(None, Some(Bytes::from_static(b"x")), &[], 1);
        let second = RecordBatch::parse(b.build().unwrap()).unwrap();
        assert_eq!((second.record_count(), second.producer_id()), (1, -1));
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            8192,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn compressed_batches_validate_and_decode() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let mut b = BatchBuilder::new();
            b.compression(codec);
            for i in 0..10 {
                b.push(None, Some(Bytes::from(format!("value {i}"))), &[], 100 + i);
            }
            let batch = RecordBatch::parse(b.build().unwrap()).unwrap();
            batch.validate(1 << 20).unwrap();
            assert_eq!(batch.compression(), codec as i16);
            let records = batch.records().unwrap();
            assert_eq!(records[9].value.as_deref(), Some(&b"value 9"[..]));
        }
    }

    #[test]
    fn empty_builder_is_an_error() {
        assert!(matches!(
            BatchBuilder::new().build(),
            Err(BatchError::Build(_))
        ));
    }
}
