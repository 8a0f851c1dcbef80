//! Batches are validated as Kafka's broker validates them (issue 13 §5): a batch
//! whose CRC is right but whose insides are wrong is refused and never stored;
//! compressed batches (every Kafka codec) are checked record by record, found
//! exactly by timestamp, and printed by `ringlog consume`; ListOffsets answers the
//! found record's timestamp and the max-timestamp query.

mod common;

use bytes::{Bytes, BytesMut};
use common::kafka::{produce_batch_request, Conn};
use common::*;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use ringlog::schema::compression::Codec;
use ringlog::schema::BatchBuilder;

const INVALID_TIMESTAMP: i16 = 32;
const INVALID_RECORD: i16 = 87;
const LIST_OFFSETS_VERSION: i16 = 7;
const PRODUCE_VERSION: i16 = 7;
/// Record timestamps of the test batches: now-ish, inside the default range.
fn base_ts() -> i64 {
    ringlog::time::now_ms() - 60_000
}

/// A batch of `n` records with timestamps `ts0 + i` and values `v<i>`.
fn batch(codec: Codec, ts0: i64, n: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    b.compression(codec);
    for i in 0..n {
        b.push(None, Some(Bytes::from(format!("v{i}"))), &[], ts0 + i);
    }
    b.build().unwrap()
}

