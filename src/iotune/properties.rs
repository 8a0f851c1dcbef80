//! `io-properties.toml`: what `ringlog iotune` measured on a data directory's device,
//! and the log settings derived from it (pure, so the rules are tested alone).
//!
//! The rules pick the smallest setting that gets within [`GOOD_ENOUGH`] of the best
//! figure measured: a bigger buffer or a deeper queue past that point costs memory and
//! latency (a commit waits for every write in flight) for little bandwidth.

use std::path::Path;

use ringlog_storage::{
    BLOCK_BYTES, INFLIGHT_WRITES_MAX, READ_AHEAD_BYTES_MAX, READ_AHEAD_BYTES_MIN,
    WRITE_BUFFER_BYTES_MAX,
};
use serde::{Deserialize, Serialize};

/// Share of the best bandwidth a setting must reach to be chosen.
pub const GOOD_ENOUGH: f64 = 0.9;
/// Smallest write-behind buffer iotune recommends (smaller ones cost a write each
/// per few batches under load).
pub const WRITE_BUFFER_BYTES_FLOOR: u64 = 64 << 10;

/// One sequential run: `queue_depth` requests of `block_bytes` in flight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub block_bytes: u64,
    pub queue_depth: u32,
    pub bytes_per_sec: u64,
}

/// The figures of one iotune run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// fdatasync after a 4 KiB overwrite, µs.
    pub fdatasync_p50_us: u64,
    pub fdatasync_p99_us: u64,
    pub fdatasync_max_us: u64,
    pub fdatasync_samples: u64,
    /// Random 4 KiB reads at `rand_read_queue_depth` in flight.
    pub rand_read_iops: u64,
    pub rand_read_block_bytes: u64,
    pub rand_read_queue_depth: u32,
    pub seq_write: Vec<Throughput>,
    pub seq_read: Vec<Throughput>,
}

/// Log settings chosen from the figures (config keys in parentheses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    /// `log.write.buffer.bytes`: size of one write-behind buffer.
    pub write_buffer_bytes: u64,
    /// `log.write.inflight.max`: write-behind buffers in flight per log.
    pub inflight_writes_max: u32,
    /// `log.read.ahead.bytes`: read size of sequential scans (recovery).
    pub read_ahead_bytes: u64,
}

impl Derived {
    /// `(config key, value)` pairs, in the order they are applied and logged.
    pub fn settings(&self) -> [(&'static str, u64); 3] {
        [
            ("log.write.buffer.bytes", self.write_buffer_bytes),
            (
                "log.write.inflight.max",
                u64::from(self.inflight_writes_max),
            ),
            ("log.read.ahead.bytes", self.read_ahead_bytes),
        ]
    }
}

/// The file's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoProperties {
    /// The directory measured (the device under it).
    pub data_dir: String,
    /// When, in seconds since the Unix epoch.
    pub measured_at_unix: u64,
    pub duration_seconds: f64,
    pub measured: Measured,
    pub derived: Derived,
}

/// Why `io-properties.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PropertiesError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid io-properties file (rerun `ringlog iotune`): {reason}")]
    Invalid { path: String, reason: String },
}

impl IoProperties {
    /// The file's text: a comment saying what it is, then the TOML.
    pub fn to_file_text(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!(
            "# Written by `ringlog iotune`; `ringlog serve` reads it from its data directory\n\
             # at start (`io.properties.file`) and applies [derived] unless the config sets\n\
             # those keys. Rerun iotune after changing the device or file system.\n\n{body}"
        )
    }

    /// Reads and checks a file: its derived settings must be ones the log accepts.
    pub fn load(path: &Path) -> Result<Self, PropertiesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PropertiesError::Read {
            path: shown.clone(),
            source,
        })?;
        let props: IoProperties = toml::from_str(&text).map_err(|e| PropertiesError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let d = &props.derived;
        let block = BLOCK_BYTES as u64;
        let problem = if d.write_buffer_bytes % block != 0
            || !(block..=WRITE_BUFFER_BYTES_MAX as u64).contains(&d.write_buffer_bytes)
        {
            Some("write_buffer_bytes")
        } else if !(1..=INFLIGHT_WRITES_MAX as u32).contains(&d.inflight_writes_max) {
            Some("inflight_writes_max")
        } else if d.read_ahead_bytes % block != 0
            || !(READ_AHEAD_BYTES_MIN as u64..=READ_AHEAD_BYTES_MAX as u64)
                .contains(&d.read_ahead_bytes)
        {
            Some("read_ahead_bytes")
        } else {
            None
        };
        match problem {
            Some(field) => Err(PropertiesError::Invalid {
                path: shown,
                reason: format!("derived.{field} is out of range"),
            }),
            None => Ok(props),
        }
    }
}

