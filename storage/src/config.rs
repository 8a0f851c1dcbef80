//! Per-log configuration, with Kafka's names and defaults where Kafka has them.

use std::time::Duration;

use ringlog_schema::validate::{TimestampType, TIMESTAMP_AFTER_MAX_MS_DEFAULT};

use crate::{Result, StorageError};

/// O_DIRECT alignment used for every write position and buffer size.
pub const BLOCK_BYTES: usize = 4096;
/// Smallest `segment.bytes` accepted (Kafka: 14 bytes; we need room for a batch).
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest `segment.bytes`: index positions are u32 and Kafka caps it at i32::MAX.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Most write-behind buffers in flight to the device per log.
pub const INFLIGHT_WRITES_MAX: usize = 64;
/// Largest write-behind buffer.
pub const WRITE_BUFFER_BYTES_MAX: usize = 16 << 20;
/// Range of the read size of sequential scans (recovery), each prefetched one ahead.
pub const READ_AHEAD_BYTES_MIN: usize = 64 << 10;
pub const READ_AHEAD_BYTES_MAX: usize = 64 << 20;

/// When appended data is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fdatasync before acknowledging (group-committed). The default.
    Batch,
    /// fdatasync at most this often; acknowledgements do not wait for it.
    Interval(Duration),
    /// Never fdatasync on the write path (only at roll and close): the OS decides.
    Os,
}

impl std::str::FromStr for FlushPolicy {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "batch" => Ok(Self::Batch),
            "os" => Ok(Self::Os),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(|ms| Self::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    StorageError::Config(format!(
                        "log.flush = {s:?}: expected batch, os or interval:<ms> with ms > 0"
                    ))
                }),
        }
    }
}

/// `cleanup.policy`: what removes old records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// `delete`: whole segments go by `retention.ms` / `retention.bytes`.
    pub delete: bool,
    /// `compact`: the cleaner keeps only the latest record of each key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Kafka's values: `delete`, `compact`, or both comma-separated.
    pub fn parse(s: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return None,
            }
        }
        (p.delete || p.compact).then_some(p)
    }

    pub fn name(self) -> &'static str {
        match (self.delete, self.compact) {
            (true, true) => "compact,delete",
            (false, true) => "compact",
            _ => "delete",
        }
    }
}

/// Kafka's `delete.retention.ms` default: tombstones stay a day.
pub const DELETE_RETENTION_MS_DEFAULT: u64 = 86_400_000;
/// Kafka's `min.cleanable.dirty.ratio` default.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: f64 = 0.5;

