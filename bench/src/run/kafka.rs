//! The bench's Kafka-protocol workers: producers and consumers on rskafka, a Kafka
//! client library in Rust, each on a tokio runtime of its own thread. The same
//! workload then measures ringlog's Kafka listener, or any Kafka-compatible broker,
//! beside the native protocol. They share the native workers' schedule, counters,
//! histograms and verification.
//!
//! rskafka has no consumer groups, so the bench's static assignment (member `i` of
//! `N` reads partitions `p % N == i`) is what both protocols use.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rskafka::chrono::DateTime;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tokio::sync::Semaphore;

use super::*;

/// Produce requests one producer keeps in flight.
const IN_FLIGHT_MAX: u32 = 64;
/// Largest fetch per partition request.
const FETCH_MAX_BYTES: i32 = 1 << 20;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start a tokio runtime")
}

async fn connect(bootstrap: &str) -> anyhow::Result<Client> {
    ClientBuilder::new(vec![bootstrap.to_string()])
        .build()
        .await
        .with_context(|| format!("connect to the Kafka listener at {bootstrap}"))
}

/// Creates the topic unless it exists; returns its partition count.
pub(super) fn prepare_topic(config: &RunConfig) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let client = connect(&config.bootstrap_server).await?;
        let find = |topics: Vec<rskafka::topic::Topic>| {
            topics
                .into_iter()
                .find(|t| t.name == config.topic)
                .map(|t| t.partitions.len() as i32)
        };
        if let Some(n) = find(client.list_topics().await?) {
            return Ok(n);
        }
        if config.mode == Mode::Consume {
            bail!("topic {} does not exist", config.topic);
        }
        client
            .controller_client()?
            .create_topic(
                &config.topic,
                config.partitions,
                config.replication_factor,
                30_000,
            )
            .await
            .with_context(|| format!("create topic {}", config.topic))?;
        find(client.list_topics().await?)
            .ok_or_else(|| anyhow!("topic {} not listed after creation", config.topic))
    })
}

/// Runs `f` on a new thread (pinned to `core` if given) with a tokio runtime.
pub(super) fn spawn<T: Send + 'static, Fut: std::future::Future<Output = anyhow::Result<T>>>(
    name: String,
    core: Option<usize>,
    f: impl FnOnce() -> Fut + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(id) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id });
            }
            let rt = runtime()?;
            tokio::task::LocalSet::new().block_on(&rt, f())
        })
        .context("start a worker thread")
}

async fn partition_clients(
    shared: &Shared,
    partitions: impl Iterator<Item = i32>,
) -> anyhow::Result<BTreeMap<i32, Arc<PartitionClient>>> {
    let client = connect(&shared.config.bootstrap_server).await?;
    let mut out = BTreeMap::new();
    for p in partitions {
        let pc = client
            .partition_client(shared.config.topic.clone(), p, UnknownTopicHandling::Retry)
            .await
            .with_context(|| format!("partition {p}"))?;
        out.insert(p, Arc::new(pc));
    }
    Ok(out)
}

pub(super) async fn produce(
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    id: usize,
) -> anyhow::Result<ProducerResult> {
    let clients = partition_clients(&shared, 0..shared.partitions).await;
    barrier.wait();
    let hist = match clients {
        Ok(clients) => send_all(&shared, clients, id).await,
        Err(e) => {
            shared.error(format!("{e:#}"));
            new_histogram()
        }
    };
    shared.producer_finished();
    Ok(ProducerResult { hist })
}

