//! Counters and fixed-bucket histograms a shard keeps about its logs' I/O, read by the
//! broker's metrics endpoint.
//!
//! Everything here is plain `Cell`s: a log and its stats belong to one executor, so
//! counting costs an add, never an atomic or a lock. Readers on other threads get a
//! [`HistogramSnapshot`] copied by the owning executor.

use std::cell::Cell;

/// Latency bucket bounds in microseconds (upper bounds, inclusive), 50 µs to 10 s.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Size bucket bounds (records, batches): powers of two up to 65,536.
pub const SIZE_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536,
];

/// A histogram over fixed upper bounds, in the shape Prometheus exposes: one count per
/// bucket plus an overflow bucket (`+Inf`), the sum and the total count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// Per bucket (not cumulative); the last one counts values above every bound.
    counts: Box<[Cell<u64>]>,
    sum: Cell<u64>,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| Cell::new(0)).collect(),
            sum: Cell::new(0),
        }
    }

    /// Counts one value into the first bucket whose bound is >= `value`.
    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        let c = &self.counts[i];
        c.set(c.get() + 1);
        self.sum.set(self.sum.get().saturating_add(value));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(Cell::get).collect(),
            sum: self.sum.get(),
        }
    }
}

/// A copy of a [`Histogram`] that can cross threads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    /// Per bucket, not cumulative; `bounds.len() + 1` entries (the last is `+Inf`).
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, cumulative count)` per finite bucket, as Prometheus' `le` wants.
    pub fn cumulative(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds
            .iter()
            .zip(self.counts.iter().scan(0u64, |acc, c| {
                *acc += c;
                Some(*acc)
            }))
            .map(|(b, c)| (*b, c))
    }
}

/// What a shard's logs did on the device, shared by every log of the shard.
#[derive(Debug)]
pub struct IoStats {
    /// Time each fdatasync of a segment on the write path took, µs.
    pub fdatasync_us: Histogram,
    /// Records made durable by each write-path fdatasync: the group-commit size.
    pub commit_records: Histogram,
    /// Time each commit's write stage took (issue what is buffered, then wait until
    /// no write is in flight), µs: with `fdatasync_us`, the two stages of a commit.
    pub commit_write_us: Histogram,
    /// Reads served from the recent-batch cache, with no disk I/O.
    pub cache_hits: Cell<u64>,
    /// Reads that went to disk.
    pub cache_misses: Cell<u64>,
}

impl Default for IoStats {
    fn default() -> Self {
        Self {
            fdatasync_us: Histogram::new(LATENCY_BOUNDS_US),
            commit_records: Histogram::new(SIZE_BOUNDS),
            commit_write_us: Histogram::new(LATENCY_BOUNDS_US),
            cache_hits: Cell::new(0),
            cache_misses: Cell::new(0),
        }
    }
}

/// Adds one to a counter cell.
pub fn bump(c: &Cell<u64>) {
    c.set(c.get().wrapping_add(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::new(&[10, 20, 30]);
        for v in [0, 10, 11, 20, 30, 31, 1_000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 2, 1, 2]);
        assert_eq!(s.count(), 7);
        assert_eq!(s.sum, 1_102);
        assert_eq!(
            s.cumulative().collect::<Vec<_>>(),
            vec![(10, 2), (20, 4), (30, 5)]
        );
    }

    #[test]
    fn bounds_are_increasing() {
        for b in [LATENCY_BOUNDS_US, SIZE_BOUNDS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
