//! confluent-kafka (librdkafka 2.x) against the Kafka listener: AdminClient create,
//! describe (topics and configs) and delete; idempotent acks=all producers with
//! compression none, lz4 and zstd; a 3-member group on 6 partitions with a member
//! leaving midway. The script checks every record is consumed and each producer's
//! order within a partition. The README's test command installs confluent-kafka.

mod common;

use std::process::Command;

use common::*;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/kafka_confluent_client.py"
);

#[test]
fn confluent_kafka_admin_idempotent_producers_and_a_rebalancing_group() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        2,
        &["--set", "group.initial.rebalance.delay.ms=300"],
    );
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(&broker.kafka_addr)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK consumed=6000"),
        "{stdout}\n{}\nbroker log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        broker.log()
    );
    eprintln!("{stdout}");
}
