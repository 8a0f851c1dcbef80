//! Log divergence between a leader and a follower (KIP-101, KIP-279, KIP-320):
//! the leader's check of a fetch and the follower's truncation, both pure over
//! each side's answer to "where does epoch E end in your log".
//!
//! A follower fetches with the epoch of the last batch it holds. The leader looks
//! that epoch up in its own epoch cache; if it has the epoch ending before the
//! fetch offset, or only an older epoch, the follower's suffix is not the leader's
//! and the answer names the diverging epoch and where it ends. The follower then
//! looks the leader's epoch up in its own cache and truncates to the lower of the
//! two ends; if it does not have that epoch, it truncates to where its largest
//! older epoch ends and asks again with the epoch it now ends in.

use ringlog_storage::epochs::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};

/// An epoch and where it ends in a log (Kafka's `EpochEndOffset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochEnd {
    pub fn new((epoch, end_offset): (i32, i64)) -> Self {
        Self { epoch, end_offset }
    }

    fn undefined(&self) -> bool {
        self.epoch == UNDEFINED_EPOCH || self.end_offset == UNDEFINED_EPOCH_OFFSET
    }
}

/// The leader's check of a fetch from `fetch_offset` whose last batch was written
/// in `last_fetched_epoch`; `leader_end` is the leader's answer for that epoch.
/// `Some` is the diverging epoch to send back instead of records.
pub fn diverging(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    leader_end: EpochEnd,
) -> Option<EpochEnd> {
    if last_fetched_epoch < 0 {
        // A follower with no epochs (an empty log) cannot have diverged.
        return None;
    }
    (leader_end.epoch < last_fetched_epoch || leader_end.end_offset < fetch_offset)
        .then_some(leader_end)
}

/// Where a follower truncates to after a diverging answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub offset: i64,
    /// False: the follower did not know the leader's epoch; it fetches again with
    /// the epoch it now ends in and may truncate further.
    pub complete: bool,
}

/// The follower's truncation for the leader's `diverging` answer. `follower_end`
/// is the follower's own answer for `diverging.epoch`, `log_end` its log end and
/// `high_watermark` the last one the leader told it (the fallback when the leader
/// knows nothing of the epoch: everything below it is committed and on the leader).
pub fn truncation(
    diverging: EpochEnd,
    follower_end: EpochEnd,
    log_end: i64,
    high_watermark: i64,
) -> Truncation {
    if diverging.undefined() {
        return Truncation {
            offset: high_watermark.min(log_end),
            complete: true,
        };
    }
    if follower_end.undefined() {
        return Truncation {
            offset: diverging.end_offset.min(log_end),
            complete: true,
        };
    }
    if follower_end.epoch != diverging.epoch {
        return Truncation {
            offset: follower_end.end_offset.min(log_end),
            complete: false,
        };
    }
    Truncation {
        offset: follower_end
            .end_offset
            .min(diverging.end_offset)
            .min(log_end),
        complete: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringlog_storage::epochs::EpochCache;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, o) in entries {
            c.assign(e, o);
        }
        c
    }

    #[test]
    fn a_follower_in_step_does_not_diverge() {
        let leader = cache(&[(0, 0), (1, 10)]);
        let end = EpochEnd::new(leader.end_offset_for(1, 20));
        assert_eq!(diverging(1, 15, end), None);
        let end = EpochEnd::new(leader.end_offset_for(0, 20));
        assert_eq!(
            diverging(0, 10, end),
            None,
            "ends exactly where epoch 0 ends"
        );
        assert_eq!(diverging(-1, 0, EpochEnd::new((-1, -1))), None);
    }

    /// KIP-101's case: the follower holds epoch-1 records past where epoch 1
    /// ended on the new leader (which went on in epoch 2 from offset 8).
    #[test]
    fn a_suffix_the_leader_does_not_have_is_truncated() {
        let leader = cache(&[(0, 0), (1, 5), (2, 8)]);
        let follower = cache(&[(0, 0), (1, 5)]);
        let (log_end, fetch_offset) = (12, 12);
        let answer = EpochEnd::new(leader.end_offset_for(1, 30));
        let d = diverging(1, fetch_offset, answer).expect("diverged");
        assert_eq!(
            d,
            EpochEnd {
                epoch: 1,
                end_offset: 8
            }
        );
        let t = truncation(
            d,
            EpochEnd::new(follower.end_offset_for(d.epoch, log_end)),
            log_end,
            3,
        );
        assert_eq!(
            t,
            Truncation {
                offset: 8,
                complete: true
            }
        );
    }

    /// KIP-279's case: two leader changes; the follower's epoch 2 never reached
    /// the leader, which knows 0, 1 and 3. The leader answers with epoch 1, which
    /// the follower does not have: it cuts to where its epoch 0 ends, asks again
    /// with epoch 0, and cuts to where epoch 0 ends on the leader.
    #[test]
    fn a_follower_without_the_leaders_epoch_truncates_in_two_steps() {
        let leader = cache(&[(0, 0), (1, 2), (3, 6)]);
        let mut follower = cache(&[(0, 0), (2, 4)]);
        let mut log_end = 9;
        let mut truncations = Vec::new();
        loop {
            let last = follower.latest().map_or(-1, |e| e.epoch);
            let answer = EpochEnd::new(leader.end_offset_for(last, 20));
            let Some(d) = diverging(last, log_end, answer) else {
                break;
            };
            let own = EpochEnd::new(follower.end_offset_for(d.epoch, log_end));
            let t = truncation(d, own, log_end, 0);
            truncations.push(t);
            log_end = t.offset;
            follower.truncate_from_end(log_end);
            assert!(truncations.len() < 5, "does not converge");
        }
        assert_eq!(
            truncations,
            vec![
                Truncation {
                    offset: 4,
                    complete: false
                },
                Truncation {
                    offset: 2,
                    complete: true
                },
            ]
        );
    }

    #[test]
    fn without_epoch_knowledge_the_high_watermark_is_the_floor() {
        let t = truncation(EpochEnd::new((-1, -1)), EpochEnd::new((0, 9)), 9, 4);
        assert_eq!(
            t,
            Truncation {
                offset: 4,
                complete: true
            }
        );
        let t = truncation(EpochEnd::new((2, 5)), EpochEnd::new((-1, -1)), 9, 0);
        assert_eq!(
            t,
            Truncation {
                offset: 5,
                complete: true
            }
        );
    }
}
