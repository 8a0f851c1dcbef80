//! A broker with no controller voters configured is a cluster of one on the same
//! code path as a cluster (issue 16): its metadata is a Raft log it alone votes
//! on, and a data dir written by the single broker before the quorum existed opens
//! unchanged. Real broker processes on loopback.

mod common;

use std::collections::BTreeMap;

use common::*;
use ringlog::metadata::{store, BrokerId, BrokerInfo, ClusterMetadata};

#[test]
fn a_single_brokers_metadata_file_is_imported_and_its_topics_keep_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // What the single broker wrote before the metadata log existed.
    let mut md = ClusterMetadata::new(
        "legacy-cluster".into(),
        vec![BrokerInfo {
            id: BrokerId(0),
            host: "127.0.0.1".into(),
            port: 1,
            shards: 1,
            kafka: None,
        }],
    );
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "3600000".to_string());
    let mut t = md.plan_topic("kept", 2, 1, configs).unwrap();
    t.id = "00112233445566778899aabbccddeeff".into();
    md.add_topic(t);
    store::save(&data, &md).unwrap();

    let mut broker = Broker::start(&data, 1, &[]);
    let list = ok(&broker.cli(&["topic", "list"]));
    assert!(list.lines().any(|l| l == "kept"), "{list}");
    ok(&broker.cli_input(&["produce", "--topic", "kept"], b"a\nb\n"));
    assert!(data.join("cluster-metadata.json.imported").exists());
    assert!(!data.join(store::METADATA_FILE).exists());
    broker.kill9();

    // The log, not the renamed file, is what a restart reads.
    let broker = Broker::start(&data, 1, &[]);
    let mut values = broker.consume_values("kept");
    values.sort();
    assert_eq!(values, ["a", "b"]);
    let describe = ok(&broker.cli(&["topic", "describe", "kept"]));
    assert!(describe.contains("retention.ms=3600000"), "{describe}");
    assert!(
        broker.log().contains("cluster_id=legacy-cluster"),
        "{}",
        broker.log()
    );
}

#[test]
fn topics_and_configs_survive_restarts_and_every_start_registers_anew() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, 2, &[]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "t",
        "--partitions",
        "3",
        "--config",
        "cleanup.policy=compact",
    ]));
    ok(&broker.cli(&["topic", "create", "gone", "--partitions", "1"]));
    ok(&broker.cli(&["topic", "delete", "gone"]));
    ok(&broker.cli_input(
        &["produce", "--topic", "t", "--key-separator", ":"],
        b"k:v1\n",
    ));
    let first_epoch = registered_epoch(&broker.log());
    broker.kill9();
    let mut broker = Broker::start(&data, 2, &[]);
    let list = ok(&broker.cli(&["topic", "list"]));
    assert!(
        list.lines().any(|l| l == "t") && !list.contains("gone"),
        "{list}"
    );
    let describe = ok(&broker.cli(&["topic", "describe", "t"]));
    assert!(describe.contains("PartitionCount: 3"), "{describe}");
    assert!(describe.contains("cleanup.policy=compact"), "{describe}");
    assert_eq!(broker.consume_values("t"), ["v1"]);
    assert!(!data.join("gone-0").exists());
    let second_epoch = registered_epoch(&broker.log());
    assert!(
        second_epoch > first_epoch,
        "{second_epoch} after {first_epoch}"
    );
    // An orderly stop and start too.
    broker.terminate();
    let broker = Broker::start(&data, 2, &[]);
    assert_eq!(broker.consume_values("t"), ["v1"]);
    assert!(registered_epoch(&broker.log()) > second_epoch);
}

/// The epoch the broker's log says it registered with (the last registration).
fn registered_epoch(log: &str) -> u64 {
    log.lines()
        .rev()
        .filter(|l| l.contains("registered with the controller"))
        .filter_map(|l| l.split("epoch=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .find_map(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no registration in the log:\n{log}"))
}
