//! Checking what consumers received: every record is a bench record with a good
//! checksum, in the partition it was sent to, each producer's records in send order
//! within a partition, offsets increasing, nothing twice; and at the end, per
//! consumer group, exactly as many records as were produced. A mismatch is an error
//! of the run, not a footnote.

use std::collections::HashMap;

use crate::record::{decode, Header};

/// Problems listed in full; beyond this only counted.
const PROBLEMS_LISTED_MAX: usize = 20;

/// One consumer's checks over the partitions it reads.
#[derive(Debug, Default)]
pub struct Verifier {
    /// Last seq seen per (partition, producer).
    last_seq: HashMap<(i32, u32), u64>,
    last_offset: HashMap<i32, i64>,
    consumed: u64,
    problems: Vec<String>,
    problem_count: u64,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one record; returns its header when it is a valid bench record.
    pub fn check(&mut self, partition: i32, offset: i64, value: Option<&[u8]>) -> Option<Header> {
        self.consumed += 1;
        if let Some(&last) = self.last_offset.get(&partition) {
            if offset <= last {
                self.problem(format!(
                    "partition {partition}: offset {offset} after {last} (duplicate or reordered)"
                ));
            }
        }
        self.last_offset.insert(partition, offset);
        let Some(value) = value else {
            self.problem(format!(
                "partition {partition} offset {offset}: record without a value"
            ));
            return None;
        };
        let h = match decode(value) {
            Ok(h) => h,
            Err(e) => {
                self.problem(format!("partition {partition} offset {offset}: {e}"));
                return None;
            }
        };
        if i64::from(h.partition) != i64::from(partition) {
            self.problem(format!(
                "partition {partition} offset {offset}: record sent to partition {}",
                h.partition
            ));
        }
        match self.last_seq.insert((partition, h.producer), h.seq) {
            Some(prev) if h.seq <= prev => self.problem(format!(
                "partition {partition} offset {offset}: producer {} seq {} after seq {prev} (duplicate or out of order)",
                h.producer, h.seq
            )),
            _ => {}
        }
        Some(h)
    }

    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(p);
        }
    }

    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    pub fn problem_count(&self) -> u64 {
        self.problem_count
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// The verdict for one consumer group, from its members' verifiers.
pub fn group_verdict(group: usize, members: &[Verifier], expected: u64) -> Vec<String> {
    let mut out = Vec::new();
    let consumed: u64 = members.iter().map(|m| m.consumed).sum();
    let problems: u64 = members.iter().map(|m| m.problem_count).sum();
    for m in members {
        out.extend(m.problems.iter().map(|p| format!("group {group}: {p}")));
    }
    if problems > out.len() as u64 {
        out.push(format!(
            "group {group}: {} more problems not listed",
            problems - out.len() as u64
        ));
    }
    if consumed != expected {
        out.push(format!(
            "group {group}: consumed {consumed} records, expected {expected} ({})",
            if consumed < expected {
                "records missing"
            } else {
                "extra records"
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PayloadKind;
    use crate::record::RecordMaker;

    fn rec(maker: &RecordMaker, producer: u32, partition: u32, seq: u64) -> Vec<u8> {
        maker.make(Header {
            producer,
            partition,
            seq,
            sent_ns: 1,
        })
    }

    #[test]
    fn interleaved_producers_in_order_pass() {
        let m = RecordMaker::new(64, PayloadKind::Random, 1);
        let mut v = Verifier::new();
        let mut offset = 0;
        for seq in 0..100u64 {
            for producer in 0..3u32 {
                assert!(v
                    .check(2, offset, Some(&rec(&m, producer, 2, seq * 7)))
                    .is_some());
                offset += 1;
            }
        }
        assert_eq!(v.problem_count(), 0, "{:?}", v.problems());
        assert!(group_verdict(0, &[v], 300).is_empty());
    }

    #[test]
    fn duplicates_reorders_wrong_partitions_and_damage_are_problems() {
        let m = RecordMaker::new(64, PayloadKind::Random, 1);
        let mut v = Verifier::new();
        v.check(0, 0, Some(&rec(&m, 0, 0, 1)));
        v.check(0, 1, Some(&rec(&m, 0, 0, 1)));
        assert_eq!(v.problem_count(), 1, "same seq twice");
        v.check(0, 2, Some(&rec(&m, 0, 0, 0)));
        assert_eq!(v.problem_count(), 2, "seq going back");
        v.check(0, 2, Some(&rec(&m, 0, 0, 5)));
        assert_eq!(v.problem_count(), 3, "offset repeated");
        v.check(0, 3, Some(&rec(&m, 0, 1, 6)));
        assert_eq!(v.problem_count(), 4, "record of partition 1 in partition 0");
        let mut bad = rec(&m, 0, 0, 7);
        bad[40] ^= 1;
        assert!(v.check(0, 4, Some(&bad)).is_none());
        assert_eq!(v.problem_count(), 5, "checksum");
        assert!(v.check(0, 5, None).is_none());
        assert_eq!(v.problem_count(), 6, "no value");
        assert!(v.problems().iter().any(|p| p.contains("checksum")));
    }

    #[test]
    fn the_group_count_must_match_exactly() {
        let m = RecordMaker::new(64, PayloadKind::Random, 1);
        let mut a = Verifier::new();
        let mut b = Verifier::new();
        for seq in 0..10 {
            a.check(0, seq as i64, Some(&rec(&m, 0, 0, seq)));
            b.check(1, seq as i64, Some(&rec(&m, 0, 1, seq)));
        }
        let members = [a, b];
        assert!(group_verdict(0, &members, 20).is_empty());
        let short = group_verdict(1, &members, 21);
        assert_eq!(short.len(), 1);
        assert!(short[0].contains("missing"), "{short:?}");
        assert!(group_verdict(1, &members, 19)[0].contains("extra"));
    }

    #[test]
    fn problems_beyond_the_listed_are_counted() {
        let m = RecordMaker::new(64, PayloadKind::Random, 1);
        let mut v = Verifier::new();
        let r = rec(&m, 0, 0, 1);
        for i in 0..50 {
            v.check(0, i, Some(&r));
        }
        assert_eq!(v.problem_count(), 49);
        let verdict = group_verdict(0, &[v], 50);
        assert_eq!(verdict.len(), PROBLEMS_LISTED_MAX + 1);
        assert!(verdict.last().unwrap().contains("29 more"));
    }
}
