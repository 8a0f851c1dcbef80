//! Issue 13 §6: `__consumer_offsets` is compacted, so after many commits a group's
//! offsets load from a few records, not the partition's whole history; and any
//! topic can be compacted (`cleanup.policy=compact`), refusing records without keys.

mod common;

use std::time::{Duration, Instant};

use common::kafka::Conn;
use common::*;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const COMMITS: i64 = 5_000;

fn commit(conn: &mut Conn, offset: i64) {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    p.committed_metadata = Some(StrBytes::from_static_str("some consumer metadata"));
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("t"));
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("g"));
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    let resp: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &req);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

fn committed(conn: &mut Conn) -> i64 {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("t"));
    t.partition_indexes = vec![0];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("g"));
    req.topics = Some(vec![t]);
    let resp: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 7, &req);
    resp.topics[0].partitions[0].committed_offset
}

/// The record count of the broker's last "loaded committed offsets" line.
fn loaded_records(log: &str) -> u64 {
    let line = log
        .lines()
        .rfind(|l| l.contains("loaded committed offsets"))
        .unwrap_or_else(|| panic!("no load in:\n{log}"));
    line.split("records=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn a_group_loads_from_a_compacted_offsets_topic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = [
        "--set",
        "offsets.topic.num.partitions=1",
        "--set",
        "offsets.topic.segment.bytes=65536",
        "--set",
        "log.cleaner.backoff.ms=100",
    ];
    let mut broker = Broker::start(&data, 1, &settings);
    ok(&broker.cli(&["topic", "create", "t", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    for i in 1..=COMMITS {
        commit(&mut conn, i);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_sum(
        &metrics(&broker.admin_addr),
        "ringlog_compacted_records_total",
        &[],
    ) < (COMMITS / 2) as f64
    {
        assert!(
            Instant::now() < deadline,
            "no compaction:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(committed(&mut conn), COMMITS);
    broker.kill9();

    let broker = Broker::start(&data, 1, &settings);
    let mut conn = Conn::new(&broker.kafka_addr);
    assert_eq!(
        committed(&mut conn),
        COMMITS,
        "the last commit survives compaction"
    );
    let records = loaded_records(&broker.log());
    // What the active segment holds, not 5,000.
    assert!(records < (COMMITS as u64) / 4, "{records} records replayed");
    let described = ok(&broker.cli(&["topic", "describe", "__consumer_offsets"]));
    assert!(!described.is_empty());
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_per_key_and_refuses_keyless_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        1,
        &["--set", "log.cleaner.backoff.ms=100"],
    );
    ok(&broker.cli(&[
        "topic",
        "create",
        "latest",
        "--partitions",
        "1",
        "--config",
        "cleanup.policy=compact",
        "--config",
        "segment.bytes=65536",
        "--config",
        "max.message.bytes=16384",
    ]));
    // 3 keys × 2,000 versions, one record per line (key:value).
    let input: String = (0..2_000)
        .flat_map(|v| (0..3).map(move |k| format!("k{k}:v{v}-{}\n", "x".repeat(30))))
        .collect();
    ok(&broker.cli_input(
        &[
            "produce",
            "--topic",
            "latest",
            "--key-separator",
            ":",
            "--batch-size",
            "8192",
        ],
        input.as_bytes(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_sum(
        &metrics(&broker.admin_addr),
        "ringlog_compactions_total",
        &[],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no compaction:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = ok(&broker.cli(&[
        "consume",
        "--topic",
        "latest",
        "--from-beginning",
        "--timeout-ms",
        "1000",
    ]));
    let lines: Vec<&str> = read.lines().collect();
    assert!(
        lines.len() < 6_000,
        "{} records after compaction",
        lines.len()
    );
    for k in 0..3 {
        let last = format!("v1999-{}", "x".repeat(30));
        assert!(
            lines.contains(&last.as_str()),
            "k{k}'s latest value is gone"
        );
    }
    // Without a key, refused.
    let keyless = broker.cli_input(&["produce", "--topic", "latest"], b"no key\n");
    assert!(!keyless.status.success());
    assert!(
        String::from_utf8_lossy(&keyless.stderr).contains("without a key"),
        "{}",
        String::from_utf8_lossy(&keyless.stderr)
    );
}
