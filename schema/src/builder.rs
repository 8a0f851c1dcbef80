//! Encodes records into one RecordBatch v2, for clients, tools and tests.
//!
//! The encoding is delegated to the `kafka-protocol` crate's record codec, which
//! implements the varint record layout and the CRC-32C exactly as Kafka does; this
//! module only gives it a small, allocation-conscious front.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use crate::compression::{self, Codec};
use crate::BatchError;

/// One record header (Kafka headers are ordered key/value pairs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// Accumulates records and encodes them as a single uncompressed batch with base
/// offset 0 (the broker assigns the real one on append).
#[derive(Default)]
pub struct BatchBuilder {
    records: Vec<Record>,
    encoded_estimate: usize,
    /// Idempotent producer id, epoch and base sequence of the next batch built.
    producer: Option<(i64, i16, i32)>,
    /// Codec of the records section.
    codec: Option<Codec>,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record. `timestamp_ms` is the CreateTime in milliseconds since the epoch.
    /// Header keys must be unique within a record (the codec keeps headers in a map).
    pub fn push(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: &[RecordHeader],
        timestamp_ms: i64,
    ) -> &mut Self {
        let delta = self.records.len() as i64;
        self.encoded_estimate += Self::record_size_estimate(key.as_ref(), value.as_ref(), headers);
        let headers: IndexMap<StrBytes, Option<Bytes>> = headers
            .iter()
            .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
            .collect();
        self.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: delta,
            // The codec keeps records in one batch while offset - sequence is constant
            // and derives baseSequence from the first record: per-record sequence is
            // baseSequence + delta, so baseSequence stays NO_SEQUENCE (-1).
            sequence: NO_SEQUENCE.wrapping_add(delta as i32),
            timestamp: timestamp_ms,
            key,
            value,
            headers,
        });
        self
    }

    /// An upper estimate of one record's encoded size (varint framing included), so
    /// producers can refuse an oversized record before pushing it.
    pub fn record_size_estimate(
        key: Option<&Bytes>,
        value: Option<&Bytes>,
        headers: &[RecordHeader],
    ) -> usize {
        16 + key.map_or(0, Bytes::len)
            + value.map_or(0, Bytes::len)
            + headers
                .iter()
                .map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An upper estimate of the encoded size, for callers that cap batch sizes.
    pub fn estimated_size(&self) -> usize {
        crate::BATCH_HEADER_LEN + self.encoded_estimate
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
        if self.records.is_empty() {
            return Err(BatchError::Build(
                "a batch needs at least one record".into(),
            ));
        }
        if let Some((id, epoch, base)) = self.producer.take() {
            for r in &mut self.records {
                r.producer_id = id;
                r.producer_epoch = epoch;
                r.sequence = base.wrapping_add(r.offset as i32);
            }
        }
        let mut buf = BytesMut::with_capacity(self.estimated_size());
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, self.records.iter(), &options)
            .map_err(|e| BatchError::Build(e.to_string()))?;
        self.records.clear();
        self.encoded_estimate = 0;
        match self.codec {
            Some(codec) => compress_batch(&buf, codec),
            None => Ok(buf.freeze()),
        }
    }
}

/// The uncompressed batch `plain` with its records section compressed by `codec`:
/// same header fields, the codec in the attributes, new length and CRC.
fn compress_batch(plain: &[u8], codec: Codec) -> Result<Bytes, BatchError> {
    use crate::batch::{ATTRIBUTES_AT, CRC_AT, LENGTH_AT};
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
    fn empty_builder_is_an_error() {
        assert!(matches!(
            BatchBuilder::new().build(),
            Err(BatchError::Build(_))
        ));
    }
}
