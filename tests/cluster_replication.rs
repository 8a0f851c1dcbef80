//! Partition replication on three brokers as separate processes (issue 17):
//! acks=all writes through both listeners end up on every replica byte for byte,
//! and consumers get each acknowledged record once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::cluster::Cluster;
use common::*;

/// Short sessions so the cluster forms in seconds; min.insync.replicas 2 as the
/// issue's acceptance asks.
const SETTINGS: &[&str] = &[
    "--set",
    "broker.session.timeout.ms=3000",
    "--set",
    "broker.heartbeat.interval.ms=500",
    "--set",
    "metadata.commit.timeout.ms=3000",
    "--set",
    "min.insync.replicas=2",
];

/// For tests that move a leader by stopping it: a frozen or killed broker is
/// fenced within seconds, and acks=all needs only the leader.
const FAILOVER: &[&str] = &[
    "--set",
    "broker.session.timeout.ms=3000",
    "--set",
    "broker.heartbeat.interval.ms=300",
    "--set",
    "metadata.commit.timeout.ms=3000",
    "--set",
    "min.insync.replicas=1",
];

/// Every batch of a partition directory's segments, by base offset, as stored
/// (header and records, CRC included), read straight from the files.
fn stored_batches(dir: &Path) -> BTreeMap<i64, Vec<u8>> {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = BTreeMap::new();
    for seg in segments {
        let bytes = std::fs::read(&seg).unwrap();
        let mut pos = 0usize;
        while pos + 12 <= bytes.len() {
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
            // Zeros past the data: preallocated, never written.
            if len <= 0 || pos + 12 + len as usize > bytes.len() {
                break;
            }
            let end = pos + 12 + len as usize;
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
            out.insert(base, bytes[pos..end].to_vec());
            pos = end;
        }
    }
    out
}

/// Records in stored batches (the header's record count).
fn record_count(batches: &BTreeMap<i64, Vec<u8>>) -> usize {
    batches
        .values()
        .map(|b| i32::from_be_bytes(b[57..61].try_into().unwrap()) as usize)
        .sum()
}

/// The acceptance's 10^6 records with acks=all, split over the two listeners.
const NATIVE_RECORDS: usize = 600_000;
const KAFKA_RECORDS: usize = 400_000;

