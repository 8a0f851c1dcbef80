//! Opening a log directory: the recovery policy, apart from the append and read
//! paths (Kafka's `LogLoader`). [`load`] returns what it found as a value
//! ([`LoadedLog`]); [`crate::PartitionLog`] is built from it and never recovers.
//!
//! Closed segments are trusted through their index files when those are present and
//! (for compacted logs) describe the segment file as it is; otherwise they are
//! scanned batch by batch, CRC-checked. The newest segment is scanned unless the log
//! was closed cleanly, and cut at the first batch that is torn or is not there. Every
//! segment must start where the previous one ends (compaction may leave gaps).

use std::collections::BTreeMap;
use std::path::Path;

use tracing::{debug, info, warn};

use crate::config::LogConfig;
use crate::error::io_err;
use crate::files::SegmentFile;
use crate::log::create_segment;
use crate::recovery::{self, ScanMode};
use crate::segment::{parse_log_name, segment_file, Segment, LOG_SUFFIX};
use crate::shared::LogShared;
use crate::{Result, StorageError};

/// Name of the file whose presence says the log was closed cleanly.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";

/// How the last `open` found the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The clean-shutdown marker was present, so no segment was scanned.
    pub clean: bool,
    /// Segments whose batches were scanned (CRC-checked) during open.
    pub segments_scanned: usize,
    /// Bytes cut from the newest segment: a torn tail, or unwritten preallocated space.
    pub truncated_bytes: u64,
}

/// A loaded log: its segments (the last is the active one, never empty of a file),
/// where its offsets stand, and how it was found.
pub(crate) struct LoadedLog {
    pub segments: BTreeMap<i64, Segment>,
    /// The first offset of the first segment.
    pub log_start: i64,
    /// The next offset to assign: the active segment's end.
    pub next_offset: i64,
    /// The active segment's last partial block, which the writer rewrites whole.
    pub tail: Vec<u8>,
    pub report: OpenReport,
}

/// Opens (creating if needed) the log in `dir` and recovers it if it was not closed
/// cleanly; the directory is synced before this returns.
pub(crate) async fn load(
    dir: &Path,
    config: &LogConfig,
    now: i64,
    shared: &LogShared,
) -> Result<LoadedLog> {
    ensure_dir(dir)?;
    recovery::probe_device_once(dir).await?;
    let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
    let clean = marker.exists();
    let mut report = OpenReport {
        clean,
        ..OpenReport::default()
    };
    let mut bases = list_segments(dir)?;
    bases.sort_unstable();
    let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
    let count = bases.len();
    for (i, base) in bases.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let seg = load_segment(
            dir,
            base,
            is_last && !clean,
            is_last,
            config,
            shared,
            now,
            &mut report,
        )
        .await?;
        if let Some(prev) = segments.values().next_back() {
            check_follows(prev, &seg, config.cleanup.compact)?;
        }
        segments.insert(base, seg);
    }
    if segments.is_empty() {
        let seg = create_segment(dir, 0, now, shared).await?;
        segments.insert(0, seg);
    }
    // The active segment's index files are rewritten at the next seal; stale ones
    // must not be trusted after a crash that follows more appends.
    let active = segments.values().next_back().expect("inserted above");
    recovery::remove_file(&active.index_path(dir)).await?;
    recovery::remove_file(&active.time_index_path(dir)).await?;
    if clean {
        recovery::remove_file(&marker).await?;
    }
    recovery::sync_dir(dir).await?;
    let tail =
        recovery::read_tail_block(&*active.file.get().await?, &active.path, active.size).await?;
    let next_offset = active.next_offset;
    let log_start = segments.values().next().map_or(0, |s| s.base_offset);
    if log_start > next_offset {
        return Err(StorageError::Corruption {
            segment: active.path.clone(),
            position: 0,
            reason: format!("the log ends at offset {next_offset}, before its start {log_start}"),
        });
    }
    info!(dir = %dir.display(), log_start, log_end = next_offset, segments = segments.len(),
          clean, scanned = report.segments_scanned, "opened partition log");
    Ok(LoadedLog {
        segments,
        log_start,
        next_offset,
        tail,
        report,
    })
}

