//! Consumer groups against a real broker: every group gets every record, each record
//! reaches one member of a group, committed offsets survive a `kill -9`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ringlog::client::{Client, GroupConfig, GroupConsumer, OffsetReset, Producer, ProducerConfig};

/// Broker settings for group tests: a short initial delay so groups form quickly,
/// and session timeouts down to 1 s.
const GROUP_FLAGS: &[&str] = &[
    "--set",
    "group.initial.rebalance.delay.ms=1000",
    "--set",
    "group.min.session.timeout.ms=1000",
    "--set",
    "offsets.topic.num.partitions=8",
];
/// Longest a test waits for consumers to receive what they expect.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

fn produce(addr: &str, topic: &str, partitions: i32, records: usize) {
    let addr = addr.to_string();
    let topic = topic.to_string();
    client(move || async move {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic(&topic, partitions, 1, vec![])
            .await
            .unwrap();
        let producer = Producer::new(
            client,
            ProducerConfig {
                acks: -1,
                ..ProducerConfig::default()
            },
        );
        let mut deliveries = Vec::new();
        for i in 0..records {
            let p = (i % partitions as usize) as i32;
            deliveries.push(
                producer
                    .send(
                        &topic,
                        Some(p),
                        None,
                        Some(Bytes::from(format!("r{i}"))),
                        &[],
                    )
                    .await
                    .unwrap(),
            );
        }
        producer.flush().await.unwrap();
        for d in deliveries {
            d.wait().await.unwrap();
        }
    });
}

fn group_config(group: &str, topic: &str) -> GroupConfig {
    GroupConfig {
        session_timeout: Duration::from_secs(6),
        heartbeat_interval: Duration::from_millis(500),
        auto_commit: Some(Duration::from_millis(500)),
        offset_reset: OffsetReset::Earliest,
        ..GroupConfig::new(group, &[topic])
    }
}

/// What one member received: (partition, offset, value) in order.
type Received = Vec<(i32, i64, String)>;

