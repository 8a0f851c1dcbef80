//! ringlog-shards: the thread-per-core substrate.
//!
//! Will own the glommio executor pool (one executor per shard, pinned to its core),
//! our own `ShardId(0..S)`, partition -> shard routing (`(s0 + i) mod S`), the
//! cross-shard channel mesh that forwards requests as `Bytes`, and orderly start-up
//! and shutdown (DESIGN §2). Architecture invariant: it knows nothing about topics,
//! logs or protocols. Empty until the broker issue.