/// Opens one segment: from its index files when they can be trusted (a closed
/// segment, or the newest after a clean close), else by scanning it, cutting a torn
/// or unwritten tail and (for a closed segment) writing its index files again.
#[allow(clippy::too_many_arguments)]
async fn load_segment(
    dir: &Path,
    base: i64,
    must_scan: bool,
    is_last: bool,
    config: &LogConfig,
    shared: &LogShared,
    now: i64,
    report: &mut OpenReport,
) -> Result<Segment> {
    let path = segment_file(dir, base, LOG_SUFFIX);
    let file = recovery::open_rw(&path, false).await?;
    let file = SegmentFile::opened(path, file, &shared.files);
    let mut seg = Segment::new_empty(dir, base, file, now);
    if !must_scan {
        if let Some((summary, offsets, times)) = trusted_indexes(dir, &seg, is_last, config).await?
        {
            seg.next_offset = summary.next_offset;
            seg.size = summary.data_bytes;
            seg.max_timestamp = summary.max_timestamp;
            seg.offset_index = offsets;
            seg.time_index = times;
            return Ok(seg);
        }
    }
    let mode = if is_last {
        ScanMode::Tail
    } else if config.cleanup.compact {
        ScanMode::Compacted
    } else {
        ScanMode::Closed
    };
    let outcome = recovery::scan_segment(
        &mut seg,
        None,
        config.max_batch_bytes,
        config.index_interval_bytes,
        mode,
        config.read_ahead_bytes,
    )
    .await?;
    report.segments_scanned += 1;
    if outcome.file_len > seg.size {
        let cut = outcome.file_len - seg.size;
        report.truncated_bytes += cut;
        match &outcome.stop_reason {
            Some(reason) if !outcome.stopped_at_zeros => warn!(
                segment = %seg.path.display(), position = seg.size, bytes = cut, %reason,
                "truncating torn tail found by recovery"
            ),
            _ => debug!(
                segment = %seg.path.display(), position = seg.size, bytes = cut,
                "trimming unwritten preallocated space"
            ),
        }
        let file = seg.file.get().await?;
        file.truncate(seg.size)
            .await
            .map_err(|e| io_err("truncate", &seg.path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| io_err("fdatasync", &seg.path, e))?;
    }
    if !is_last {
        recovery::write_indexes(recovery::encode_indexes(dir, &seg)).await?;
    }
    Ok(seg)
}

/// A segment's index files, if they can stand for a scan. In a compacted log they
/// describe the segment file they were written for: a file of another size (a
/// cleaning a crash interrupted) is scanned instead. (Elsewhere a size that
/// disagrees is damage, reported when the missing bytes are read.)
async fn trusted_indexes(
    dir: &Path,
    seg: &Segment,
    is_last: bool,
    config: &LogConfig,
) -> Result<Option<recovery::LoadedIndexes>> {
    let len = if config.cleanup.compact && !is_last {
        let f = seg.file.get().await?;
        Some(
            f.file_size()
                .await
                .map_err(|e| io_err("stat", &seg.path, e))?,
        )
    } else {
        None
    };
    Ok(recovery::load_indexes(dir, seg)
        .await
        .filter(|(summary, _, _)| len.is_none_or(|len| summary.data_bytes == len)))
}

/// Refuses a segment that does not start where `prev` ends (cleaning may remove a
/// compacted segment's last batches, so a compacted log may have a gap).
fn check_follows(prev: &Segment, seg: &Segment, compact: bool) -> Result<()> {
    let gap_allowed = compact && prev.next_offset < seg.base_offset;
    if prev.next_offset == seg.base_offset || gap_allowed {
        return Ok(());
    }
    Err(StorageError::Corruption {
        segment: seg.path.clone(),
        position: 0,
        reason: format!(
            "segment starts at offset {} but the previous one ends at {}",
            seg.base_offset, prev.next_offset
        ),
    })
}

/// Creates the log directory. Runs once per log at open, before the log serves.
fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))
}

/// Base offsets of the `.log` files in `dir`. Runs once per log at open.
fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("list", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_log_name) {
            bases.push(base);
        }
    }
    Ok(bases)
}
