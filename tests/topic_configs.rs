//! `ringlog topic alter-config` on a real broker: an altered retention reaches the
//! open partitions (old segments go), a removed config falls back to the
//! broker's default, and what cannot change is refused with nothing changed.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The first partition's `LogStart` as `topic describe` prints it.
fn log_start(broker: &Broker, topic: &str) -> i64 {
    ok(&broker.cli(&["topic", "describe", topic]))
        .lines()
        .find_map(|l| l.split("LogStart: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// The `Configs:` of `topic describe`.
fn configs(broker: &Broker, topic: &str) -> String {
    ok(&broker.cli(&["topic", "describe", topic]))
        .lines()
        .find_map(|l| l.split("Configs: ").nth(1).map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn an_altered_retention_reaches_the_open_partitions_and_fixed_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data, 1, &["--set", "log.retention.check.interval.ms=100"]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "r",
        "--partitions",
        "1",
        "--config",
        "segment.bytes=65536",
        "--config",
        "max.message.bytes=16384",
    ]));
    // About 600 KB: ten segments or so.
    let value = "x".repeat(500);
    let lines: String = (0..1200).map(|i| format!("{i:05}{value}\n")).collect();
    ok(&broker.cli_input(
        &["produce", "--topic", "r", "--batch-size", "16000"],
        lines.as_bytes(),
    ));
    assert_eq!(log_start(&broker, "r"), 0);

    // Refused, and nothing changes: a config fixed at creation, an unknown key,
    // an invalid value, an unknown topic, no change at all.
    let refused = fails(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--config",
        "segment.bytes=1048576",
    ]));
    assert!(
        refused.contains("segment.bytes") && refused.contains("cannot change"),
        "{refused}"
    );
    let refused = fails(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--config",
        "retention.moments=1",
    ]));
    assert!(refused.contains("unknown topic config"), "{refused}");
    let refused = fails(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--config",
        "min.insync.replicas=0",
    ]));
    assert!(refused.contains("min.insync.replicas"), "{refused}");
    let refused = fails(&broker.cli(&[
        "topic",
        "alter-config",
        "nope",
        "--config",
        "retention.ms=1000",
    ]));
    assert!(refused.contains("nope"), "{refused}");
    let refused = fails(&broker.cli(&["topic", "alter-config", "r"]));
    assert!(refused.contains("nothing to change"), "{refused}");
    // Only checked: valid, and still not applied.
    ok(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--config",
        "retention.bytes=100000",
        "--validate-only",
    ]));
    assert_eq!(
        configs(&broker, "r"),
        "max.message.bytes=16384,segment.bytes=65536"
    );

    // Retention of about two segments: the open partition drops the older ones.
    ok(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--config",
        "retention.bytes=150000",
    ]));
    assert_eq!(
        configs(&broker, "r"),
        "max.message.bytes=16384,retention.bytes=150000,segment.bytes=65536"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while log_start(&broker, "r") == 0 {
        assert!(
            Instant::now() < deadline,
            "retention never applied:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = log_start(&broker, "r");
    assert!(start > 600, "log start {start}");

    // Removed: back to the broker's default (no limit by size).
    ok(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--delete-config",
        "retention.bytes",
    ]));
    assert_eq!(
        configs(&broker, "r"),
        "max.message.bytes=16384,segment.bytes=65536"
    );
    // And the change survives a restart.
    ok(&broker.cli(&[
        "topic",
        "alter-config",
        "r",
        "--config",
        "retention.ms=86400000",
    ]));
    drop(broker);
    let broker = Broker::start(&data, 1, &[]);
    assert_eq!(
        configs(&broker, "r"),
        "max.message.bytes=16384,retention.ms=86400000,segment.bytes=65536"
    );
}
