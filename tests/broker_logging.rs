//! `--log-format json`: every line the broker logs is one JSON object with a level,
//! a target and its fields, ready for a log collector.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), 1, &["--log-format", "json"]);
    ok(&broker.cli(&["topic", "create", "j", "--partitions", "1"]));
    assert!(broker.terminate().success());
    let log = broker.log();
    let mut lines = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 3, "{log}");
    assert!(log.contains("\"message\":\"broker ready\""), "{log}");
}

/// Waits until the broker's log has `what`.
fn await_log(broker: &Broker, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !broker.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A gauge summed over every series of `metric` with `topic`, from `/metrics`.
fn gauge(admin: &str, metric: &str, topic: &str) -> f64 {
    metric_sum(&metrics(admin), metric, &[&format!("topic=\"{topic}\"")])
}

#[test]
fn sighup_reloads_log_level_and_retention_and_names_keys_that_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringlog.toml");
    let base = "\"log.retention.check.interval.ms\" = 100\n";
    std::fs::write(&config, base).unwrap();
    let mut broker = Broker::start(
        &dir.path().join("data"),
        1,
        &["--config", config.to_str().unwrap()],
    );
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
    let line = "x".repeat(100);
    let input: String = (0..4000).map(|_| format!("{line}\n")).collect();
    ok(&broker.cli_input(
        &["produce", "--topic", "r", "--batch-size", "8192"],
        input.as_bytes(),
    ));
    let admin = broker.admin_addr.clone();
    assert!(gauge(&admin, "ringlog_partition_segments", "r") > 3.0);
    assert_eq!(
        gauge(&admin, "ringlog_partition_log_start_offset", "r"),
        0.0
    );
    assert!(
        !broker.log().contains("admin request"),
        "debug logged before the reload"
    );

    // A file that does not parse changes nothing, and the broker keeps serving.
    std::fs::write(&config, "shards = [\n").unwrap();
    unsafe { libc::kill(broker.pid(), libc::SIGHUP) };
    await_log(&broker, "SIGHUP: configuration not reloaded");

    // Retention and log level apply at once; num.partitions waits for a restart.
    std::fs::write(
        &config,
        format!("{base}\"log.retention.ms\" = 1\n\"log.level\" = \"debug\"\nnum.partitions = 3\n"),
    )
    .unwrap();
    unsafe { libc::kill(broker.pid(), libc::SIGHUP) };
    await_log(&broker, "SIGHUP: retention reloaded");
    await_log(&broker, "SIGHUP: log level reloaded");
    let log = broker.log();
    let restart = log
        .lines()
        .find(|l| l.contains("apply only after a restart"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(restart.contains("num.partitions"), "{restart}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while gauge(&admin, "ringlog_partition_log_start_offset", "r") == 0.0 {
        assert!(
            Instant::now() < deadline,
            "retention did not apply:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Debug lines now appear (the admin listener logs each request at debug).
    await_log(&broker, "admin request");
    ok(&broker.cli(&["topic", "create", "after-hup", "--partitions", "1"]));
    assert!(broker.child_alive());
    assert!(broker.terminate().success());
}

/// A log that cannot be written (stderr on a full disk: /dev/full) loses lines, not
/// the broker: tracing's fallback `eprintln!` used to panic on the same failure.
#[test]
fn a_log_that_cannot_be_written_loses_lines_not_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_logging_to(
        &dir.path().join("data"),
        std::path::Path::new("/dev/full"),
        1,
        &[],
    );
    ok(&broker.cli(&["topic", "create", "full", "--partitions", "1"]));
    ok(&broker.cli_input(&["produce", "--topic", "full"], b"one\ntwo\n"));
    let read = ok(&broker.cli(&[
        "consume",
        "--topic",
        "full",
        "--from-beginning",
        "--max-messages",
        "2",
    ]));
    assert_eq!(read, "one\ntwo\n");
    let text = metrics(&broker.admin_addr);
    assert!(
        metric_sum(&text, "ringlog_log_lines_dropped_total", &[]) >= 3.0,
        "{text}"
    );
    assert!(broker.terminate().success());
}
