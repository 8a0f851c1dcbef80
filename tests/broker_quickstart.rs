//! Acceptance 1 and 7 of the broker issue: the quick start through the CLI, per-
//! partition order, `topic describe`, restarts keeping topics and data, and topic
//! deletion removing its directories.

mod common;

use std::collections::HashMap;

use common::{fails, ok, Broker};

const LINES: usize = 100_000;

#[test]
fn quick_start_produce_consume_describe_restart_delete() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut broker = Broker::start(&data, 2, &[]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "events",
        "--partitions",
        "6",
        "--replication-factor",
        "1",
    ]));
    assert!(ok(&broker.cli(&["topic", "list"]))
        .lines()
        .any(|l| l == "events"));

    // Keys spread lines over partitions by murmur2; the value carries the line number.
    let input: String = (0..LINES).map(|i| format!("k{}:{i}\n", i % 97)).collect();
    ok(&broker.cli_input(
        &["produce", "--topic", "events", "--key-separator", ":"],
        input.as_bytes(),
    ));

    let check_consumed = |broker: &Broker| {
        let out = ok(&broker.cli(&[
            "consume",
            "--topic",
            "events",
            "--from-beginning",
            "--max-messages",
            &LINES.to_string(),
            "--print-partition",
            "--print-key",
        ]));
        let mut seen = vec![false; LINES];
        let mut last_per_partition: HashMap<String, usize> = HashMap::new();
        let mut key_partition: HashMap<String, String> = HashMap::new();
        for line in out.lines() {
            let mut f = line.split('\t');
            let partition = f.next().unwrap().to_string();
            let key = f.next().unwrap().to_string();
            let n: usize = f.next().unwrap().parse().unwrap();
            assert!(!seen[n], "line {n} twice");
            seen[n] = true;
            if let Some(prev) = last_per_partition.insert(partition.clone(), n) {
                assert!(prev < n, "order broken in {partition}: {prev} then {n}");
            }
            // One key, one partition.
            let p = key_partition
                .entry(key)
                .or_insert_with(|| partition.clone());
            assert_eq!(*p, partition);
        }
        assert!(seen.iter().all(|s| *s), "every line consumed");
        assert_eq!(last_per_partition.len(), 6, "records on every partition");
    };
    check_consumed(&broker);

    let describe = ok(&broker.cli(&["topic", "describe", "events"]));
    let rows: Vec<&str> = describe
        .lines()
        .filter(|l| l.contains("Partition: "))
        .collect();
    assert_eq!(rows.len(), 6, "{describe}");
    let mut shards = std::collections::BTreeSet::new();
    let mut total = 0i64;
    for row in &rows {
        let field = |name: &str| {
            row.split('\t')
                .find_map(|f| f.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("{name} in {row}"))
                .to_string()
        };
        assert_eq!(field("Leader"), "0");
        assert_eq!(field("Replicas"), "0");
        assert_eq!(field("Isr"), "0");
        shards.insert(field("Shard"));
        assert_eq!(field("LogStart"), "0");
        total += field("LogEnd").parse::<i64>().unwrap();
    }
    assert_eq!(total, LINES as i64);
    assert_eq!(
        shards.len(),
        2,
        "partitions spread over both shards: {describe}"
    );

    // A restart keeps topics, partitions and data.
    assert!(
        broker.terminate().success(),
        "clean exit:\n{}",
        broker.log()
    );
    let broker = Broker::start(&data, 2, &[]);
    assert_eq!(ok(&broker.cli(&["topic", "describe", "events"])), describe);
    check_consumed(&broker);

    // Deleting the topic removes its directories.
    ok(&broker.cli(&["topic", "delete", "events"]));
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("events"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let err = fails(&broker.cli(&["topic", "describe", "events"]));
    assert!(err.contains("unknown topic"), "{err}");
}
