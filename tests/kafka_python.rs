//! kafka-python (pure Python, PyPI) against the Kafka listener: it produces, consumes
//! in a group and commits; after a broker `kill -9` and restart the group resumes
//! from its commits. The README's test command installs kafka-python.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka_python_client.py");

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kafka-python {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kafka_python_commits_in_a_group_survive_a_broker_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 2, &["--set", "group.initial.rebalance.delay.ms=100"]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "py",
        "--partitions",
        "3",
        "--replication-factor",
        "1",
    ]));
    python(&[&broker.kafka_addr, "produce", "py", "100"]);
    let first = python(&[&broker.kafka_addr, "consume", "py", "60"]);
    assert_eq!(first.lines().count(), 60, "{first}");
    broker.kill9();
    let broker = Broker::start(&data, 2, &["--set", "group.initial.rebalance.delay.ms=100"]);
    let second = python(&[&broker.kafka_addr, "consume", "py", "40"]);
    let a: BTreeSet<&str> = first.lines().collect();
    let b: BTreeSet<&str> = second.lines().collect();
    assert_eq!(b.len(), 40, "{second}");
    assert!(
        a.is_disjoint(&b),
        "the group resumed from its committed offsets"
    );
    let all: BTreeSet<String> = (0..100).map(|i| format!("v{i}")).collect();
    let union: BTreeSet<String> = a.union(&b).map(|s| s.to_string()).collect();
    assert_eq!(union, all);
}
