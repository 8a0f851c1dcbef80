//! Which closed segments retention deletes. Pure: the log passes summaries and the
//! clock; the answer is how many of the oldest segments to delete.
//!
//! Kafka's rules: by size, delete the oldest segments while what remains still
//! exceeds `retention.bytes`; by time, delete the oldest segments whose newest record
//! is older than `now - retention.ms`. Only whole, closed segments are deleted; the
//! active segment always stays, so the log end offset never moves.

/// What retention needs to know of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetentionView {
    pub bytes: u64,
    pub max_timestamp: i64,
}

/// Number of segments, from the oldest, to delete. `segments` is in offset order and
/// its last element is the active segment, which is never counted.
pub(crate) fn segments_to_delete(
    segments: &[RetentionView],
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    now_ms: i64,
) -> usize {
    let closed = segments.len().saturating_sub(1);
    let mut by_size = 0;
    if let Some(limit) = retention_bytes {
        let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
        while by_size < closed
            && total.saturating_sub(segments[by_size].bytes) >= limit
            && total > limit
        {
            total -= segments[by_size].bytes;
            by_size += 1;
        }
    }
    let mut by_time = 0;
    if let Some(ms) = retention_ms {
        let horizon = now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
        while by_time < closed && segments[by_time].max_timestamp < horizon {
            by_time += 1;
        }
    }
    by_size.max(by_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(sizes_ts: &[(u64, i64)]) -> Vec<RetentionView> {
        sizes_ts
            .iter()
            .map(|&(bytes, max_timestamp)| RetentionView {
                bytes,
                max_timestamp,
            })
            .collect()
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let s = segs(&[(100, 0), (100, 0), (100, 0), (50, 0)]);
        assert_eq!(segments_to_delete(&s, Some(350), None, 0), 0);
        assert_eq!(segments_to_delete(&s, Some(250), None, 0), 1);
        assert_eq!(segments_to_delete(&s, Some(150), None, 0), 2);
        assert_eq!(
            segments_to_delete(&s, Some(0), None, 0),
            3,
            "never the active one"
        );
    }

    #[test]
    fn time_retention_deletes_expired_prefix_only() {
        let s = segs(&[(1, 10), (1, 50), (1, 20), (1, 5)]);
        // horizon = 100 - 60 = 40: only the first is older; the second stops the prefix.
        assert_eq!(segments_to_delete(&s, None, Some(60), 100), 1);
        assert_eq!(segments_to_delete(&s, None, Some(1), 1000), 3);
        assert_eq!(segments_to_delete(&s, None, None, 1000), 0);
    }

    proptest! {
        #[test]
        fn never_deletes_active_and_respects_size(
            sizes in proptest::collection::vec(1u64..1000, 1..20),
            limit in 0u64..20_000,
        ) {
            let s: Vec<_> = sizes.iter().map(|&b| RetentionView { bytes: b, max_timestamp: 0 }).collect();
            let n = segments_to_delete(&s, Some(limit), None, 0);
            prop_assert!(n < s.len());
            let kept: u64 = sizes[n..].iter().sum();
            // What is kept is >= limit unless only the active segment remains.
            prop_assert!(kept >= limit.min(sizes.iter().sum()) || n == s.len() - 1);
            // Deleting one more would go below the limit (or hit the active one).
            if n + 1 < s.len() {
                prop_assert!(kept - sizes[n] < limit || kept <= limit);
            }
        }
    }
}
