//! How far ahead of its data the active segment's file is allocated (fallocate) and
//! zero-filled, and the shard-wide bound on that space.
//!
//! Preallocation and zero-fill make group commits cheap (an fdatasync into written,
//! allocated space journals nothing), but they cost disk whether the partition fills
//! them or not: a fixed 32 MiB step plus 8 MiB of zeros took 41 MB for a partition
//! holding one record, and 10,000 such partitions filled a disk. So:
//!
//! - the step grows with what the log holds: the log's bytes, at least
//!   [`PREALLOCATE_STEP_MIN`], at most `preallocate_bytes` (a busy log soon takes
//!   whole steps; an idle one stays small), and the zero-fill distance is at most one
//!   step;
//! - a shard's logs together keep at most `max` bytes allocated past their data
//!   ([`SpaceAccount`]); a log that would go over takes what is left, or nothing (the
//!   file system then allocates as it writes, which is correct, only slower).

use std::cell::Cell;
use std::rc::Rc;

use crate::config::BLOCK_BYTES;

const BLOCK: u64 = BLOCK_BYTES as u64;
/// The smallest preallocation step.
pub const PREALLOCATE_STEP_MIN: u64 = 16 << 10;

/// The step by which a log that holds `log_bytes` grows its active segment.
pub fn step(log_bytes: u64, preallocate_bytes: u64) -> u64 {
    let max = preallocate_bytes.max(PREALLOCATE_STEP_MIN);
    log_bytes
        .clamp(PREALLOCATE_STEP_MIN, max)
        .next_multiple_of(BLOCK)
}

/// How far past the data zeros are written ahead: at most one step.
pub fn zero_distance(zero_ahead_bytes: u64, step: u64) -> u64 {
    zero_ahead_bytes.min(step) / BLOCK * BLOCK
}

/// Where the allocation of a segment whose writes reach `end` should grow to, if
/// it should: when the allocation no longer keeps `ahead` bytes past the data, to
/// `end + ahead + step`, capped at `limit` (the segment's largest size) and at what
/// the shard's bound leaves (`room`). `None`: leave it.
pub fn grow_to(
    end: u64,
    allocated: u64,
    ahead: u64,
    step: u64,
    limit: u64,
    room: u64,
) -> Option<u64> {
    if end + ahead <= allocated {
        return None;
    }
    let want = (end + ahead + step).min(limit);
    let to = want.min(allocated.saturating_add(room));
    (to > allocated.max(end)).then_some(to)
}

/// Bytes allocated past their data over a shard's logs, and the bound on them.
pub struct SpaceAccount {
    max: u64,
    unused: Cell<u64>,
}

impl SpaceAccount {
    pub fn new(max: u64) -> Rc<Self> {
        Rc::new(Self {
            max,
            unused: Cell::new(0),
        })
    }

    /// Allocated-but-unused bytes now.
    pub fn unused(&self) -> u64 {
        self.unused.get()
    }

    /// What is left under the bound.
    pub fn room(&self) -> u64 {
        self.max.saturating_sub(self.unused.get())
    }

    /// A log's unused space went from `was` to `now`.
    pub fn update(&self, was: u64, now: u64) {
        self.unused
            .set((self.unused.get() + now).saturating_sub(was));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    #[test]
    fn the_step_grows_with_the_log_between_its_bounds() {
        assert_eq!(step(0, 32 * MIB), PREALLOCATE_STEP_MIN);
        assert_eq!(step(100 * KIB + 1, 32 * MIB), 104 * KIB);
        assert_eq!(step(5 << 30, 32 * MIB), 32 * MIB);
        assert_eq!(zero_distance(8 * MIB, 16 * KIB), 16 * KIB);
        assert_eq!(zero_distance(8 * MIB, 32 * MIB), 8 * MIB);
    }

    #[test]
    fn allocation_keeps_its_distance_within_the_segment_and_the_shard_bound() {
        // Enough ahead: nothing to do.
        assert_eq!(
            grow_to(10 * KIB, 100 * KIB, 16 * KIB, 16 * KIB, MIB, MIB),
            None
        );
        // Too close: end + ahead + step.
        assert_eq!(
            grow_to(90 * KIB, 100 * KIB, 16 * KIB, 16 * KIB, MIB, MIB),
            Some(122 * KIB)
        );
        // Capped by the segment.
        assert_eq!(
            grow_to(1000 * KIB, 1000 * KIB, 16 * KIB, 64 * KIB, MIB, MIB),
            Some(MIB)
        );
        // Capped by the shard's room, and nothing when that leaves nothing useful.
        assert_eq!(
            grow_to(90 * KIB, 100 * KIB, 16 * KIB, 16 * KIB, MIB, 4 * KIB),
            Some(104 * KIB)
        );
        assert_eq!(
            grow_to(90 * KIB, 100 * KIB, 16 * KIB, 16 * KIB, MIB, 0),
            None
        );
        assert_eq!(
            grow_to(200 * KIB, 100 * KIB, 16 * KIB, 16 * KIB, MIB, 50 * KIB),
            None
        );
    }

    #[test]
    fn the_account_follows_each_logs_changes() {
        let a = SpaceAccount::new(100);
        a.update(0, 60);
        a.update(0, 30);
        assert_eq!((a.unused(), a.room()), (90, 10));
        a.update(60, 0);
        assert_eq!(a.room(), 70);
    }
}
