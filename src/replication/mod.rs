//! Partition replication's pure rules (issue 17, DESIGN §5): the leader's view of
//! its followers and the high watermark (`leader`), and log divergence with its
//! truncation (`divergence`). The broker drives them from `core/replica.rs`; the
//! simulation drives the same code.

pub mod divergence;
pub mod leader;
#[cfg(test)]
mod sim;