#[test]
fn acks_all_writes_reach_every_replica_byte_for_byte() {
    let mut c = Cluster::start(3, SETTINGS);
    ok(&create_topic(&c, "r", 3, 3, &[]));
    // Native listener, acks=all (the CLI's default), through a broker that leads
    // only one of the partitions.
    let native: String = (0..NATIVE_RECORDS)
        .map(|i| format!("k{i}:n{i}\n"))
        .collect();
    ok(&c.broker(2).cli_input(
        &["produce", "--topic", "r", "--key-separator", ":"],
        native.as_bytes(),
    ));
    // Kafka listener: librdkafka's default is acks=all.
    let mut kcat = std::process::Command::new("timeout")
        .args(["120", "kcat", "-P", "-t", "r", "-K", ":"])
        .args(["-X", "acks=all", "-X", "message.timeout.ms=30000"])
        .args(["-b", &c.broker(3).kafka_addr])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let kafka: String = (0..KAFKA_RECORDS).map(|i| format!("k{i}:q{i}\n")).collect();
    std::io::Write::write_all(kcat.stdin.as_mut().unwrap(), kafka.as_bytes()).unwrap();
    drop(kcat.stdin.take());
    assert!(kcat.wait().unwrap().success(), "{}", c.logs());

    // Consumers of both listeners get every acknowledged record once.
    let mut want: Vec<String> = (0..NATIVE_RECORDS)
        .map(|i| format!("n{i}"))
        .chain((0..KAFKA_RECORDS).map(|i| format!("q{i}")))
        .collect();
    want.sort();
    let mut values = c.broker(1).consume_values("r");
    values.sort();
    assert_eq!(values.len(), want.len());
    assert!(
        values == want,
        "records consumed (native) differ from those produced"
    );
    let out = std::process::Command::new("timeout")
        .args([
            "120",
            "kcat",
            "-C",
            "-t",
            "r",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-b", &c.broker(2).kafka_addr])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", c.logs());
    let mut values: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    values.sort();
    assert_eq!(values.len(), want.len());
    assert!(
        values == want,
        "records consumed (Kafka) differ from those produced"
    );

    // Every replica holds the same batches, byte for byte (a clean stop first, so
    // the files are complete; every batch was acknowledged at acks=all, so each
    // one is below the high watermark).
    for id in 1..=3 {
        c.broker_mut(id).terminate();
    }
    let mut total = 0;
    for partition in 0..3 {
        let copies: Vec<BTreeMap<i64, Vec<u8>>> = (1..=3)
            .map(|id| stored_batches(&c.data_dir(id).join(format!("r-{partition}"))))
            .collect();
        assert!(!copies[0].is_empty(), "partition {partition} is empty");
        for (i, copy) in copies.iter().enumerate().skip(1) {
            assert_eq!(
                copy.keys().collect::<Vec<_>>(),
                copies[0].keys().collect::<Vec<_>>(),
                "partition {partition}: broker {} holds other batches than broker 1",
                i + 1
            );
            assert!(
                copy == &copies[0],
                "partition {partition}: broker {} differs from broker 1",
                i + 1
            );
        }
        total += record_count(&copies[0]);
    }
    assert_eq!(total, NATIVE_RECORDS + KAFKA_RECORDS);
    drop(c);
}

/// `ringlog topic create` through broker 1, with `extra` arguments.
fn create_topic(
    c: &Cluster,
    name: &str,
    partitions: u32,
    replication_factor: u32,
    extra: &[&str],
) -> std::process::Output {
    let (partitions, replication_factor) = (partitions.to_string(), replication_factor.to_string());
    let mut args = vec![
        "topic",
        "create",
        name,
        "--partitions",
        &partitions,
        "--replication-factor",
        &replication_factor,
    ];
    args.extend_from_slice(extra);
    c.broker(1).cli(&args)
}

/// Each partition's ISR from `topic describe` through broker `asked`.
fn isr(c: &Cluster, asked: usize, topic: &str) -> Vec<Vec<i32>> {
    ok(&c.broker(asked).cli(&["topic", "describe", topic]))
        .lines()
        .filter_map(|l| l.split("Isr: ").nth(1))
        .map(|r| {
            r.split_whitespace()
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|b| !b.is_empty())
                .map(|b| b.parse().unwrap())
                .collect()
        })
        .collect()
}

fn produce(
    c: &Cluster,
    via: usize,
    topic: &str,
    acks: &str,
    from: usize,
    n: usize,
) -> std::process::Output {
    let lines: String = (from..from + n).map(|i| format!("v{i}\n")).collect();
    c.broker(via).cli_input(
        &["produce", "--topic", topic, "--acks", acks],
        lines.as_bytes(),
    )
}

