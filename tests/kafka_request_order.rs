//! Kafka requests on one connection take effect in order (issue 13 §4): Apache
//! Kafka serves one request per connection at a time, so a request sees what the
//! requests before it did. These tests pipeline pairs on one connection, written in
//! one go, and check each read sees the write before it.

mod common;

use std::io::Write;

use common::kafka::{produce_request, Conn};
use common::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const PAIRS: i64 = 200;
const COMMIT_VERSION: i16 = 8;
const FETCH_OFFSETS_VERSION: i16 = 7;
const PRODUCE_VERSION: i16 = 7;
const LIST_OFFSETS_VERSION: i16 = 5;

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

fn commit(group: &str, topic: &str, offset: i64) -> OffsetCommitRequest {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = offset;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    // A standalone commit: no member, no generation (allowed for an empty group).
    req.generation_id_or_member_epoch = -1;
    req.topics = vec![t];
    req
}

fn fetch_offsets(group: &str, topic: &str) -> OffsetFetchRequest {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = topic_name(topic);
    t.partition_indexes = vec![0];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = Some(vec![t]);
    req
}

fn latest_offset(topic: &str) -> ListOffsetsRequest {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics = vec![t];
    req
}

#[test]
fn an_offset_fetch_sees_the_commit_pipelined_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, &[]);
    ok(&broker.cli(&["topic", "create", "ordered", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    let mut wire = Vec::new();
    for i in 1..=PAIRS {
        wire.extend_from_slice(&conn.frame(
            ApiKey::OffsetCommit,
            COMMIT_VERSION,
            &commit("g", "ordered", i),
        ));
        wire.extend_from_slice(&conn.frame(
            ApiKey::OffsetFetch,
            FETCH_OFFSETS_VERSION,
            &fetch_offsets("g", "ordered"),
        ));
    }
    conn.stream.write_all(&wire).unwrap();
    let mut stale = Vec::new();
    for i in 1..=PAIRS {
        let c: OffsetCommitResponse = conn.response(COMMIT_VERSION);
        assert_eq!(c.topics[0].partitions[0].error_code, 0, "commit {i}");
        let f: OffsetFetchResponse = conn.response(FETCH_OFFSETS_VERSION);
        let seen = f.topics[0].partitions[0].committed_offset;
        if seen != i {
            stale.push((i, seen));
        }
    }
    assert!(
        stale.is_empty(),
        "offset fetches that did not see the commit before them (committed, read): {:?}",
        &stale[..stale.len().min(10)]
    );
}

#[test]
fn a_list_offsets_sees_the_produce_pipelined_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, &[]);
    ok(&broker.cli(&["topic", "create", "appended", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    let mut wire = Vec::new();
    for i in 0..PAIRS {
        let produce = produce_request("appended", -1, -1, i as i32, 1);
        wire.extend_from_slice(&conn.frame(ApiKey::Produce, PRODUCE_VERSION, &produce));
        wire.extend_from_slice(&conn.frame(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &latest_offset("appended"),
        ));
    }
    conn.stream.write_all(&wire).unwrap();
    let mut stale = Vec::new();
    for i in 0..PAIRS {
        let p: ProduceResponse = conn.response(PRODUCE_VERSION);
        let p = &p.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i), "produce {i}");
        let l: ListOffsetsResponse = conn.response(LIST_OFFSETS_VERSION);
        let end = l.topics[0].partitions[0].offset;
        if end != i + 1 {
            stale.push((i + 1, end));
        }
    }
    assert!(
        stale.is_empty(),
        "list offsets that did not see the produce before them (expected, read): {:?}",
        &stale[..stale.len().min(10)]
    );
}
