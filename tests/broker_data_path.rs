//! Acceptance 2–4 of the broker issue: cross-shard produce and fetch, durability of
//! acks=all writes across `kill -9`, the clean-shutdown path, and long polling.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, cpu_ticks, ok, Broker};
use ringlog::client::{Client, Consumer, ConsumerConfig, Producer, ProducerConfig, StartOffset};
use ringlog::schema::wire::{ErrorCode, FetchPartitionT};

#[test]
fn produce_and_fetch_cross_shard_in_both_directions() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(&root.path().join("data"), 2, &[]);
    ok(&broker.cli(&["topic", "create", "x", "--partitions", "2"]));
    let addr = broker.addr.clone();
    let served_by = client(move || async move {
        let mut served_by = Vec::new();
        // Connections land on shards by the kernel's SO_REUSEPORT hash: open until
        // one connection is on each shard (64 tries: all on one shard is 2^-63).
        for _ in 0..64 {
            let c = Client::connect(&addr).await.unwrap();
            let shard = c.hello().await.unwrap().connection_shard;
            if served_by.contains(&shard) {
                continue;
            }
            served_by.push(shard);
            // Partition 0 lives on shard 0, partition 1 on shard 1: one of the two is
            // always on the other shard.
            let producer = Producer::new(c.clone(), ProducerConfig::default());
            for p in 0..2 {
                let value = format!("from-shard-{shard}-to-partition-{p}");
                let d = producer
                    .send("x", Some(p), None, Some(Bytes::from(value)), &[])
                    .await
                    .unwrap();
                producer.flush().await.unwrap();
                let (partition, offset) = d.wait().await.unwrap();
                assert_eq!(partition, p);
                let fetched = c
                    .fetch(
                        vec![FetchPartitionT {
                            topic: "x".into(),
                            partition: p,
                            offset,
                            max_bytes: 1 << 20,
                        }],
                        0,
                        1,
                        1 << 20,
                    )
                    .await
                    .unwrap();
                let (result, data) = &fetched[0];
                assert_eq!(result.error, ErrorCode::NONE);
                let batch = ringlog::schema::split_batches(data.clone())
                    .next()
                    .unwrap()
                    .unwrap();
                let records = batch.records().unwrap();
                let r = records.iter().find(|r| r.offset == offset).unwrap();
                assert_eq!(
                    r.value.as_deref(),
                    Some(format!("from-shard-{shard}-to-partition-{p}").as_bytes())
                );
            }
            if served_by.len() == 2 {
                break;
            }
        }
        served_by
    });
    assert_eq!(
        served_by.len(),
        2,
        "connections on both shards: {served_by:?}"
    );
}

/// (partition, offset, value) of an acknowledged record.
type Acked = (i32, i64, String);

/// An acks=all producer in this process, sending to `topic` until the broker goes
/// away; every acknowledged record is sent on the channel.
fn produce_until_gone(
    addr: String,
    topic: &'static str,
) -> (
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<Acked>,
) {
    let (acked_tx, acked_rx) = std::sync::mpsc::channel::<Acked>();
    let thread = std::thread::spawn(move || {
        client(move || async move {
            let c = Client::connect(&addr).await.unwrap();
            let config = ProducerConfig {
                acks: -1,
                linger: Duration::from_millis(1),
                max_in_flight: 16,
                ..ProducerConfig::default()
            };
            let producer = Producer::new(c, config);
            let mut i = 0u64;
            loop {
                let value = format!("v{i}");
                let d = match producer
                    .send(
                        topic,
                        None,
                        Some(Bytes::from(format!("k{i}"))),
                        Some(Bytes::from(value.clone())),
                        &[],
                    )
                    .await
                {
                    Ok(d) => d,
                    // The broker is gone.
                    Err(_) => return,
                };
                let tx = acked_tx.clone();
                glommio::spawn_local(async move {
                    if let Ok((p, o)) = d.wait().await {
                        let _ = tx.send((p, o, value));
                    }
                })
                .detach();
                i += 1;
                if i % 64 == 0 {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
            }
        })
    });
    (thread, acked_rx)
}

/// Waits for `n` acknowledgements.
fn wait_acks(rx: &std::sync::mpsc::Receiver<Acked>, n: usize) -> Vec<Acked> {
    let mut acked = Vec::new();
    while acked.len() < n {
        acked.push(
            rx.recv_timeout(Duration::from_secs(30))
                .expect("acks arrive"),
        );
    }
    acked
}

/// Asserts every acknowledged record is in `topic` at its offset.
fn assert_all_readable(broker: &Broker, topic: &'static str, acked: &[Acked]) {
    let addr = broker.addr.clone();
    let consumed = client(move || async move {
        let c = Client::connect(&addr).await.unwrap();
        let mut consumer = Consumer::assign(
            c,
            topic,
            None,
            StartOffset::Earliest,
            ConsumerConfig::default(),
        )
        .await
        .unwrap();
        let mut seen = std::collections::HashMap::new();
        loop {
            let records = consumer.poll().await.unwrap();
            if records.is_empty() {
                break;
            }
            for r in records {
                seen.insert(
                    (r.partition, r.offset),
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                );
            }
        }
        seen
    });
    for (p, o, v) in acked {
        assert_eq!(
            consumed.get(&(*p, *o)),
            Some(v),
            "acked record {p}/{o} lost or changed"
        );
    }
}

/// Asserts the broker's start opened every one of `partitions` logs clean.
fn assert_clean_start(broker: &Broker, partitions: usize) {
    let log = broker.log();
    assert_eq!(
        log.matches("clean=true segments_scanned=0").count(),
        partitions,
        "every partition opens clean, without a recovery scan:\n{log}"
    );
    assert!(!log.contains("clean=false"), "clean start:\n{log}");
}

#[test]
fn acked_writes_survive_kill_9_and_sigterm_skips_recovery() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut broker = Broker::start(&data, 2, &[]);
    ok(&broker.cli(&["topic", "create", "d", "--partitions", "4"]));

    // A producer acks=all in this process records every acknowledged record; the
    // broker is killed while it runs.
    let (producer_thread, acked_rx) = produce_until_gone(broker.addr.clone(), "d");
    let mut acked = wait_acks(&acked_rx, 20_000);
    broker.kill9();
    producer_thread.join().unwrap();
    acked.extend(acked_rx.try_iter());

    let mut broker = Broker::start(&data, 2, &[]);
    let log = broker.log();
    assert!(
        log.contains("clean=false"),
        "kill -9 leaves logs to recover:\n{log}"
    );
    assert_all_readable(&broker, "d", &acked);

    // SIGTERM: every log closes cleanly, and the next start scans nothing.
    assert!(broker.terminate().success());
    let broker = Broker::start(&data, 2, &[]);
    assert_clean_start(&broker, 4);
}

