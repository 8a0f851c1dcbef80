//! Why a record batch was refused. Each variant is a distinct, reportable reason
//! (they map onto Kafka's CORRUPT_MESSAGE / MESSAGE_TOO_LARGE / INVALID_RECORD).

/// A record batch failed a structural or integrity check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a batch header (61 bytes).
    #[error("record batch truncated: {available} bytes, a batch header needs {needed}")]
    Truncated { available: usize, needed: usize },
    /// The batchLength field disagrees with the bytes that hold the batch.
    #[error("record batch length field says {declared} bytes but {available} bytes are present")]
    LengthMismatch { declared: i64, available: usize },
    /// The batch is larger than the configured maximum (`message.max.bytes`).
    #[error("record batch of {size} bytes exceeds message.max.bytes = {max}")]
    TooLarge { size: usize, max: usize },
    /// Only RecordBatch v2 (magic 2) is accepted.
    #[error("unsupported record batch magic {magic} (only magic 2 is supported)")]
    UnsupportedMagic { magic: i8 },
    /// The CRC-32C over attributes..end does not match the stored one.
    #[error("record batch CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// recordCount / lastOffsetDelta are impossible for the batch's size.
    #[error("invalid record count {count} (lastOffsetDelta {last_offset_delta}, {records_bytes} bytes of records)")]
    InvalidRecordCount {
        count: i32,
        last_offset_delta: i32,
        records_bytes: usize,
    },
    /// A record inside the batch is malformed, or the batch is of a kind clients may
    /// not write (Kafka's INVALID_RECORD).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A record's timestamp is outside what the topic accepts (INVALID_TIMESTAMP).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Attribute bits 0-2 name no codec (UNSUPPORTED_COMPRESSION_TYPE).
    #[error("unsupported compression codec {0} (known: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)")]
    UnsupportedCompression(i16),
    /// The builder was given nothing to encode or the encoder refused the records.
    #[error("cannot build record batch: {0}")]
    Build(String),
    /// The records inside a batch could not be decoded.
    #[error("cannot decode records: {0}")]
    Decode(String),
}
