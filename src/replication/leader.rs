//! A leader's view of its followers (Kafka's `Partition` and `Replica` state): each
//! follower's durable log end as its fetches report it, when it was last caught
//! up, and the high watermark they allow.
//!
//! Pure: time and offsets are inputs, so the rules are tested here and driven the
//! same way by the broker and the simulation.
//!
//! - A follower fetches from its durable log end, so the offset it fetches from is
//!   what it holds on disk (DESIGN §5: a committed record is on disk on every ISR
//!   member, the property Kafka needs KIP-966 for).
//! - The high watermark is the lowest durable log end over the ISR (the leader's
//!   own included), advanced only while the ISR has at least `min.insync.replicas`
//!   members, and never moved back.
//! - A follower is caught up at a fetch from at least the leader's log end at that
//!   moment, or from at least the log end the leader had at its previous fetch
//!   (Kafka's `lastCaughtUpTimeMs`); one not caught up for `replica.lag.time.max.ms`
//!   should leave the ISR, and one out of it that reaches the high watermark (and
//!   the start of the leader's epoch) may rejoin.

use std::collections::BTreeMap;

use crate::metadata::BrokerId;

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's durable log end, from its last fetch (-1: no fetch yet).
    pub end_offset: i64,
    /// When it was last caught up with the leader's log end.
    pub caught_up_ms: i64,
    /// When it last fetched, and the leader's log end then.
    pub last_fetch_ms: i64,
    pub leader_end_at_last_fetch: i64,
    /// The broker epoch its fetches carry (0: none yet): an ISR change names it,
    /// so a restarted follower rejoins only under its new epoch (KIP-903).
    pub broker_epoch: u64,
}

impl FollowerProgress {
    fn new(now_ms: i64) -> Self {
        Self {
            end_offset: -1,
            caught_up_ms: now_ms,
            last_fetch_ms: -1,
            leader_end_at_last_fetch: -1,
            broker_epoch: 0,
        }
    }
}

/// A partition's replicas and ISR as of one partition epoch, with the
/// `min.insync.replicas` that applies to it: what the metadata tells a leader.
#[derive(Clone, Copy, Debug)]
pub struct Membership<'a> {
    pub replicas: &'a [BrokerId],
    pub isr: &'a [BrokerId],
    pub partition_epoch: i32,
    pub min_insync: usize,
}

/// The replication state of a partition this broker leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderReplicas {
    me: BrokerId,
    isr: Vec<BrokerId>,
    min_insync: usize,
    followers: BTreeMap<BrokerId, FollowerProgress>,
    high_watermark: i64,
    /// The leader's own durable log end.
    leader_end: i64,
    /// The partition epoch of the metadata this state was last given: a newer one
    /// means the controller decided whatever was in flight.
    partition_epoch: i32,
    /// An ISR change sent to the controller and not yet applied. While it is in
    /// flight the high watermark counts the union of both ISRs (KIP-497's
    /// maximal ISR), so a member being added is held to as soon as it is asked
    /// for, and one being removed until the removal commits.
    pending: Option<(ChangeId, Vec<BrokerId>)>,
    /// The id the next change gets.
    next_change: ChangeId,
}

/// Names one ISR change sent to the controller, so that the late refusal of an
/// older one (its answer crossed a metadata update that decided it, and a newer
/// change went out) cannot undo the newer one: found by the simulation, where
/// clearing a newer, accepted expansion let the high watermark pass a joining
/// member that did not hold it.
pub type ChangeId = u64;