/// `batch` with `bytes` written at `at` and the CRC made right again: damage only
/// validation can see.
fn patched(batch: &Bytes, at: usize, bytes: &[u8]) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn produce(conn: &mut Conn, topic: &str, records: Bytes) -> (i16, i64) {
    let resp: ProduceResponse = conn.call(
        ApiKey::Produce,
        PRODUCE_VERSION,
        &produce_batch_request(topic, records),
    );
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// (error, offset, timestamp) of ListOffsets at `timestamp` on partition 0.
fn list_offset(conn: &mut Conn, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn crc_valid_but_malformed_batches_are_refused_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    ok(&broker.cli(&["topic", "create", "v", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    let good = batch(Codec::None, base_ts(), 3);
    let cases: [(&str, Bytes, i16); 5] = [
        // lastOffsetDelta far past the record count (would wrap relative offsets).
        (
            "huge lastOffsetDelta",
            patched(&good, 23, &i32::MAX.to_be_bytes()),
            INVALID_RECORD,
        ),
        // recordCount larger than the records held.
        (
            "record count",
            patched(&good, 57, &4i32.to_be_bytes()),
            INVALID_RECORD,
        ),
        // attributes: control batch, transactional batch, LogAppendTime from a client.
        (
            "control",
            patched(&good, 21, &0x20i16.to_be_bytes()),
            INVALID_RECORD,
        ),
        (
            "transactional",
            patched(&good, 21, &0x10i16.to_be_bytes()),
            INVALID_RECORD,
        ),
        (
            "log append time",
            patched(&good, 21, &0x08i16.to_be_bytes()),
            INVALID_TIMESTAMP,
        ),
    ];
    for (what, bad, code) in cases {
        assert_eq!(produce(&mut conn, "v", bad).0, code, "{what}");
    }
    // A record whose value length runs past its record: the first record's value
    // length varint (after length, attributes, timestamp and offset deltas, key).
    let first_value_len_at = 61 + 5;
    assert_eq!(
        good[first_value_len_at], 4,
        "value length of \"v0\" (zigzag 2)"
    );
    let bad = patched(&good, first_value_len_at, &[40]);
    assert_eq!(
        produce(&mut conn, "v", bad).0,
        INVALID_RECORD,
        "value length"
    );
    // A timestamp an hour and more in the future.
    let future = batch(Codec::None, ringlog::time::now_ms() + 2 * 3_600_000, 2);
    assert_eq!(produce(&mut conn, "v", future).0, INVALID_TIMESTAMP);

    // Nothing was stored: the good batch lands at offset 0 and reads back alone.
    assert_eq!(produce(&mut conn, "v", good), (0, 0));
    let read = ok(&broker.cli(&[
        "consume",
        "--topic",
        "v",
        "--from-beginning",
        "--timeout-ms",
        "1000",
    ]));
    assert_eq!(read, "v0\nv1\nv2\n");
}

#[test]
fn compressed_batches_are_stored_found_by_time_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    ok(&broker.cli(&["topic", "create", "z", "--partitions", "1"]));
    let mut conn = Conn::new(&broker.kafka_addr);
    let ts0 = base_ts();
    let codecs = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];
    for (i, codec) in codecs.iter().enumerate() {
        let (code, base) = produce(&mut conn, "z", batch(*codec, ts0 + 1000 * i as i64, 100));
        assert_eq!((code, base), (0, 100 * i as i64), "{codec:?}");
    }
    // A record in the middle of each compressed batch is found exactly, with its
    // timestamp (before: the batch's first offset and timestamp -1).
    for i in 0..codecs.len() as i64 {
        let ts = ts0 + 1000 * i + 37;
        assert_eq!(list_offset(&mut conn, "z", ts), (0, 100 * i + 37, ts));
    }
    // The max-timestamp query (-3): the newest record of the last batch.
    assert_eq!(list_offset(&mut conn, "z", -3), (0, 399, ts0 + 3099));
    // Past every record: not found.
    assert_eq!(list_offset(&mut conn, "z", ts0 + 10_000), (0, -1, -1));
    // ringlog consume prints the records of compressed batches.
    let read = ok(&broker.cli(&[
        "consume",
        "--topic",
        "z",
        "--from-beginning",
        "--max-messages",
        "400",
    ]));
    let expected: String = (0..4)
        .flat_map(|_| (0..100).map(|i| format!("v{i}\n")))
        .collect();
    assert_eq!(read, expected);
}

#[test]
fn ringlog_produce_compresses_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    let input: String = (0..500)
        .map(|i| format!("line {i} {}\n", "y".repeat(60)))
        .collect();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("c-{codec}");
        ok(&broker.cli(&["topic", "create", &topic, "--partitions", "1"]));
        ok(&broker.cli_input(
            &["produce", "--topic", &topic, "--compression-type", codec],
            input.as_bytes(),
        ));
        let read = ok(&broker.cli(&[
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "500",
        ]));
        assert_eq!(read, input, "{codec}");
        let size: u64 = std::fs::read_dir(dir.path().join("data").join(format!("{topic}-0")))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| {
                std::fs::read(e.path())
                    .unwrap()
                    .iter()
                    .rposition(|&b| b != 0)
                    .map_or(0, |p| p as u64 + 1)
            })
            .sum();
        if codec == "none" {
            assert!(size > input.len() as u64, "{codec}: {size} bytes stored");
        } else {
            assert!(
                size < input.len() as u64 / 3,
                "{codec}: {size} bytes stored for {}",
                input.len()
            );
        }
    }
    let bad = broker.cli(&[
        "produce",
        "--topic",
        "c-none",
        "--compression-type",
        "brotli",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("expected none, gzip, snappy, lz4 or zstd")
    );
}

#[test]
fn a_log_append_time_topic_stamps_batches_with_the_broker_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "stamped",
        "--partitions",
        "1",
        "--config",
        "message.timestamp.type=LogAppendTime",
    ]));
    let mut conn = Conn::new(&broker.kafka_addr);
    let before = ringlog::time::now_ms();
    // Producer times an hour and more in the future are not checked: replaced.
    let far = before + 5 * 3_600_000;
    assert_eq!(
        produce(&mut conn, "stamped", batch(Codec::Lz4, far, 10)),
        (0, 0)
    );
    let after = ringlog::time::now_ms();
    let (code, offset, ts) = list_offset(&mut conn, "stamped", -3);
    assert_eq!(
        (code, offset),
        (0, 0),
        "every record has the batch's time: the first"
    );
    assert!(
        (before..=after).contains(&ts),
        "{before} <= {ts} <= {after}"
    );
}
