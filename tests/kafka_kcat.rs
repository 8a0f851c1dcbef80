//! The Kafka-protocol listener with Debian's kcat (librdkafka): metadata, produce
//! and consume with keys and headers, the same bytes across both protocols, and
//! garbage frames that leave the broker serving. `.ci/run` installs kcat.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Runs kcat (`.ci/run`'s README command installs it).
fn kcat(args: &[&str], input: Option<&[u8]>) -> Output {
    run_with_input(Command::new("kcat").args(args), input)
}

fn kcat_ok(args: &[&str], input: Option<&[u8]>) -> String {
    let out = kcat(args, input);
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kcat_lists_produces_and_consumes_with_keys_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, &[]);
    let k = broker.kafka_addr.as_str();
    ok(&broker.cli(&[
        "topic",
        "create",
        "kt",
        "--partitions",
        "3",
        "--replication-factor",
        "1",
    ]));

    let meta = kcat_ok(&["-b", k, "-L", "-t", "kt"], None);
    assert!(
        meta.contains("1 brokers:") && meta.contains(&format!("broker 0 at {k}")),
        "{meta}"
    );
    assert!(meta.contains("topic \"kt\" with 3 partitions:"), "{meta}");
    for p in 0..3 {
        assert!(
            meta.contains(&format!("partition {p}, leader 0, replicas: 0, isrs: 0")),
            "{meta}"
        );
    }

    let lines: String = (0..300).map(|i| format!("key{i}:value{i}\n")).collect();
    kcat_ok(
        &["-b", k, "-P", "-t", "kt", "-K:", "-H", "origin=kcat"],
        Some(lines.as_bytes()),
    );
    let out = kcat_ok(
        &[
            "-b",
            k,
            "-C",
            "-t",
            "kt",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%p %o %k %s %h\n",
        ],
        None,
    );
    let mut got: Vec<(i32, i64, String, String, String)> = out
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(' ').collect();
            (
                c[0].parse().unwrap(),
                c[1].parse().unwrap(),
                c[2].to_string(),
                c[3].to_string(),
                c[4].to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), 300, "{out}");
    for (_, _, key, value, headers) in &got {
        assert_eq!(key.replace("key", ""), value.replace("value", ""));
        assert_eq!(headers, "origin=kcat");
    }
    // Per partition, offsets are 0, 1, 2, ... and the order of production is kept.
    got.sort_by_key(|g| (g.0, g.1));
    for p in 0..3 {
        let part: Vec<_> = got.iter().filter(|g| g.0 == p).collect();
        for (i, g) in part.iter().enumerate() {
            assert_eq!(g.1, i as i64);
        }
        let nums: Vec<usize> = part.iter().map(|g| g.3[5..].parse().unwrap()).collect();
        assert!(
            nums.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order"
        );
    }
}

#[test]
fn the_same_bytes_cross_between_the_kafka_and_native_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    let k = broker.kafka_addr.as_str();
    ok(&broker.cli(&[
        "topic",
        "create",
        "x",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]));
    // Bytes that are not text: every value 0..=255 except the newline that splits.
    let binary: Vec<u8> = (0u8..=255).filter(|b| *b != b'\n').collect();
    let mut input = binary.clone();
    input.push(b'\n');
    kcat_ok(&["-b", k, "-P", "-t", "x"], Some(&input));
    let native = broker.cli(&[
        "consume",
        "--topic",
        "x",
        "--from-beginning",
        "--max-messages",
        "1",
    ]);
    assert!(native.status.success());
    assert_eq!(native.stdout, input, "kcat's bytes read natively");

    ok(&broker.cli_input(&["produce", "--topic", "x"], b"from-native\n"));
    let out = kcat(
        &["-b", k, "-C", "-t", "x", "-e", "-o", "1", "-f", "%s\n"],
        None,
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, b"from-native\n", "native bytes read by kcat");
}

