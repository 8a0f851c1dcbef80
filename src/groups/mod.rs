//! Consumer groups: membership (who is in a group, which partitions each member
//! owns, generations) and committed offsets. The pure parts live here apart from the
//! I/O that drives them, so they are tested exhaustively.
//!
//! - [`membership`]: one group's state machine (Kafka's classic group protocol, with
//!   server-side assignment for the native consumer);
//! - [`assignor`]: the `range` and `roundrobin` strategies;
//! - [`offsets`]: committed offsets as records of `__consumer_offsets`, and their view.

pub mod assignor;
pub mod membership;
pub mod offsets;

#[cfg(test)]
#[path = "membership_tests.rs"]
mod membership_tests;