#[test]
fn sigterm_under_produce_load_keeps_every_acked_record_and_skips_recovery() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut broker = Broker::start(&data, 2, &[]);
    ok(&broker.cli(&["topic", "create", "t", "--partitions", "4"]));
    let (producer_thread, acked_rx) = produce_until_gone(broker.addr.clone(), "t");
    let mut acked = wait_acks(&acked_rx, 20_000);
    // Shut down while requests are in flight: in-flight ones finish (or fail), the
    // logs flush and close cleanly, the process exits 0.
    assert!(
        broker.terminate().success(),
        "clean exit:\n{}",
        broker.log()
    );
    producer_thread.join().unwrap();
    acked.extend(acked_rx.try_iter());
    let broker = Broker::start(&data, 2, &[]);
    assert_clean_start(&broker, 4);
    assert_all_readable(&broker, "t", &acked);
}

#[test]
fn long_poll_wakes_on_data_and_times_out_empty_without_spinning() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(&root.path().join("data"), 2, &[]);
    ok(&broker.cli(&["topic", "create", "lp", "--partitions", "2"]));
    let addr = broker.addr.clone();
    let pid = broker.pid();
    let (ticks_before, ticks_after, waited, empty_after) = client(move || async move {
        let c = Client::connect(&addr).await.unwrap();
        let fetch = |max_wait_ms: u32| {
            let c = c.clone();
            async move {
                let start = Instant::now();
                let r = c
                    .fetch(
                        (0..2)
                            .map(|p| FetchPartitionT {
                                topic: "lp".into(),
                                partition: p,
                                offset: 0,
                                max_bytes: 1 << 20,
                            })
                            .collect(),
                        max_wait_ms,
                        1,
                        1 << 20,
                    )
                    .await
                    .unwrap();
                let bytes: usize = r.iter().map(|(_, d)| d.len()).sum();
                (start.elapsed(), bytes)
            }
        };
        // Nothing arrives: the fetch returns empty at its max_wait_ms.
        let (empty_after, bytes) = fetch(300).await;
        assert_eq!(bytes, 0);
        // A record produced 1 s after the fetch started wakes it.
        let ticks_before = cpu_ticks(pid);
        let producer = Producer::new(c.clone(), ProducerConfig::default());
        let waiting = glommio::spawn_local(fetch(20_000));
        let result: Rc<RefCell<Option<(Duration, usize)>>> = Rc::default();
        let r2 = result.clone();
        let waiter = glommio::spawn_local(async move {
            *r2.borrow_mut() = Some(waiting.await);
        });
        glommio::timer::sleep(Duration::from_secs(1)).await;
        let ticks_after = cpu_ticks(pid);
        producer
            .send("lp", Some(1), None, Some(Bytes::from_static(b"late")), &[])
            .await
            .unwrap();
        producer.flush().await.unwrap();
        waiter.await;
        let (waited, bytes) = result.borrow_mut().take().unwrap();
        assert!(bytes > 0, "the waiting fetch got the record");
        (ticks_before, ticks_after, waited, empty_after)
    });
    assert!(empty_after >= Duration::from_millis(290), "{empty_after:?}");
    assert!(empty_after < Duration::from_secs(5), "{empty_after:?}");
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(
        waited < Duration::from_secs(10),
        "woken by the record, not the 20 s timeout: {waited:?}"
    );
    // The idle second cost the broker (almost) no CPU: no busy polling. Clock ticks
    // are 10 ms; a spinning shard would burn ~100 per second.
    assert!(
        ticks_after - ticks_before <= 10,
        "broker used {} ticks idle",
        ticks_after - ticks_before
    );
}

