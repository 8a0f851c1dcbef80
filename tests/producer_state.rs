//! Issue 13 §6: idempotent producer state survives a restart through snapshots taken
//! at segment rolls (a producer whose batches are older than the last two segments
//! is still known: its retry is a duplicate, not a gap), and producers expire after
//! `producer.id.expiration.ms`.

mod common;

use std::time::{Duration, Instant};

use common::kafka::Conn;
use common::*;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

#[test]
fn a_producer_older_than_the_last_segments_is_restored_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 1, &[]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "snap",
        "--partitions",
        "1",
        "--config",
        "segment.bytes=65536",
        "--config",
        "max.message.bytes=16384",
    ]));
    let mut c = Conn::new(&broker.kafka_addr);
    let (a, a_epoch) = c.init_producer();
    assert_eq!(c.produce("snap", a, a_epoch, 0, 5), (0, 0));
    assert_eq!(c.produce("snap", a, a_epoch, 5, 5), (0, 5));
    // Another producer fills several segments after A's last batch.
    let (b, b_epoch) = c.init_producer();
    let mut seq = 0;
    let mut next = 10i64;
    while next < 10 + 30_000 {
        assert_eq!(c.produce("snap", b, b_epoch, seq, 400), (0, next));
        seq += 400;
        next += 400;
    }
    let segments = std::fs::read_dir(data.join("snap-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segments >= 4, "{segments} segments");
    broker.kill9();

    let broker = Broker::start(&data, 1, &[]);
    let mut c = Conn::new(&broker.kafka_addr);
    assert_eq!(
        c.produce("snap", a, a_epoch, 5, 5),
        (0, 5),
        "A's retry is answered as the duplicate it is"
    );
    assert_eq!(c.produce("snap", a, a_epoch, 10, 1), (0, next));
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("idempotent producer state loaded"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("snapshot=Some("), "{line}");
    let replayed: u64 = line
        .split("replayed_batches=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(replayed < 10, "replayed {replayed} batches: {line}");
}

#[test]
fn silent_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        1,
        &[
            "--set",
            "producer.id.expiration.ms=500",
            "--set",
            "producer.id.expiration.check.interval.ms=100",
        ],
    );
    ok(&broker.cli(&["topic", "create", "exp", "--partitions", "1"]));
    let mut c = Conn::new(&broker.kafka_addr);
    let (pid, epoch) = c.init_producer();
    assert_eq!(c.produce("exp", pid, epoch, 0, 2), (0, 0));
    let producers = || {
        metric_sum(
            &metrics(&broker.admin_addr),
            "ringlog_partition_producers",
            &["topic=\"exp\""],
        )
    };
    assert_eq!(producers(), 1.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while producers() > 0.0 {
        assert!(Instant::now() < deadline, "the producer never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Forgotten: its next sequence is a gap for an unknown producer, as in Kafka.
    assert_eq!(
        c.produce("exp", pid, epoch, 2, 1).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert!(
        broker.log().contains("producers expired"),
        "{}",
        broker.log()
    );
}
