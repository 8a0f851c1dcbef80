//! Partition replication's pure rules (issue 17, DESIGN §5): the leader's view of
//! its followers and the high watermark (`leader`), log divergence with its
//! truncation (`divergence`), and the lag from a leader's append to a follower's
//! durable copy (`lag`). The broker drives them from `core/replica.rs`; the
//! simulation drives the same code.

pub mod divergence;
pub mod lag;
pub mod leader;
#[cfg(test)]
mod sim;
