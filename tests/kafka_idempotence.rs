//! Idempotent produce over the Kafka protocol, with a hand-driven client so the
//! failure can be injected: a producer whose response was lost sends the same batch
//! again and it is stored once; a batch with a gap in its sequence is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is fenced; the sequences survive a
//! broker `kill -9`.

mod common;

use common::kafka::Conn;
use common::*;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

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
    assert_eq!(
        broker.consume_values("idem"),
        ["s0", "s1", "s2", "s3", "s4"]
    );

    // A gap: sequence 7 after 4.
    assert_eq!(
        c.produce("idem", pid, epoch, 7, 1).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    // InitProducerId without a transactional id always hands out a new id, as
    // Kafka's does, even when given an id and epoch (v3+): bumping the epoch of the
    // id it was given would let any client fence another producer.
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.producer_id = kafka_protocol::messages::ProducerId(pid);
    req.producer_epoch = epoch;
    let again: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 3, &req);
    assert_eq!(again.error_code, 0);
    let (pid2, epoch2) = (again.producer_id.0, again.producer_epoch);
    assert_ne!(pid2, pid, "a new producer id");
    assert_eq!(epoch2, 0);
    assert_eq!(c.produce("idem", pid2, epoch2, 0, 1), (0, 5));
    assert_eq!(
        c.produce("idem", pid, epoch, 5, 1),
        (0, 6),
        "the first producer is not fenced"
    );
    // A stale epoch of a known producer is.
    assert_eq!(c.produce("idem", pid, epoch + 1, 0, 1), (0, 7));
    assert_eq!(
        c.produce("idem", pid, epoch, 6, 1).0,
        INVALID_PRODUCER_EPOCH
    );

    // After a kill -9, the sequences are rebuilt from the log: a retry of the last
    // batch is still a duplicate, and the next sequence still appends.
    broker.kill9();
    let broker = Broker::start(&data, 2, &[]);
    let mut c = Conn::new(&broker.kafka_addr);
    assert_eq!(
        c.produce("idem", pid2, epoch2, 0, 1),
        (0, 5),
        "a duplicate across a restart"
    );
    assert_eq!(c.produce("idem", pid2, epoch2, 1, 1), (0, 8));
    assert_eq!(
        c.produce("idem", pid2, epoch2, 3, 1).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        broker.consume_values("idem"),
        ["s0", "s1", "s2", "s3", "s4", "s0", "s5", "s0", "s1"]
    );
}
