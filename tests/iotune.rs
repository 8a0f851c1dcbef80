//! `ringlog iotune`: measures the data directory's device within the asked duration,
//! writes `io-properties.toml`, and the broker sizes its log I/O from it at start,
//! logging each value (configured keys win; a damaged file stops the start).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The acceptance bound for `--duration 20` (measurement plus set-up and teardown).
const IOTUNE_20S_BOUND: Duration = Duration::from_secs(60);

fn field(log: &str, line_has: &str, key: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(line_has))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn iotune_writes_properties_the_broker_applies_and_logs() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let started = Instant::now();
    let out = cli_with_input(
        &[
            "iotune".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--duration".into(),
            "20".into(),
        ],
        None,
    );
    let took = started.elapsed();
    let stdout = ok(&out);
    assert!(took < IOTUNE_20S_BOUND, "iotune took {took:?}");
    assert!(
        stdout.contains("fdatasync after a 4 KiB write: p50"),
        "{stdout}"
    );
    assert!(
        !data.join(".ringlog-iotune.tmp").exists(),
        "scratch file left behind"
    );

    let path = data.join("io-properties.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let measured = &v["measured"];
    assert_eq!(measured["seq_write"].as_array().unwrap().len(), 9, "{text}");
    for run in measured["seq_write"].as_array().unwrap() {
        assert!(run["bytes_per_sec"].as_integer().unwrap() > 0, "{text}");
    }
    assert!(measured["fdatasync_samples"].as_integer().unwrap() > 0);
    assert!(measured["fdatasync_p99_us"].as_integer().unwrap() > 0);
    assert!(measured["rand_read_iops"].as_integer().unwrap() > 0);
    let derived = |k: &str| v["derived"][k].as_integer().unwrap() as u64;
    let buffer = derived("write_buffer_bytes");
    let inflight = derived("inflight_writes_max");
    let read_ahead = derived("read_ahead_bytes");

    // The broker takes every derived value and says so.
    let mut broker = Broker::start(&data, 1, &[]);
    assert!(broker.terminate().success());
    let log = broker.log();
    let sized = "log I/O sized from io properties";
    assert_eq!(
        field(&log, sized, "write_buffer_bytes"),
        Some(buffer),
        "{log}"
    );
    assert_eq!(
        field(&log, sized, "inflight_writes_max"),
        Some(inflight),
        "{log}"
    );
    assert_eq!(
        field(&log, sized, "read_ahead_bytes"),
        Some(read_ahead),
        "{log}"
    );

    // A configured key wins over the measured value.
    let mut broker = Broker::start(&data, 1, &["--set", "log.write.buffer.bytes=131072"]);
    assert!(broker.terminate().success());
    let log = broker.log();
    assert!(log.contains("keeping the configured value"), "{log}");
    assert_eq!(
        field(&log, sized, "write_buffer_bytes"),
        Some(131072),
        "{log}"
    );
    assert_eq!(
        field(&log, sized, "inflight_writes_max"),
        Some(inflight),
        "{log}"
    );

    // A damaged file stops the start with a clear error, and loses nothing.
    std::fs::write(&path, "derived = 3\n").unwrap();
    let out = cli_with_input(
        &[
            "serve".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--native-addr".into(),
            "127.0.0.1:0".into(),
            "--kafka-addr".into(),
            "none".into(),
            "--admin-addr".into(),
            "none".into(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid io-properties file"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "derived = 3\n");
}

#[test]
fn without_properties_the_broker_says_it_uses_defaults() {
    let root = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&root.path().join("data"), 1, &[]);
    assert!(broker.terminate().success());
    let log = broker.log();
    assert!(log.contains("no io properties"), "{log}");
}

#[test]
fn bad_durations_are_refused() {
    let root = tempfile::tempdir().unwrap();
    for d in ["0", "4", "3601", "x"] {
        let out = cli_with_input(
            &[
                "iotune".into(),
                "--data-dir".into(),
                root.path().display().to_string(),
                "--duration".into(),
                d.into(),
            ],
            None,
        );
        assert!(!out.status.success(), "--duration {d}");
        assert!(!root.path().join("io-properties.toml").exists());
    }
}