/// The settings the figures call for.
pub fn derive(m: &Measured) -> Derived {
    // Write buffer: the smallest block size whose best queue depth gets near the best
    // bandwidth of any; then the shallowest queue that gets near that block's best.
    let best_of_block = |block: u64| {
        m.seq_write
            .iter()
            .filter(|t| t.block_bytes == block)
            .map(|t| t.bytes_per_sec)
            .max()
            .unwrap_or(0)
    };
    let best = m
        .seq_write
        .iter()
        .map(|t| t.bytes_per_sec)
        .max()
        .unwrap_or(0);
    let mut blocks: Vec<u64> = m.seq_write.iter().map(|t| t.block_bytes).collect();
    blocks.sort_unstable();
    blocks.dedup();
    let block = blocks
        .iter()
        .copied()
        .find(|b| near(best_of_block(*b), best))
        .unwrap_or(WRITE_BUFFER_BYTES_FLOOR);
    let block_best = best_of_block(block);
    let depth = m
        .seq_write
        .iter()
        .filter(|t| t.block_bytes == block && near(t.bytes_per_sec, block_best))
        .map(|t| t.queue_depth)
        .min()
        .unwrap_or(1);
    // Read-ahead: the smallest read size that gets near the best sequential read.
    let read_best = m
        .seq_read
        .iter()
        .map(|t| t.bytes_per_sec)
        .max()
        .unwrap_or(0);
    let read_ahead = m
        .seq_read
        .iter()
        .filter(|t| near(t.bytes_per_sec, read_best))
        .map(|t| t.block_bytes)
        .min()
        .unwrap_or(READ_AHEAD_BYTES_MIN as u64);
    Derived {
        write_buffer_bytes: align(block)
            .clamp(WRITE_BUFFER_BYTES_FLOOR, WRITE_BUFFER_BYTES_MAX as u64),
        inflight_writes_max: depth.clamp(1, INFLIGHT_WRITES_MAX as u32),
        read_ahead_bytes: align(read_ahead)
            .clamp(READ_AHEAD_BYTES_MIN as u64, READ_AHEAD_BYTES_MAX as u64),
    }
}

fn near(value: u64, best: u64) -> bool {
    value as f64 >= GOOD_ENOUGH * best as f64
}

fn align(bytes: u64) -> u64 {
    bytes.next_multiple_of(BLOCK_BYTES as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MB: u64 = 1_000_000;

    fn t(block_bytes: u64, queue_depth: u32, mb_per_sec: u64) -> Throughput {
        Throughput {
            block_bytes,
            queue_depth,
            bytes_per_sec: mb_per_sec * MB,
        }
    }

    fn measured(seq_write: Vec<Throughput>, seq_read: Vec<Throughput>) -> Measured {
        Measured {
            fdatasync_p50_us: 50,
            fdatasync_p99_us: 200,
            fdatasync_max_us: 900,
            fdatasync_samples: 1000,
            rand_read_iops: 400_000,
            rand_read_block_bytes: 4096,
            rand_read_queue_depth: 32,
            seq_write,
            seq_read,
        }
    }

    #[test]
    fn picks_the_smallest_buffer_and_queue_near_the_best() {
        let m = measured(
            vec![
                t(64 * KIB, 1, 400),
                t(64 * KIB, 4, 1500),
                t(64 * KIB, 16, 2000),
                t(256 * KIB, 1, 1200),
                t(256 * KIB, 4, 2900),
                t(256 * KIB, 16, 3000),
                t(1024 * KIB, 1, 2000),
                t(1024 * KIB, 4, 3100),
                t(1024 * KIB, 16, 3100),
            ],
            vec![
                t(1024 * KIB, 2, 2000),
                t(4096 * KIB, 2, 3000),
                t(16384 * KIB, 2, 3100),
            ],
        );
        let d = derive(&m);
        // 256 KiB reaches 3000 >= 0.9 × 3100; within it, depth 4 reaches 2900 >= 2700.
        assert_eq!(d.write_buffer_bytes, 256 * KIB);
        assert_eq!(d.inflight_writes_max, 4);
        assert_eq!(d.read_ahead_bytes, 4096 * KIB);
    }

    #[test]
    fn a_device_that_needs_depth_gets_it_and_values_stay_in_range() {
        let m = measured(
            vec![t(64 * KIB, 1, 100), t(64 * KIB, 128, 3000)],
            vec![t(64 * KIB, 2, 100), t(128 * MB, 2, 5000)],
        );
        let d = derive(&m);
        assert_eq!(d.write_buffer_bytes, 64 * KIB);
        assert_eq!(d.inflight_writes_max, INFLIGHT_WRITES_MAX as u32);
        assert_eq!(d.read_ahead_bytes, READ_AHEAD_BYTES_MAX as u64);
    }

    #[test]
    fn no_figures_give_safe_defaults() {
        let d = derive(&measured(vec![], vec![]));
        assert_eq!(d.write_buffer_bytes, WRITE_BUFFER_BYTES_FLOOR);
        assert_eq!(d.inflight_writes_max, 1);
        assert_eq!(d.read_ahead_bytes, READ_AHEAD_BYTES_MIN as u64);
    }

    #[test]
    fn the_file_round_trips_and_bad_values_are_named() {
        let m = measured(vec![t(256 * KIB, 4, 3000)], vec![t(4096 * KIB, 2, 3000)]);
        let props = IoProperties {
            data_dir: "/var/lib/ringlog".into(),
            measured_at_unix: 1,
            duration_seconds: 20.0,
            derived: derive(&m),
            measured: m,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io-properties.toml");
        std::fs::write(&path, props.to_file_text()).unwrap();
        assert_eq!(IoProperties::load(&path).unwrap(), props);

        let mut bad = props.clone();
        bad.derived.inflight_writes_max = 0;
        std::fs::write(&path, bad.to_file_text()).unwrap();
        let e = IoProperties::load(&path).unwrap_err().to_string();
        assert!(e.contains("inflight_writes_max"), "{e}");
        std::fs::write(&path, "derived = 3\n").unwrap();
        let e = IoProperties::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a valid io-properties file"), "{e}");
    }
}
