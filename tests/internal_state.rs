//! Issue 13 §6: internal state is protected.
//!
//! - `__consumer_offsets` cannot be deleted, repartitioned or produced to by
//!   clients; a record in it that does not parse is skipped and counted, and never
//!   blocks its groups.
//! - A deleted topic's data is never served by a topic re-created with its name,
//!   whatever step of the deletion a `kill -9` interrupted (each crash state is made
//!   on disk and the broker restarted on it), also for 249-character names.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::kafka::{produce_batch_request, Conn};
use common::*;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use ringlog::groups::offsets::{partition_for_group, OFFSETS_TOPIC};
use ringlog::schema::BatchBuilder;

const INVALID_TOPIC: i16 = 17;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn commit(conn: &mut Conn, group: &str, topic: &str, offset: i64) -> i16 {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    let resp: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &req);
    resp.topics[0].partitions[0].error_code
}

fn committed(conn: &mut Conn, group: &str, topic: &str) -> i64 {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = name(topic);
    t.partition_indexes = vec![0];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = Some(vec![t]);
    let resp: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 7, &req);
    assert_eq!(resp.error_code, 0);
    resp.topics[0].partitions[0].committed_offset
}

#[test]
fn the_offsets_topic_cannot_be_deleted_repartitioned_or_produced_to() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    ok(&broker.cli(&["topic", "create", "t", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    assert_eq!(commit(&mut conn, "g", "t", 7), 0, "creates {OFFSETS_TOPIC}");

    let deleted = broker.cli(&["topic", "delete", OFFSETS_TOPIC]);
    assert!(
        !deleted.status.success(),
        "deleting {OFFSETS_TOPIC} succeeded"
    );
    assert!(
        String::from_utf8_lossy(&deleted.stderr).contains("internal topic"),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let mut grow = CreatePartitionsTopic::default();
    grow.name = name(OFFSETS_TOPIC);
    grow.count = 60;
    grow.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![grow];
    req.timeout_ms = 5_000;
    let resp: CreatePartitionsResponse = conn.call(ApiKey::CreatePartitions, 1, &req);
    assert_eq!(resp.results[0].error_code, INVALID_TOPIC, "repartitioning");

    let mut b = BatchBuilder::new();
    b.push(None, Some(Bytes::from_static(b"forged")), &[], 1_000);
    let resp: ProduceResponse = conn.call(
        ApiKey::Produce,
        7,
        &produce_batch_request(OFFSETS_TOPIC, b.build().unwrap()),
    );
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        INVALID_TOPIC
    );
    let produced = broker.cli_input(&["produce", "--topic", OFFSETS_TOPIC], b"forged\n");
    assert!(
        !produced.status.success(),
        "native produce to {OFFSETS_TOPIC}"
    );
    // Still there, still serving the group.
    assert!(ok(&broker.cli(&["topic", "list"])).contains(OFFSETS_TOPIC));
    assert_eq!(committed(&mut conn, "g", "t"), 7);
}

/// A batch whose records section is `section` as given (CRC made right).
fn raw_batch(attributes: i16, count: i32, section: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((61 - 12 + section.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(attributes);
    b.put_i32(count - 1);
    b.put_i64(1_000);
    b.put_i64(1_000);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(count);
    b.extend_from_slice(section);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

#[test]
fn an_offsets_record_that_does_not_parse_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 1, &[]);
    ok(&broker.cli(&["topic", "create", "t", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    assert_eq!(commit(&mut conn, "g", "t", 11), 0);
    assert!(broker.terminate().success());

    // Damage only a bug or a foreign writer could leave, appended to the group's
    // partition: a record whose key is not an offset key, and a batch flagged zstd
    // whose records section is not zstd.
    let p = partition_for_group("g", 50);
    let log_dir = data.join(format!("{OFFSETS_TOPIC}-{p}"));
    client(move || async move {
        use ringlog::storage::{LogConfig, PartitionLog};
        let log = PartitionLog::open(&log_dir, LogConfig::default())
            .await
            .unwrap();
        let mut b = BatchBuilder::new();
        b.push(
            Some(Bytes::from_static(b"\x00\x07garbage")),
            Some(Bytes::from_static(b"x")),
            &[],
            1_000,
        );
        log.append_committed(b.build().unwrap()).await.unwrap();
        let not_zstd = vec![0x55u8; 40];
        log.append_committed(raw_batch(4, 2, &not_zstd))
            .await
            .unwrap();
        log.close().await.unwrap();
    });

    let broker = Broker::start(&data, 1, &[]);
    let mut conn = Conn::new(&broker.kafka_addr);
    assert_eq!(
        committed(&mut conn, "g", "t"),
        11,
        "the group loads past the damage"
    );
    assert_eq!(commit(&mut conn, "g", "t", 12), 0);
    assert_eq!(committed(&mut conn, "g", "t"), 12);
    let text = metrics(&broker.admin_addr);
    assert!(
        metric_sum(&text, "ringlog_offsets_records_skipped_total", &[]) >= 3.0,
        "{text}"
    );
    assert!(broker.log().contains("skipped"), "{}", broker.log());
}

/// Copies a directory tree (partition directories: files only, one level of
/// nesting at most).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The partition directories of `topic` (2 partitions), copied to `aside`.
fn keep_aside(data: &std::path::Path, topic: &str, aside: &std::path::Path) {
    for p in 0..2 {
        let name = format!("{topic}-{p}");
        copy_dir(&data.join(&name), &aside.join(&name));
    }
}

/// Puts the directories kept aside back in place of whatever is there.
fn put_back(data: &std::path::Path, topic: &str, aside: &std::path::Path) {
    for p in 0..2 {
        let name = format!("{topic}-{p}");
        let _ = std::fs::remove_dir_all(data.join(&name));
        copy_dir(&aside.join(&name), &data.join(&name));
    }
}

/// Creates `topic` with records `old-*`, then `crash` leaves the data directory as
/// a kill -9 during the topic's deletion would (the broker killed); then the topic
/// is created again and must read empty.
fn deleted_then_recreated(topic: &str, crash: impl FnOnce(&std::path::Path, &str)) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 1, &[]);
    ok(&broker.cli(&["topic", "create", topic, "--partitions", "2"]));
    ok(&broker.cli_input(&["produce", "--topic", topic], b"old-1\nold-2\nold-3\n"));
    assert_eq!(broker.consume_values(topic).len(), 3);
    broker.kill9();
    crash(&data, topic);
    let broker = Broker::start(&data, 1, &[]);
    if ok(&broker.cli(&["topic", "list"]))
        .lines()
        .any(|l| l == topic)
    {
        // The metadata names another incarnation: the old directories are not it.
        assert!(
            broker.consume_values(topic).is_empty(),
            "a new incarnation served old data"
        );
        ok(&broker.cli(&["topic", "delete", topic]));
    }
    ok(&broker.cli(&["topic", "create", topic, "--partitions", "2"]));
    assert!(
        broker.consume_values(topic).is_empty(),
        "the re-created topic served old data"
    );
    ok(&broker.cli_input(&["produce", "--topic", topic], b"new-1\n"));
    assert_eq!(broker.consume_values(topic), ["new-1"]);
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}

/// Killed after the deletion committed, before any directory was touched: the
/// metadata log no longer names the topic, its directories are all there.
fn after_metadata_saved(data: &std::path::Path, topic: &str) {
    let aside = data.with_file_name("aside");
    keep_aside(data, topic, &aside);
    let mut broker = Broker::start(data, 1, &[]);
    ok(&broker.cli(&["topic", "delete", topic]));
    broker.kill9();
    put_back(data, topic, &aside);
    std::fs::remove_dir_all(&aside).unwrap();
}

/// Killed after one partition's directory was renamed for removal.
fn after_one_rename(data: &std::path::Path, topic: &str) {
    after_metadata_saved(data, topic);
    std::fs::rename(
        data.join(format!("{topic}-0")),
        data.join(".delete-crash-0"),
    )
    .unwrap();
}

/// Deleted and re-created (a new id) while the old directories stayed: what a
/// broker that never swept would see.
fn recreated_over_old_directories(data: &std::path::Path, topic: &str) {
    let aside = data.with_file_name("aside");
    keep_aside(data, topic, &aside);
    let mut broker = Broker::start(data, 1, &[]);
    ok(&broker.cli(&["topic", "delete", topic]));
    ok(&broker.cli(&["topic", "create", topic, "--partitions", "2"]));
    broker.kill9();
    put_back(data, topic, &aside);
    std::fs::remove_dir_all(&aside).unwrap();
}

#[test]
fn a_recreated_topic_never_serves_the_deleted_ones_data_whatever_a_crash_interrupted() {
    for crash in [
        after_metadata_saved,
        after_one_rename,
        recreated_over_old_directories,
    ] {
        deleted_then_recreated("reborn", crash);
    }
    let long = "l".repeat(249);
    for crash in [
        after_metadata_saved,
        after_one_rename,
        recreated_over_old_directories,
    ] {
        deleted_then_recreated(&long, crash);
    }
}

#[test]
fn deleting_a_249_character_topic_removes_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data, 1, &[]);
    let long = "x".repeat(249);
    ok(&broker.cli(&["topic", "create", &long, "--partitions", "1"]));
    ok(&broker.cli_input(&["produce", "--topic", &long], b"a\nb\n"));
    ok(&broker.cli(&["topic", "delete", &long]));
    assert!(
        !data.join(format!("{long}-0")).exists(),
        "the directory stayed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".delete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ok(&broker.cli(&["topic", "create", &long, "--partitions", "1"]));
    assert!(broker.consume_values(&long).is_empty());
}
