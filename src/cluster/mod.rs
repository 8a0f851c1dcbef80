//! The cluster: the controller quorum and the decisions of its active controller
//! (DESIGN §5, issue 16).
//!
//! - [`quorum`]: the Raft node of a voter (raft-rs), sans-I/O: tick, step, propose,
//!   and one `process` per Ready that persists before it promises.
//! - [`controller`]: the active controller's pure decisions about brokers: sessions,
//!   unfencing, fencing.
//! - [`raft_file`]: a voter's durable Raft state, one append-only file of CRC frames.
//! - [`slog_tracing`]: raft-rs's slog output into tracing.
//! - `sim` (tests): the seeded deterministic simulation of voters and brokers.
//!
//! Metadata records and their application live with the model in
//! [`crate::metadata::records`].

pub mod controller;
pub mod quorum;
pub mod raft_file;
#[cfg(test)]
pub(crate) mod sim;
pub mod slog_tracing;
