//! ringlog-bench: the load generator (DESIGN §8).
//!
//! Producers and consumers on the native protocol, open-loop rates with
//! coordinated-omission correction, HdrHistogram latency (produce: intended send time
//! to ack; end to end: intended send time to consumption), verification of every
//! consumed record, and reports: text, JSON, `.hgrm`, SVG plots, and `compare`.
//! The storage engine's own benchmark is `storage/benches/log_bench.rs`.

pub mod compare;
pub mod config;
pub mod cpu;
pub mod hgrm;
pub mod plot;
pub mod progress;
pub mod record;
pub mod run;
pub mod summary;
pub mod verify;
pub mod workloads;
