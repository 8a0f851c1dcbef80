//! Log compaction (`cleanup.policy=compact`), Kafka's log cleaner on one partition:
//! the latest record of each key is kept, older ones go, and a key's tombstone (a
//! null value) goes too once it is older than `delete.retention.ms`. Offsets are
//! preserved: a kept record keeps its offset, and readers skip the gaps.
//!
//! One pass (`PartitionLog::compact`), run by the shard's background task (a
//! low-share task queue, so request handling comes first; every batch yields):
//!
//! 1. When the closed segments not yet cleaned (after the checkpoint) are at least
//!    `min.cleanable.dirty.ratio` of all closed bytes, map each key of that dirty
//!    part to its latest offset (bounded by `KEYS_BYTES_MAX`; a map that fills stops
//!    at a segment boundary and the rest waits for the next pass).
//! 2. Rewrite every closed segment below that point, oldest first, into
//!    `<base>.log.cleaned` with only the records to keep (a batch losing records is
//!    rebuilt with the same base offset, timestamps and producer fields; a batch
//!    losing all goes), fdatasynced. The active segment is never touched.
//! 3. Swap it in under the append lock, if the segment is still the one read
//!    (retention or truncation may have changed it): remove the old index files,
//!    rename the cleaned file over the segment, fsync the directory, write the new
//!    indexes. A crash at any step leaves either the old segment or the new one, and
//!    a segment without index files is scanned (offsets may have gaps) at open.
//! 4. Record the checkpoint (`cleaner-offset-checkpoint`).

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use glommio::io::DmaFile;
use ringlog_schema::compact::{filter_records, Filtered};
use ringlog_schema::{split_batches, BatchHeader};
use tracing::{debug, info, warn};

use crate::error::io_err;
use crate::files::SegmentFile;
use crate::log::PartitionLog;
use crate::recovery;
use crate::scan::ScannedBatch;
use crate::segment::{segment_file, Segment, LOG_SUFFIX};
use crate::{Offset, Result, StorageError};

/// Bytes of keys one pass maps (Kafka's `log.cleaner.dedupe.buffer.size` idea).
pub const KEYS_BYTES_MAX: usize = 32 << 20;
/// Bookkeeping per mapped key, beyond the key itself.
const KEY_OVERHEAD_BYTES: usize = 48;
/// Bytes read from a segment at a time while cleaning.
const READ_BYTES: usize = 1 << 20;
/// The cleaned segment is written in pieces of this size.
const WRITE_BYTES: usize = 1 << 20;
const BLOCK: usize = crate::config::BLOCK_BYTES;
/// The checkpoint file in the partition directory.
const CHECKPOINT: &str = "cleaner-offset-checkpoint";
const CLEANED_SUFFIX: &str = "cleaned";

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Every closed segment below this offset is clean.
    pub cleaned_to: i64,
}

/// Each key's latest offset in the dirty part of the log.
struct KeyMap {
    latest: HashMap<Bytes, i64>,
    bytes: usize,
}

impl KeyMap {
    /// Records `key` at `offset`; false once the map is full (the key is not added).
    fn insert(&mut self, key: &[u8], offset: i64) -> bool {
        if let Some(o) = self.latest.get_mut(key) {
            *o = (*o).max(offset);
            return true;
        }
        if self.bytes + key.len() + KEY_OVERHEAD_BYTES > KEYS_BYTES_MAX {
            return false;
        }
        self.bytes += key.len() + KEY_OVERHEAD_BYTES;
        self.latest.insert(Bytes::copy_from_slice(key), offset);
        true
    }
}

/// Pure: whether a record at `offset` survives. Keyless records are kept (a
/// compacted topic refuses them at produce; older ones stay as they are).
pub(crate) fn keep(
    offset: i64,
    key: Option<&[u8]>,
    tombstone: bool,
    latest: Option<i64>,
    tombstones_expired: bool,
) -> bool {
    if key.is_none() {
        return true;
    }
    if latest.is_some_and(|l| offset < l) {
        return false;
    }
    !(tombstone && tombstones_expired)
}