#[test]
fn garbage_kafka_frames_never_stop_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 1, &[]);
    let k = broker.kafka_addr.clone();
    ok(&broker.cli(&[
        "topic",
        "create",
        "g",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]));
    // A valid Metadata v0 request to mutate: size, key 3, version 0, id 1, client
    // "t", one topic "g".
    let good: Vec<u8> = vec![
        0, 0, 0, 18, 0, 3, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 1, b'g',
    ];
    let mut frames: Vec<Vec<u8>> = vec![
        vec![0x7f, 0xff, 0xff, 0xff], // a 2 GiB frame announced
        vec![0xff, 0xff, 0xff, 0xff], // a negative size
        vec![0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1], // an unknown API
        vec![0, 0, 0, 8, 0, 3, 0x7f, 0, 0, 0, 0, 1], // an unknown version
        // Metadata v0 whose topic array claims 54 million entries.
        vec![
            0, 0, 0, 15, 0, 3, 0, 0, 0, 0, 0, 1, 0, 1, b't', 3, 0x3c, 0x0c, 0,
        ],
        // ... and 2^31 - 1 entries: ~150 GB if reserved up front.
        vec![
            0, 0, 0, 15, 0, 3, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff,
        ],
        // ApiVersions v3 with a truncated tagged-field section.
        vec![0, 0, 0, 12, 0, 18, 0, 3, 0, 0, 0, 1, 0, 1, b't', 0xff],
    ];
    let mut seed = 7u64;
    for _ in 0..2_000 {
        let mut f = good.clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = 4 + (seed as usize % (f.len() - 4));
        f[at] = (seed >> 32) as u8;
        if seed % 5 == 0 {
            f.truncate(4 + (seed as usize >> 8) % (f.len() - 4));
        }
        frames.push(f);
    }
    for f in &frames {
        if let Ok(mut s) = TcpStream::connect(&k) {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let _ = s.write_all(f);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    assert!(broker.child_alive(), "the broker died:\n{}", broker.log());
    // And still serves both protocols.
    kcat_ok(&["-b", &k, "-P", "-t", "g"], Some(b"after\n"));
    let out = kcat_ok(
        &[
            "-b",
            &k,
            "-C",
            "-t",
            "g",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%s\n",
        ],
        None,
    );
    assert_eq!(out, "after\n");
}

#[test]
fn a_kcat_group_consumer_commits_to_the_same_coordinator_the_native_tools_read() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        2,
        &["--set", "group.initial.rebalance.delay.ms=100"],
    );
    let k = broker.kafka_addr.as_str();
    ok(&broker.cli(&[
        "topic",
        "create",
        "kg",
        "--partitions",
        "3",
        "--replication-factor",
        "1",
    ]));
    let lines: String = (0..30).map(|i| format!("r{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "kg"], lines.as_bytes()));
    let out = kcat_ok(
        &[
            "-b",
            k,
            "-G",
            "kgroup",
            "kg",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%s\n",
        ],
        None,
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    // librdkafka commits on close; the native describe sees those commits.
    let described = ok(&broker.cli(&["group", "describe", "kgroup"]));
    let committed: i64 = described
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(committed, 30, "{described}");
}

#[test]
fn offset_fetch_v8_answers_several_groups_at_once() {
    use common::kafka::Conn;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), 2, &[]);
    ok(&broker.cli(&[
        "topic",
        "create",
        "of",
        "--partitions",
        "2",
        "--replication-factor",
        "1",
    ]));
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "of"], lines.as_bytes()));
    for (group, offset) in [("a", "3"), ("b", "5")] {
        ok(&broker.cli(&[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "of",
            "--to-offset",
            offset,
            "--execute",
        ]));
    }
    let mut req = OffsetFetchRequest::default();
    req.groups = ["a", "b", "nobody"]
        .iter()
        .map(|g| {
            let mut rg = OffsetFetchRequestGroup::default();
            rg.group_id = GroupId(StrBytes::from_static_str(g));
            rg.topics = None; // everything the group committed
            rg
        })
        .collect();
    let mut c = Conn::new(&broker.kafka_addr);
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &req);
    let committed = |i: usize| -> Vec<i64> {
        resp.groups[i]
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
            .collect()
    };
    assert_eq!(resp.groups.len(), 3);
    assert_eq!(committed(0), vec![3, 3]);
    assert_eq!(committed(1), vec![5, 5]);
    assert!(committed(2).is_empty());
    assert!(resp.groups.iter().all(|g| g.error_code == 0));
}
