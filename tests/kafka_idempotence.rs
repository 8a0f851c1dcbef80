//! Idempotent produce over the Kafka protocol, with a hand-driven client so the
//! failure can be injected: a producer whose response was lost sends the same batch
//! again and it is stored once; a batch with a gap in its sequence is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is fenced; the sequences survive a
//! broker `kill -9`.

mod common;

use bytes::{Bytes, BytesMut};
use common::kafka::Conn;
use common::*;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

trait Producing {
    fn init_producer(&mut self) -> (i64, i16);
    fn produce(&mut self, topic: &str, pid: i64, epoch: i16, seq: i32, n: usize) -> (i16, i64);
}

impl Producing for Conn {
    fn init_producer(&mut self) -> (i64, i16) {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None; // idempotent, not transactional
        let resp: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 2, &req);
        assert_eq!(resp.error_code, 0);
        (resp.producer_id.0, resp.producer_epoch)
    }

    /// Produces one batch of `n` records starting at sequence `seq`; returns
    /// (error code, base offset).
    fn produce(&mut self, topic: &str, pid: i64, epoch: i16, seq: i32, n: usize) -> (i16, i64) {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 1_000,
                key: None,
                value: Some(Bytes::from(format!("s{}", seq + i as i32))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let mut p = PartitionProduceData::default();
        p.index = 0;
        p.records = Some(batch.freeze());
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 5_000;
        req.topic_data = vec![t];
        let resp: ProduceResponse = self.call(ApiKey::Produce, 7, &req);
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }
}

fn values(broker: &Broker, topic: &str) -> Vec<String> {
    ok(&broker.cli(&[
        "consume",
        "--topic",
        topic,
        "--from-beginning",
        "--timeout-ms",
        "1000",
    ]))
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn a_retried_batch_is_stored_once_and_gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 2, &[]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "idem",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]));
    let mut c = Conn::new(&broker.kafka_addr);
    let (pid, epoch) = c.init_producer();
    assert!(pid >= 0);

    assert_eq!(c.produce("idem", pid, epoch, 0, 3), (0, 0));
    // The response to this one is "lost": the producer sends it again.
    assert_eq!(c.produce("idem", pid, epoch, 3, 2), (0, 3));
    assert_eq!(
        c.produce("idem", pid, epoch, 3, 2),
        (0, 3),
        "the duplicate's original offset"
    );
    assert_eq!(values(&broker, "idem"), ["s0", "s1", "s2", "s3", "s4"]);

    // A gap: sequence 7 after 4.
    assert_eq!(
        c.produce("idem", pid, epoch, 7, 1).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // The same producer re-initialised (v3+: id and epoch given back) gets the next
    // epoch; the old epoch is then fenced.
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.producer_id = kafka_protocol::messages::ProducerId(pid);
    req.producer_epoch = epoch;
    let bumped: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 3, &req);
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (pid, epoch + 1)
    );
    assert_eq!(c.produce("idem", pid, epoch + 1, 0, 1), (0, 5));
    assert_eq!(
        c.produce("idem", pid, epoch, 5, 1).0,
        INVALID_PRODUCER_EPOCH
    );

    // After a kill -9, the sequences are rebuilt from the log: a retry of the last
    // batch is still a duplicate, and the next sequence still appends.
    broker.kill9();
    let broker = Broker::start(&data, 2, &[]);
    let mut c = Conn::new(&broker.kafka_addr);
    assert_eq!(
        c.produce("idem", pid, epoch + 1, 0, 1),
        (0, 5),
        "a duplicate across a restart"
    );
    assert_eq!(c.produce("idem", pid, epoch + 1, 1, 1), (0, 6));
    assert_eq!(
        c.produce("idem", pid, epoch + 1, 3, 1).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        values(&broker, "idem"),
        ["s0", "s1", "s2", "s3", "s4", "s0", "s1"]
    );
}
