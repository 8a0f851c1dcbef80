//! Reaching the owner shards of a request's partitions: the checks every
//! multi-partition request passes first, and calls to the owners in order.

use crate::config::REQUEST_PARTITIONS_MAX;
use crate::core::error::{unreachable_owner, ErrorKind, PartitionError};
use crate::core::messages::{Answer, PartitionKey, ShardRequest};
use crate::core::shard::Shard;
use crate::sync::join::join_all;

/// Sends each request to its partition's owner in order, then awaits all answers.
pub async fn call_owners<T, F>(
    shard: &Shard,
    requests: Vec<(PartitionKey, F)>,
) -> Vec<Result<T, PartitionError>>
where
    T: Send + 'static,
    F: FnOnce(Answer<Result<T, PartitionError>>) -> ShardRequest,
{
    let mut pending = Vec::with_capacity(requests.len());
    for (key, request) in requests {
        pending.push(shard.send_to_owner(&key, request).await);
    }
    let replies = pending.into_iter().map(|sent| async move {
        match sent {
            Ok(reply) => reply
                .recv()
                .await
                .map_err(|e| unreachable_owner(&e))
                .and_then(|answer| answer),
            Err(e) => Err(e),
        }
    });
    join_all(replies.collect()).await
}

/// Asks each named partition's owner one question (`make` builds the request from
/// the partition, its question and the answer slot), and answers in the order
/// asked; a partition named twice, or a request naming too many, is refused
/// without being asked (`refused_partitions`).
pub async fn ask_each_partition<Q, T, F>(
    shard: &Shard,
    api: &str,
    asked: Vec<(PartitionKey, Q)>,
    make: F,
) -> Vec<Result<T, PartitionError>>
where
    T: Send + 'static,
    F: Fn(PartitionKey, Q, Answer<Result<T, PartitionError>>) -> ShardRequest,
{
    let refused = refused_partitions(
        api,
        asked.iter().map(|(k, _)| (k.topic.as_str(), k.partition)),
    );
    let make = &make;
    let requests = asked
        .into_iter()
        .zip(&refused)
        .filter(|(_, r)| r.is_none())
        .map(|((key, question), _)| (key.clone(), move |answer| make(key, question, answer)))
        .collect();
    let mut answers = call_owners(shard, requests).await.into_iter();
    refused
        .into_iter()
        .map(|refused| match refused {
            Some(e) => Err(e),
            None => answers.next().unwrap_or_else(|| {
                Err(PartitionError::new(
                    ErrorKind::UnknownServerError,
                    "not answered",
                ))
            }),
        })
        .collect()
}

/// Per partition named by a request, why it is not served: a partition named
/// again later in the same request, or every partition of a request naming more
/// than `REQUEST_PARTITIONS_MAX`. `None` for the partitions to serve.
pub fn refused_partitions<'a>(
    api: &str,
    named: impl ExactSizeIterator<Item = (&'a str, i32)>,
) -> Vec<Option<PartitionError>> {
    let n = named.len();
    if n > REQUEST_PARTITIONS_MAX {
        let e = PartitionError::new(
            ErrorKind::InvalidRequest,
            format!("{n} partitions in one {api} request; at most {REQUEST_PARTITIONS_MAX}"),
        );
        return vec![Some(e); n];
    }
    let mut seen = std::collections::HashSet::with_capacity(n);
    named
        .map(|(topic, partition)| {
            (!seen.insert((topic, partition))).then(|| {
                PartitionError::new(
                    ErrorKind::InvalidRequest,
                    format!("{topic}-{partition} is named twice in one {api} request"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_named_again_is_refused_and_so_is_a_request_naming_too_many() {
        let named = [("a", 0), ("a", 1), ("a", 0), ("b", 0), ("a", 1)];
        let refused = refused_partitions("fetch", named.into_iter());
        let flags: Vec<bool> = refused.iter().map(Option::is_some).collect();
        assert_eq!(flags, [false, false, true, false, true]);
        let many = vec![("t", 0); REQUEST_PARTITIONS_MAX + 1];
        let refused = refused_partitions("fetch", many.into_iter());
        assert!(refused.iter().all(Option::is_some));
    }
}
