//! `ringlog iotune`: measure the data directory's device and size the logs' I/O
//! from it, as `rpk iotune` does for Redpanda.
//!
//! - [`measure`]: the glommio DMA measurements (sequential writes at several block
//!   sizes and queue depths, fdatasync latency, sequential and random reads).
//! - [`properties`]: the `io-properties.toml` file and the pure rules that turn the
//!   figures into `log.write.buffer.bytes`, `log.write.inflight.max` and
//!   `log.read.ahead.bytes`.
//! - [`apply`]: what `ringlog serve` does with the file at start.

pub mod measure;
pub mod properties;

use std::path::PathBuf;

use tracing::info;

use crate::config::{BrokerConfig, ConfigError, IoPropertiesFile, IO_PROPERTIES_FILE};
use properties::{IoProperties, PropertiesError};

/// Why iotune could not measure.
#[derive(Debug, thiserror::Error)]
pub enum IotuneError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] ringlog_storage::StorageError),
    #[error("{dir} has {free} bytes free; iotune needs at least {needed} to measure without crowding the broker's data")]
    NoSpace {
        dir: PathBuf,
        free: u64,
        needed: u64,
    },
}

/// Why the broker would not start with its io properties.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Properties(#[from] PropertiesError),
    #[error("io-properties: {0}")]
    Config(#[from] ConfigError),
}

/// Reads the io-properties file `config` names (by default the data directory's, if
/// it is there) and applies its derived settings to every key the configuration
/// did not set, logging each value taken. Returns the file used, if any.
pub fn apply(config: &mut BrokerConfig) -> Result<Option<PathBuf>, ApplyError> {
    let path = match &config.io_properties_file {
        IoPropertiesFile::Off => return Ok(None),
        IoPropertiesFile::At(p) => p.clone(),
        IoPropertiesFile::InDataDir => {
            let p = config.data_dir.join(IO_PROPERTIES_FILE);
            if !p.exists() {
                info!(
                    file = %p.display(),
                    write_buffer_bytes = config.log.write_buffer_bytes,
                    inflight_writes_max = config.log.inflight_writes_max,
                    read_ahead_bytes = config.log.read_ahead_bytes,
                    "no io properties: log I/O uses its defaults; `ringlog iotune --data-dir` measures the device"
                );
                return Ok(None);
            }
            p
        }
    };
    let props = IoProperties::load(&path)?;
    let source = format!("{} (ringlog iotune)", path.display());
    for (key, value) in props.derived.settings() {
        if config.is_explicit(key) {
            info!(
                key,
                measured = value,
                "io properties: keeping the configured value"
            );
            continue;
        }
        config.set(key, &value.to_string(), &source)?;
        // Measured, not configured: a reload compares only what the sources set.
        config.explicit.remove(key);
    }
    let best_write = props
        .measured
        .seq_write
        .iter()
        .map(|t| t.bytes_per_sec)
        .max()
        .unwrap_or(0);
    info!(
        file = %path.display(),
        measured_at_unix = props.measured_at_unix,
        write_buffer_bytes = config.log.write_buffer_bytes,
        inflight_writes_max = config.log.inflight_writes_max,
        read_ahead_bytes = config.log.read_ahead_bytes,
        seq_write_mb_per_sec = best_write / 1_000_000,
        fdatasync_p99_us = props.measured.fdatasync_p99_us,
        rand_read_iops = props.measured.rand_read_iops,
        "log I/O sized from io properties"
    );
    Ok(Some(path))
}
