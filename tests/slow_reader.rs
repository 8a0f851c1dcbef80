//! Issue 13 §1: a client that stops reading never freezes its shard, on either
//! listener, and is cut off after `connections.max.idle.ms`.
//!
//! In a private network namespace with socket buffers capped at 64 KiB, a raw client
//! pipelines fetches of megabytes of data and never reads the answers; meanwhile a
//! well-behaved client produces to another partition of the same (only) shard.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::netns::in_private_netns;
use common::{client, metric_sum, metrics, ok, Broker};
use ringlog::client::{Client, Producer, ProducerConfig};
use ringlog::schema::frame::encode_frame;
use ringlog::schema::wire::{BodyT, EnvelopeT, FetchPartitionT, FetchRequestT};

/// Data the stalled reader asks for, far more than the socket buffers hold.
const BIG_BYTES: usize = 50 << 20;
const RECORD_BYTES: usize = 1000;
/// Fetches the stalled reader pipelines (1 MiB each).
const STALLED_FETCHES: usize = 40;
/// Produces timed while the reader is stalled.
const PRODUCES: usize = 300;
const P99_LIMIT: Duration = Duration::from_millis(50);
/// The broker's `connections.max.idle.ms` in this test.
const IDLE_MS: u64 = 2000;

const SMALL_BUFFERS: &[(&str, &str)] = &[
    ("net/ipv4/tcp_rmem", "4096 16384 65536"),
    ("net/ipv4/tcp_wmem", "4096 16384 65536"),
];

#[derive(Clone, Copy, Debug)]
enum Listener {
    Native,
    Kafka,
}

#[test]
fn a_stopped_native_reader_does_not_freeze_its_shard() {
    if in_private_netns(SMALL_BUFFERS, || stalled_reader_scenario(Listener::Native)).is_none() {
        eprintln!("SKIPPED: a_stopped_native_reader_does_not_freeze_its_shard");
    }
}

#[test]
fn a_stopped_kafka_reader_does_not_freeze_its_shard() {
    if in_private_netns(SMALL_BUFFERS, || stalled_reader_scenario(Listener::Kafka)).is_none() {
        eprintln!("SKIPPED: a_stopped_kafka_reader_does_not_freeze_its_shard");
    }
}

fn stalled_reader_scenario(listener: Listener) {
    let root = tempfile::tempdir().unwrap();
    let idle = format!("connections.max.idle.ms={IDLE_MS}");
    let broker = Broker::start(&root.path().join("data"), 1, &["--set", &idle]);
    ok(&broker.cli(&["topic", "create", "big", "--partitions", "1"]));
    ok(&broker.cli(&["topic", "create", "other", "--partitions", "1"]));
    let line = "x".repeat(RECORD_BYTES - 1) + "\n";
    let input = line.repeat(BIG_BYTES / RECORD_BYTES);
    ok(&broker.cli_input(&["produce", "--topic", "big"], input.as_bytes()));

    // The reader that never reads.
    let mut stalled = match listener {
        Listener::Native => native_fetches(&broker.addr),
        Listener::Kafka => kafka_fetches(&broker.kafka_addr),
    };
    // The broker has started answering: its answers wait in our receive queue.
    let deadline = Instant::now() + Duration::from_secs(20);
    while queued_bytes(&stalled) < 8 * 1024 {
        assert!(Instant::now() < deadline, "the broker never answered");
        std::thread::sleep(Duration::from_millis(5));
    }

    let addr = broker.addr.clone();
    let latencies = client(move || async move {
        let connect = async { Some(Client::connect(&addr).await.unwrap()) };
        let timeout = async {
            glommio::timer::sleep(Duration::from_secs(5)).await;
            None
        };
        let c = futures_lite::future::or(connect, timeout)
            .await
            .expect("connecting (metadata) not answered within 5 s");
        let producer = Producer::new(c, ProducerConfig::default());
        let mut latencies = Vec::with_capacity(PRODUCES);
        for i in 0..PRODUCES {
            let started = Instant::now();
            let value = Bytes::from(format!("other-{i}"));
            let acked = async {
                let d = producer
                    .send("other", Some(0), None, Some(value), &[])
                    .await
                    .unwrap();
                producer.flush().await.unwrap();
                Some(d.wait().await.unwrap())
            };
            let timeout = async {
                glommio::timer::sleep(Duration::from_secs(5)).await;
                None
            };
            let acked = futures_lite::future::or(acked, timeout).await;
            assert!(acked.is_some(), "produce {i} not answered within 5 s");
            latencies.push(started.elapsed());
        }
        latencies
    });
    let mut sorted = latencies.clone();
    sorted.sort();
    let p99 = sorted[sorted.len() * 99 / 100];
    eprintln!(
        "{listener:?}: produce while a reader is stalled: p50 {:?}, p99 {p99:?}, max {:?}",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
    assert!(p99 < P99_LIMIT, "{listener:?}: p99 {p99:?}");

    // After connections.max.idle.ms without progress the broker closes the stalled
    // connection: reading now gets what the kernel still held, then end of stream,
    // far short of what was asked for.
    // (The producer's connection may outlive its executor: count down from here.)
    let open = connections_open(&broker.admin_addr, listener);
    let started = Instant::now();
    while connections_open(&broker.admin_addr, listener) >= open {
        assert!(
            started.elapsed() < Duration::from_millis(IDLE_MS) + Duration::from_secs(20),
            "the stalled connection was never closed:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            // A reset after the broker dropped unsent data is an end too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the stalled connection: {e}"),
        }
    }
    assert!(
        got < STALLED_FETCHES << 20,
        "{listener:?}: the broker kept the whole backlog ({got} bytes)"
    );
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}

/// Bytes waiting in a socket's receive queue.
fn queued_bytes(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0);
    n as usize
}

/// Connections the broker has open on `listener`, from its metrics.
fn connections_open(admin: &str, listener: Listener) -> usize {
    let label = match listener {
        Listener::Native => "protocol=\"native\"",
        Listener::Kafka => "protocol=\"kafka\"",
    };
    metric_sum(&metrics(admin), "ringlog_connections", &[label]) as usize
}

fn native_fetches(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    for i in 0..STALLED_FETCHES {
        let env = EnvelopeT {
            correlation_id: i as u64 + 1,
            body: BodyT::FetchRequest(Box::new(FetchRequestT {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                partitions: Some(vec![FetchPartitionT {
                    topic: "big".into(),
                    partition: 0,
                    offset: (i * 1000) as i64,
                    max_bytes: 1 << 20,
                }]),
            })),
        };
        s.write_all(&encode_frame(&env, &[])).unwrap();
    }
    s
}

fn kafka_fetches(addr: &str) -> TcpStream {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut conn = common::kafka::Conn::new(addr);
    for i in 0..STALLED_FETCHES {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("big")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset((i * 1000) as i64)
                    .with_partition_max_bytes(1 << 20)])]);
        let frame = conn.frame(ApiKey::Fetch, 11, &req);
        conn.stream.write_all(&frame).unwrap();
    }
    conn.stream
}