impl LeaderReplicas {
    /// A leadership starting at `now_ms`: every follower gets a full lag period
    /// before it counts as lagging. `high_watermark` is where the previous leader
    /// left it as far as this broker knows (never above `leader_end`).
    pub fn new(
        me: BrokerId,
        m: Membership<'_>,
        high_watermark: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> Self {
        let followers = m
            .replicas
            .iter()
            .filter(|b| **b != me)
            .map(|b| (*b, FollowerProgress::new(now_ms)))
            .collect();
        let mut state = Self {
            me,
            isr: m.isr.to_vec(),
            partition_epoch: m.partition_epoch,
            min_insync: m.min_insync.max(1),
            followers,
            high_watermark: high_watermark.min(leader_end).max(0),
            leader_end,
            pending: None,
            next_change: 1,
        };
        state.advance();
        state
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    pub fn min_insync(&self) -> usize {
        self.min_insync
    }

    /// Whether the ISR is large enough for acks=all (and for the high watermark
    /// to move).
    pub fn enough_in_sync(&self) -> bool {
        self.isr.len() >= self.min_insync
    }

    pub fn follower(&self, broker: BrokerId) -> Option<FollowerProgress> {
        self.followers.get(&broker).copied()
    }

    /// Every follower (the replicas but the leader) with what the leader knows of it.
    pub fn followers(&self) -> impl Iterator<Item = (BrokerId, FollowerProgress)> + '_ {
        self.followers.iter().map(|(b, f)| (*b, *f))
    }

    /// The leader's own durable log end, as last given.
    pub fn leader_end(&self) -> i64 {
        self.leader_end
    }

    /// The metadata as of `partition_epoch` (the ISR, the replicas,
    /// min.insync.replicas). Returns whether the high watermark moved.
    pub fn set_membership(&mut self, m: Membership<'_>, now_ms: i64) -> bool {
        let Membership {
            replicas,
            isr,
            partition_epoch,
            min_insync,
        } = m;
        if partition_epoch != self.partition_epoch {
            // The controller changed the partition (our change, or a fencing
            // that may even have brought the ISR back to what it was): what was in
            // flight is decided either way. Comparing ISRs would miss the
            // second case and leave the change in flight for good.
            self.pending = None;
            self.partition_epoch = partition_epoch;
        }
        self.isr = isr.to_vec();
        self.min_insync = min_insync.max(1);
        self.followers.retain(|b, _| replicas.contains(b));
        for b in replicas.iter().filter(|b| **b != self.me) {
            self.followers
                .entry(*b)
                .or_insert(FollowerProgress::new(now_ms));
        }
        self.advance()
    }

    /// The leader's own log became durable up to `end` (or was truncated to it).
    /// Returns whether the high watermark moved.
    pub fn leader_durable(&mut self, end: i64) -> bool {
        self.leader_end = end;
        self.advance()
    }

    /// A follower's fetch at `now_ms` reported `durable_end`, its durable log end
    /// (not its fetch offset: what it has not synced does not count). Returns
    /// whether the high watermark moved. A replica that is not a follower of this
    /// partition changes nothing.
    pub fn on_fetch(
        &mut self,
        broker: BrokerId,
        durable_end: i64,
        broker_epoch: u64,
        now_ms: i64,
    ) -> bool {
        let leader_end = self.leader_end;
        let Some(f) = self.followers.get_mut(&broker) else {
            return false;
        };
        f.broker_epoch = broker_epoch;
        if durable_end >= leader_end {
            f.caught_up_ms = now_ms;
        } else if f.last_fetch_ms >= 0 && durable_end >= f.leader_end_at_last_fetch {
            f.caught_up_ms = f.caught_up_ms.max(f.last_fetch_ms);
        }
        f.end_offset = durable_end;
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = leader_end;
        self.advance()
    }

    /// ISR members (not the leader) not caught up for longer than `lag_max_ms`.
    pub fn lagging(&self, now_ms: i64, lag_max_ms: i64) -> Vec<BrokerId> {
        self.isr
            .iter()
            .filter(|b| **b != self.me)
            .filter(|b| {
                self.followers
                    .get(b)
                    .is_some_and(|f| now_ms - f.caught_up_ms > lag_max_ms)
            })
            .copied()
            .collect()
    }

    /// Followers outside the ISR that hold everything up to the high watermark
    /// and past the start of the leader's epoch (`epoch_start`), so they may rejoin.
    pub fn caught_up_outside_isr(&self, epoch_start: i64) -> Vec<BrokerId> {
        self.followers
            .iter()
            .filter(|(b, _)| !self.isr.contains(b))
            .filter(|(_, f)| f.end_offset >= self.high_watermark && f.end_offset >= epoch_start)
            .map(|(b, _)| *b)
            .collect()
    }

    /// The ISR this leader should ask the controller for, if it differs from the
    /// current one and no change is in flight: lagging members out, caught-up
    /// followers in (never the leader out, so never empty).
    pub fn desired_isr(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        epoch_start: i64,
    ) -> Option<Vec<BrokerId>> {
        if self.pending.is_some() {
            return None;
        }
        let lagging = self.lagging(now_ms, lag_max_ms);
        let joining = self.caught_up_outside_isr(epoch_start);
        if lagging.is_empty() && joining.is_empty() {
            return None;
        }
        let mut isr: Vec<BrokerId> = self
            .isr
            .iter()
            .filter(|b| !lagging.contains(b))
            .chain(joining.iter())
            .copied()
            .collect();
        isr.sort();
        isr.dedup();
        Some(isr)
    }

    /// An ISR change was sent to the controller.
    pub fn begin_change(&mut self, isr: Vec<BrokerId>) -> ChangeId {
        let id = self.next_change;
        self.next_change += 1;
        self.pending = Some((id, isr));
        id
    }

    /// The controller refused the change (or could not be reached): the next
    /// check decides again. Returns whether the high watermark moved (a joining
    /// member no longer holds it).
    pub fn change_failed(&mut self, change: ChangeId) -> bool {
        if self.pending.as_ref().is_none_or(|(id, _)| *id != change) {
            // Decided already, and another change may be in flight now.
            return false;
        }
        self.pending = None;
        self.advance()
    }

    pub fn change_in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// Moves the high watermark to the lowest durable end over the ISR (with a
    /// change in flight, over both ISRs) if that is higher and the ISR is large
    /// enough. A member the leader has not heard from since it took over holds the
    /// mark where it is.
    fn advance(&mut self) -> bool {
        if !self.enough_in_sync() {
            return false;
        }
        let mut low = self.leader_end;
        let pending = self.pending.iter().flat_map(|(_, isr)| isr.iter());
        for b in self.isr.iter().chain(pending).filter(|b| **b != self.me) {
            let end = self.followers.get(b).map_or(-1, |f| f.end_offset);
            low = low.min(end);
        }
        if low > self.high_watermark {
            self.high_watermark = low;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms<'a>(
        replicas: &'a [BrokerId],
        isr: &'a [BrokerId],
        partition_epoch: i32,
        min_insync: usize,
    ) -> Membership<'a> {
        Membership {
            replicas,
            isr,
            partition_epoch,
            min_insync,
        }
    }

    const A: BrokerId = BrokerId(0);
    const B: BrokerId = BrokerId(1);
    const C: BrokerId = BrokerId(2);

    fn three(min_insync: usize) -> LeaderReplicas {
        LeaderReplicas::new(A, ms(&[A, B, C], &[A, B, C], 0, min_insync), 0, 0, 1_000)
    }

    #[test]
    fn the_high_watermark_is_the_lowest_durable_end_over_the_isr() {
        let mut r = three(2);
        assert!(!r.leader_durable(10), "followers have not fetched");
        assert_eq!(r.high_watermark(), 0);
        assert!(!r.on_fetch(B, 10, 1, 1_010));
        assert_eq!(r.high_watermark(), 0, "C holds it");
        assert!(r.on_fetch(C, 4, 1, 1_020));
        assert_eq!(r.high_watermark(), 4);
        assert!(r.on_fetch(C, 10, 1, 1_030));
        assert_eq!(r.high_watermark(), 10);
        assert!(
            !r.on_fetch(C, 12, 1, 1_040),
            "past the leader's durable end"
        );
        assert_eq!(r.high_watermark(), 10);
    }

    #[test]
    fn it_never_goes_back() {
        let mut r = three(1);
        r.leader_durable(10);
        r.on_fetch(B, 10, 1, 1);
        r.on_fetch(C, 10, 1, 1);
        assert_eq!(r.high_watermark(), 10);
        // A follower restarted on an empty disk fetches from 0.
        assert!(!r.on_fetch(C, 0, 1, 2));
        assert_eq!(r.high_watermark(), 10);
        assert!(!r.leader_durable(5));
        assert_eq!(r.high_watermark(), 10);
    }

    #[test]
    fn it_moves_only_while_the_isr_has_min_insync_members() {
        let mut r = three(2);
        r.set_membership(ms(&[A, B, C], &[A], 1, 2), 0);
        r.leader_durable(10);
        assert_eq!(r.high_watermark(), 0);
        assert!(!r.enough_in_sync());
        assert!(r.set_membership(ms(&[A, B, C], &[A], 2, 1), 0));
        assert_eq!(r.high_watermark(), 10, "min.insync.replicas lowered");
    }

    #[test]
    fn a_shrunk_isr_stops_holding_the_mark() {
        let mut r = three(1);
        r.leader_durable(10);
        r.on_fetch(B, 10, 1, 1);
        assert_eq!(r.high_watermark(), 0, "C silent");
        assert!(r.set_membership(ms(&[A, B, C], &[A, B], 3, 1), 2));
        assert_eq!(r.high_watermark(), 10);
    }

    #[test]
    fn lag_follows_kafkas_last_caught_up_time() {
        let mut r = three(1);
        r.leader_durable(100);
        // B fetches from behind the leader's end: not caught up.
        r.on_fetch(B, 50, 1, 2_000);
        // Next fetch reaches the end the leader had at the previous fetch: caught up
        // as of that previous fetch.
        r.leader_durable(200);
        r.on_fetch(B, 100, 1, 3_000);
        assert_eq!(r.follower(B).map(|f| f.caught_up_ms), Some(2_000));
        r.on_fetch(C, 200, 1, 3_000);
        assert_eq!(r.lagging(33_000, 30_000), vec![B]);
        assert_eq!(r.lagging(31_000, 30_000), Vec::<BrokerId>::new());
    }

    #[test]
    fn a_change_in_flight_holds_both_isrs_and_no_second_change_starts() {
        let mut r = three(1);
        r.leader_durable(10);
        r.on_fetch(B, 10, 1, 1);
        r.on_fetch(C, 10, 1, 1);
        assert_eq!(r.high_watermark(), 10);
        r.leader_durable(20);
        r.on_fetch(B, 20, 1, 40_000);
        // C has not caught up for 39 s: out.
        let want = r.desired_isr(40_000, 30_000, 0).expect("a change");
        assert_eq!(want, vec![A, B]);
        r.begin_change(want);
        assert_eq!(
            r.desired_isr(40_000, 30_000, 0),
            None,
            "one change at a time"
        );
        assert_eq!(
            r.high_watermark(),
            10,
            "C still holds it until the change commits"
        );
        assert!(r.set_membership(ms(&[A, B, C], &[A, B], 4, 1), 40_000));
        assert_eq!(r.high_watermark(), 20);
        assert!(!r.change_in_flight());
        // C catches up: back in, and counted as soon as asked for.
        r.on_fetch(C, 20, 1, 41_000);
        let want = r.desired_isr(41_000, 30_000, 0).expect("a change");
        assert_eq!(want, vec![A, B, C]);
        let change = r.begin_change(want);
        r.leader_durable(30);
        r.on_fetch(B, 30, 1, 41_100);
        assert_eq!(r.high_watermark(), 20, "C, joining, holds the mark");
        r.change_failed(change);
        assert_eq!(r.high_watermark(), 30, "refused: C is not counted");
    }

    /// Found by the replication simulation (seed 4062): the refusal of a change
    /// the metadata had already decided arrives after a newer change went out;
    /// it must not clear the newer one, or the high watermark passes its joiner.
    #[test]
    fn a_late_refusal_of_an_older_change_leaves_the_newer_one_in_flight() {
        let mut r = LeaderReplicas::new(A, ms(&[A, B, C], &[A, B], 4, 1), 0, 10, 0);
        r.on_fetch(B, 10, 1, 1);
        r.on_fetch(C, 10, 1, 1);
        let old = r.begin_change(vec![A, B, C]);
        // The controller decided it (a newer partition epoch), ISR unchanged.
        r.set_membership(ms(&[A, B, C], &[A, B], 5, 1), 2);
        let new = r.desired_isr(3, 1_000, 0).expect("asks again");
        let new = r.begin_change(new);
        assert_ne!(old, new);
        assert!(!r.change_failed(old));
        assert!(
            r.change_in_flight(),
            "the late refusal undid the newer change"
        );
        r.leader_durable(20);
        r.on_fetch(B, 20, 1, 4);
        assert_eq!(r.high_watermark(), 10, "C, joining, still holds the mark");
        r.change_failed(new);
        assert_eq!(r.high_watermark(), 20);
    }

    /// Found by the replication simulation: an expansion commits, then a fencing
    /// takes the ISR back to what it was before the leader hears of either. The
    /// change is decided all the same, and the next check may ask again.
    #[test]
    fn a_newer_partition_epoch_decides_the_change_in_flight_even_with_the_same_isr() {
        let mut r = LeaderReplicas::new(A, ms(&[A, B, C], &[A], 4, 1), 0, 10, 0);
        r.on_fetch(B, 10, 1, 1);
        assert_eq!(r.desired_isr(1, 1_000, 0), Some(vec![A, B]));
        r.begin_change(vec![A, B]);
        assert_eq!(r.desired_isr(2, 1_000, 0), None, "one change at a time");
        r.set_membership(ms(&[A, B, C], &[A], 4, 1), 3);
        assert!(
            r.change_in_flight(),
            "the same metadata again decides nothing"
        );
        r.set_membership(ms(&[A, B, C], &[A], 6, 1), 3);
        assert!(!r.change_in_flight());
        assert_eq!(r.desired_isr(4, 1_000, 0), Some(vec![A, B]));
    }

    #[test]
    fn followers_rejoin_once_at_the_high_watermark_and_the_epoch_start() {
        let mut r = LeaderReplicas::new(A, ms(&[A, B, C], &[A, B], 0, 1), 0, 0, 0);
        r.leader_durable(20);
        r.on_fetch(B, 20, 1, 1);
        assert_eq!(r.high_watermark(), 20);
        r.on_fetch(C, 19, 1, 1);
        assert!(r.caught_up_outside_isr(0).is_empty());
        r.on_fetch(C, 20, 1, 2);
        assert_eq!(r.caught_up_outside_isr(0), vec![C]);
        assert!(
            r.caught_up_outside_isr(25).is_empty(),
            "behind the epoch start"
        );
    }

    /// Exhaustive over small histories: the mark never decreases, never passes
    /// the lowest durable end of the ISR, and never moves below min.insync.
    #[test]
    fn invariants_over_every_short_history() {
        #[derive(Clone, Copy, Debug)]
        enum Step {
            Leader(i64),
            Fetch(BrokerId, i64),
            Isr(&'static [BrokerId]),
        }
        let steps = [
            Step::Leader(3),
            Step::Leader(6),
            Step::Fetch(B, 2),
            Step::Fetch(B, 6),
            Step::Fetch(C, 3),
            Step::Fetch(C, 0),
            Step::Isr(&[A, B]),
            Step::Isr(&[A]),
            Step::Isr(&[A, B, C]),
        ];
        let n = steps.len();
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    for d in 0..n {
                        let mut r = three(2);
                        let mut ends = BTreeMap::from([(A, 0i64), (B, -1), (C, -1)]);
                        let mut last = r.high_watermark();
                        let mut partition_epoch = 0;
                        for i in [a, b, c, d] {
                            match steps[i] {
                                Step::Leader(e) => {
                                    r.leader_durable(e);
                                    ends.insert(A, e);
                                }
                                Step::Fetch(f, e) => {
                                    r.on_fetch(f, e, 1, 0);
                                    ends.insert(f, e);
                                }
                                Step::Isr(isr) => {
                                    let moved_min = r.high_watermark();
                                    partition_epoch += 1;
                                    r.set_membership(ms(&[A, B, C], isr, partition_epoch, 2), 0);
                                    if isr.len() < 2 {
                                        assert_eq!(r.high_watermark(), moved_min);
                                    }
                                }
                            }
                            let hw = r.high_watermark();
                            assert!(hw >= last, "went back: {last} -> {hw}");
                            if hw > last {
                                let low = r.isr().iter().map(|m| ends[m]).min().unwrap_or(0);
                                assert!(hw <= low, "hw {hw} past the ISR's low {low}");
                                assert!(r.enough_in_sync());
                            }
                            last = hw;
                        }
                    }
                }
            }
        }
    }
}
