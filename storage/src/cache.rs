//! The recent-batch cache: the newest batches of a log as refcounted [`Bytes`], so a
//! consumer at the tail is served with no disk I/O and no copy.
//!
//! Invariant (asserted by the log): every batch whose bytes are not yet on disk —
//! still in a write-behind buffer or in a write in flight — is in the cache. Eviction
//! therefore only drops batches the caller reports as written, and the cache may exceed
//! its budget by what is in flight.

use std::collections::VecDeque;

use bytes::Bytes;

/// One cached batch and where it lives on disk.
#[derive(Clone, Debug)]
pub(crate) struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub segment_base: i64,
    pub end_position: u64,
    pub bytes: Bytes,
}

#[derive(Debug, Default)]
pub(crate) struct BatchCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    budget: usize,
}

impl BatchCache {
    pub fn new(budget: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn push(&mut self, batch: CachedBatch) {
        debug_assert!(self
            .batches
            .back()
            .is_none_or(|b| b.last_offset < batch.base_offset));
        self.bytes += batch.bytes.len();
        self.batches.push_back(batch);
    }

    /// Drops the oldest batches while over budget and `written(batch)` holds.
    pub fn evict(&mut self, written: impl Fn(&CachedBatch) -> bool) {
        while self.bytes > self.budget {
            match self.batches.front() {
                Some(front) if written(front) => {
                    self.bytes -= front.bytes.len();
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Drops the batches of the segment at `segment_base` (rewritten by compaction:
    /// the cached copies are no longer what the log holds). Only closed segments are
    /// rewritten, so nothing dropped is unwritten.
    pub fn drop_segment(&mut self, segment_base: i64) {
        let bytes = &mut self.bytes;
        self.batches.retain(|b| {
            let keep = b.segment_base != segment_base;
            if !keep {
                *bytes -= b.bytes.len();
            }
            keep
        });
    }

    /// Base offset of the oldest cached batch.
    pub fn first_offset(&self) -> Option<i64> {
        self.batches.front().map(|b| b.base_offset)
    }

    /// Whole batches from the one containing `from`, at least one, then while the total
    /// stays within `max_bytes`. `None` when `from` is older than the cache.
    pub fn read(&self, from: i64, max_bytes: usize) -> Option<Vec<Bytes>> {
        if self.first_offset()? > from {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last_offset < from);
        let mut out = Vec::new();
        let mut total = 0usize;
        for b in self.batches.iter().skip(start) {
            if !out.is_empty() && total + b.bytes.len() > max_bytes {
                break;
            }
            total += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Some(out)
    }

    /// Drops batches at or after `offset` (truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        while self.batches.back().is_some_and(|b| b.last_offset >= offset) {
            if let Some(b) = self.batches.pop_back() {
                self.bytes -= b.bytes.len();
            }
        }
    }

    /// Drops batches entirely below `offset` (retention).
    pub fn drop_below(&mut self, offset: i64) {
        while self.batches.front().is_some_and(|b| b.last_offset < offset) {
            if let Some(b) = self.batches.pop_front() {
                self.bytes -= b.bytes.len();
            }
        }
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cb(base: i64, n: i64, len: usize) -> CachedBatch {
        CachedBatch {
            base_offset: base,
            last_offset: base + n - 1,
            segment_base: 0,
            end_position: (base as u64 + 1) * 100,
            bytes: Bytes::from(vec![base as u8; len]),
        }
    }

    #[test]
    fn reads_whole_batches_from_the_containing_one() {
        let mut c = BatchCache::new(1000);
        for i in 0..5 {
            c.push(cb(i * 10, 10, 100));
        }
        assert!(c.read(-1, 1000).is_none());
        let r = c.read(25, 250).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0][0], 20);
        // At least one batch even when larger than max_bytes.
        assert_eq!(c.read(49, 1).unwrap().len(), 1);
        assert!(c.read(50, 1000).unwrap().is_empty());
    }

    #[test]
    fn evicts_only_written_batches() {
        let mut c = BatchCache::new(250);
        for i in 0..5 {
            c.push(cb(i * 10, 10, 100));
        }
        c.evict(|b| b.base_offset < 20);
        assert_eq!(c.first_offset(), Some(20), "batch 20 is not written yet");
        c.evict(|_| true);
        assert_eq!(c.bytes(), 200);
        c.truncate_from(40);
        assert_eq!(c.bytes(), 100);
        c.drop_below(40);
        assert_eq!(c.first_offset(), None);
    }
}
