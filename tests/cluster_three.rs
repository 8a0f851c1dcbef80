//! Three brokers as separate processes, each a voter of the controller quorum
//! (issue 16's acceptance): placement by the seed rule, admin through any broker,
//! controller failover, fencing of a broker left down, no progress without a
//! majority, and a full restart.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::*;

/// Short sessions and timeouts so the faults below play out in seconds.
const FAST: &[&str] = &[
    "--set",
    "broker.session.timeout.ms=3000",
    "--set",
    "broker.heartbeat.interval.ms=500",
    "--set",
    "metadata.commit.timeout.ms=3000",
];

fn controller(c: &Cluster, asked: usize) -> Option<i64> {
    let d = c.describe(asked);
    let id = d["controller_id"].as_i64()?;
    (id >= 1).then_some(id)
}

/// Each partition's replica list from `topic describe`.
fn replicas(c: &Cluster, id: usize, topic: &str) -> Vec<Vec<i32>> {
    ok(&c.broker(id).cli(&["topic", "describe", topic]))
        .lines()
        .filter_map(|l| l.split("Replicas: ").nth(1))
        .map(|r| {
            r.split_whitespace()
                .next()
                .unwrap_or("")
                .split(',')
                .map(|b| b.parse().unwrap())
                .collect()
        })
        .collect()
}

