//! Acceptance (storage issue, point 6): ringlog's RecordBatch v2 is Kafka's, byte for byte.
//!
//! - a batch encoded by a real Kafka client (kafka-python's codec, committed as bytes)
//!   validates with our CRC-32C and reads back the fields the client wrote;
//! - a batch from our builder is accepted by that client's decoder (run live);
//! - the four kinds of bad batch are each refused with a distinct error.

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use ringlog_schema::{BatchBuilder, BatchError, RecordBatch, RecordHeader};

const MAX: usize = 1 << 20;

fn fixture() -> Bytes {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka_python_batch.bin");
    Bytes::from(std::fs::read(&path).expect("fixture committed beside this test"))
}

#[test]
fn batch_written_by_kafka_python_validates_with_our_crc() {
    let batch = RecordBatch::parse(fixture()).expect("framing");
    batch
        .validate(MAX)
        .expect("our CRC-32C agrees with the client's");
    assert_eq!(batch.record_count(), 5);
    assert_eq!(batch.last_offset_delta(), 4);
    assert_eq!(batch.base_timestamp(), 1_700_000_000_000);
    assert_eq!(batch.max_timestamp(), 1_700_000_000_004);
    assert_eq!(batch.producer_id(), -1);
    assert_eq!(batch.base_sequence(), -1);
    assert_eq!(
        batch.first_record_at_or_after(1_700_000_000_003).unwrap(),
        Some((3, 1_700_000_000_003))
    );
    assert_eq!(
        batch.first_record_at_or_after(1_700_000_000_005).unwrap(),
        None
    );
    // The client's batch passes the produce checks Kafka's broker makes.
    ringlog_schema::validate::validate_produced(&batch, &Default::default(), 1_700_000_000_004)
        .expect("a real client's batch passes validation");
}

#[test]
fn patching_the_base_offset_keeps_a_client_batch_valid() {
    let mut bytes = fixture().to_vec();
    RecordBatch::set_base_offset(&mut bytes, 1_234_567);
    RecordBatch::set_partition_leader_epoch(&mut bytes, 7);
    let batch = RecordBatch::parse(Bytes::from(bytes)).unwrap();
    batch.validate(MAX).unwrap();
    assert_eq!(batch.base_offset(), 1_234_567);
    assert_eq!(batch.last_offset(), 1_234_571);
    assert_eq!(batch.partition_leader_epoch(), 7);
}

fn our_batch() -> Bytes {
    let mut b = BatchBuilder::new();
    for i in 0..4i64 {
        let headers = if i == 2 {
            vec![RecordHeader {
                key: "trace".into(),
                value: Some(Bytes::from_static(b"abc")),
            }]
        } else {
            vec![]
        };
        let key = (i % 2 == 0).then(|| Bytes::from(format!("k{i}")));
        b.push(
            key,
            Some(Bytes::from(format!("value number {i}"))),
            &headers,
            1_600_000_000_000 + i * 10,
        );
    }
    b.build().unwrap()
}

#[test]
fn batch_from_our_builder_is_accepted_by_kafka_python() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batch.bin");
    std::fs::write(&file, our_batch()).unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/decode_with_kafka_python.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("python3 is needed for this test (CI installs it with kafka-python==3.0.12)");
    assert!(
        out.status.success(),
        "kafka-python refused our batch (is it installed? pip install kafka-python==3.0.12): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "count\t4\tbase\t0\tmax_ts\t1600000000030");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for i in 0..4usize {
        let key = if i % 2 == 0 {
            hex(&format!("k{i}"))
        } else {
            "None".into()
        };
        let headers = if i == 2 {
            format!("trace={}", hex("abc"))
        } else {
            String::new()
        };
        let expected = format!(
            "{i}\t{}\t{key}\t{}\t{headers}",
            1_600_000_000_000u64 + i as u64 * 10,
            hex(&format!("value number {i}"))
        );
        assert_eq!(lines[i + 1], expected);
    }
}

#[test]
fn batch_from_our_builder_round_trips_through_kafka_protocol_decoder() {
    let mut bytes = our_batch();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert_eq!(set.records.len(), 4);
    assert_eq!(
        set.records[3].value.as_deref(),
        Some(&b"value number 3"[..])
    );
}

#[test]
fn each_kind_of_bad_batch_gets_its_own_error() {
    let good = our_batch();

    let mut wrong_crc = good.to_vec();
    let last = wrong_crc.len() - 1;
    wrong_crc[last] ^= 0x40;
    let err = RecordBatch::parse(Bytes::from(wrong_crc))
        .unwrap()
        .validate(MAX)
        .unwrap_err();
    assert!(matches!(err, BatchError::CrcMismatch { .. }), "{err}");

    let truncated = good.slice(..40);
    let err = RecordBatch::parse(truncated).unwrap_err();
    assert_eq!(
        err,
        BatchError::Truncated {
            available: 40,
            needed: 61
        }
    );

    let mut lying = good.to_vec();
    lying[8..12].copy_from_slice(&(good.len() as i32 + 100).to_be_bytes());
    let err = RecordBatch::parse(Bytes::from(lying)).unwrap_err();
    assert!(matches!(err, BatchError::LengthMismatch { .. }), "{err}");

    let err = RecordBatch::parse(good.clone())
        .unwrap()
        .validate(good.len() - 1)
        .unwrap_err();
    assert_eq!(
        err,
        BatchError::TooLarge {
            size: good.len(),
            max: good.len() - 1
        }
    );

    let mut old_magic = good.to_vec();
    old_magic[16] = 1;
    let err = RecordBatch::parse(Bytes::from(old_magic))
        .unwrap()
        .validate(MAX)
        .unwrap_err();
    assert_eq!(err, BatchError::UnsupportedMagic { magic: 1 });

    // Every message is distinct and says what is wrong.
    let messages: Vec<String> = [
        BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        },
        BatchError::Truncated {
            available: 1,
            needed: 61,
        },
        BatchError::LengthMismatch {
            declared: 9,
            available: 1,
        },
        BatchError::TooLarge { size: 2, max: 1 },
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(messages[0].contains("CRC") && messages[1].contains("truncated"));
    assert!(messages[2].contains("length") && messages[3].contains("message.max.bytes"));
}
