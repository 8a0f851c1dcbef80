//! Storage errors. Each carries what was being done and to which file, so an operator
//! reading a log line knows where to look.

use std::path::PathBuf;

use ringlog_schema::BatchError;

/// An error from the partition log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The batch handed to `append` was refused; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A read or lookup below the log start or beyond the log end.
    #[error("offset {offset} is out of range: the log holds [{log_start}, {log_end})")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// Stored data failed its checks where it cannot be a torn write.
    #[error("corrupt data in segment {segment} at position {position}: {reason}")]
    Corruption {
        segment: PathBuf,
        position: u64,
        reason: String,
    },
    /// An earlier write or fdatasync failed; the log refuses further writes rather
    /// than retrying and risking acknowledging data the disk did not keep.
    #[error("log {dir} stopped accepting writes after an I/O error: {reason}")]
    LogFailed { dir: PathBuf, reason: String },
    /// The log was truncated below records still waiting to become durable; they are
    /// gone and must not be acknowledged.
    #[error("log {dir} was truncated to {log_end} before offset {offset} became durable")]
    Truncated {
        dir: PathBuf,
        offset: i64,
        log_end: i64,
    },
    /// A replicated batch does not continue the log: its offsets are the leader's,
    /// and they must start at this log's end.
    #[error("log {dir}: a replicated batch at offset {base_offset} does not continue the log end {log_end}")]
    NotContiguous {
        dir: PathBuf,
        base_offset: i64,
        log_end: i64,
    },
    /// The log was closed.
    #[error("log {dir} is closed")]
    Closed { dir: PathBuf },
    /// A configuration value is out of its allowed range.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Builds the `Io` variant from a glommio or std error.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
    e: impl Into<std::io::Error>,
) -> StorageError {
    StorageError::Io {
        op,
        path: path.into(),
        source: e.into(),
    }
}