fn leaders(c: &Cluster, id: usize, topic: &str) -> Vec<String> {
    ok(&c.broker(id).cli(&["topic", "describe", topic]))
        .lines()
        .filter_map(|l| l.split("Leader: ").nth(1))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn replicas_follow_the_seed_rule_and_any_broker_serves_admin_requests() {
    let c = Cluster::start(3, FAST);
    let d = c.describe(2);
    let brokers = d["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 3, "{d}");
    assert!(brokers
        .iter()
        .all(|b| b["fenced"] == false && b["epoch"].as_u64() > Some(0)));
    assert!(controller(&c, 2).is_some(), "{d}");
    // Created through a broker that is not the controller (whichever it is).
    let not_controller = (1..=3)
        .find(|id| Some(*id as i64) != controller(&c, 1))
        .unwrap();
    ok(&c.broker(not_controller).cli(&[
        "topic",
        "create",
        "six",
        "--partitions",
        "6",
        "--replication-factor",
        "3",
    ]));
    for asked in 1..=3 {
        let r = replicas(&c, asked, "six");
        assert_eq!(r.len(), 6);
        for (i, replicas) in r.iter().enumerate() {
            let want: Vec<i32> = (0..3).map(|j| ((i + j) % 3) as i32 + 1).collect();
            assert_eq!(
                replicas, &want,
                "partition {i} as broker {asked} describes it"
            );
        }
        assert_eq!(leaders(&c, asked, "six"), ["1", "2", "3", "1", "2", "3"]);
    }
    // Kafka clients see the same placement.
    let kcat = std::process::Command::new("kcat")
        .args(["-L", "-t", "six", "-b", &c.broker(1).kafka_addr])
        .output()
        .expect("kcat is installed by .ci/run");
    let text = String::from_utf8_lossy(&kcat.stdout);
    assert!(
        text.contains("partition 4, leader 2, replicas: 2,3,1"),
        "{text}"
    );
    // RF 1 partitions on three leaders: kcat bootstraps from one broker, sends each
    // partition's records to its leader, and reads them all back through another.
    ok(&c
        .broker(1)
        .cli(&["topic", "create", "spread", "--partitions", "3"]));
    // Bounded: kcat gives up on a record after 20 s, and `timeout` ends a hang.
    let mut produce = std::process::Command::new("timeout")
        .args(["30", "kcat", "-P", "-t", "spread"])
        .args([
            "-X",
            "topic.partitioner=random",
            "-X",
            "message.timeout.ms=20000",
        ])
        .args(["-b", &c.broker(1).kafka_addr])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = (1..=30).map(|i| format!("{i}\n")).collect();
    std::io::Write::write_all(produce.stdin.as_mut().unwrap(), lines.as_bytes()).unwrap();
    drop(produce.stdin.take());
    assert!(produce.wait().unwrap().success());
    let consumed = std::process::Command::new("timeout")
        .args(["30", "kcat", "-C", "-t", "spread", "-e", "-o", "beginning"])
        .args(["-f", "%p %s\n"])
        .args(["-b", &c.broker(2).kafka_addr])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&consumed.stdout);
    let mut values: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    values.sort_unstable();
    assert_eq!(values, (1..=30).collect::<Vec<_>>(), "{text}");
    // The same with the native CLI: produced through broker 1, consumed through 3.
    ok(&c
        .broker(1)
        .cli(&["topic", "create", "native-spread", "--partitions", "3"]));
    // Keyed, so the records hash onto every partition.
    let lines: String = (1..=30).map(|i| format!("key-{i}:{i}\n")).collect();
    ok(&c.broker(1).cli_input(
        &[
            "produce",
            "--topic",
            "native-spread",
            "--key-separator",
            ":",
        ],
        lines.as_bytes(),
    ));
    let mut values: Vec<u32> = c
        .broker(3)
        .consume_values("native-spread")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    values.sort_unstable();
    assert_eq!(values, (1..=30).collect::<Vec<_>>());
    let led: Vec<String> = leaders(&c, 2, "native-spread");
    assert_eq!(led, ["1", "2", "3"]);
    // Each leader holds some of them (a broker reports the offsets of the
    // partitions it leads): the records really went to three brokers.
    for id in 1..=3 {
        let ends: Vec<i64> = ok(&c.broker(id).cli(&["topic", "describe", "native-spread"]))
            .lines()
            .filter_map(|l| l.split("LogEnd: ").nth(1)?.trim().parse().ok())
            .collect();
        assert!(ends[id - 1] > 0, "broker {id}: {ends:?}");
    }
    let refused =
        fails(
            &c.broker(3)
                .cli(&["topic", "create", "too-wide", "--replication-factor", "4"]),
        );
    assert!(refused.contains("INVALID_REPLICATION_FACTOR"), "{refused}");
}

#[test]
fn a_killed_controller_is_replaced_and_no_committed_metadata_is_lost() {
    let mut c = Cluster::start(3, FAST);
    ok(&c
        .broker(1)
        .cli(&["topic", "create", "before", "--partitions", "2"]));
    let old = controller(&c, 1).unwrap() as usize;
    c.kill9(old);
    let survivor = c.running()[0];
    let (new, took) = c.wait_for(Duration::from_secs(15), "a new controller", |c| {
        controller(c, survivor).filter(|id| *id as usize != old)
    });
    eprintln!(
        "controller failover: {old} -> {new} in {} ms",
        took.as_millis()
    );
    for id in c.running() {
        ok(&c
            .broker(id)
            .cli(&["topic", "create", &format!("after-{id}")]));
        let list = ok(&c.broker(id).cli(&["topic", "list"]));
        assert!(list.lines().any(|l| l == "before"), "{list}");
    }
    c.restart(old);
    let list = ok(&c.broker(old).cli(&["topic", "list"]));
    for t in ["before", "after-1", "after-2", "after-3"] {
        if t == format!("after-{old}") {
            continue;
        }
        assert!(
            list.lines().any(|l| l == t),
            "{t} missing on the restarted broker: {list}"
        );
    }
}

#[test]
fn a_broker_left_down_is_fenced_and_its_partitions_have_no_leader() {
    let mut c = Cluster::start(3, FAST);
    ok(&c
        .broker(1)
        .cli(&["topic", "create", "t", "--partitions", "3"]));
    // Broker 3 leads partition 2 (RF 1: its only replica); take a non-controller
    // so the quorum keeps its leader.
    let ctl = controller(&c, 1).unwrap() as usize;
    let victim = [3, 2, 1].into_iter().find(|id| *id != ctl).unwrap();
    c.kill9(victim);
    let asked = c.running()[0];
    let (_, took) = c.wait_for(Duration::from_secs(15), "the broker fenced", |c| {
        let d = c.describe(asked);
        d["brokers"]
            .as_array()?
            .iter()
            .find(|b| b["id"] == victim as i64 && b["fenced"] == true)
            .map(|_| ())
    });
    eprintln!(
        "broker {victim} fenced {} ms after its kill (session 3000 ms)",
        took.as_millis()
    );
    let l = leaders(&c, asked, "t");
    let p = victim - 1;
    assert_eq!(
        l[p], "none",
        "partition {p} still names the dead leader: {l:?}"
    );
    // It comes back: unfenced, and it leads what it holds again.
    c.restart(victim);
    c.wait_for(Duration::from_secs(15), "the partition led again", |c| {
        (leaders(c, asked, "t")[p] == victim.to_string()).then_some(())
    });
}

#[test]
fn without_a_majority_admin_requests_fail_in_bounded_time_and_change_nothing() {
    let mut c = Cluster::start(3, FAST);
    ok(&c.broker(1).cli(&["topic", "create", "kept"]));
    c.kill9(2);
    c.kill9(3);
    let started = std::time::Instant::now();
    let err = fails(&c.broker(1).cli(&["topic", "create", "lost"]));
    let took = started.elapsed();
    assert!(
        err.contains("REQUEST_TIMED_OUT") || err.contains("NOT_CONTROLLER"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    c.restart(2);
    c.restart(3);
    for id in 1..=3 {
        let list = ok(&c.broker(id).cli(&["topic", "list"]));
        assert!(list.lines().any(|l| l == "kept"), "{list}");
        assert!(
            !list.lines().any(|l| l == "lost"),
            "a refused create took effect: {list}"
        );
    }
    ok(&c.broker(3).cli(&["topic", "create", "later"]));
}

#[test]
fn a_full_restart_keeps_topics_configs_and_registrations() {
    let mut c = Cluster::start(3, FAST);
    ok(&c.broker(2).cli(&[
        "topic",
        "create",
        "cfg",
        "--partitions",
        "3",
        "--replication-factor",
        "2",
        "--config",
        "retention.ms=123456",
    ]));
    let before = c.describe(1);
    for id in 1..=3 {
        c.kill9(id);
    }
    for id in 1..=3 {
        c.spawn(id);
    }
    for id in 1..=3 {
        c.broker_mut(id).wait_ready();
    }
    let describe = ok(&c.broker(3).cli(&["topic", "describe", "cfg"]));
    assert!(describe.contains("retention.ms=123456"), "{describe}");
    assert_eq!(replicas(&c, 3, "cfg"), [vec![1, 2], vec![2, 3], vec![3, 1]]);
    let after = c.describe(1);
    assert_eq!(after["cluster_id"], before["cluster_id"]);
    for (b, a) in before["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(after["brokers"].as_array().unwrap())
    {
        assert_eq!(a["id"], b["id"]);
        assert!(a["epoch"].as_u64() > b["epoch"].as_u64(), "{b} then {a}");
    }
}

mod peer_input {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use ringlog::schema::peer::*;
    use ringlog::schema::peer_frame::{decode_peer, encode_peer};

    use super::*;

    fn connect(c: &Cluster, id: usize) -> TcpStream {
        let voters = c.voters();
        let addr = voters
            .split(',')
            .find_map(|v| v.strip_prefix(&format!("{id}@")))
            .unwrap()
            .to_string();
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn send(s: &mut TcpStream, correlation_id: u64, body: PeerBodyT) {
        let _ = s.write_all(&encode_peer(&PeerEnvelopeT {
            correlation_id,
            body,
        }));
    }

    /// The next frame, or `None` once the broker closed the connection.
    fn read(s: &mut TcpStream) -> Option<PeerEnvelopeT> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Some(decode_peer(&body).unwrap())
    }

    fn closed(s: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(s.read(&mut byte), Ok(0) | Err(_))
    }

    fn hello(id: i32) -> PeerBodyT {
        PeerBodyT::PeerHello(Box::new(PeerHelloT {
            cluster_id: None,
            broker_id: id,
            protocol_version: 1,
            replica_shard: -1,
        }))
    }

    #[test]
    fn malformed_frames_and_impostors_are_refused_and_change_nothing() {
        let c = Cluster::start(3, FAST);
        ok(&c.broker(1).cli(&["topic", "create", "t"]));
        let before = c.describe(1);

        // Garbage, an oversized length, a frame that is not a hello first.
        let mut s = connect(&c, 1);
        s.write_all(&[7, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert!(closed(&mut s));
        let mut s = connect(&c, 1);
        s.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(closed(&mut s));
        let mut s = connect(&c, 1);
        send(
            &mut s,
            1,
            PeerBodyT::DeleteTopics(Box::new(DeleteTopicsT {
                names: vec!["t".into()],
            })),
        );
        let refusal = read(&mut s).unwrap();
        assert!(
            matches!(&refusal.body, PeerBodyT::PeerHelloResponse(r) if r.error == PeerError::INVALID_REQUEST),
            "{refusal:?}"
        );
        assert!(closed(&mut s));

        // Not a voter.
        let mut s = connect(&c, 1);
        send(&mut s, 0, hello(42));
        let refusal = read(&mut s).unwrap();
        assert!(
            matches!(&refusal.body, PeerBodyT::PeerHelloResponse(r) if r.error == PeerError::INVALID_REQUEST),
            "{refusal:?}"
        );
        assert!(closed(&mut s));

        // Claiming to be broker 2, then speaking for broker 3: cut off.
        let mut s = connect(&c, 1);
        send(&mut s, 0, hello(2));
        assert!(matches!(
            read(&mut s).unwrap().body,
            PeerBodyT::PeerHelloResponse(r) if r.error == PeerError::NONE
        ));
        send(
            &mut s,
            5,
            PeerBodyT::RegisterBroker(Box::new(RegisterBrokerT {
                broker_id: 3,
                host: "127.0.0.1".into(),
                port: 1,
                shards: 1,
                incarnation: 7,
                kafka: None,
            })),
        );
        assert!(closed(&mut s));
        // A malformed raft message on an admitted connection: cut off too.
        let mut s = connect(&c, 1);
        send(&mut s, 0, hello(2));
        read(&mut s).unwrap();
        send(
            &mut s,
            0,
            PeerBodyT::RaftMessages(Box::new(RaftMessagesT {
                messages: vec![RaftMessageT {
                    bytes: vec![0xff; 9],
                }],
            })),
        );
        assert!(closed(&mut s));
        // Registering the live broker 2 again from another "process": refused.
        let ctl = controller(&c, 1).unwrap() as usize;
        let mut s = connect(&c, ctl);
        let impostor = if ctl == 2 { 3 } else { 2 };
        send(&mut s, 0, hello(impostor));
        read(&mut s).unwrap();
        send(
            &mut s,
            9,
            PeerBodyT::RegisterBroker(Box::new(RegisterBrokerT {
                broker_id: impostor,
                host: "127.0.0.1".into(),
                port: 1,
                shards: 1,
                incarnation: 12345,
                kafka: None,
            })),
        );
        let answer = read(&mut s).unwrap();
        match answer.body {
            PeerBodyT::RegisterBrokerResponse(r) => {
                assert_ne!(r.error, PeerError::NONE, "{r:?}")
            }
            other => panic!("{other:?}"),
        }
        drop(s);

        let after = c.describe(1);
        assert_eq!(after["brokers"], before["brokers"]);
        assert_eq!(after["metadata_offset"], before["metadata_offset"]);
        for id in 1..=3 {
            assert!(c.broker(id).child_alive());
            assert!(!c.broker(id).log().contains("panicked"));
        }
    }
}