/// The checkpoint in `dir`, or 0 (nothing cleaned) when there is none.
pub(crate) fn read_checkpoint(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(CHECKPOINT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A closed segment as the pass saw it.
#[derive(Clone, Copy)]
struct Closed {
    base: i64,
    next: i64,
    size: u64,
    max_timestamp: i64,
}

impl PartitionLog {
    /// One cleaning pass (see the module doc); `None` when there was nothing worth
    /// cleaning.
    pub async fn compact(&self, now_ms: i64) -> Result<Option<CleanReport>> {
        if !self.config.cleanup.compact || self.failure.borrow().is_some() {
            return Ok(None);
        }
        let closed: Vec<Closed> = {
            let st = self.state.borrow();
            let n = st.segments.len().saturating_sub(1);
            st.segments
                .values()
                .take(n)
                .map(|s| Closed {
                    base: s.base_offset,
                    next: s.next_offset,
                    size: s.size,
                    max_timestamp: s.max_timestamp,
                })
                .collect()
        };
        let cleaned_to = self.cleaned_to.get();
        let total: u64 = closed.iter().map(|s| s.size).sum();
        let dirty: u64 = closed
            .iter()
            .filter(|s| s.next > cleaned_to)
            .map(|s| s.size)
            .sum();
        if dirty == 0 || (dirty as f64) < self.config.min_cleanable_dirty_ratio * total as f64 {
            return Ok(None);
        }
        // 1. The latest offset of each key in the dirty part.
        let mut map = KeyMap {
            latest: HashMap::new(),
            bytes: 0,
        };
        let mut clean_to = cleaned_to;
        let mut full = false;
        'segments: for seg in closed.iter().filter(|s| s.next > cleaned_to) {
            self.each_batch(seg, |batch| {
                for r in batch.records()? {
                    if let Some(k) = &r.key {
                        full |= !map.insert(k, r.offset);
                    }
                }
                Ok(())
            })
            .await?;
            if full {
                break 'segments;
            }
            clean_to = seg.next;
        }
        if clean_to <= cleaned_to {
            if full {
                warn!(dir = %self.dir.display(), keys_bytes_max = KEYS_BYTES_MAX,
                      "one segment holds more distinct keys than a cleaning pass maps; it is not compacted");
            }
            return Ok(None);
        }
        // 2–3. Rewrite each closed segment below that point and swap it in.
        let mut report = CleanReport {
            cleaned_to: clean_to,
            ..CleanReport::default()
        };
        let horizon = now_ms
            .saturating_sub(i64::try_from(self.config.delete_retention_ms).unwrap_or(i64::MAX));
        for seg in closed.iter().filter(|s| s.base < clean_to) {
            let expired = seg.max_timestamp < horizon;
            let removed = self.rewrite(seg, &map, expired, &mut report).await?;
            if removed {
                report.segments_rewritten += 1;
            }
        }
        // 4. The checkpoint.
        self.cleaned_to.set(clean_to);
        self.write_checkpoint(clean_to).await;
        info!(dir = %self.dir.display(), segments = report.segments_rewritten,
              records_removed = report.records_removed, bytes_before = report.bytes_before,
              bytes_after = report.bytes_after, cleaned_to = clean_to, "compacted log");
        Ok(Some(report))
    }

    /// Calls `f` on every batch of a closed segment, in order, yielding between.
    async fn each_batch(
        &self,
        seg: &Closed,
        mut f: impl FnMut(
            &ringlog_schema::RecordBatch,
        ) -> std::result::Result<(), ringlog_schema::BatchError>,
    ) -> Result<()> {
        let mut at = seg.base;
        while at < seg.next {
            let chunks = self.read(Offset(at), READ_BYTES).await?;
            if chunks.is_empty() {
                break;
            }
            for chunk in chunks {
                for batch in split_batches(chunk) {
                    let batch = batch?;
                    if batch.base_offset() >= seg.next {
                        return Ok(());
                    }
                    f(&batch)?;
                    at = batch.last_offset() + 1;
                }
            }
            glommio::yield_if_needed().await;
        }
        Ok(())
    }

    /// Rewrites one closed segment without the records to drop and swaps it in;
    /// false when nothing was to be removed (the segment is left alone).
    async fn rewrite(
        &self,
        seg: &Closed,
        map: &KeyMap,
        tombstones_expired: bool,
        report: &mut CleanReport,
    ) -> Result<bool> {
        let mut kept: Vec<Bytes> = Vec::new();
        let mut changed = false;
        let mut removed = 0u64;
        self.each_batch(seg, |batch| {
            let filtered = filter_records(batch, |offset, r| {
                let latest = r.key.and_then(|k| map.latest.get(k).copied());
                let keep = keep(offset, r.key, r.value.is_none(), latest, tombstones_expired);
                removed += u64::from(!keep);
                keep
            })?;
            match filtered {
                Filtered::Unchanged => kept.push(batch.bytes().clone()),
                Filtered::Empty => changed = true,
                Filtered::Rewritten(b) => {
                    changed = true;
                    kept.push(b);
                }
            }
            Ok(())
        })
        .await?;
        if !changed {
            return Ok(false);
        }
        let path = segment_file(&self.dir, seg.base, LOG_SUFFIX);
        let cleaned = self
            .dir
            .join(format!("{:020}.{LOG_SUFFIX}.{CLEANED_SUFFIX}", seg.base));
        let (file, batches, size) = write_cleaned(&cleaned, &kept).await?;
        // Swap, if the segment is still the one that was read.
        let _guard = self.append_lock.lock().await;
        let same = {
            let st = self.state.borrow();
            let active = st.active_base();
            st.segments.get(&seg.base).is_some_and(|s| {
                s.next_offset == seg.next && s.size == seg.size && active != Some(seg.base)
            })
        };
        if !same {
            debug!(segment = %path.display(), "segment changed while it was cleaned; the cleaned copy is dropped");
            let _ = file.close().await;
            recovery::remove_file(&cleaned).await?;
            return Ok(false);
        }
        let opened_ms = self
            .state
            .borrow()
            .segments
            .get(&seg.base)
            .map_or(0, |s| s.opened_ms);
        let mut new_seg = Segment::new_empty(
            &self.dir,
            seg.base,
            SegmentFile::opened(path.clone(), file, &self.shared.files),
            opened_ms,
        );
        recovery::remove_file(&new_seg.index_path(&self.dir)).await?;
        recovery::remove_file(&new_seg.time_index_path(&self.dir)).await?;
        recovery::sync_dir(&self.dir).await?;
        glommio::io::rename(&cleaned, &path)
            .await
            .map_err(|e| io_err("rename", &cleaned, std::io::Error::other(e.to_string())))?;
        recovery::sync_dir(&self.dir).await?;
        let interval = self.config.index_interval_bytes;
        for (position, b) in batches {
            new_seg.on_batch(position, &b, interval);
        }
        recovery::write_indexes(recovery::encode_indexes(&self.dir, &new_seg)).await?;
        report.records_removed += removed;
        report.bytes_before += seg.size;
        report.bytes_after += size;
        let mut st = self.state.borrow_mut();
        st.cache.drop_segment(seg.base);
        st.segments.insert(seg.base, new_seg);
        Ok(true)
    }

    async fn write_checkpoint(&self, offset: i64) {
        let path = self.dir.join(CHECKPOINT);
        let tmp = self.dir.join(format!("{CHECKPOINT}.tmp"));
        let write = async {
            let f = glommio::io::BufferedFile::create(&tmp).await?;
            f.write_at(format!("{offset}\n").into_bytes(), 0).await?;
            f.close().await?;
            glommio::io::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            // The next pass cleans from the older checkpoint: more work, same result.
            warn!(file = %path.display(), error = %e, "cannot write the cleaner checkpoint");
        }
    }
}

/// Writes `batches` back to back into a new file at `path`, trimmed and
/// fdatasynced; returns the open file, each batch's position and summary, and the
/// size.
async fn write_cleaned(
    path: &Path,
    batches: &[Bytes],
) -> Result<(DmaFile, Vec<(u64, ScannedBatch)>, u64)> {
    // A cleaned file a crash left behind is stale.
    recovery::remove_file(path).await?;
    let file = recovery::open_rw(path, true).await?;
    let mut placed = Vec::with_capacity(batches.len());
    let mut buf = glommio::allocate_dma_buffer(WRITE_BYTES);
    let (mut filled, mut written) = (0usize, 0u64);
    let flush = |buf: glommio::io::DmaBuffer, len: usize, at: u64| {
        let file = &file;
        async move {
            let n = file
                .write_at(buf, at)
                .await
                .map_err(|e| io_err("write", path, std::io::Error::other(e.to_string())))?;
            if n != len {
                return Err(io_err("write", path, std::io::Error::other("short write")));
            }
            Ok::<(), StorageError>(())
        }
    };
    for b in batches {
        let header = BatchHeader::read(b).ok_or_else(|| StorageError::Corruption {
            segment: path.to_path_buf(),
            position: written + filled as u64,
            reason: "a kept batch is shorter than its header".into(),
        })?;
        placed.push((
            written + filled as u64,
            ScannedBatch {
                len: b.len(),
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
            },
        ));
        let mut rest: &[u8] = b;
        while !rest.is_empty() {
            let n = rest.len().min(WRITE_BYTES - filled);
            buf.as_bytes_mut()[filled..filled + n].copy_from_slice(&rest[..n]);
            filled += n;
            rest = &rest[n..];
            if filled == WRITE_BYTES {
                let full = std::mem::replace(&mut buf, glommio::allocate_dma_buffer(WRITE_BYTES));
                flush(full, WRITE_BYTES, written).await?;
                written += WRITE_BYTES as u64;
                filled = 0;
            }
        }
        glommio::yield_if_needed().await;
    }
    let size = written + filled as u64;
    if filled > 0 {
        let padded = filled.next_multiple_of(BLOCK);
        buf.as_bytes_mut()[filled..padded].fill(0);
        let mut tail = glommio::allocate_dma_buffer(padded);
        tail.as_bytes_mut()
            .copy_from_slice(&buf.as_bytes()[..padded]);
        flush(tail, padded, written).await?;
    }
    file.truncate(size)
        .await
        .map_err(|e| io_err("truncate", path, std::io::Error::other(e.to_string())))?;
    file.fdatasync()
        .await
        .map_err(|e| io_err("fdatasync", path, std::io::Error::other(e.to_string())))?;
    Ok((file, placed, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_record_of_a_key_survives_and_old_tombstones_go() {
        // Keyless: always kept.
        assert!(keep(5, None, false, Some(9), true));
        // Older than the key's latest: removed.
        assert!(!keep(5, Some(b"k"), false, Some(9), false));
        // The latest, or a key not seen in the dirty part: kept.
        assert!(keep(9, Some(b"k"), false, Some(9), false));
        assert!(keep(3, Some(b"k"), false, None, false));
        // A tombstone stays until delete.retention.ms has passed.
        assert!(keep(9, Some(b"k"), true, Some(9), false));
        assert!(!keep(9, Some(b"k"), true, Some(9), true));
    }
}