/// Issue 17 acceptance 2, on five voters so the quorum outlives two brokers: a
/// killed follower leaves the ISR after the lag time and produce goes on; with a
/// second one gone acks=all is refused with NOT_ENOUGH_REPLICAS while acks=1
/// works; both restarted, they catch up, rejoin, and hold every acknowledged
/// record.
#[test]
fn followers_leave_the_isr_when_they_lag_and_rejoin_once_caught_up() {
    let settings = [
        "--set",
        "broker.session.timeout.ms=6000",
        "--set",
        "broker.heartbeat.interval.ms=500",
        "--set",
        "metadata.commit.timeout.ms=3000",
        "--set",
        "min.insync.replicas=2",
        "--set",
        "replica.lag.time.max.ms=1500",
    ];
    let mut c = Cluster::start(5, &settings);
    ok(&create_topic(&c, "lag", 1, 3, &[]));
    assert_eq!(isr(&c, 1, "lag"), [vec![1, 2, 3]]);
    ok(&produce(&c, 1, "lag", "all", 0, 1_000));

    c.kill9(3);
    let (_, took) = c.wait_for(Duration::from_secs(20), "broker 3 leaves the ISR", |c| {
        (isr(c, 1, "lag") == [vec![1, 2]]).then_some(())
    });
    eprintln!("a killed follower left the ISR after {took:?}");
    ok(&produce(&c, 1, "lag", "all", 1_000, 1_000));

    c.kill9(2);
    c.wait_for(Duration::from_secs(20), "broker 2 leaves the ISR", |c| {
        (isr(c, 1, "lag") == [vec![1]]).then_some(())
    });
    let refused = fails(&produce(&c, 1, "lag", "all", 2_000, 10));
    assert!(refused.contains("NOT_ENOUGH_REPLICAS"), "{refused}");
    ok(&produce(&c, 1, "lag", "1", 2_000, 1_000));
    // The leader's metrics say so: under-replicated and under min ISR, the
    // followers not caught up for longer than the lag time, behind by what was
    // produced since; the appends both followers copied were measured.
    let shard = "shard=\"0\"";
    let gauge = |c: &Cluster, name: &str, labels: &str| metric(c, 1, name, labels).unwrap_or(-1.0);
    assert_eq!(gauge(&c, "ringlog_under_replicated_partitions", shard), 1.0);
    assert_eq!(gauge(&c, "ringlog_under_min_isr_partitions", shard), 1.0);
    let follower = |n: i32| format!("{shard},topic=\"lag\",partition=\"0\",follower=\"{n}\"");
    assert!(gauge(&c, "ringlog_follower_lag_seconds", &follower(2)) > 1.5);
    assert!(gauge(&c, "ringlog_follower_lag_records", &follower(2)) >= 1_000.0);
    assert!(gauge(&c, "ringlog_replication_lag_seconds_count", shard) >= 2.0);

    c.restart(2);
    c.restart(3);
    let (_, took) = c.wait_for(Duration::from_secs(30), "both rejoin the ISR", |c| {
        (isr(c, 1, "lag") == [vec![1, 2, 3]]).then_some(())
    });
    eprintln!("restarted followers rejoined the ISR after {took:?}");
    ok(&produce(&c, 1, "lag", "all", 3_000, 1_000));
    // The shard's copy of the metadata follows the broker's: awaited.
    c.wait_for(Duration::from_secs(10), "the ISR gauges clear", |c| {
        let clear = |name| gauge(c, name, shard) == 0.0;
        (clear("ringlog_under_replicated_partitions") && clear("ringlog_under_min_isr_partitions"))
            .then_some(())
    });
    // Broker 2 follows: what it copied is counted there.
    let copied = metric(
        &c,
        2,
        "ringlog_partition_replica_fetch_records_total",
        "shard=\"0\",topic=\"lag\",partition=\"0\"",
    );
    assert!(copied.is_some_and(|n| n > 0.0), "{copied:?}");

    for id in c.running() {
        c.broker_mut(id).terminate();
    }
    let copies: Vec<BTreeMap<i64, Vec<u8>>> = (1..=3)
        .map(|id| stored_batches(&c.data_dir(id).join("lag-0")))
        .collect();
    let shape = |b: &BTreeMap<i64, Vec<u8>>| {
        let range = b.keys().next().zip(b.keys().last());
        format!("{} records in {range:?}", record_count(b))
    };
    let shapes: Vec<String> = copies.iter().map(shape).collect();
    assert_eq!(record_count(&copies[0]), 4_000, "copies: {shapes:?}");
    assert!(copies[1] == copies[0], "broker 2 differs from the leader");
    assert!(copies[2] == copies[0], "broker 3 differs from the leader");
}