/// Configuration of one partition log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when a batch would take it past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first append is this old.
    pub segment_ms: Option<u64>,
    /// `index.interval.bytes`: bytes between sparse offset-index entries.
    pub index_interval_bytes: u32,
    /// `retention.bytes`: delete closed segments while the log exceeds this.
    pub retention_bytes: Option<u64>,
    /// `retention.ms`: delete closed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// `message.max.bytes`: largest record batch accepted.
    pub max_batch_bytes: usize,
    /// `log.flush`: when appends are made durable.
    pub flush: FlushPolicy,
    /// Size of one aligned write-behind buffer.
    pub write_buffer_bytes: usize,
    /// Write-behind buffers in flight to the device at once (backpressure beyond).
    pub inflight_writes_max: usize,
    /// Bytes per read of a sequential scan (recovery), the next one read ahead.
    pub read_ahead_bytes: usize,
    /// Recent-batch cache budget; tail reads within it touch no disk.
    pub cache_bytes: usize,
    /// Segment files grow by fallocate steps of this size.
    pub preallocate_bytes: u64,
    /// `log.zero.ahead.bytes`: how far past its data the active segment is zero-filled
    /// while the log has spare time, so group commits overwrite written space instead
    /// of converting fallocated extents (see `zeroer`); never past the space already
    /// fallocated. 0 turns it off.
    pub zero_ahead_bytes: u64,
    /// `message.timestamp.type`: CreateTime (the producer's) or LogAppendTime (the
    /// broker stamps each batch as it appends it).
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime may lie.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime may lie.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy`.
    pub cleanup: CleanupPolicy,
    /// `delete.retention.ms`: how long a compacted log keeps a key's tombstone.
    pub delete_retention_ms: u64,
    /// `min.cleanable.dirty.ratio`: the share of closed bytes not yet cleaned that
    /// makes a compacted log worth cleaning.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            max_batch_bytes: 1_048_588,
            flush: FlushPolicy::Batch,
            write_buffer_bytes: 256 * 1024,
            inflight_writes_max: 8,
            read_ahead_bytes: 8 << 20,
            cache_bytes: 4 << 20,
            preallocate_bytes: 32 << 20,
            zero_ahead_bytes: 8 << 20,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            cleanup: CleanupPolicy::DELETE,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            min_cleanable_dirty_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Checks every value against its range; called by `PartitionLog::open`.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(StorageError::Config(m));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return fail(format!(
                "segment.bytes = {} must be in [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if self.segment_ms == Some(0) || self.retention_ms == Some(0) {
            return fail("segment.ms and retention.ms must be > 0 when set".into());
        }
        if self.index_interval_bytes == 0 {
            return fail("index.interval.bytes must be > 0".into());
        }
        if self.max_batch_bytes < ringlog_schema::BATCH_HEADER_LEN
            || self.max_batch_bytes as u64 > self.segment_bytes
        {
            return fail(format!(
                "message.max.bytes = {} must be in [61, segment.bytes = {}]",
                self.max_batch_bytes, self.segment_bytes
            ));
        }
        if self.write_buffer_bytes < BLOCK_BYTES
            || self.write_buffer_bytes % BLOCK_BYTES != 0
            || self.write_buffer_bytes > WRITE_BUFFER_BYTES_MAX
        {
            return fail(format!(
                "write buffer of {} bytes must be a multiple of {BLOCK_BYTES} in [{BLOCK_BYTES}, {WRITE_BUFFER_BYTES_MAX}]",
                self.write_buffer_bytes
            ));
        }
        if self.read_ahead_bytes % BLOCK_BYTES != 0
            || !(READ_AHEAD_BYTES_MIN..=READ_AHEAD_BYTES_MAX).contains(&self.read_ahead_bytes)
        {
            return fail(format!(
                "read-ahead of {} bytes must be a multiple of {BLOCK_BYTES} in [{READ_AHEAD_BYTES_MIN}, {READ_AHEAD_BYTES_MAX}]",
                self.read_ahead_bytes
            ));
        }
        if !(1..=INFLIGHT_WRITES_MAX).contains(&self.inflight_writes_max) {
            return fail(format!(
                "inflight writes {} must be in [1, {INFLIGHT_WRITES_MAX}]",
                self.inflight_writes_max
            ));
        }
        if self.preallocate_bytes < self.write_buffer_bytes as u64 {
            return fail("preallocation step must be at least one write buffer".into());
        }
        if self.timestamp_before_max_ms < 0 || self.timestamp_after_max_ms < 0 {
            return fail(
                "message.timestamp.before.max.ms and message.timestamp.after.max.ms must be >= 0"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return fail(format!(
                "min.cleanable.dirty.ratio = {} must be in [0, 1]",
                self.min_cleanable_dirty_ratio
            ));
        }
        if self.zero_ahead_bytes % BLOCK_BYTES as u64 != 0 {
            return fail(format!(
                "log.zero.ahead.bytes = {} must be a multiple of {BLOCK_BYTES}",
                self.zero_ahead_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_parses_kafka_style_values() {
        assert_eq!("batch".parse::<FlushPolicy>().unwrap(), FlushPolicy::Batch);
        assert_eq!("os".parse::<FlushPolicy>().unwrap(), FlushPolicy::Os);
        assert_eq!(
            "interval:250".parse::<FlushPolicy>().unwrap(),
            FlushPolicy::Interval(Duration::from_millis(250))
        );
        for bad in ["", "interval:", "interval:0", "interval:x", "always"] {
            assert!(bad.parse::<FlushPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        LogConfig::default().validate().unwrap();
        let bad = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("segment.bytes"));
        let bad = LogConfig {
            write_buffer_bytes: 5000,
            ..LogConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = LogConfig {
            max_batch_bytes: 10,
            ..LogConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("message.max.bytes"));
        let bad = LogConfig {
            zero_ahead_bytes: 5000,
            ..LogConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("log.zero.ahead.bytes"));
        LogConfig {
            zero_ahead_bytes: 0,
            ..LogConfig::default()
        }
        .validate()
        .unwrap();
    }
}