/// Sends what the schedule makes due, one produce request per partition per round,
/// at most `IN_FLIGHT_MAX` in flight.
async fn send_all(
    shared: &Arc<Shared>,
    clients: BTreeMap<i32, Arc<PartitionClient>>,
    id: usize,
) -> Histogram<u64> {
    let mut schedule = Schedule::new(shared, id);
    let hist = Rc::new(RefCell::new(new_histogram()));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX as usize));
    let mut last_publish = shared.start();
    let mut seq = 0u64;
    while let Some(due) = schedule.due(seq, Instant::now()) {
        if shared.abort.load(Relaxed) {
            break;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let now_ts = DateTime::from_timestamp_millis(now_ms).unwrap_or(DateTime::UNIX_EPOCH);
        let mut batches: BTreeMap<i32, (Vec<Record>, Vec<Instant>)> = BTreeMap::new();
        for s in due {
            let r = schedule.record(s);
            let entry = batches.entry(r.partition).or_default();
            entry.0.push(Record {
                key: r.key.map(|k| k.to_vec()),
                value: Some(r.value),
                headers: BTreeMap::new(),
                timestamp: now_ts,
            });
            entry.1.push(r.intended);
            seq = s + 1;
        }
        for (partition, (records, intended)) in batches {
            let Some(pc) = clients.get(&partition).cloned() else {
                continue;
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            shared.sent.fetch_add(records.len() as u64, Relaxed);
            let (shared, hist) = (shared.clone(), hist.clone());
            tokio::task::spawn_local(async move {
                match pc.produce(records, Compression::NoCompression).await {
                    Ok(_) => {
                        let mut h = hist.borrow_mut();
                        for t in intended {
                            on_ack(&shared, &mut h, t);
                        }
                    }
                    Err(e) => {
                        for _ in &intended {
                            shared.error(&e);
                        }
                    }
                }
                drop(permit);
            });
        }
        let now = Instant::now();
        if now - last_publish >= Duration::from_millis(500) {
            publish_p99(shared, &hist.borrow());
            last_publish = now;
        }
        if schedule.paced() {
            let next = schedule.next_tick();
            tokio::time::sleep_until(next.into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    // Every request answered.
    let _all = slots.acquire_many(IN_FLIGHT_MAX).await;
    let h = hist.borrow().clone();
    h
}

pub(super) async fn consume(
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    group: usize,
    member: usize,
) -> anyhow::Result<ConsumerResult> {
    let c = &shared.config;
    let mine = shared.assigned(member);
    let clients = partition_clients(&shared, mine.iter().copied()).await;
    // Start positions are taken before the barrier: nothing produced is missed.
    let positions = match &clients {
        Ok(clients) => {
            let at = if c.mode == Mode::Consume {
                OffsetAt::Earliest
            } else {
                OffsetAt::Latest
            };
            let mut pos = BTreeMap::new();
            for (p, pc) in clients {
                pos.insert(*p, pc.get_offset(at).await.context("list offsets")?);
            }
            Ok(pos)
        }
        Err(e) => Err(anyhow!("{e:#}")),
    };
    barrier.wait();
    let mut result = ConsumerResult {
        group,
        hist: new_histogram(),
        verifier: Verifier::new(),
    };
    match (clients, positions) {
        (Ok(clients), Ok(positions)) => {
            if let Err(e) = consume_all(&shared, &clients, positions, &mut result).await {
                shared.error(format!("{e:#}"));
            }
        }
        (Err(e), _) | (_, Err(e)) => shared.error(format!("{e:#}")),
    }
    shared.consumers_done.fetch_add(1, Relaxed);
    Ok(result)
}

/// Reads the partitions round-robin until the group has what it expects.
async fn consume_all(
    shared: &Shared,
    clients: &BTreeMap<i32, Arc<PartitionClient>>,
    mut positions: BTreeMap<i32, i64>,
    out: &mut ConsumerResult,
) -> anyhow::Result<()> {
    if clients.is_empty() {
        return Ok(());
    }
    // One fetch wait shared out over the partitions of a round.
    let wait = i32::try_from(FETCH_MAX_WAIT_MS / clients.len() as u32)
        .unwrap_or(1)
        .max(1);
    let mut last_progress = Instant::now();
    loop {
        for (p, pc) in clients {
            if consumer_done(shared, out.group, last_progress)? {
                return Ok(());
            }
            let (records, _hw) = pc
                .fetch_records(positions[p], 1..FETCH_MAX_BYTES, wait)
                .await
                .with_context(|| format!("fetch partition {p}"))?;
            let Some(last) = records.last() else {
                continue;
            };
            positions.insert(*p, last.offset + 1);
            last_progress = Instant::now();
            let batch: Vec<(i32, i64, Option<&[u8]>)> = records
                .iter()
                .map(|r| (*p, r.offset, r.record.value.as_deref()))
                .collect();
            account(shared, out, last_progress, &batch);
        }
    }
}
