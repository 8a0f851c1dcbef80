//! A segment: one `.log` file of batches starting at `base_offset`, its two sparse
//! indexes and the summary retention and lookups need.
//!
//! Files: `<base_offset:020>.log`, `.index`, `.timeindex` (see `index`). Closed segments
//! are immutable and fully durable (fdatasynced at roll, trimmed to their exact size);
//! only the newest segment of a log is written.

use std::path::{Path, PathBuf};

use crate::files::SegmentFile;
use crate::index::{OffsetIndex, SegmentSummary, TimeIndex};
use crate::scan::ScannedBatch;

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `<dir>/<base:020>.<suffix>`
pub(crate) fn segment_file(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

/// Parses a segment base offset out of a `.log` file name.
pub(crate) fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The index-side state of a segment that each scanned batch updates.
pub(crate) struct IndexState<'a> {
    pub base_offset: i64,
    pub max_timestamp: &'a mut i64,
    pub offset_index: &'a mut OffsetIndex,
    pub time_index: &'a mut TimeIndex,
}

/// Adds the batch at `position` to a segment's indexes and running max timestamp
/// (pure: shared by recovery and `image::scan_image`). The scan guarantees
/// `base_offset <= batch.base_offset` and an offset span within `u32` of the base.
pub(crate) fn index_batch(
    state: IndexState<'_>,
    position: u64,
    batch: &ScannedBatch,
    index_interval: u32,
) {
    let relative = (batch.base_offset - state.base_offset) as u32;
    *state.max_timestamp = (*state.max_timestamp).max(batch.max_timestamp);
    if state
        .offset_index
        .on_batch(relative, position as u32, batch.len as u32, index_interval)
    {
        state
            .time_index
            .on_indexed_batch(*state.max_timestamp, relative);
    }
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub next_offset: i64,
    /// Bytes of batches (the logical file size).
    pub size: u64,
    pub max_timestamp: i64,
    /// Clock reading when the segment was created or opened, for `segment.ms`.
    pub opened_ms: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// The `.log` file: open on demand, closed when cold (see `files`).
    pub file: SegmentFile,
    pub path: PathBuf,
}

impl Segment {
    pub fn new_empty(dir: &Path, base: i64, file: SegmentFile, now_ms: i64) -> Self {
        Self {
            base_offset: base,
            next_offset: base,
            size: 0,
            max_timestamp: i64::MIN,
            opened_ms: now_ms,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            file,
            path: segment_file(dir, base, LOG_SUFFIX),
        }
    }

    /// Adds the batch at `position` (== `self.size`) to the indexes and summary.
    pub fn on_batch(&mut self, position: u64, batch: &ScannedBatch, index_interval: u32) {
        debug_assert_eq!(position, self.size);
        index_batch(
            IndexState {
                base_offset: self.base_offset,
                max_timestamp: &mut self.max_timestamp,
                offset_index: &mut self.offset_index,
                time_index: &mut self.time_index,
            },
            position,
            batch,
            index_interval,
        );
        self.size = position + batch.len as u64;
        self.next_offset = batch.last_offset + 1;
    }

    pub fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            data_bytes: self.size,
            max_timestamp: self.max_timestamp,
        }
    }

    pub fn index_path(&self, dir: &Path) -> PathBuf {
        segment_file(dir, self.base_offset, INDEX_SUFFIX)
    }

    pub fn time_index_path(&self, dir: &Path) -> PathBuf {
        segment_file(dir, self.base_offset, TIME_INDEX_SUFFIX)
    }

    /// Relative offset within this segment, clamped to the u32 the indexes use.
    pub fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = segment_file(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(p, PathBuf::from("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_log_name(name), Some(42));
        for bad in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.index",
        ] {
            assert_eq!(parse_log_name(bad), None, "{bad}");
        }
    }
}
