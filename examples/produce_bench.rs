//! Produce throughput and produce -> ack latency against a running broker, with the
//! native client library (the full bench binary is `ringlog-bench`, a later issue).
//!
//! ```text
//! cargo run --release --example produce_bench -- ADDR TOPIC PARTITIONS ACKS RECORD_BYTES SECONDS [RATE_PER_S]
//! ```
//! Without RATE_PER_S it produces as fast as it can (throughput); with it, it sends at
//! that fixed rate, in one request per partition every `TICK`, and reports latency
//! measured from each record's intended send time (coordinated omission corrected).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use ringlog::client::{Client, Producer, ProducerConfig};

/// Fixed-rate mode sends what is due once per tick: the batching delay a producer
/// with `linger.ms` = 0.25 would add under this load.
const TICK: Duration = Duration::from_micros(250);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!(
            "usage: produce_bench ADDR TOPIC PARTITIONS ACKS RECORD_BYTES SECONDS [RATE_PER_S]"
        );
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let topic = args[2].clone();
    let partitions: i32 = args[3].parse().expect("PARTITIONS");
    let acks: i8 = args[4].parse().expect("ACKS");
    let record_bytes: usize = args[5].parse().expect("RECORD_BYTES");
    let seconds: u64 = args[6].parse().expect("SECONDS");
    let rate: Option<u64> = args.get(7).map(|r| r.parse().expect("RATE_PER_S"));
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(1))
        .spawn(move || async move {
            let client = Client::connect(&addr).await.expect("connect");
            let _ = client.create_topic(&topic, partitions, 1, vec![]).await;
            let config = ProducerConfig {
                acks,
                linger: if rate.is_some() {
                    Duration::ZERO
                } else {
                    Duration::from_millis(2)
                },
                batch_bytes: 256 * 1024,
                max_in_flight: 64,
                ..ProducerConfig::default()
            };
            let producer = Producer::new(client, config);
            let hist = Rc::new(RefCell::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
            ));
            let value = Bytes::from(vec![b'x'; record_bytes]);
            let start = Instant::now();
            let end = start + Duration::from_secs(seconds);
            let mut sent = 0u64;
            let mut ticks = 0u64;
            while Instant::now() < end {
                // Open loop: each tick sends every record due by now, each stamped with
                // its intended send time, as one request per partition; then it waits
                // for the next tick. A tick that runs late sends more records, not
                // more requests, so falling behind cannot snowball into tiny requests.
                let due = match rate {
                    Some(r) => (start.elapsed().as_secs_f64() * r as f64) as u64,
                    None => sent + 256,
                };
                while sent < due {
                    let intended = match rate {
                        Some(r) => start + Duration::from_secs_f64(sent as f64 / r as f64),
                        None => Instant::now(),
                    };
                    let p = (sent % partitions as u64) as i32;
                    let d = producer
                        .send(&topic, Some(p), None, Some(value.clone()), &[])
                        .await
                        .expect("send");
                    let h = hist.clone();
                    glommio::spawn_local(async move {
                        if d.wait().await.is_ok() {
                            let us = intended.elapsed().as_micros() as u64;
                            let _ = h.borrow_mut().record(us.max(1));
                        }
                    })
                    .detach();
                    sent += 1;
                }
                if rate.is_some() {
                    producer.send_open_batches().await;
                    ticks += 1;
                    let next = start + TICK * u32::try_from(ticks).unwrap_or(u32::MAX);
                    let now = Instant::now();
                    if next > now {
                        glommio::timer::sleep(next - now).await;
                    } else {
                        glommio::yield_if_needed().await;
                    }
                } else {
                    glommio::yield_if_needed().await;
                }
            }
            producer.flush().await.expect("flush");
            let secs = start.elapsed().as_secs_f64();
            let h = hist.borrow();
            println!(
                "records={sent} partitions={partitions} acks={acks} record_bytes={record_bytes} \
                 rate={:.0} rec/s throughput={:.1} MB/s latency_us p50={} p99={} p99.9={} max={}",
                sent as f64 / secs,
                sent as f64 * record_bytes as f64 / secs / 1e6,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        })
        .unwrap()
        .join()
        .unwrap();
}
