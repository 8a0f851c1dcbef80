//! `--log-format json`: every line the broker logs is one JSON object with a level,
//! a target and its fields, ready for a log collector.

mod common;

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

#[test]
fn sighup_says_the_configuration_cannot_be_reloaded_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), 1, &[]);
    unsafe { libc::kill(broker.pid(), libc::SIGHUP) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !broker.log().contains("cannot reload its configuration") {
        assert!(std::time::Instant::now() < deadline, "{}", broker.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&broker.cli(&["topic", "create", "after-hup", "--partitions", "1"]));
    assert!(broker.child_alive());
    assert!(broker.terminate().success());
}
