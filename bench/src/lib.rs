//! ringlog-bench: the load generator (DESIGN §8).
//!
//! Will own the `ringlog-bench` binary: producers and consumers over the native or the
//! Kafka protocol, open-loop rates with coordinated-omission correction, HdrHistogram
//! latency reports (`.hgrm`, JSON, plots). Empty until the bench issue; the storage
//! engine's own benchmark is `storage/benches/log_bench.rs`.