/// Partition 0 of `topic` from offset 0, up to 1 MiB, without waiting for data.
async fn fetch_partition_0(c: &Client, topic: &str) -> Bytes {
    let fetched = c
        .fetch(
            vec![FetchPartitionT {
                topic: topic.into(),
                partition: 0,
                offset: 0,
                max_bytes: 1 << 20,
            }],
            0,
            1,
            1 << 20,
        )
        .await
        .unwrap();
    fetched[0].1.clone()
}

#[test]
fn producer_batches_what_accumulates_before_it_yields_even_with_zero_linger() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(&root.path().join("data"), 1, &[]);
    ok(&broker.cli(&["topic", "create", "b", "--partitions", "1"]));
    let addr = broker.addr.clone();
    let batches = client(move || async move {
        let c = Client::connect(&addr).await.unwrap();
        let producer = Producer::new(
            c.clone(),
            ProducerConfig {
                linger: Duration::ZERO,
                ..ProducerConfig::default()
            },
        );
        // Two bursts of 100 records; the task yields only between them (Kafka's
        // linger.ms = 0 sends what accumulated while the application ran).
        let mut deliveries = Vec::new();
        for burst in 0..2 {
            for i in 0..100 {
                let value = Bytes::from(format!("burst-{burst}-record-{i}"));
                deliveries.push(
                    producer
                        .send("b", Some(0), None, Some(value), &[])
                        .await
                        .unwrap(),
                );
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        producer.flush().await.unwrap();
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.wait().await.unwrap(), (0, i as i64));
        }
        ringlog::schema::split_batches(fetch_partition_0(&c, "b").await)
            .map(|b| b.unwrap().records().unwrap().len())
            .collect::<Vec<_>>()
    });
    assert_eq!(batches, vec![100, 100], "one batch per burst");
}

#[test]
fn producer_stamps_records_with_the_given_timestamp_or_the_time_of_sending() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(&root.path().join("data"), 1, &[]);
    ok(&broker.cli(&["topic", "create", "ts", "--partitions", "1"]));
    let addr = broker.addr.clone();
    let (before, after, stamps) = client(move || async move {
        let c = Client::connect(&addr).await.unwrap();
        let producer = Producer::new(c.clone(), ProducerConfig::default());
        let before = ringlog::time::now_ms();
        let given = producer
            .send_slices_at("ts", Some(0), None, Some(b"given"), &[], Some(1_234_567))
            .await
            .unwrap();
        let now = producer
            .send_slices("ts", Some(0), None, Some(b"now"), &[])
            .await
            .unwrap();
        producer.flush().await.unwrap();
        let after = ringlog::time::now_ms();
        assert_eq!(given.wait().await.unwrap(), (0, 0));
        assert_eq!(now.wait().await.unwrap(), (0, 1));
        let stamps: Vec<i64> = ringlog::schema::split_batches(fetch_partition_0(&c, "ts").await)
            .flat_map(|b| b.unwrap().records().unwrap())
            .map(|r| r.timestamp)
            .collect();
        (before, after, stamps)
    });
    assert_eq!(stamps.len(), 2);
    assert_eq!(stamps[0], 1_234_567, "the timestamp the application gave");
    assert!(
        (before..=after).contains(&stamps[1]),
        "stamped at sending: {} not in [{before}, {after}]",
        stamps[1]
    );
}

#[test]
fn producer_keeps_send_order_when_requests_wait_for_an_in_flight_slot() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(&root.path().join("data"), 1, &[]);
    ok(&broker.cli(&["topic", "create", "o", "--partitions", "1"]));
    let addr = broker.addr.clone();
    client(move || async move {
        let c = Client::connect(&addr).await.unwrap();
        // One request in flight and a batch per record: nearly every batch waits for
        // the slot, some closed by the sending task, some by linger tasks.
        let producer = Producer::new(
            c,
            ProducerConfig {
                linger: Duration::ZERO,
                batch_bytes: 1,
                max_in_flight: 1,
                ..ProducerConfig::default()
            },
        );
        let mut deliveries = Vec::new();
        for i in 0..300 {
            let value = Bytes::from(format!("record-{i}"));
            deliveries.push(
                producer
                    .send("o", Some(0), None, Some(value), &[])
                    .await
                    .unwrap(),
            );
            if i % 7 == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        producer.flush().await.unwrap();
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.wait().await.unwrap(), (0, i as i64), "record {i}");
        }
    });
}
