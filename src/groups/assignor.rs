//! Server-side partition assignment: Kafka's `range` and `roundrobin` strategies.
//! Pure: members' subscriptions and topics' partition counts in, an assignment out,
//! the same for the same input on every broker.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions of each topic assigned to one member.
pub type TopicPartitions = BTreeMap<String, Vec<i32>>;

/// The strategies served, by their Kafka names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignmentStrategy {
    /// Per topic, contiguous ranges of partitions to the subscribed members in
    /// member-id order; the first `partitions % members` get one more.
    Range,
    /// All subscribed topic-partitions in order, dealt one at a time to the next
    /// member (in member-id order) subscribed to that topic.
    RoundRobin,
}

impl AssignmentStrategy {
    pub fn name(self) -> &'static str {
        match self {
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(AssignmentStrategy::Range),
            "roundrobin" => Some(AssignmentStrategy::RoundRobin),
            _ => None,
        }
    }
}

/// Assigns the partitions of every topic some member subscribes to. Topics missing
/// from `partitions` (unknown to the cluster) are skipped. Every member gets an
/// entry, possibly empty.
pub fn assign(
    strategy: AssignmentStrategy,
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &dyn Fn(&str) -> Option<i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = subscriptions
        .keys()
        .map(|m| (m.clone(), TopicPartitions::new()))
        .collect();
    let topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    let subscribers = |topic: &str| -> Vec<&String> {
        subscriptions
            .iter()
            .filter(|(_, ts)| ts.iter().any(|t| t == topic))
            .map(|(m, _)| m)
            .collect()
    };
    match strategy {
        AssignmentStrategy::Range => {
            for topic in topics {
                let Some(count) = partitions(topic).filter(|c| *c > 0) else {
                    continue;
                };
                let members = subscribers(topic);
                let n = members.len() as i32;
                let (each, extra) = (count / n, count % n);
                let mut next = 0;
                for (i, m) in members.into_iter().enumerate() {
                    let take = each + i32::from((i as i32) < extra);
                    if take > 0 {
                        out.entry(m.clone())
                            .or_default()
                            .insert(topic.clone(), (next..next + take).collect());
                    }
                    next += take;
                }
            }
        }
        AssignmentStrategy::RoundRobin => {
            let members: Vec<&String> = subscriptions.keys().collect();
            let mut turn = 0usize;
            for topic in topics {
                let Some(count) = partitions(topic).filter(|c| *c > 0) else {
                    continue;
                };
                for p in 0..count {
                    // The next member in the cycle that subscribes to this topic.
                    for _ in 0..members.len() {
                        let m = members[turn % members.len()];
                        turn += 1;
                        if subscriptions[m].iter().any(|t| t == topic) {
                            out.entry(m.clone())
                                .or_default()
                                .entry(topic.clone())
                                .or_default()
                                .push(p);
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(t: &str) -> Option<i32> {
        match t {
            "a" => Some(6),
            "b" => Some(5),
            "c" => Some(1),
            _ => None,
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_with_the_extra_to_the_first() {
        let a = assign(
            AssignmentStrategy::Range,
            &subs(&[("m1", &["b"]), ("m2", &["b"])]),
            &counts,
        );
        assert_eq!(a["m1"]["b"], vec![0, 1, 2]);
        assert_eq!(a["m2"]["b"], vec![3, 4]);
    }

    #[test]
    fn roundrobin_deals_across_topics() {
        let a = assign(
            AssignmentStrategy::RoundRobin,
            &subs(&[("m1", &["a", "c"]), ("m2", &["a", "c"]), ("m3", &["a"])]),
            &counts,
        );
        assert_eq!(a["m1"]["a"], vec![0, 3]);
        assert_eq!(a["m2"]["a"], vec![1, 4]);
        assert_eq!(a["m3"]["a"], vec![2, 5]);
        assert_eq!(a["m1"]["c"], vec![0]);
        assert!(!a["m3"].contains_key("c"), "m3 does not subscribe to c");
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty_and_unknown_topics_are_skipped() {
        let a = assign(
            AssignmentStrategy::Range,
            &subs(&[("m1", &["c", "zz"]), ("m2", &["c"]), ("m3", &["c"])]),
            &counts,
        );
        assert_eq!(a["m1"]["c"], vec![0]);
        assert!(a["m2"].is_empty() && a["m3"].is_empty());
        assert!(!a["m1"].contains_key("zz"));
    }

    proptest! {
        /// Every partition of every subscribed known topic goes to exactly one member,
        /// that member subscribes to its topic, and loads differ by at most one per
        /// topic (range) or overall among members with equal subscriptions (roundrobin).
        #[test]
        fn each_partition_to_exactly_one_subscriber(
            members in proptest::collection::btree_map(
                "[a-z]{1,3}",
                proptest::sample::subsequence(vec!["a", "b", "c", "x"], 0..=4),
                1..12,
            ),
            round_robin in any::<bool>(),
        ) {
            let subscriptions: BTreeMap<String, Vec<String>> = members
                .iter()
                .map(|(m, ts)| (m.clone(), ts.iter().map(|t| t.to_string()).collect()))
                .collect();
            let strategy = if round_robin { AssignmentStrategy::RoundRobin } else { AssignmentStrategy::Range };
            let a = assign(strategy, &subscriptions, &counts);
            prop_assert_eq!(a.len(), subscriptions.len());
            for topic in ["a", "b", "c", "x"] {
                let subscribed: Vec<&String> = subscriptions
                    .iter()
                    .filter(|(_, ts)| ts.iter().any(|t| t == topic))
                    .map(|(m, _)| m)
                    .collect();
                let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
                for (m, tp) in &a {
                    if let Some(ps) = tp.get(topic) {
                        prop_assert!(subscribed.contains(&m));
                        for p in ps {
                            *owners.entry(*p).or_default() += 1;
                        }
                    }
                }
                let expected = if subscribed.is_empty() { 0 } else { counts(topic).unwrap_or(0) };
                prop_assert_eq!(owners.len() as i32, expected, "topic {}", topic);
                prop_assert!(owners.values().all(|n| *n == 1), "topic {}: {:?}", topic, owners);
                if !round_robin && !subscribed.is_empty() {
                    let loads: Vec<usize> = subscribed
                        .iter()
                        .map(|m| a[*m].get(topic).map_or(0, Vec::len))
                        .collect();
                    let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
                    prop_assert!(hi - lo <= 1, "topic {}: {:?}", topic, loads);
                }
            }
        }
    }
}