/// Partition 0's leader as `topic describe` through broker `asked` names it.
fn leader(c: &Cluster, asked: usize, topic: &str) -> String {
    ok(&c.broker(asked).cli(&["topic", "describe", topic]))
        .lines()
        .find_map(|l| l.split("Leader: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string()
}

fn signal(c: &Cluster, id: usize, sig: libc::c_int) {
    // SAFETY: a plain kill(2) on a child process this test started.
    let rc = unsafe { libc::kill(c.broker(id).pid(), sig) };
    assert_eq!(rc, 0, "kill({id}, {sig})");
}

/// OffsetForLeaderEpoch v4 for `topic`-0 on broker `id`'s Kafka listener:
/// (error code, epoch, end offset).
fn epoch_end(c: &Cluster, id: usize, topic: &str, current: i32, epoch: i32) -> (i16, i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
    };
    let mut partition = OffsetForLeaderPartition::default();
    partition.partition = 0;
    partition.current_leader_epoch = current;
    partition.leader_epoch = epoch;
    let mut t = OffsetForLeaderTopic::default();
    t.topic = TopicName(kafka_protocol::protocol::StrBytes::from_string(
        topic.to_string(),
    ));
    t.partitions = vec![partition];
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics = vec![t];
    let mut conn = common::kafka::Conn::new(&c.broker(id).kafka_addr);
    let resp: OffsetForLeaderEpochResponse = conn.call(ApiKey::OffsetForLeaderEpoch, 4, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// Issue 17 acceptance 3 (KIP-279): a follower holding records the next leader
/// never got truncates them and ends byte-identical to the new leader. Broker 2
/// freezes with a fetch outstanding, so batch A still reaches it but batch B
/// (acks=1) reaches only the leader and broker 3; the leader then freezes past its
/// session, the controller fences it and elects broker 2 (first in replica order
/// among the live ISR), which writes on in epoch 1. Broker 3's suffix B, and later
/// the old leader's, diverges from the new leader's log and is truncated.
#[test]
fn a_diverged_replica_truncates_its_suffix_and_ends_identical_to_the_leader() {
    let settings = [
        "--set",
        "broker.session.timeout.ms=3000",
        "--set",
        "broker.heartbeat.interval.ms=300",
        "--set",
        "metadata.commit.timeout.ms=3000",
        "--set",
        "min.insync.replicas=1",
        "--set",
        "replica.fetch.wait.max.ms=5000",
    ];
    let mut c = Cluster::start(3, &settings);
    ok(&create_topic(&c, "d", 1, 3, &[]));
    assert_eq!(leader(&c, 1, "d"), "1");
    ok(&produce(&c, 1, "d", "all", 0, 100));
    let stored =
        |c: &Cluster, id: usize| record_count(&stored_batches(&c.data_dir(id).join("d-0")));

    signal(&c, 2, libc::SIGSTOP);
    ok(&produce(&c, 1, "d", "1", 100, 50)); // A: answers broker 2's waiting fetch
    ok(&produce(&c, 1, "d", "1", 150, 40)); // B: broker 2 asks for nothing more
    c.wait_for(Duration::from_secs(10), "broker 3 holds B", |c| {
        (stored(c, 3) == 190).then_some(())
    });
    signal(&c, 1, libc::SIGSTOP);
    assert_eq!((stored(&c, 1), stored(&c, 2)), (190, 100));
    signal(&c, 2, libc::SIGCONT);

    let (_, took) = c.wait_for(Duration::from_secs(30), "broker 2 leads", |c| {
        (leader(c, 3, "d") == "2").then_some(())
    });
    eprintln!("the frozen leader was replaced after {took:?}");
    ok(&produce(&c, 2, "d", "all", 200, 30));
    let truncated = |c: &Cluster, id: usize| {
        c.broker(id)
            .log()
            .contains("replica truncated to the leader's log")
    };
    c.wait_for(Duration::from_secs(10), "broker 3 truncates B", |c| {
        truncated(c, 3).then_some(())
    });
    // Kafka clients ask the same of the new leader (OffsetForLeaderEpoch, KIP-320):
    // epoch 0 ends where epoch 1 began (after A), epoch 1 at the log end; an
    // asker in an older or newer epoch is refused, and so is a follower.
    let ask = |id: usize, current: i32, epoch: i32| epoch_end(&c, id, "d", current, epoch);
    assert_eq!(ask(2, 1, 0), (0, 0, 150));
    assert_eq!(ask(2, -1, 1), (0, 1, 180));
    assert_eq!(ask(2, 1, 7), (0, -1, -1));
    assert_eq!(ask(2, 0, 0).0, 74, "FENCED_LEADER_EPOCH");
    assert_eq!(ask(2, 2, 0).0, 75, "UNKNOWN_LEADER_EPOCH");
    assert_eq!(ask(3, 1, 0).0, 6, "NOT_LEADER_OR_FOLLOWER");

    // The old leader wakes up as a follower with the same suffix.
    signal(&c, 1, libc::SIGCONT);
    let (_, took) = c.wait_for(Duration::from_secs(30), "broker 1 rejoins the ISR", |c| {
        (isr(c, 2, "d") == [vec![1, 2, 3]]).then_some(())
    });
    eprintln!("the old leader rejoined the ISR after {took:?}");
    assert!(
        truncated(&c, 1),
        "broker 1 never truncated:\n{}",
        c.broker(1).log()
    );
    ok(&produce(&c, 2, "d", "all", 300, 20));

    // A is on the new leader (it was answered to broker 2's fetch before it froze);
    // B never was, and is nowhere now.
    let mut values = c.broker(2).consume_values("d");
    values.sort();
    let mut want: Vec<String> = (0..150)
        .chain(200..230)
        .chain(300..320)
        .map(|i| format!("v{i}"))
        .collect();
    want.sort();
    assert!(values == want, "consumed: {values:?}");

    for id in 1..=3 {
        c.broker_mut(id).terminate();
    }
    let copies: Vec<BTreeMap<i64, Vec<u8>>> = (1..=3)
        .map(|id| stored_batches(&c.data_dir(id).join("d-0")))
        .collect();
    assert_eq!(record_count(&copies[1]), 200);
    assert!(copies[0] == copies[1], "broker 1 differs from the leader");
    assert!(copies[2] == copies[1], "broker 3 differs from the leader");
}

/// Issue 17 scope 6: every replica keeps the idempotent producers' state from
/// the batches it copies, so a new leader recognises a retry of a batch it only
/// replicated. Broker 1 leads first (and so holds producer state), then broker 2
/// takes over and appends the next batch, which broker 1 copies as a follower;
/// when broker 1 leads again, the producer's retry of that batch is answered
/// with its original offset instead of being stored twice.
#[test]
fn a_new_leader_deduplicates_a_retry_of_a_batch_it_only_replicated() {
    let c = Cluster::start(3, FAILOVER);
    ok(&create_topic(&c, "i", 1, 3, &[]));
    assert_eq!(leader(&c, 1, "i"), "1");
    let conn = |c: &Cluster, id: usize| common::kafka::Conn::new(&c.broker(id).kafka_addr);
    let (pid, epoch) = conn(&c, 1).init_producer();
    assert_eq!(conn(&c, 1).produce("i", pid, epoch, 0, 10), (0, 0));

    signal(&c, 1, libc::SIGSTOP);
    c.wait_for(Duration::from_secs(30), "broker 2 leads", |c| {
        (leader(c, 3, "i") == "2").then_some(())
    });
    assert_eq!(conn(&c, 2).produce("i", pid, epoch, 10, 10), (0, 10));
    signal(&c, 1, libc::SIGCONT);
    c.wait_for(Duration::from_secs(30), "broker 1 rejoins the ISR", |c| {
        (isr(c, 2, "i") == [vec![1, 2, 3]]).then_some(())
    });

    signal(&c, 2, libc::SIGSTOP);
    c.wait_for(Duration::from_secs(30), "broker 1 leads again", |c| {
        (leader(c, 3, "i") == "1").then_some(())
    });
    // The response to sequence 10..20 was "lost": the producer sends it again.
    assert_eq!(
        conn(&c, 1).produce("i", pid, epoch, 10, 10),
        (0, 10),
        "the retry is a duplicate, answered with its original offset"
    );
    assert_eq!(conn(&c, 1).produce("i", pid, epoch, 20, 10), (0, 20));
    signal(&c, 2, libc::SIGCONT);
    let want: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    assert_eq!(c.broker(3).consume_values("i"), want);
}

/// Issue 16 scope 6: clients follow leadership. A native consumer reading
/// through a leader that is killed keeps its position, finds the new leader in
/// the refreshed metadata and reads on from it, every record once and in order.
#[test]
fn a_consumer_follows_the_partition_to_its_new_leader() {
    use std::io::BufRead;
    let mut c = Cluster::start(3, FAILOVER);
    ok(&create_topic(&c, "f", 1, 3, &[]));
    assert_eq!(leader(&c, 1, "f"), "1");
    ok(&produce(&c, 2, "f", "all", 0, 100));
    let mut consumer = std::process::Command::new(common::ringlog_bin())
        .args(["consume", "--topic", "f", "--from-beginning"])
        .args(["--max-messages", "200", "--timeout-ms", "30000"])
        .args(["-b", &c.broker(3).addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(consumer.stdout.take().unwrap()).lines();
    // Its first 100 records came from broker 1 (the consumer exits on its own
    // timeout if they do not, so this read is bounded).
    let first: Vec<String> = lines.by_ref().take(100).map(Result::unwrap).collect();
    assert_eq!(first.len(), 100);

    c.kill9(1);
    c.wait_for(Duration::from_secs(30), "broker 2 leads", |c| {
        (leader(c, 3, "f") == "2").then_some(())
    });
    ok(&produce(&c, 2, "f", "all", 100, 100));
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = consumer.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(consumer.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "consumer failed: {stderr}");
    let got: Vec<String> = first.into_iter().chain(rest).collect();
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(got, want, "{stderr}");
}

/// Issue 16 scope 6, the producer's side: a batch sent to a killed leader fails
/// (the native producer has no sequences yet, so it does not resend it), and the
/// producer refreshes its metadata, so the batches after it go to the new leader.
#[test]
fn a_producer_sends_to_the_new_leader_after_its_leader_dies() {
    use ringlog::client::{Client, Producer, ProducerConfig};
    let mut c = Cluster::start(3, FAILOVER);
    ok(&create_topic(&c, "p", 1, 3, &[]));
    assert_eq!(leader(&c, 1, "p"), "1");
    let (sent_tx, sent_rx) = flume::bounded::<()>(1);
    let (go_tx, go_rx) = flume::bounded::<()>(1);
    let addr = c.broker(3).addr.clone();
    let producing = std::thread::spawn(move || {
        common::client(move || async move {
            let client = Client::connect(&addr).await.unwrap();
            let producer = Producer::new(client, ProducerConfig::default());
            let send_all = |from: usize, n: usize| {
                let producer = &producer;
                async move {
                    for i in from..from + n {
                        let value = bytes::Bytes::from(format!("v{i}"));
                        producer.send("p", Some(0), None, Some(value), &[]).await?;
                    }
                    producer.flush().await
                }
            };
            let before = send_all(0, 100).await;
            sent_tx.send(()).unwrap();
            go_rx.recv_async().await.unwrap();
            let probe = producer
                .send("p", Some(0), None, Some("lost".into()), &[])
                .await
                .and(producer.flush().await);
            let after = send_all(100, 100).await;
            (before, probe, after)
        })
    });
    sent_rx.recv().unwrap();
    c.kill9(1);
    c.wait_for(Duration::from_secs(30), "broker 2 leads", |c| {
        (leader(c, 3, "p") == "2").then_some(())
    });
    go_tx.send(()).unwrap();
    let (before, probe, after) = producing.join().unwrap();
    before.expect("before the kill");
    let e = probe.expect_err("the batch sent to the dead leader");
    assert!(e.is_stale_leadership(), "{e}");
    after.expect("the batches after it reach the new leader");
    let want: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    assert_eq!(c.broker(3).consume_values("p"), want);
}

/// Issue 17 acceptance 5: a group's commits go to its `__consumer_offsets`
/// partition, created with `offsets.topic.replication.factor` (3) replicas; a
/// Kafka client bootstrapped on any broker finds the coordinator (the partition's
/// leader) and commits there, and every replica of that partition ends holding the
/// same commits, byte for byte.
#[test]
fn group_commits_are_on_every_replica_of_their_offsets_partition() {
    let mut settings = SETTINGS.to_vec();
    settings.extend([
        "--set",
        "offsets.topic.num.partitions=3",
        "--set",
        "group.initial.rebalance.delay.ms=100",
    ]);
    let mut c = Cluster::start(3, &settings);
    ok(&create_topic(&c, "gc", 3, 3, &[]));
    let lines: String = (0..3000).map(|i| format!("k{i}:v{i}\n")).collect();
    ok(&c.broker(2).cli_input(
        &["produce", "--topic", "gc", "--key-separator", ":"],
        lines.as_bytes(),
    ));
    let group = "commits";
    let out = std::process::Command::new("timeout")
        .args(["60", "kcat", "-G", group, "gc", "-o", "beginning", "-e"])
        .args(["-f", "%s\n", "-X", "session.timeout.ms=6000"])
        .args(["-b", &c.broker(3).kafka_addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3000);
    let replicas = isr(&c, 1, ringlog::groups::offsets::OFFSETS_TOPIC);
    assert_eq!(replicas.len(), 3);
    assert!(replicas.iter().all(|r| r.len() == 3), "{replicas:?}");
    // The native tools find the coordinator from any broker, and see those commits.
    for id in 1..=3 {
        let described = ok(&c.broker(id).cli(&["group", "describe", group]));
        let committed: i64 = described
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().nth(2).unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(committed, 3000, "through broker {id}: {described}");
    }
    // A native group consumer bootstrapped on each broker in turn: the first reads
    // part of the topic and commits, the next ones go on from its commits.
    let mut seen = Vec::new();
    for id in 1..=3 {
        let out = ok(&c.broker(id).cli(&[
            "consume",
            "--topic",
            "gc",
            "--group",
            "native",
            "--from-beginning",
            "--max-messages",
            "1000",
            "--timeout-ms",
            "5000",
        ]));
        seen.extend(out.lines().map(str::to_string));
    }
    seen.sort();
    let mut want: Vec<String> = (0..3000).map(|i| format!("v{i}")).collect();
    want.sort();
    assert!(seen == want, "the native group read {} records", seen.len());
    // Each broker lists only the groups it coordinates; `group list` asks them all.
    for id in 1..=3 {
        let listed = ok(&c.broker(id).cli(&["group", "list"]));
        let names: Vec<&str> = listed
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            names,
            ["commits", "native"],
            "through broker {id}: {listed}"
        );
    }

    for id in 1..=3 {
        c.broker_mut(id).terminate();
    }
    let p = ringlog::groups::offsets::partition_for_group(group, 3);
    let dir = |id: usize| c.data_dir(id).join(format!("__consumer_offsets-{p}"));
    let leader_copy = stored_batches(&dir(1));
    assert!(!leader_copy.is_empty(), "no commits stored");
    for id in 2..=3 {
        assert!(
            stored_batches(&dir(id)) == leader_copy,
            "broker {id}'s __consumer_offsets-{p} differs from broker 1's"
        );
    }
    // The stored commits are the consumer's final positions: every record once.
    let mut store = ringlog::groups::offsets::OffsetStore::default();
    for bytes in leader_copy.into_values() {
        let batch = ringlog::schema::RecordBatch::parse(bytes.into()).unwrap();
        for r in batch.records().unwrap() {
            store
                .apply_record(r.key.as_deref().unwrap(), r.value.as_deref())
                .unwrap();
        }
    }
    let committed: i64 = (0..3)
        .map(|part| store.get(group, "gc", part).map_or(0, |c| c.offset))
        .sum();
    assert_eq!(committed, 3000);
    drop(c);
}

/// A topic's own `min.insync.replicas` overrides the broker's (2 here): an RF 1
/// topic refuses acks=all with NOT_ENOUGH_REPLICAS, as Kafka's does, unless the
/// topic asks for 1; a value below 1 is refused at creation.
#[test]
fn a_topic_min_insync_replicas_overrides_the_brokers() {
    let c = Cluster::start(3, SETTINGS);
    let create = |name: &str, extra: &[&str]| create_topic(&c, name, 1, 1, extra);
    ok(&create("strict", &[]));
    ok(&create("relaxed", &["--config", "min.insync.replicas=1"]));
    let err = fails(&create("bad", &["--config", "min.insync.replicas=0"]));
    assert!(err.contains("min.insync.replicas"), "{err}");

    let refused = fails(&produce(&c, 2, "strict", "all", 0, 10));
    assert!(refused.contains("NOT_ENOUGH_REPLICAS"), "{refused}");
    ok(&produce(&c, 2, "strict", "1", 0, 10));
    ok(&produce(&c, 2, "relaxed", "all", 0, 10));
    assert_eq!(c.broker(3).consume_values("relaxed").len(), 10);
    let described = ok(&c.broker(3).cli(&["topic", "describe", "relaxed"]));
    assert!(described.contains("min.insync.replicas=1"), "{described}");

    // Altered at runtime through a broker that forwards to the controller: the
    // partition's leader picks the new minimum up from the metadata (awaited, as
    // it applies the change on its own), and a removed one falls back to 2.
    let alter = |args: &[&str]| {
        let mut all = vec!["topic", "alter-config", "strict"];
        all.extend_from_slice(args);
        ok(&c.broker(3).cli(&all))
    };
    alter(&["--config", "min.insync.replicas=1"]);
    c.wait_for(Duration::from_secs(10), "acks=all accepted", |c| {
        produce(c, 2, "strict", "all", 10, 10)
            .status
            .success()
            .then_some(())
    });
    alter(&["--delete-config", "min.insync.replicas"]);
    c.wait_for(Duration::from_secs(10), "acks=all refused again", |c| {
        let out = produce(c, 2, "strict", "all", 20, 10);
        String::from_utf8_lossy(&out.stderr)
            .contains("NOT_ENOUGH_REPLICAS")
            .then_some(())
    });
}

/// Broker `id`'s `/metrics` text (`None` while it does not answer).
fn metrics(c: &Cluster, id: usize) -> Option<String> {
    use std::io::{Read, Write};
    // From listeners.json: the broker may not have been waited for.
    let listeners = std::fs::read_to_string(c.data_dir(id).join("listeners.json")).ok()?;
    let listeners: serde_json::Value = serde_json::from_str(&listeners).ok()?;
    let addr = listeners["admin"].as_str()?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the series `name{labels}` in broker `id`'s `/metrics`.
fn metric(c: &Cluster, id: usize, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{{{labels}}} ");
    metrics(c, id)?
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// Broker `id`'s log end of `topic`-0, from its `/metrics`.
fn log_end_metric(c: &Cluster, id: usize, topic: &str) -> Option<i64> {
    let labels = format!("shard=\"0\",topic=\"{topic}\",partition=\"0\"");
    metric(c, id, "ringlog_partition_log_end_offset", &labels).map(|v| v as i64)
}

/// Issue 17 acceptance 4 (KIP-903): a broker restarted with its partition data
/// gone registers under a new broker epoch, which takes it out of every ISR, and
/// rejoins only once it holds everything the leader committed. Every broker here
/// is also a controller voter, and a voter cannot rejoin without its metadata log
/// (next test), so only `cluster-metadata/` is kept — as with Kafka's separate
/// `metadata.log.dir`. Its catch-up is slowed (one batch per fetch) so the ISR is
/// seen while it is behind.
#[test]
fn a_broker_restarted_on_an_empty_disk_rejoins_the_isr_only_once_caught_up() {
    let mut c = Cluster::start(3, SETTINGS);
    ok(&create_topic(&c, "e", 1, 3, &[]));
    // About one record per batch: 3,000 batches to fetch again.
    let value = "x".repeat(1000);
    let lines: String = (0..3000).map(|i| format!("{i:05}{value}\n")).collect();
    ok(&c.broker(2).cli_input(
        &["produce", "--topic", "e", "--batch-size", "1024"],
        lines.as_bytes(),
    ));
    assert_eq!(isr(&c, 1, "e"), [vec![1, 2, 3]]);
    let epoch_of = |c: &Cluster, id: i64| {
        c.describe(1)["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"].as_i64() == Some(id))
            .and_then(|b| b["epoch"].as_u64())
            .unwrap()
    };
    let before = epoch_of(&c, 3);

    c.kill9(3);
    for entry in std::fs::read_dir(c.data_dir(3)).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "cluster-metadata") {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    c.spawn_with(3, &["--set", "replica.fetch.max.bytes=1"]);

    // Its new registration takes it out of the ISR; it comes back in only once
    // it holds all 3,000 records.
    let mut seen_out = false;
    let (_, took) = c.wait_for(Duration::from_secs(60), "broker 3 back in the ISR", |c| {
        let in_isr = isr(c, 1, "e")[0].contains(&3);
        if !in_isr {
            seen_out = true;
            return None;
        }
        if !seen_out {
            return None;
        }
        // Read after the ISR: if it was in the ISR then, it had everything then.
        let end = log_end_metric(c, 3, "e");
        assert_eq!(
            end,
            Some(3000),
            "broker 3 is back in the ISR holding {end:?} of 3000"
        );
        Some(())
    });
    c.broker_mut(3).wait_ready();
    assert!(epoch_of(&c, 3) > before, "no new broker epoch");
    println!("broker 3 rejoined the ISR {took:?} after its empty-disk restart");

    for id in 1..=3 {
        c.broker_mut(id).terminate();
    }
    let leader = stored_batches(&c.data_dir(1).join("e-0"));
    assert_eq!(record_count(&leader), 3000);
    assert!(stored_batches(&c.data_dir(3).join("e-0")) == leader);
    drop(c);
}
