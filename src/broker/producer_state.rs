//! Idempotent producers: per partition, each producer id's epoch and its last five
//! batches' sequence ranges, as Kafka keeps them. Pure: the partition asks for a
//! verdict on each batch before appending it and tells the outcome afterwards: the
//! offset, or that the append failed, which leaves the state as it was.
//!
//! Kafka's rules, for a batch of producer `pid` at `epoch` with sequences
//! `first..=last`:
//! - a batch without a producer id (-1) is not checked;
//! - an epoch older than the producer's is fenced (INVALID_PRODUCER_EPOCH);
//! - a newer epoch (or an unknown producer) must start at sequence 0;
//! - a batch equal to one of the last five is a duplicate: not appended again, and
//!   answered with the original's offset; a retry of a batch still being appended
//!   waits for that append's outcome (answering DUPLICATE_SEQUENCE_NUMBER then, as
//!   clients take it for success, would acknowledge a batch whose append may fail);
//! - otherwise it must start right after the last batch (sequences wrap at
//!   `i32::MAX`), else OUT_OF_ORDER_SEQUENCE_NUMBER.

use std::collections::{HashMap, VecDeque};

use ringlog_schema::wire::ErrorCode;

/// Batches remembered per producer (Kafka's in-flight limit for idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

/// A batch in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

/// A batch that was checked and is being appended: it counts for the sequences of
/// the batches behind it, but it is not in the log until `appended` says so.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingBatch {
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
}

#[derive(Clone, Debug, Default)]
struct Producer {
    /// The epoch of `batches`; `None` while nothing of this producer is in the log.
    epoch: Option<i16>,
    /// The last batches in the log, oldest first.
    batches: VecDeque<BatchMeta>,
    /// Batches being appended, in the order they were checked.
    pending: VecDeque<PendingBatch>,
}

impl Producer {
    /// The epoch the next batch is checked against: the last pending one's, else
    /// the log's.
    fn current_epoch(&self) -> Option<i16> {
        self.pending.back().map(|b| b.epoch).or(self.epoch)
    }

    /// The sequence the next batch of `epoch` (the current one) must start at.
    fn expected_sequence(&self) -> i32 {
        match self.pending.back() {
            Some(b) => next_sequence(b.last_seq),
            None => self.batches.back().map_or(0, |b| next_sequence(b.last_seq)),
        }
    }

    fn is_empty(&self) -> bool {
        self.epoch.is_none() && self.pending.is_empty()
    }
}

/// What to do with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Append it; then report `appended` or `failed`.
    Append,
    /// Already in the log at this base offset; do not append again.
    Duplicate(i64),
    /// The same batch is being appended now: wait for that append's outcome and
    /// check again (answering now could acknowledge a batch whose append fails).
    InFlight,
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

/// The producers of one partition. The state of the log changes only with
/// `appended` (and `load`): a batch whose append failed leaves no trace, so its
/// retry is appended, never answered as a duplicate.
#[derive(Clone, Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, Producer>,
}

impl ProducerState {
    /// Checks a batch; when it is to be appended, it is recorded as pending.
    pub fn check(&mut self, pid: i64, epoch: i16, first_seq: i32, last_seq: i32) -> Verdict {
        if pid < 0 {
            return Verdict::Append;
        }
        let out_of_order = |expected: i32| {
            Verdict::Reject(
                ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
                format!(
                    "producer {pid} epoch {epoch}: sequence {first_seq} where {expected} was expected"
                ),
            )
        };
        let p = self.producers.entry(pid).or_default();
        let verdict = match p.current_epoch() {
            None if first_seq != 0 => out_of_order(0),
            None => Verdict::Append,
            Some(current) if epoch < current => Verdict::Reject(
                ErrorCode::INVALID_PRODUCER_EPOCH,
                format!("producer {pid}: epoch {epoch} is older than {current}"),
            ),
            Some(current) if epoch > current && first_seq != 0 => out_of_order(0),
            Some(current) if epoch > current => Verdict::Append,
            Some(_) => {
                let same = |f: i32, l: i32| f == first_seq && l == last_seq;
                if let Some(b) = p
                    .batches
                    .iter()
                    .filter(|_| p.epoch == Some(epoch))
                    .find(|b| same(b.first_seq, b.last_seq))
                {
                    Verdict::Duplicate(b.base_offset)
                } else if p
                    .pending
                    .iter()
                    .any(|b| b.epoch == epoch && same(b.first_seq, b.last_seq))
                {
                    Verdict::InFlight
                } else if first_seq != p.expected_sequence() {
                    out_of_order(p.expected_sequence())
                } else {
                    Verdict::Append
                }
            }
        };
        if verdict == Verdict::Append {
            p.pending.push_back(PendingBatch {
                epoch,
                first_seq,
                last_seq,
            });
        } else if p.is_empty() {
            self.producers.remove(&pid);
        }
        verdict
    }

