//! Consumer-group figures against a running broker (BENCHMARKS.md):
//!
//! ```text
//! group_bench ADDR rebalance MEMBERS    # time from a member's join to every member on the new generation
//! group_bench ADDR commits SECONDS      # offset commits per second to one coordinator
//! group_bench ADDR consume RECORDS      # consume throughput: 1 consumer vs a 3-member group
//! ```

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringlog::client::group::commit_offsets;
use ringlog::client::{
    Client, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset, Producer,
    ProducerConfig, StartOffset,
};
use ringlog::schema::wire::OffsetCommitPartitionT;

fn on_executor<T: Send + 'static, Fut: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> Fut + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("executor thread")
    })
}

fn group_config(group: &str, topic: &str) -> GroupConfig {
    let mut c = GroupConfig::new(group, &[topic]);
    c.session_timeout = Duration::from_secs(10);
    c.heartbeat_interval = Duration::from_millis(500);
    c.auto_commit = None;
    c.offset_reset = OffsetReset::Earliest;
    c.fetch.max_wait_ms = 50;
    c
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: group_bench ADDR rebalance MEMBERS | commits SECONDS | consume RECORDS");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let n: u64 = args[3].parse().expect("a number");
    match args[2].as_str() {
        "rebalance" => rebalance(addr, n as usize),
        "commits" => commits(addr, n),
        "consume" => consume(addr, n),
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}

/// MEMBERS-1 members form a stable group on a 100-partition topic; one more joins;
/// measures until every member polls with the new generation.
fn rebalance(addr: String, members: usize) {
    let topic = format!("rebalance-{members}");
    let group = format!("rebalance-{members}-{}", std::process::id());
    {
        let (addr, topic) = (addr.clone(), topic.clone());
        on_executor(move || async move {
            let c = Client::connect(&addr).await.unwrap();
            let _ = c.create_topic(&topic, 100, 1, vec![]).await;
        })
        .join()
        .unwrap();
    }
    let generation: Arc<Vec<AtomicI32>> =
        Arc::new((0..members).map(|_| AtomicI32::new(-1)).collect());
    let reached_us: Arc<Vec<AtomicU64>> =
        Arc::new((0..members).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let start_member = |i: usize| {
        let (addr, topic, group) = (addr.clone(), topic.clone(), group.clone());
        let (generation, reached_us, stop) = (generation.clone(), reached_us.clone(), stop.clone());
        on_executor(move || async move {
            let c = Client::connect(&addr).await.unwrap();
            let mut m = GroupConsumer::join(c, group_config(&group, &topic))
                .await
                .unwrap();
            while stop.load(SeqCst) == 0 {
                let g = m.generation();
                if generation[i].swap(g, SeqCst) != g {
                    reached_us[i].store(epoch.elapsed().as_micros() as u64, SeqCst);
                }
                let _ = m.poll().await.unwrap();
            }
            m.close().await.unwrap();
        })
    };
    let mut handles: Vec<_> = (0..members - 1).map(start_member).collect();
    let settled = |want: usize| {
        let gens: Vec<i32> = generation
            .iter()
            .take(want)
            .map(|g| g.load(SeqCst))
            .collect();
        gens.iter().all(|g| *g >= 0 && *g == gens[0])
    };
    while !settled(members - 1) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = generation[0].load(SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    let t0 = epoch.elapsed().as_micros() as u64;
    handles.push(start_member(members - 1));
    while !(settled(members) && generation[0].load(SeqCst) > before) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t1 = reached_us
        .iter()
        .map(|r| r.load(SeqCst))
        .max()
        .unwrap_or(t0);
    println!(
        "members={members} partitions=100 rebalance_ms={:.1} (join of member {members} to every member on generation {})",
        (t1.saturating_sub(t0)) as f64 / 1000.0,
        generation[0].load(SeqCst)
    );
    stop.store(1, SeqCst);
    for h in handles {
        h.join().unwrap();
    }
}

/// Commits of one partition's offset, 64 in flight, for SECONDS: commits per second
/// (each durable before it is acknowledged).
fn commits(addr: String, seconds: u64) {
    on_executor(move || async move {
        let c = Client::connect(&addr).await.unwrap();
        let _ = c.create_topic("commit-bench", 1, 1, vec![]).await;
        let group = format!("commit-bench-{}", std::process::id());
        let done = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let end = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..64i64 {
            let (c, group, done) = (c.clone(), group.clone(), done.clone());
            tasks.push(glommio::spawn_local(async move {
                let mut offset = t;
                while Instant::now() < end {
                    let p = vec![OffsetCommitPartitionT {
                        topic: "commit-bench".into(),
                        partition: 0,
                        offset,
                        metadata: None,
                    }];
                    commit_offsets(&c, &group, "", -1, p).await.unwrap();
                    done.set(done.get() + 1);
                    offset += 64;
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "commits={} seconds={secs:.1} commits_per_s={:.0} (64 in flight, one coordinator)",
            done.get(),
            done.get() as f64 / secs
        );
    })
    .join()
    .unwrap();
}

/// RECORDS 1 KiB records on 6 partitions, read by one consumer, then by a group of 3.
fn consume(addr: String, records: u64) {
    let topic = format!("consume-bench-{}", std::process::id());
    {
        let (addr, topic) = (addr.clone(), topic.clone());
        on_executor(move || async move {
            let c = Client::connect(&addr).await.unwrap();
            c.create_topic(&topic, 6, 1, vec![]).await.unwrap();
            let p = Producer::new(
                c,
                ProducerConfig {
                    acks: 1,
                    batch_bytes: 256 * 1024,
                    ..ProducerConfig::default()
                },
            );
            let value = Bytes::from(vec![b'x'; 1024]);
            for i in 0..records {
                let _ = p
                    .send(&topic, Some((i % 6) as i32), None, Some(value.clone()), &[])
                    .await
                    .unwrap();
            }
            p.flush().await.unwrap();
        })
        .join()
        .unwrap();
    }
    let single = {
        let (addr, topic) = (addr.clone(), topic.clone());
        on_executor(move || async move {
            let c = Client::connect(&addr).await.unwrap();
            let mut consumer = Consumer::assign(
                c,
                &topic,
                None,
                StartOffset::Earliest,
                ConsumerConfig::default(),
            )
            .await
            .unwrap();
            let start = Instant::now();
            let mut n = 0;
            while n < records {
                n += consumer.poll().await.unwrap().len() as u64;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .join()
        .unwrap()
    };
    let total = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(3));
    let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (addr, topic, total, barrier, started) = (
                addr.clone(),
                topic.clone(),
                total.clone(),
                barrier.clone(),
                started.clone(),
            );
            on_executor(move || async move {
                let c = Client::connect(&addr).await.unwrap();
                barrier.wait();
                let group = format!("consume-bench-{}", std::process::id());
                let mut m = GroupConsumer::join(c, group_config(&group, &topic))
                    .await
                    .unwrap();
                started.lock().unwrap().get_or_insert_with(Instant::now);
                while total.load(SeqCst) < records {
                    let got = m.poll().await.unwrap().len() as u64;
                    total.fetch_add(got, SeqCst);
                }
                m.close().await.unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let secs = started
        .lock()
        .unwrap()
        .map_or(1.0, |s| s.elapsed().as_secs_f64());
    let group_rate = total.load(SeqCst) as f64 / secs;
    println!(
        "records={records} single_consumer={single:.0} rec/s ({:.0} MB/s) group_of_3={group_rate:.0} rec/s ({:.0} MB/s), measured from the group's first assignment",
        single * 1024.0 / 1e6,
        group_rate * 1024.0 / 1e6
    );
}
