//! Replica placement, the seed rule of DESIGN §5: with the N brokers sorted by id,
//! partition i goes to broker (i mod N) and its replica j to broker ((i + j) mod N).
//! Replica 0 is the preferred leader. Pure.

use crate::metadata::model::{BrokerId, MetadataError};

/// Replica lists for `partitions` partitions over `brokers` (any order).
pub fn assign_replicas(
    partitions: i32,
    replication_factor: i16,
    brokers: &[BrokerId],
) -> Result<Vec<Vec<BrokerId>>, MetadataError> {
    let mut sorted = brokers.to_vec();
    sorted.sort();
    sorted.dedup();
    let n = sorted.len();
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 || rf > n {
        return Err(MetadataError::InvalidReplicationFactor {
            factor: replication_factor,
            live: n,
        });
    }
    let partitions = usize::try_from(partitions).unwrap_or(0);
    Ok((0..partitions)
        .map(|i| (0..rf).map(|j| sorted[(i + j) % n]).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_rule_for_every_small_cluster() {
        for n in 1..=7usize {
            let brokers: Vec<BrokerId> = (0..n).rev().map(|b| BrokerId(b as i32 * 10)).collect();
            for rf in 1..=n {
                let a = assign_replicas(20, rf as i16, &brokers).unwrap();
                for (i, replicas) in a.iter().enumerate() {
                    assert_eq!(replicas.len(), rf);
                    for (j, b) in replicas.iter().enumerate() {
                        assert_eq!(b.0 as usize, ((i + j) % n) * 10);
                    }
                    let mut distinct = replicas.clone();
                    distinct.dedup();
                    assert_eq!(distinct.len(), rf, "replicas on distinct brokers");
                }
            }
            assert!(assign_replicas(1, (n + 1) as i16, &brokers).is_err());
            assert!(assign_replicas(1, 0, &brokers).is_err());
        }
    }
}
