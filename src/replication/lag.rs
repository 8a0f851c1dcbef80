//! Replication lag as the leader sees it: from a batch's append on the leader to
//! the fetch in which a follower reports it durable. That is the time a record
//! waits for one follower before it can count toward the high watermark, so its
//! distribution is what acks=all adds over acks=1 (issue 17's "leader append →
//! follower durable").
//!
//! Pure: the leader records the end offset and the moment of each append, and
//! each follower's fetch says which appends its new durable end passed. Offsets
//! only grow while a leadership lasts; the partition starts a fresh record at
//! each new leadership.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Appends remembered at most; past it, appends go unmeasured until followers
/// catch up (the record is a sample, and its memory is bounded per partition).
pub const APPEND_TIMES_MAX: usize = 4_096;

/// Recent appends of a partition this broker leads: (offset after the append, when).
#[derive(Debug, Default)]
pub struct AppendTimes {
    entries: VecDeque<(i64, Instant)>,
}

impl AppendTimes {
    /// An append that ends at `end` (the offset after it) happened `at`. An end not
    /// past the last one recorded is ignored (offsets only grow); with the record
    /// full, appends every follower holds are dropped first (`committed`, the high
    /// watermark), and if it is still full the append is not measured.
    pub fn appended(&mut self, end: i64, at: Instant, committed: i64) {
        if self.entries.back().is_some_and(|(last, _)| *last >= end) {
            return;
        }
        if self.entries.len() >= APPEND_TIMES_MAX {
            self.forget_through(committed);
            if self.entries.len() >= APPEND_TIMES_MAX {
                return;
            }
        }
        self.entries.push_back((end, at));
    }

    /// A follower's durable end moved from `before` to `after` at `now`: calls
    /// `lag` with the time each append it passed waited for it (appends ending in
    /// `(before, after]`).
    pub fn reached(&self, before: i64, after: i64, now: Instant, mut lag: impl FnMut(Duration)) {
        if after <= before {
            return;
        }
        let first = self.entries.partition_point(|(end, _)| *end <= before);
        for (end, at) in self.entries.range(first..) {
            if *end > after {
                break;
            }
            lag(now.saturating_duration_since(*at));
        }
    }

    /// Drops the appends ending at or below `offset`: every in-sync follower holds
    /// them (the high watermark passed them), so no lag of theirs is left to measure.
    pub fn forget_through(&mut self, offset: i64) {
        while self.entries.front().is_some_and(|(end, _)| *end <= offset) {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lags(t: &AppendTimes, before: i64, after: i64, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        t.reached(before, after, now, |d| out.push(d.as_millis() as u64));
        out
    }

    #[test]
    fn a_fetch_measures_exactly_the_appends_its_durable_end_passed() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = AppendTimes::default();
        t.appended(10, ms(0), 0);
        t.appended(20, ms(5), 0);
        t.appended(30, ms(7), 0);
        // Durable to 20: the appends ending at 10 and 20, measured to now.
        assert_eq!(lags(&t, 0, 20, ms(12)), vec![12, 7]);
        // Part of an append (25 < 30) is not the append.
        assert_eq!(lags(&t, 20, 25, ms(13)), Vec::<u64>::new());
        assert_eq!(lags(&t, 25, 30, ms(14)), vec![7]);
        // No progress, or going back (a truncation): nothing.
        assert_eq!(lags(&t, 30, 30, ms(15)), Vec::<u64>::new());
        assert_eq!(lags(&t, 30, 10, ms(15)), Vec::<u64>::new());
        // A second follower measures the same appends on its own.
        assert_eq!(lags(&t, -1, 30, ms(20)), vec![20, 15, 13]);
    }

    #[test]
    fn committed_appends_are_forgotten_and_ends_only_grow() {
        let t0 = Instant::now();
        let mut t = AppendTimes::default();
        t.appended(10, t0, 0);
        t.appended(10, t0, 0);
        t.appended(5, t0, 0);
        assert_eq!(t.len(), 1);
        t.appended(20, t0, 0);
        t.forget_through(10);
        assert_eq!(t.len(), 1);
        assert_eq!(lags(&t, 0, 20, t0), vec![0]);
    }

    #[test]
    fn the_record_is_bounded_and_makes_room_from_what_is_committed() {
        let t0 = Instant::now();
        let mut t = AppendTimes::default();
        for end in 1..=APPEND_TIMES_MAX as i64 {
            t.appended(end, t0, 0);
        }
        // Full, nothing committed: the next append goes unmeasured.
        t.appended(APPEND_TIMES_MAX as i64 + 1, t0, 0);
        assert_eq!(t.len(), APPEND_TIMES_MAX);
        // Half committed: room again.
        let half = APPEND_TIMES_MAX as i64 / 2;
        t.appended(APPEND_TIMES_MAX as i64 + 2, t0, half);
        assert_eq!(t.len(), APPEND_TIMES_MAX - half as usize + 1);
    }
}