    /// A pending batch is in the log at `base_offset`.
    pub fn appended(
        &mut self,
        pid: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        base_offset: i64,
    ) {
        if pid < 0 {
            return;
        }
        let p = self.producers.entry(pid).or_default();
        let pending = PendingBatch {
            epoch,
            first_seq,
            last_seq,
        };
        if let Some(i) = p.pending.iter().position(|b| *b == pending) {
            p.pending.remove(i);
        }
        Self::record(p, epoch, first_seq, last_seq, base_offset);
    }

    /// A pending batch's append failed: it is forgotten, as if never checked. (A
    /// failed append fails the log, so the batches pending behind it fail too.)
    pub fn failed(&mut self, pid: i64, epoch: i16, first_seq: i32, last_seq: i32) {
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        let pending = PendingBatch {
            epoch,
            first_seq,
            last_seq,
        };
        if let Some(i) = p.pending.iter().position(|b| *b == pending) {
            p.pending.remove(i);
        }
        if p.is_empty() {
            self.producers.remove(&pid);
        }
    }

    /// Rebuilding from the log: a batch that is there, in log order.
    pub fn load(&mut self, pid: i64, epoch: i16, first_seq: i32, last_seq: i32, base_offset: i64) {
        if pid < 0 {
            return;
        }
        let p = self.producers.entry(pid).or_default();
        Self::record(p, epoch, first_seq, last_seq, base_offset);
    }

    fn record(p: &mut Producer, epoch: i16, first_seq: i32, last_seq: i32, base_offset: i64) {
        if p.epoch != Some(epoch) {
            p.epoch = Some(epoch);
            p.batches.clear();
        }
        p.batches.push_back(BatchMeta {
            first_seq,
            last_seq,
            base_offset,
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
        assert_eq!(s.check(7, 0, 0, 9), Verdict::InFlight);
        s.appended(7, 0, 0, 9, 100);
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Duplicate(100));
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        s.appended(7, 0, 10, 19, 110);
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Duplicate(110));
    }

    #[test]
    fn a_failed_append_leaves_no_trace_so_its_retry_is_appended() {
        let mut s = ProducerState::default();
        // A new producer whose first batch fails is unknown again.
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Append);
        s.failed(7, 0, 0, 9);
        assert_eq!(
            s.check(7, 0, 0, 9),
            Verdict::Append,
            "retried, not a duplicate"
        );
        s.appended(7, 0, 0, 9, 0);
        // A later batch and the one behind it fail; the retries append in order.
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        assert_eq!(s.check(7, 0, 20, 29), Verdict::Append);
        s.failed(7, 0, 10, 19);
        s.failed(7, 0, 20, 29);
        assert_eq!(
            code(s.check(7, 0, 20, 29)),
            Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        s.appended(7, 0, 10, 19, 10);
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Duplicate(10));
        // A failed epoch bump leaves the old epoch in force.
        assert_eq!(s.check(7, 1, 0, 0), Verdict::Append);
        s.failed(7, 1, 0, 0);
        assert_eq!(s.check(7, 0, 20, 29), Verdict::Append);
        s.appended(7, 0, 20, 29, 20);
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Duplicate(0));
    }

    #[test]
    fn a_pending_epoch_bump_fences_the_old_epoch() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(3, 0, 0, 0), Verdict::Append);
        s.appended(3, 0, 0, 0, 0);
        assert_eq!(s.check(3, 1, 0, 0), Verdict::Append);
        assert_eq!(
            code(s.check(3, 0, 1, 1)),
            Some(ErrorCode::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            s.check(3, 1, 1, 1),
            Verdict::Append,
            "behind the pending one"
        );
        s.appended(3, 1, 0, 0, 1);
        s.appended(3, 1, 1, 1, 2);
        assert_eq!(s.check(3, 1, 1, 1), Verdict::Duplicate(2));
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
            s.appended(2, 0, i, i, i64::from(i));
        }
        assert_eq!(s.check(2, 0, 3, 3), Verdict::Duplicate(3));
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
        assert_eq!(s.check(9, 1, 5, 9), Verdict::Duplicate(15));
        assert_eq!(s.check(9, 1, 10, 10), Verdict::Append);
        assert_eq!(
            code(s.check(9, 0, 11, 11)),
            Some(ErrorCode::INVALID_PRODUCER_EPOCH)
        );
    }
}