/// Runs `members` consumers of `group` on their own executors until the group has
/// received `expected` records in all; returns what each received.
fn consume_group(
    addr: &str,
    topic: &str,
    group: &str,
    members: usize,
    expected: u64,
) -> Vec<Received> {
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Arc::new(Barrier::new(members));
    let handles: Vec<_> = (0..members)
        .map(|_| {
            let (addr, topic, group) = (addr.to_string(), topic.to_string(), group.to_string());
            let (total, start) = (total.clone(), start.clone());
            std::thread::spawn(move || {
                client(move || async move {
                    let c = Client::connect(&addr).await.unwrap();
                    // Join together so the first generation holds every member.
                    start.wait();
                    let mut consumer = GroupConsumer::join(c, group_config(&group, &topic))
                        .await
                        .unwrap();
                    let mut got = Received::new();
                    let deadline = Instant::now() + CONSUME_TIMEOUT;
                    while total.load(std::sync::atomic::Ordering::SeqCst) < expected {
                        assert!(Instant::now() < deadline, "group {group} stalled");
                        let records = consumer.poll().await.unwrap();
                        total.fetch_add(records.len() as u64, std::sync::atomic::Ordering::SeqCst);
                        for r in records {
                            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                            got.push((r.partition, r.offset, v));
                        }
                    }
                    consumer.close().await.unwrap();
                    got
                })
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn two_groups_each_get_every_record_and_each_record_reaches_one_member() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, GROUP_FLAGS);
    const RECORDS: usize = 60_000;
    produce(&broker.addr, "events", 6, RECORDS);
    for group in ["billing", "audit"] {
        let members = consume_group(&broker.addr, "events", group, 3, RECORDS as u64);
        let mut all = BTreeSet::new();
        let mut owner_of: BTreeMap<i32, usize> = BTreeMap::new();
        for (m, got) in members.iter().enumerate() {
            assert!(!got.is_empty(), "{group}: member {m} received nothing");
            let mut last: BTreeMap<i32, i64> = BTreeMap::new();
            for (p, offset, v) in got {
                assert!(all.insert(v.clone()), "{group}: {v} received twice");
                let owner = *owner_of.entry(*p).or_insert(m);
                assert_eq!(
                    owner, m,
                    "{group}: partition {p} read by members {owner} and {m}"
                );
                let prev = last.insert(*p, *offset);
                assert!(
                    prev.is_none_or(|o| o < *offset),
                    "{group}: partition {p} out of order"
                );
            }
        }
        assert_eq!(all.len(), RECORDS, "{group} received every record");
        assert_eq!(owner_of.len(), 6, "{group}: every partition was read");
    }
}

/// A `ringlog consume --group` process writing what it prints to a file.
struct CliConsumer {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl CliConsumer {
    fn start(
        broker: &Broker,
        dir: &std::path::Path,
        name: &str,
        group: &str,
        topic: &str,
        extra: &[&str],
    ) -> Self {
        let out = dir.join(format!("{name}.out"));
        let child = std::process::Command::new(RINGLOG)
            .args([
                "consume",
                "--topic",
                topic,
                "--group",
                group,
                "--from-beginning",
            ])
            .args([
                "--print-partition",
                "--session-timeout-ms",
                "3000",
                "-b",
                &broker.addr,
            ])
            .args(extra)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self { child, out }
    }

    /// (partition, value) lines printed so far.
    fn lines(&self) -> Vec<(i32, String)> {
        read_lines(&self.out)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CliConsumer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_lines(path: &std::path::Path) -> Vec<(i32, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (p, v) = l.strip_prefix("Partition:")?.split_once('\t')?;
            Some((p.parse().ok()?, v.to_string()))
        })
        .collect()
}

/// Waits for `cond`, checking every 50 ms, for at most `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Members and assigned partitions from `ringlog group describe`.
fn described(broker: &Broker, group: &str) -> (usize, BTreeSet<String>, String) {
    let out = broker.cli(&["group", "describe", group]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let members = text
        .lines()
        .next()
        .and_then(|l| l.split(", ").last())
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let assigned = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 6 && cols[5] != "-").then(|| cols[1].to_string())
        })
        .collect();
    (members, assigned, text)
}

#[test]
fn a_killed_member_is_replaced_within_the_session_timeout_and_no_committed_record_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, GROUP_FLAGS);
    const RECORDS: usize = 6_000;
    ok(&broker.cli(&[
        "topic",
        "create",
        "t",
        "--partitions",
        "6",
        "--replication-factor",
        "1",
    ]));
    // Records keep coming while the group changes.
    let addr = broker.addr.clone();
    let producer = std::thread::spawn(move || {
        for chunk in 0..20 {
            let lines: String = (chunk * 300..(chunk + 1) * 300)
                .map(|i| format!("r{i}\n"))
                .collect();
            let out = cli_with_input(
                &["produce", "--topic", "t", "-b", &addr].map(String::from),
                Some(lines.as_bytes()),
            );
            assert!(out.status.success());
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let mut members: Vec<CliConsumer> = (0..3)
        .map(|i| CliConsumer::start(&broker, dir.path(), &format!("m{i}"), "g", "t", &[]))
        .collect();
    wait_until(
        Duration::from_secs(30),
        "three members with all partitions",
        || {
            let (n, assigned, _) = described(&broker, "g");
            n == 3 && assigned.len() == 6
        },
    );
    wait_until(Duration::from_secs(30), "every member consuming", || {
        members.iter().all(|m| !m.lines().is_empty())
    });
    // A fourth member joins; then one of the first three dies without leaving.
    members.push(CliConsumer::start(&broker, dir.path(), "m3", "g", "t", &[]));
    wait_until(Duration::from_secs(30), "four members", || {
        described(&broker, "g").0 == 4
    });
    let victim_lines_before_kill;
    {
        let victim = &mut members[0];
        victim.kill9();
        victim_lines_before_kill = victim.lines();
    }
    let took = wait_until(
        Duration::from_secs(30),
        "the group to drop the killed member",
        || {
            let (n, assigned, _) = described(&broker, "g");
            n == 3 && assigned.len() == 6
        },
    );
    // Session timeout 3 s, then one rebalance (the survivors rejoin within a poll).
    assert!(
        took < Duration::from_secs(3 + 5),
        "reassignment took {took:?}"
    );
    producer.join().unwrap();
    let expected: BTreeSet<String> = (0..RECORDS).map(|i| format!("r{i}")).collect();
    wait_until(Duration::from_secs(60), "every record consumed", || {
        let seen: BTreeSet<String> = members
            .iter()
            .flat_map(|m| m.lines())
            .map(|(_, v)| v)
            .collect();
        expected.is_subset(&seen)
    });
    // At least once: nothing skipped. Duplicates only where the killed member had
    // printed records it had not yet committed: each duplicate is one it printed.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for m in &members {
        for (_, v) in m.lines() {
            *count.entry(v).or_default() += 1;
        }
    }
    let victim: BTreeSet<String> = victim_lines_before_kill
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let duplicates: Vec<&String> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| v)
        .collect();
    for v in &duplicates {
        assert!(
            victim.contains(*v),
            "{v} delivered twice but not by the killed member"
        );
        assert_eq!(count[*v], 2, "{v} delivered more than twice");
    }
    eprintln!("duplicates after the kill: {}", duplicates.len());
}

#[test]
fn committed_offsets_survive_a_broker_kill_and_the_group_resumes_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 2, GROUP_FLAGS);
    ok(&broker.cli(&[
        "topic",
        "create",
        "t",
        "--partitions",
        "3",
        "--replication-factor",
        "1",
    ]));
    let lines: String = (0..1000).map(|i| format!("r{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "t"], lines.as_bytes()));
    let first = ok(&broker.cli(&[
        "consume",
        "--topic",
        "t",
        "--group",
        "g",
        "--from-beginning",
        "--max-messages",
        "400",
    ]));
    assert_eq!(first.lines().count(), 400);
    broker.kill9();
    let broker = Broker::start(&data, 2, GROUP_FLAGS);
    let second = ok(&broker.cli(&[
        "consume",
        "--topic",
        "t",
        "--group",
        "g",
        "--from-beginning",
        "--timeout-ms",
        "2000",
    ]));
    let a: BTreeSet<&str> = first.lines().collect();
    let b: BTreeSet<&str> = second.lines().collect();
    assert_eq!(second.lines().count(), 600, "the rest, once");
    assert!(
        a.is_disjoint(&b),
        "the group resumed from its committed offsets"
    );
    let all: BTreeSet<String> = (0..1000).map(|i| format!("r{i}")).collect();
    let union: BTreeSet<String> = a.union(&b).map(|s| s.to_string()).collect();
    assert_eq!(union, all);
}

#[test]
fn reset_offsets_plans_without_execute_and_refuses_while_members_are_active() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, GROUP_FLAGS);
    ok(&broker.cli(&[
        "topic",
        "create",
        "t",
        "--partitions",
        "2",
        "--replication-factor",
        "1",
    ]));
    let lines: String = (0..100).map(|i| format!("r{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "t"], lines.as_bytes()));
    ok(&broker.cli(&[
        "consume",
        "--topic",
        "t",
        "--group",
        "g",
        "--from-beginning",
        "--max-messages",
        "100",
    ]));
    let before = ok(&broker.cli(&["group", "describe", "g"]));
    let plan = ok(&broker.cli(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-earliest",
    ]));
    assert!(
        plan.contains("NEW-OFFSET") && plan.contains("Dry run"),
        "{plan}"
    );
    assert_eq!(
        ok(&broker.cli(&["group", "describe", "g"])),
        before,
        "a dry run changes nothing"
    );

    // An active member: --execute is refused with a clear error.
    let member = CliConsumer::start(
        &broker,
        dir.path(),
        "active",
        "g",
        "t",
        &["--timeout-ms", "60000"],
    );
    wait_until(Duration::from_secs(30), "the member to join", || {
        described(&broker, "g").0 == 1
    });
    let err = fails(&broker.cli(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-earliest",
        "--execute",
    ]));
    assert!(err.contains("active member"), "{err}");
    drop(member);
    // Killed without leaving: once its session expires the group is empty.
    wait_until(
        Duration::from_secs(30),
        "the member's session to expire",
        || described(&broker, "g").0 == 0,
    );
    ok(&broker.cli(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-offset",
        "10",
        "--execute",
    ]));
    let (_, _, text) = described(&broker, "g");
    let currents: Vec<&str> = text
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(currents, vec!["10", "10"], "{text}");
    // The next consumer of the group starts there.
    let out = ok(&broker.cli(&[
        "consume",
        "--topic",
        "t",
        "--group",
        "g",
        "--timeout-ms",
        "1500",
    ]));
    assert_eq!(out.lines().count(), 80, "{out}");
}
