//! Single-executor async primitives shared by the broker and the client library:
//! nothing here knows about shards, partitions or protocols.
//!
//! - [`signal`]: `Signal` (wake every waiter, each wait owning a slot it gives back
//!   when dropped) and `Latch`;
//! - [`join`]: `join_all` in linear time.

pub mod join;
pub mod signal;
