//! The standard workloads (BENCHMARKS.md), named after the OpenMessaging Benchmark
//! workloads they mirror. Each is a [`RunConfig`] preset that one command runs.

use crate::config::{Mode, PayloadKind, Protocol, RunConfig};

/// Every standard workload, in the order BENCHMARKS.md lists them.
pub const NAMES: [&str; 5] = [
    "max-rate-1-topic-1-partition-1kb",
    "max-rate-1-topic-16-partitions-1kb",
    "fixed-rate-50mb-1kb-latency",
    "small-100b",
    "fanout-1p-4c",
];

/// 50 MB/s of 1 KiB records (MB = 10^6 bytes).
const FIFTY_MB_OF_1KIB: u64 = 50_000_000 / 1024;

/// The preset for `name` against `bootstrap`, or `None` for an unknown name.
pub fn preset(name: &str, bootstrap: &str) -> Option<RunConfig> {
    let base = RunConfig {
        workload: Some(name.to_string()),
        mode: Mode::Produce,
        protocol: Protocol::Native,
        bootstrap_server: bootstrap.to_string(),
        topic: format!("bench-{name}"),
        partitions: 1,
        replication_factor: 1,
        producers: 1,
        consumers: 1,
        consumer_groups: 1,
        message_size: 1024,
        payload: PayloadKind::Random,
        batch_size: 256 * 1024,
        linger_ms: 1,
        max_in_flight: 64,
        acks: -1,
        rate: None,
        messages: None,
        duration_s: 30.0,
        warmup_s: 5.0,
        keys: None,
        cores: None,
        seed: 1,
        broker_pid: None,
    };
    Some(match name {
        "max-rate-1-topic-1-partition-1kb" => base,
        "max-rate-1-topic-16-partitions-1kb" => RunConfig {
            partitions: 16,
            ..base
        },
        "fixed-rate-50mb-1kb-latency" => RunConfig {
            mode: Mode::E2e,
            rate: Some(FIFTY_MB_OF_1KIB),
            linger_ms: 0,
            ..base
        },
        "small-100b" => RunConfig {
            message_size: 100,
            batch_size: 64 * 1024,
            ..base
        },
        "fanout-1p-4c" => RunConfig {
            mode: Mode::E2e,
            consumer_groups: 4,
            ..base
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_workload_is_a_valid_preset() {
        for name in NAMES {
            let c = preset(name, "127.0.0.1:9290").unwrap();
            c.validate().unwrap();
            assert_eq!(c.workload.as_deref(), Some(name));
        }
        assert!(preset("nope", "x").is_none());
    }

    #[test]
    fn presets_match_their_names() {
        let p = |n| preset(n, "b").unwrap();
        assert_eq!(p("max-rate-1-topic-16-partitions-1kb").partitions, 16);
        let fixed = p("fixed-rate-50mb-1kb-latency");
        let mb_per_s = fixed.rate.unwrap() as f64 * fixed.message_size as f64 / 1e6;
        assert!((49.9..=50.0).contains(&mb_per_s), "{mb_per_s}");
        assert_eq!(p("small-100b").message_size, 100);
        let fanout = p("fanout-1p-4c");
        assert_eq!((fanout.producers, fanout.consumer_groups), (1, 4));
    }
}
