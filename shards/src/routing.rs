//! Partition -> shard routing: partition `i` of a topic whose first partition is on
//! shard `s0` lives on shard `(s0 + i) mod S` (DESIGN §2). Pure arithmetic.

use std::fmt;

/// Index of a data shard in `0..S`. Not glommio's executor id, which is a process-wide
/// counter starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The index as a `usize`, for slices.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The shard that owns `partition` of a topic starting on shard `start_shard`, with
/// `shards` data shards (at least one).
pub fn shard_for_partition(partition: u32, start_shard: u16, shards: u16) -> ShardId {
    let shards = u64::from(shards.max(1));
    let s = (u64::from(start_shard) + u64::from(partition)) % shards;
    // `s < shards <= u16::MAX`, so the conversion cannot fail.
    ShardId(u16::try_from(s).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_topic_is_plain_modulo() {
        let owners: Vec<u16> = (0..6).map(|i| shard_for_partition(i, 0, 4).0).collect();
        assert_eq!(owners, [0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn start_shard_rotates_and_every_shard_gets_its_share() {
        for shards in 1..=9u16 {
            for s0 in 0..shards {
                let mut count = vec![0u32; usize::from(shards)];
                for p in 0..u32::from(shards) * 3 {
                    let s = shard_for_partition(p, s0, shards);
                    assert!(s.0 < shards);
                    count[s.index()] += 1;
                }
                assert!(count.iter().all(|c| *c == 3), "{shards} {s0} {count:?}");
                assert_eq!(shard_for_partition(0, s0, shards).0, s0);
            }
        }
    }

    #[test]
    fn zero_shards_is_treated_as_one() {
        assert_eq!(shard_for_partition(7, 3, 0), ShardId(0));
    }
}
