//! Idempotent producers: per partition, each producer id's epoch and its last five
//! batches' sequence ranges, as Kafka keeps them. Pure: the partition asks for a
//! verdict on each batch before appending it and tells the offset afterwards.
//!
//! Kafka's rules, for a batch of producer `pid` at `epoch` with sequences
//! `first..=last`:
//! - a batch without a producer id (-1) is not checked;
//! - an epoch older than the producer's is fenced (INVALID_PRODUCER_EPOCH);
//! - a newer epoch (or an unknown producer) must start at sequence 0;
//! - a batch equal to one of the last five is a duplicate: not appended again, and
//!   answered with the original's offset (DUPLICATE_SEQUENCE_NUMBER while that is
//!   not known yet, which clients also take as success);
//! - otherwise it must start right after the last batch (sequences wrap at
//!   `i32::MAX`), else OUT_OF_ORDER_SEQUENCE_NUMBER.

use std::collections::{HashMap, VecDeque};

use ringlog_schema::wire::ErrorCode;

/// Batches remembered per producer (Kafka's in-flight limit for idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    /// Base offset once appended.
    base_offset: Option<i64>,
}

#[derive(Clone, Debug, Default)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// What to do with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Append it (its sequences are recorded).
    Append,
    /// Already in the log at this base offset (`None`: appended, offset not yet
    /// known); do not append again.
    Duplicate(Option<i64>),
    /// Refuse it with this code.
    Reject(ErrorCode, String),
}

/// The last sequence of a batch starting at `first` with `count` records.
pub fn last_sequence(first: i32, last_offset_delta: i32) -> i32 {
    let last = i64::from(first) + i64::from(last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The producers of one partition.
#[derive(Clone, Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
}

impl ProducerState {
    /// Checks a batch and, when it is to be appended, records it.
    pub fn check(&mut self, pid: i64, epoch: i16, first_seq: i32, last_seq: i32) -> Verdict {
        if pid < 0 {
            return Verdict::Append;
        }
        let fresh = |p: &mut Producer| {
            p.batches.clear();
            p.batches.push_back(BatchMeta {
                first_seq,
                last_seq,
                base_offset: None,
            });
        };
        let out_of_order = |expected: i32| {
            Verdict::Reject(
                ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
                format!(
                    "producer {pid} epoch {epoch}: sequence {first_seq} where {expected} was expected"
                ),
            )
        };
        let Some(p) = self.producers.get_mut(&pid) else {
            if first_seq != 0 {
                return out_of_order(0);
            }
            let mut p = Producer {
                epoch,
                ..Producer::default()
            };
            fresh(&mut p);
            self.producers.insert(pid, p);
            return Verdict::Append;
        };
        if epoch < p.epoch {
            return Verdict::Reject(
                ErrorCode::INVALID_PRODUCER_EPOCH,
                format!("producer {pid}: epoch {epoch} is older than {}", p.epoch),
            );
        }
        if epoch > p.epoch {
            if first_seq != 0 {
                return out_of_order(0);
            }
            p.epoch = epoch;
            fresh(p);
            return Verdict::Append;
        }
        if let Some(b) = p
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Verdict::Duplicate(b.base_offset);
        }
        let expected = p.batches.back().map_or(0, |b| next_sequence(b.last_seq));
        if first_seq != expected {
            return out_of_order(expected);
        }
        p.batches.push_back(BatchMeta {
            first_seq,
            last_seq,
            base_offset: None,
        });
        while p.batches.len() > BATCHES_REMEMBERED {
            p.batches.pop_front();
        }
        Verdict::Append
    }

    /// Records where an appended batch landed.
    pub fn appended(&mut self, pid: i64, epoch: i16, first_seq: i32, base_offset: i64) {
        if let Some(p) = self.producers.get_mut(&pid).filter(|p| p.epoch == epoch) {
            if let Some(b) = p.batches.iter_mut().find(|b| b.first_seq == first_seq) {
                b.base_offset = Some(base_offset);
            }
        }
    }

    /// Rebuilding from the log: a batch that is there, in log order.
    pub fn load(&mut self, pid: i64, epoch: i16, first_seq: i32, last_seq: i32, base_offset: i64) {
        if pid < 0 {
            return;
        }
        let p = self.producers.entry(pid).or_default();
        if epoch != p.epoch {
            p.epoch = epoch;
            p.batches.clear();
        }
        p.batches.push_back(BatchMeta {
            first_seq,
            last_seq,
            base_offset: Some(base_offset),
        });
        while p.batches.len() > BATCHES_REMEMBERED {
            p.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(v: Verdict) -> Option<ErrorCode> {
        match v {
            Verdict::Reject(c, _) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates_with_their_offset() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Append);
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Duplicate(None), "in flight");
        s.appended(7, 0, 0, 100);
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Duplicate(Some(100)));
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        s.appended(7, 0, 10, 110);
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Duplicate(Some(110)));
    }

    #[test]
    fn gaps_and_unknown_producers_not_at_zero_are_out_of_order() {
        let mut s = ProducerState::default();
        assert_eq!(
            code(s.check(1, 0, 5, 9)),
            Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(s.check(1, 0, 0, 4), Verdict::Append);
        assert_eq!(
            code(s.check(1, 0, 6, 9)),
            Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(
            code(s.check(1, 0, 4, 9)),
            Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(s.check(1, 0, 5, 9), Verdict::Append);
    }

    #[test]
    fn epochs_fence_old_producers_and_new_epochs_restart_at_zero() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(1, 3, 0, 0), Verdict::Append);
        assert_eq!(
            code(s.check(1, 2, 1, 1)),
            Some(ErrorCode::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            code(s.check(1, 4, 1, 1)),
            Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(s.check(1, 4, 0, 0), Verdict::Append);
        assert_eq!(s.check(1, 4, 1, 1), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..8 {
            assert_eq!(s.check(2, 0, i, i), Verdict::Append);
            s.appended(2, 0, i, i64::from(i));
        }
        assert_eq!(s.check(2, 0, 3, 3), Verdict::Duplicate(Some(3)));
        assert_eq!(
            code(s.check(2, 0, 2, 2)),
            Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        s.load(3, 0, i32::MAX - 4, i32::MAX, 50);
        assert_eq!(s.check(3, 0, 0, 4), Verdict::Append, "wraps to 0");
    }

    #[test]
    fn non_idempotent_batches_are_not_checked_and_loading_rebuilds() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(-1, -1, -1, -1), Verdict::Append);
        s.load(9, 1, 0, 4, 10);
        s.load(9, 1, 5, 9, 15);
        assert_eq!(s.check(9, 1, 5, 9), Verdict::Duplicate(Some(15)));
        assert_eq!(s.check(9, 1, 10, 10), Verdict::Append);
        assert_eq!(
            code(s.check(9, 0, 11, 11)),
            Some(ErrorCode::INVALID_PRODUCER_EPOCH)
        );
    }
}
