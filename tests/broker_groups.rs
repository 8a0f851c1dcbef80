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
