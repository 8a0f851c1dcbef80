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
//!
//! A producer not heard from for `producer.id.expiration.ms` is forgotten
//! (`expire`), as in Kafka. The state round-trips through a snapshot (`encode`,
//! `decode`): Kafka's `.snapshot` idea, so a restart reads the state of a known
//! offset and replays only the batches after it.

use std::collections::{HashMap, VecDeque};

use crate::core::error::ErrorKind;

/// Batches remembered per producer (Kafka's in-flight limit for idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

const SNAPSHOT_MAGIC: &[u8; 4] = b"RLPS";
const SNAPSHOT_VERSION: u16 = 1;
/// Magic, version, offset, producer count.
const SNAPSHOT_HEADER_BYTES: usize = 4 + 2 + 8 + 4;

/// A producer's batch as found in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedBatch {
    pub pid: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub timestamp_ms: i64,
}

/// Reads fixed-size fields off a snapshot, never past its end.
struct SnapshotReader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> SnapshotReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or("cut short")?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?
            .try_into()
            .map_err(|_| "cut short".to_string())
    }
}

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
    /// When the producer's last batch was appended (or, rebuilt from the log, its
    /// timestamp), in ms since the epoch: for expiry.
    last_seen_ms: i64,
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
    Reject(ErrorKind, String),
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
                ErrorKind::OutOfOrderSequenceNumber,
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
                ErrorKind::InvalidProducerEpoch,
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
        now_ms: i64,
    ) {
        if pid < 0 {
            return;
        }
        let p = self.producers.entry(pid).or_default();
        p.last_seen_ms = p.last_seen_ms.max(now_ms);
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

    /// Rebuilding from the log: a batch that is there, in log order, with its
    /// (max) timestamp.
    pub fn load(&mut self, batch: LoggedBatch) {
        if batch.pid < 0 {
            return;
        }
        let p = self.producers.entry(batch.pid).or_default();
        p.last_seen_ms = p.last_seen_ms.max(batch.timestamp_ms);
        Self::record(
            p,
            batch.epoch,
            batch.first_seq,
            batch.last_seq,
            batch.base_offset,
        );
    }

    /// Producers known (in the log or being appended).
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Whether any batch is being appended.
    pub fn has_pending(&self) -> bool {
        self.producers.values().any(|p| !p.pending.is_empty())
    }

    /// Forgets producers with nothing pending whose last batch is `expiration_ms` or
    /// more older than `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| {
            !p.pending.is_empty() || now_ms.saturating_sub(p.last_seen_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The state as a snapshot taken at log offset `offset` (everything before it
    /// is in the state): pending batches are not included, so take it when none is.
    pub fn encode(&self, offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + 64 * self.producers.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        let known: Vec<(&i64, &Producer)> = self
            .producers
            .iter()
            .filter(|(_, p)| p.epoch.is_some())
            .collect();
        out.extend_from_slice(&(known.len() as u32).to_be_bytes());
        for (pid, p) in known {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&p.epoch.unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&p.last_seen_ms.to_be_bytes());
            out.push(p.batches.len() as u8);
            for b in &p.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// A snapshot's offset and state; an error for anything damaged or foreign.
    pub fn decode(bytes: &[u8]) -> Result<(i64, ProducerState), String> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or("shorter than its checksum")?;
        let (body, crc) = bytes.split_at(body_len);
        let stored = u32::from_be_bytes(crc.try_into().map_err(|_| "checksum")?);
        if crc32c::crc32c(body) != stored {
            return Err("checksum mismatch".into());
        }
        let mut r = SnapshotReader { buf: body, at: 0 };
        if r.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
            return Err("not a producer state snapshot".into());
        }
        let version = u16::from_be_bytes(r.array()?);
        if version != SNAPSHOT_VERSION {
            return Err(format!("snapshot version {version}"));
        }
        let offset = i64::from_be_bytes(r.array()?);
        let count = u32::from_be_bytes(r.array()?) as usize;
        let mut state = ProducerState::default();
        for _ in 0..count {
            let pid = i64::from_be_bytes(r.array()?);
            let epoch = i16::from_be_bytes(r.array()?);
            let last_seen_ms = i64::from_be_bytes(r.array()?);
            let n = r.take(1)?[0] as usize;
            if n > BATCHES_REMEMBERED {
                return Err(format!("{n} batches for producer {pid}"));
            }
            let mut p = Producer {
                epoch: Some(epoch),
                last_seen_ms,
                ..Producer::default()
            };
            for _ in 0..n {
                p.batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(r.array()?),
                    last_seq: i32::from_be_bytes(r.array()?),
                    base_offset: i64::from_be_bytes(r.array()?),
                });
            }
            state.producers.insert(pid, p);
        }
        if r.at != body.len() {
            return Err("trailing bytes".into());
        }
        Ok((offset, state))
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

    fn logged(
        pid: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        base_offset: i64,
    ) -> LoggedBatch {
        LoggedBatch {
            pid,
            epoch,
            first_seq,
            last_seq,
            base_offset,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn producers_expire_after_their_last_batch_unless_appending() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(1, 0, 0, 0), Verdict::Append);
        s.appended(1, 0, 0, 0, 0, 1_000);
        assert_eq!(s.check(2, 0, 0, 0), Verdict::Append);
        s.appended(2, 0, 0, 0, 1, 5_000);
        assert_eq!(s.check(3, 0, 0, 0), Verdict::Append); // pending, never appended
        assert_eq!(s.expire(10_999, 10_000), 0);
        assert_eq!(s.expire(11_000, 10_000), 1, "producer 1");
        assert_eq!(s.len(), 2);
        assert_eq!(s.expire(1_000_000, 10_000), 1, "producer 2; 3 is pending");
        // An expired producer is unknown: its next batch must start at 0.
        assert_eq!(
            code(s.check(1, 0, 1, 1)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_refused() {
        let mut s = ProducerState::default();
        for pid in 0..20i64 {
            for b in 0..7i32 {
                assert_eq!(s.check(pid, 2, b * 10, b * 10 + 9), Verdict::Append);
                s.appended(
                    pid,
                    2,
                    b * 10,
                    b * 10 + 9,
                    pid * 100 + i64::from(b),
                    7_000 + pid,
                );
            }
        }
        let bytes = s.encode(12_345);
        let (offset, mut back) = ProducerState::decode(&bytes).unwrap();
        assert_eq!(offset, 12_345);
        assert_eq!(back.len(), 20);
        // The last five batches of each are duplicates with their offsets; the next
        // sequence appends; older epochs are fenced.
        assert_eq!(back.check(3, 2, 60, 69), Verdict::Duplicate(306));
        assert_eq!(
            code(back.check(3, 2, 10, 19)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(back.check(3, 2, 70, 79), Verdict::Append);
        assert_eq!(
            code(back.check(4, 1, 70, 79)),
            Some(ErrorKind::InvalidProducerEpoch)
        );
        // Last-seen times were kept: producers 0..=5 are due, 3 has a batch pending.
        assert_eq!(back.expire(7_000 + 5 + 1_000, 1_000), 5);
        for cut in [0, 3, 17, bytes.len() - 1] {
            assert!(ProducerState::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(ProducerState::decode(&flipped).is_err());
    }

    fn code(v: Verdict) -> Option<ErrorKind> {
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
        s.appended(7, 0, 0, 9, 100, 0);
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Duplicate(100));
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        s.appended(7, 0, 10, 19, 110, 0);
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
        s.appended(7, 0, 0, 9, 0, 0);
        // A later batch and the one behind it fail; the retries append in order.
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        assert_eq!(s.check(7, 0, 20, 29), Verdict::Append);
        s.failed(7, 0, 10, 19);
        s.failed(7, 0, 20, 29);
        assert_eq!(
            code(s.check(7, 0, 20, 29)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Append);
        s.appended(7, 0, 10, 19, 10, 0);
        assert_eq!(s.check(7, 0, 10, 19), Verdict::Duplicate(10));
        // A failed epoch bump leaves the old epoch in force.
        assert_eq!(s.check(7, 1, 0, 0), Verdict::Append);
        s.failed(7, 1, 0, 0);
        assert_eq!(s.check(7, 0, 20, 29), Verdict::Append);
        s.appended(7, 0, 20, 29, 20, 0);
        assert_eq!(s.check(7, 0, 0, 9), Verdict::Duplicate(0));
    }

    #[test]
    fn a_pending_epoch_bump_fences_the_old_epoch() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(3, 0, 0, 0), Verdict::Append);
        s.appended(3, 0, 0, 0, 0, 0);
        assert_eq!(s.check(3, 1, 0, 0), Verdict::Append);
        assert_eq!(
            code(s.check(3, 0, 1, 1)),
            Some(ErrorKind::InvalidProducerEpoch)
        );
        assert_eq!(
            s.check(3, 1, 1, 1),
            Verdict::Append,
            "behind the pending one"
        );
        s.appended(3, 1, 0, 0, 1, 0);
        s.appended(3, 1, 1, 1, 2, 0);
        assert_eq!(s.check(3, 1, 1, 1), Verdict::Duplicate(2));
    }

    #[test]
    fn gaps_and_unknown_producers_not_at_zero_are_out_of_order() {
        let mut s = ProducerState::default();
        assert_eq!(
            code(s.check(1, 0, 5, 9)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(1, 0, 0, 4), Verdict::Append);
        assert_eq!(
            code(s.check(1, 0, 6, 9)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            code(s.check(1, 0, 4, 9)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(1, 0, 5, 9), Verdict::Append);
    }

    #[test]
    fn epochs_fence_old_producers_and_new_epochs_restart_at_zero() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(1, 3, 0, 0), Verdict::Append);
        assert_eq!(
            code(s.check(1, 2, 1, 1)),
            Some(ErrorKind::InvalidProducerEpoch)
        );
        assert_eq!(
            code(s.check(1, 4, 1, 1)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(1, 4, 0, 0), Verdict::Append);
        assert_eq!(s.check(1, 4, 1, 1), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..8 {
            assert_eq!(s.check(2, 0, i, i), Verdict::Append);
            s.appended(2, 0, i, i, i64::from(i), 0);
        }
        assert_eq!(s.check(2, 0, 3, 3), Verdict::Duplicate(3));
        assert_eq!(
            code(s.check(2, 0, 2, 2)),
            Some(ErrorKind::OutOfOrderSequenceNumber)
        );
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        s.load(logged(3, 0, i32::MAX - 4, i32::MAX, 50));
        assert_eq!(s.check(3, 0, 0, 4), Verdict::Append, "wraps to 0");
    }

    #[test]
    fn non_idempotent_batches_are_not_checked_and_loading_rebuilds() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(-1, -1, -1, -1), Verdict::Append);
        s.load(logged(9, 1, 0, 4, 10));
        s.load(logged(9, 1, 5, 9, 15));
        assert_eq!(s.check(9, 1, 5, 9), Verdict::Duplicate(15));
        assert_eq!(s.check(9, 1, 10, 10), Verdict::Append);
        assert_eq!(
            code(s.check(9, 0, 11, 11)),
            Some(ErrorKind::InvalidProducerEpoch)
        );
    }
}
