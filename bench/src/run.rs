//! Running a workload: one glommio executor per producer and per consumer (each its
//! own thread, pinned with `--cores`), open-loop pacing, per-thread histograms merged
//! at the end (nothing shared on the hot path but a few relaxed counters), and the
//! verdict of the consumers' verification.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use ringlog::client::partitioner::partition_for_key;
use ringlog::client::{
    Client, ClientError, Consumer, ConsumerConfig, Delivery, Producer, ProducerConfig, StartOffset,
};

use crate::config::{Mode, Protocol, RunConfig};
use crate::cpu::{CpuMeter, CpuUse};
use crate::progress::Progress;
use crate::record::{Header, RecordMaker};
use crate::summary::{Host, Latency, Percentiles, Records, Sample, Summary, Throughput};
use crate::verify::{group_verdict, Verifier};

/// How often a paced producer sends what has come due.
const TICK: Duration = Duration::from_micros(100);
/// Longest latency a histogram holds, µs (10 minutes; the issue asks for ≥ 60 s).
pub const HISTOGRAM_MAX_US: u64 = 600_000_000;
/// Consumers give up when nothing arrives for this long after the producers finished.
const DRAIN_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a consumer's fetch may wait at the broker.
const FETCH_MAX_WAIT_MS: u32 = 100;
/// How often the main thread samples counters.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// io_memory of each bench executor: the bench does no file I/O.
const EXECUTOR_IO_MEMORY: usize = 512 << 10;

mod kafka;

/// A finished run: its summary and the merged histograms (for `.hgrm` files).
pub struct Outcome {
    pub summary: Summary,
    pub produce: Option<Histogram<u64>>,
    pub e2e: Option<Histogram<u64>>,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds")
}

/// State every thread of the run sees.
struct Shared {
    config: RunConfig,
    partitions: i32,
    /// Distinguishes this run's records from earlier runs' in the same topic.
    run_tag: u32,
    epoch: Instant,
    /// The wall clock at `epoch`, ms since the Unix epoch.
    epoch_unix_ms: i64,
    /// Set by the first thread through the start barrier.
    start: OnceLock<Instant>,
    sent: AtomicU64,
    acked: AtomicU64,
    /// Acked (or, with acks=0, sent) records due after the warm-up.
    measured: AtomicU64,
    errors: AtomicU64,
    first_error: OnceLock<String>,
    /// Per consumer group.
    consumed: Vec<AtomicU64>,
    consumed_measured: AtomicU64,
    /// When a consumer last received records, µs after the epoch.
    last_consumed_us: AtomicU64,
    /// Records each group must receive; `u64::MAX` until the producers are done.
    expected: AtomicU64,
    producers_done: AtomicUsize,
    /// When the last producer finished, µs after the epoch.
    producers_end_us: AtomicU64,
    consumers_done: AtomicUsize,
    /// Produce p99 so far, µs: the highest any producer reported.
    p99_so_far_us: AtomicU64,
    abort: AtomicBool,
}

impl Shared {
    fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }
    fn measure_from(&self) -> Instant {
        self.start() + Duration::from_secs_f64(self.config.warmup_s)
    }
    /// A producer is done: the run's produce window ends at the last one.
    fn producer_finished(&self) {
        let end_us = (Instant::now() - self.epoch).as_micros() as u64;
        self.producers_end_us.fetch_max(end_us, Relaxed);
        self.producers_done.fetch_add(1, Relaxed);
    }

    /// The partitions consumer `member` of a group reads: `p % consumers == member`
    /// (a static assignment, the same for both protocols).
    fn assigned(&self, member: usize) -> Vec<i32> {
        (0..self.partitions)
            .filter(|p| *p as usize % self.config.consumers == member)
            .collect()
    }

    fn error(&self, e: impl ToString) {
        self.errors.fetch_add(1, Relaxed);
        let _ = self.first_error.set(e.to_string());
    }
}

/// What a producer thread hands back.
struct ProducerResult {
    hist: Histogram<u64>,
}

/// What a consumer thread hands back.
struct ConsumerResult {
    group: usize,
    hist: Histogram<u64>,
    verifier: Verifier,
}

/// Runs `config` to the end and returns its figures. `show_progress` prints a live
/// line on stderr.
pub fn run(config: &RunConfig, show_progress: bool) -> anyhow::Result<Outcome> {
    config.validate().map_err(|e| anyhow!(e))?;
    let partitions = match config.protocol {
        Protocol::Native => prepare_topic(config)?,
        Protocol::Kafka => kafka::prepare_topic(config)?,
    };
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let producers = if config.mode == Mode::Consume {
        0
    } else {
        config.producers
    };
    let consumers = if config.mode == Mode::Produce {
        0
    } else {
        config.consumers * config.consumer_groups
    };
    let shared = Arc::new(Shared::new(config, partitions, started_unix_s));
    let barrier = Arc::new(Barrier::new(producers + consumers + 1));
    let (producer_handles, consumer_handles) =
        spawn_workers(config, &shared, &barrier, producers, consumers)?;
    barrier.wait();
    let (timeline, cpu) = watch(config, &shared, producers, consumers, show_progress);

    let mut produce_hist = new_histogram();
    for h in producer_handles {
        let r = h.join("producer")?;
        produce_hist.add(&r.hist).context("merge histograms")?;
    }
    let mut e2e_hist = new_histogram();
    let mut groups: Vec<Vec<Verifier>> = (0..config.consumer_groups).map(|_| Vec::new()).collect();
    for h in consumer_handles {
        let r = h.join("consumer")?;
        e2e_hist.add(&r.hist).context("merge histograms")?;
        groups[r.group].push(r.verifier);
    }
    let verification = verify(config, &shared, &groups);
    let (records, window) = measured(config, &shared);
    let elapsed_s = window.as_secs_f64().max(1e-9);
    let records_per_s = records as f64 / elapsed_s;
    let summary = Summary {
        config: RunConfig {
            partitions,
            ..config.clone()
        },
        host: Host::this(),
        started_unix_s,
        elapsed_s,
        throughput: Throughput {
            records_per_s,
            mb_per_s: records_per_s * config.message_size as f64 / 1e6,
        },
        latency_us: Latency {
            produce: Percentiles::of(&produce_hist),
            e2e: Percentiles::of(&e2e_hist),
        },
        records: Records {
            sent: shared.sent.load(Relaxed),
            acked: shared.acked.load(Relaxed),
            consumed: groups.iter().flatten().map(Verifier::consumed).sum(),
            errors: shared.errors.load(Relaxed),
        },
        cpu,
        timeline,
        verification,
    };
    Ok(Outcome {
        produce: (!produce_hist.is_empty()).then_some(produce_hist),
        e2e: (!e2e_hist.is_empty()).then_some(e2e_hist),
        summary,
    })
}

impl Shared {
    /// The counters of a run that starts now.
    fn new(config: &RunConfig, partitions: i32, started_unix_s: u64) -> Self {
        Self {
            config: config.clone(),
            partitions,
            run_tag: (started_unix_s as u32 ^ std::process::id()) & 0xffff,
            epoch: Instant::now(),
            epoch_unix_ms: ringlog::time::now_ms(),
            start: OnceLock::new(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: OnceLock::new(),
            consumed: (0..config.consumer_groups)
                .map(|_| AtomicU64::new(0))
                .collect(),
            consumed_measured: AtomicU64::new(0),
            last_consumed_us: AtomicU64::new(0),
            expected: AtomicU64::new(match config.mode {
                Mode::Consume => config.messages.unwrap_or(u64::MAX),
                _ => u64::MAX,
            }),
            producers_done: AtomicUsize::new(0),
            producers_end_us: AtomicU64::new(0),
            consumers_done: AtomicUsize::new(0),
            p99_so_far_us: AtomicU64::new(0),
            abort: AtomicBool::new(false),
        }
    }
}

/// A run's producers and consumers, started.
type Workers = (Vec<Worker<ProducerResult>>, Vec<Worker<ConsumerResult>>);

/// Starts every consumer, then every producer, each on its own executor (native)
/// or thread (Kafka), pinned as the config says; each waits at `barrier`.
fn spawn_workers(
    config: &RunConfig,
    shared: &Arc<Shared>,
    barrier: &Arc<Barrier>,
    producers: usize,
    consumers: usize,
) -> anyhow::Result<Workers> {
    let placement = |i: usize| match &config.cores {
        Some(cores) => Placement::Fixed(cores[i % cores.len()]),
        None => Placement::Unbound,
    };
    let core = |i: usize| config.cores.as_ref().map(|c| c[i % c.len()]);
    let mut consumer_handles = Vec::new();
    for i in 0..consumers {
        let (shared, barrier) = (shared.clone(), barrier.clone());
        let (group, member) = (i / config.consumers, i % config.consumers);
        let name = format!("bench-consumer-{group}-{member}");
        let handle = match config.protocol {
            Protocol::Native => Worker::Glommio(
                LocalExecutorBuilder::new(placement(producers + i))
                    .name(&name)
                    .io_memory(EXECUTOR_IO_MEMORY)
                    .spawn(move || consume(shared, barrier, group, member))
                    .map_err(|e| anyhow!("start a consumer executor: {e}"))?,
            ),
            Protocol::Kafka => {
                Worker::Thread(kafka::spawn(name, core(producers + i), move || {
                    kafka::consume(shared, barrier, group, member)
                })?)
            }
        };
        consumer_handles.push(handle);
    }
    let mut producer_handles = Vec::new();
    for id in 0..producers {
        let (shared, barrier) = (shared.clone(), barrier.clone());
        let name = format!("bench-producer-{id}");
        let handle = match config.protocol {
            Protocol::Native => Worker::Glommio(
                LocalExecutorBuilder::new(placement(id))
                    .name(&name)
                    .io_memory(EXECUTOR_IO_MEMORY)
                    .spawn(move || produce(shared, barrier, id))
                    .map_err(|e| anyhow!("start a producer executor: {e}"))?,
            ),
            Protocol::Kafka => Worker::Thread(kafka::spawn(name, core(id), move || {
                kafka::produce(shared, barrier, id)
            })?),
        };
        producer_handles.push(handle);
    }
    Ok((producer_handles, consumer_handles))
}

/// Samples the rate once a second and shows progress until every consumer is
/// done; once the producers are, tells the consumers how many records to expect.
/// Also reads both sides' CPU use from the end of the warm-up to the end of the
/// producers (of the consumers, in consume mode).
fn watch(
    config: &RunConfig,
    shared: &Shared,
    producers: usize,
    consumers: usize,
    show_progress: bool,
) -> (Vec<Sample>, Option<CpuUse>) {
    let meter = CpuMeter::new(&config.bootstrap_server, config.broker_pid);
    let mut cpu_from = None;
    let mut cpu = None;
    let start = shared.start();
    let mut progress = Progress::new(show_progress, config);
    let mut timeline = Vec::new();
    let mut last_sample = (start, 0u64);
    let mut expected_set = config.mode == Mode::Consume;
    loop {
        std::thread::sleep(SAMPLE_EVERY);
        let count = match config.mode {
            Mode::Consume => shared.consumed[0].load(Relaxed),
            _ => shared.acked.load(Relaxed),
        };
        let now = Instant::now();
        if cpu_from.is_none() && now >= shared.measure_from() {
            cpu_from = Some(meter.sample());
        }
        if now - last_sample.0 >= Duration::from_secs(1) {
            let secs = (now - last_sample.0).as_secs_f64();
            timeline.push(Sample {
                t_s: (now - start).as_secs_f64(),
                records_per_s: (count - last_sample.1) as f64 / secs,
            });
            last_sample = (now, count);
        }
        progress.update(now - start, count, shared.p99_so_far_us.load(Relaxed));
        if !expected_set && shared.producers_done.load(Relaxed) == producers {
            // Every record acknowledged must reach every group; with acks=0 every
            // record sent without an error.
            let expected = if config.acks == 0 {
                shared.sent.load(Relaxed)
            } else {
                shared.acked.load(Relaxed)
            };
            shared.expected.store(expected, Relaxed);
            expected_set = true;
            if let Some(from) = &cpu_from {
                cpu = Some(meter.between(from, &meter.sample()));
            }
        }
        if expected_set && shared.consumers_done.load(Relaxed) == consumers {
            break;
        }
    }
    if config.mode == Mode::Consume {
        cpu = cpu_from.map(|from| meter.between(&from, &meter.sample()));
    }
    progress.finish();
    (timeline, cpu)
}

/// What the consumers' verifiers found, group by group, and the client errors.
fn verify(config: &RunConfig, shared: &Shared, groups: &[Vec<Verifier>]) -> Vec<String> {
    let mut verification = Vec::new();
    if config.mode != Mode::Produce {
        let expected = shared.expected.load(Relaxed);
        for (g, members) in groups.iter().enumerate() {
            if expected == u64::MAX {
                // Consume mode by duration: no count to hold the group to.
                let consumed: u64 = members.iter().map(|m| m.consumed()).sum();
                verification.extend(group_verdict(g, members, consumed));
            } else {
                verification.extend(group_verdict(g, members, expected));
            }
        }
    }
    if let Some(e) = shared.first_error.get() {
        verification.push(format!(
            "{} client errors, the first: {e}",
            shared.errors.load(Relaxed)
        ));
    }
    verification
}

/// The records counted after the warm-up and the window they took.
fn measured(config: &RunConfig, shared: &Shared) -> (u64, Duration) {
    let measure_from = shared.measure_from();
    let (records, end_us) = match config.mode {
        Mode::Consume => (
            shared.consumed_measured.load(Relaxed),
            shared.last_consumed_us.load(Relaxed),
        ),
        _ => (
            shared.measured.load(Relaxed),
            shared.producers_end_us.load(Relaxed),
        ),
    };
    let end = shared.epoch + Duration::from_micros(end_us);
    (records, end.saturating_duration_since(measure_from))
}

/// A producer or consumer: a glommio executor (native) or a thread with a tokio
/// runtime (Kafka).
enum Worker<T: Send + 'static> {
    Glommio(glommio::ExecutorJoinHandle<anyhow::Result<T>>),
    Thread(std::thread::JoinHandle<anyhow::Result<T>>),
}

impl<T: Send + 'static> Worker<T> {
    fn join(self, what: &str) -> anyhow::Result<T> {
        match self {
            Worker::Glommio(h) => h.join().map_err(|e| anyhow!("{what} executor: {e}"))?,
            Worker::Thread(h) => h.join().map_err(|_| anyhow!("{what} thread panicked"))?,
        }
    }
}

/// Creates the topic unless it exists; returns its partition count.
fn prepare_topic(config: &RunConfig) -> anyhow::Result<i32> {
    let c = config.clone();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("bench-setup")
        .io_memory(EXECUTOR_IO_MEMORY)
        .spawn(move || async move {
            let client = Client::connect(&c.bootstrap_server).await?;
            match client.topic(&c.topic, false).await {
                Ok(info) => return Ok(info.partitions.len() as i32),
                Err(ClientError::UnknownTopic(_)) if c.mode != Mode::Consume => {}
                Err(e) => return Err(anyhow::Error::new(e)),
            }
            client
                .create_topic(&c.topic, c.partitions, c.replication_factor, vec![])
                .await
                .with_context(|| format!("create topic {}", c.topic))?;
            let info = client.topic(&c.topic, false).await?;
            Ok(info.partitions.len() as i32)
        })
        .map_err(|e| anyhow!("start the set-up executor: {e}"))?
        .join()
        .map_err(|e| anyhow!("set-up executor: {e}"))?
}

/// One producer: sends its share of the records, paced or as fast as acks allow.
async fn produce(
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    id: usize,
) -> anyhow::Result<ProducerResult> {
    let c = &shared.config;
    let client = Client::connect(&c.bootstrap_server).await;
    let producer = client.map(|client| {
        Producer::new(
            client,
            ProducerConfig {
                acks: c.acks,
                batch_bytes: c.batch_size,
                linger: Duration::from_millis(c.linger_ms),
                max_in_flight: c.max_in_flight,
                auto_create_topics: false,
                ..ProducerConfig::default()
            },
        )
    });
    // Everyone passes the barrier, even a producer that could not connect, so the
    // run ends with its error instead of hanging.
    barrier.wait();
    let result = match producer {
        Ok(p) => send_all(&shared, &p, id).await,
        Err(e) => {
            shared.error(&e);
            Ok(new_histogram())
        }
    };
    shared.producer_finished();
    Ok(ProducerResult { hist: result? })
}

/// One producer's records: which are due when (open loop at `--rate`, or as fast
/// as they are taken), and what each one is. Shared by both protocols' senders.
struct Schedule {
    rate: Option<f64>,
    limit: Option<u64>,
    start: Instant,
    end: Instant,
    maker: RecordMaker,
    producer_tag: u32,
    id: u64,
    partitions: u64,
    keys: Option<u64>,
    key_state: u64,
    epoch: Instant,
    /// The wall clock at `epoch`, ms since the Unix epoch: record timestamps are
    /// taken from the due time, not from a second clock read per record.
    epoch_unix_ms: i64,
    ticks: u64,
}

/// One record to send.
struct Outgoing {
    key: Option<Bytes>,
    partition: i32,
    value: Vec<u8>,
    /// When it was due: latency is measured from here.
    intended: Instant,
}

/// Where a record goes and when it was due; its value is written apart.
struct Addressed {
    key: Option<Bytes>,
    partition: i32,
    intended: Instant,
    /// CreateTime of the record: `intended` on the wall clock.
    timestamp_ms: i64,
}

impl Schedule {
    fn new(shared: &Shared, id: usize) -> Self {
        let c = &shared.config;
        let n = c.producers as u64;
        let start = shared.start();
        Self {
            rate: c.rate.map(|r| r as f64 / n as f64),
            limit: c.messages.map(|m| m / n + u64::from((id as u64) < m % n)),
            start,
            end: start + Duration::from_secs_f64(c.duration_s),
            maker: RecordMaker::new(c.message_size, c.payload, c.seed ^ (id as u64) << 32),
            producer_tag: shared.run_tag << 16 | id as u32,
            id: id as u64,
            partitions: shared.partitions as u64,
            keys: c.keys,
            key_state: c.seed ^ 0x5DEE_CE66 ^ id as u64,
            epoch: shared.epoch,
            epoch_unix_ms: shared.epoch_unix_ms,
            ticks: 0,
        }
    }

    fn paced(&self) -> bool {
        self.rate.is_some()
    }

    /// The records due now, as `sent..due`; `None` once the run is over.
    fn due(&self, sent: u64, now: Instant) -> Option<std::ops::Range<u64>> {
        match self.limit {
            Some(m) if sent >= m => return None,
            None if now >= self.end => return None,
            _ => {}
        }
        let due = match self.rate {
            Some(r) => ((now - self.start).as_secs_f64() * r) as u64 + 1,
            None => sent + 256,
        };
        Some(sent..self.limit.map_or(due, |m| due.min(m)))
    }

    /// Record `seq`, stamped with when it was due.
    fn record(&mut self, seq: u64) -> Outgoing {
        let mut value = Vec::new();
        let a = self.record_into(seq, &mut value);
        Outgoing {
            key: a.key,
            partition: a.partition,
            value,
            intended: a.intended,
        }
    }

    /// Record `seq` with its value written into `value` (reused by the caller).
    fn record_into(&mut self, seq: u64, value: &mut Vec<u8>) -> Addressed {
        let intended = match self.rate {
            Some(r) => self.start + Duration::from_secs_f64(seq as f64 / r),
            None => Instant::now(),
        };
        let (key, partition) = match self.keys {
            Some(keys) => {
                self.key_state ^= self.key_state << 13;
                self.key_state ^= self.key_state >> 7;
                self.key_state ^= self.key_state << 17;
                let key = format!("key-{}", self.key_state % keys).into_bytes();
                let p = partition_for_key(&key, self.partitions as usize) as i32;
                (Some(Bytes::from(key)), p)
            }
            None => (None, ((seq + self.id) % self.partitions) as i32),
        };
        self.maker.make_into(
            Header {
                producer: self.producer_tag,
                partition: partition as u32,
                seq,
                sent_ns: (intended - self.epoch).as_nanos() as u64,
            },
            value,
        );
        let since_epoch = intended.saturating_duration_since(self.epoch).as_millis();
        Addressed {
            key,
            partition,
            intended,
            timestamp_ms: self.epoch_unix_ms + i64::try_from(since_epoch).unwrap_or(0),
        }
    }

    /// When the next paced tick starts.
    fn next_tick(&mut self) -> Instant {
        self.ticks += 1;
        self.start + TICK * u32::try_from(self.ticks).unwrap_or(u32::MAX)
    }
}

/// Counts an acknowledged record and, past the warm-up, its latency.
fn on_ack(shared: &Shared, hist: &mut Histogram<u64>, intended: Instant) {
    on_batch_ack(shared, hist, &[intended], Instant::now());
}

/// Counts the records of one acknowledged batch (due at `intended`, acked at
/// `acked_at`) and, past the warm-up, their latencies.
fn on_batch_ack(
    shared: &Shared,
    hist: &mut Histogram<u64>,
    intended: &[Instant],
    acked_at: Instant,
) {
    shared.acked.fetch_add(intended.len() as u64, Relaxed);
    let measure_from = shared.measure_from();
    let measured = intended.iter().filter(|i| **i >= measure_from).count() as u64;
    if measured == 0 {
        return;
    }
    shared.measured.fetch_add(measured, Relaxed);
    if shared.config.measures_acks() {
        for i in intended.iter().filter(|i| **i >= measure_from) {
            let us = (acked_at.saturating_duration_since(*i).as_micros() as u64).max(1);
            let _ = hist.record(us);
        }
    }
}

/// Publishes this producer's p99 so far for the progress line.
fn publish_p99(shared: &Shared, hist: &Histogram<u64>) {
    if !hist.is_empty() {
        // Several producers: the progress line shows the worst one's.
        shared
            .p99_so_far_us
            .fetch_max(hist.value_at_quantile(0.99), Relaxed);
    }
}

async fn send_all(
    shared: &Arc<Shared>,
    producer: &Producer,
    id: usize,
) -> anyhow::Result<Histogram<u64>> {
    let topic = shared.config.topic.clone();
    let mut schedule = Schedule::new(shared, id);
    let hist = Rc::new(RefCell::new(new_histogram()));
    let mut acks = BatchAcks::new(shared.clone(), hist.clone());
    let mut value = Vec::new();
    let mut last_publish = shared.start();
    let mut seq = 0u64;
    'run: loop {
        let now = Instant::now();
        let Some(due) = schedule.due(seq, now) else {
            break;
        };
        if shared.abort.load(Relaxed) {
            break;
        }
        for s in due {
            let r = schedule.record_into(s, &mut value);
            match producer
                .send_slices_at(
                    &topic,
                    Some(r.partition),
                    r.key.as_deref(),
                    Some(&value),
                    &[],
                    Some(r.timestamp_ms),
                )
                .await
            {
                Ok(delivery) => {
                    shared.sent.fetch_add(1, Relaxed);
                    acks.add(delivery, r.intended);
                }
                Err(e) => {
                    // The connection is gone or the topic refused: stop rather than
                    // spin through the remaining records with the same error.
                    shared.error(e);
                    break 'run;
                }
            }
            seq = s + 1;
        }
        // The open batch's waiter starts now, not when the next record comes:
        // its latencies are taken when it is acknowledged.
        acks.flush();
        if now - last_publish >= Duration::from_millis(500) {
            publish_p99(shared, &hist.borrow());
            last_publish = now;
        }
        if schedule.paced() {
            producer.send_open_batches().await;
            let next = schedule.next_tick();
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
    acks.flush();
    if let Err(e) = producer.flush().await {
        shared.error(e);
    }
    // Let the waiters woken by the last acks record their latencies.
    while acks.pending.get() > 0 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let h = hist.borrow().clone();
    Ok(h)
}

/// Waits for acknowledgements a batch at a time: records sent in a row into the
/// same batch share one waiter task, which stamps them all when the batch is
/// acknowledged (a task per record cost the bench more than the broker spent).
struct BatchAcks {
    shared: Arc<Shared>,
    hist: Rc<RefCell<Histogram<u64>>>,
    /// The last record's delivery and when each record of its run was due.
    open: Option<(Delivery, Vec<Instant>)>,
    /// Waiters not yet finished.
    pending: Rc<std::cell::Cell<u64>>,
}

impl BatchAcks {
    fn new(shared: Arc<Shared>, hist: Rc<RefCell<Histogram<u64>>>) -> Self {
        Self {
            shared,
            hist,
            open: None,
            pending: Rc::new(std::cell::Cell::new(0)),
        }
    }

    fn add(&mut self, delivery: Delivery, intended: Instant) {
        match &mut self.open {
            Some((last, due)) if last.same_batch(&delivery) => {
                *last = delivery;
                due.push(intended);
            }
            _ => {
                self.flush();
                self.open = Some((delivery, vec![intended]));
            }
        }
    }

    /// Starts the waiter of the records gathered so far.
    fn flush(&mut self) {
        let Some((delivery, due)) = self.open.take() else {
            return;
        };
        let (shared, hist, pending) =
            (self.shared.clone(), self.hist.clone(), self.pending.clone());
        pending.set(pending.get() + 1);
        glommio::spawn_local(async move {
            match delivery.wait().await {
                Ok(_) => on_batch_ack(&shared, &mut hist.borrow_mut(), &due, Instant::now()),
                Err(e) => shared.error(e),
            }
            pending.set(pending.get() - 1);
        })
        .detach();
    }
}

/// One consumer: member `member` of group `group` reads partitions `p` with
/// `p % consumers == member` (a static assignment: consumer groups arrive with their
/// own issue), verifies every record and records end-to-end latency.
async fn consume(
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    group: usize,
    member: usize,
) -> anyhow::Result<ConsumerResult> {
    let c = &shared.config;
    let mine = shared.assigned(member);
    let start_at = match c.mode {
        Mode::Consume => StartOffset::Earliest,
        _ => StartOffset::Latest,
    };
    let consumer = if mine.is_empty() {
        Ok(None)
    } else {
        match Client::connect(&c.bootstrap_server).await {
            Ok(client) => Consumer::assign(
                client,
                &c.topic,
                Some(mine),
                start_at,
                ConsumerConfig {
                    max_wait_ms: FETCH_MAX_WAIT_MS,
                    ..ConsumerConfig::default()
                },
            )
            .await
            .map(Some),
            Err(e) => Err(e),
        }
    };
    // Positions are taken before the barrier, so in e2e mode nothing produced is
    // missed.
    barrier.wait();
    let mut result = ConsumerResult {
        group,
        hist: new_histogram(),
        verifier: Verifier::new(),
    };
    match consumer {
        Ok(Some(mut consumer)) => {
            if let Err(e) = consume_all(&shared, &mut consumer, &mut result).await {
                shared.error(e);
            }
        }
        // More members than partitions: this one has nothing to read.
        Ok(None) => {}
        Err(e) => shared.error(e),
    }
    shared.consumers_done.fetch_add(1, Relaxed);
    Ok(result)
}

/// Whether a consumer is done: its group has what it expects, the run was aborted,
/// or (consume mode by duration) time is up. An error when nothing has arrived for
/// `DRAIN_IDLE_TIMEOUT` after the producers finished.
fn consumer_done(shared: &Shared, group: usize, last_progress: Instant) -> anyhow::Result<bool> {
    let c = &shared.config;
    let expected = shared.expected.load(Relaxed);
    if shared.consumed[group].load(Relaxed) >= expected || shared.abort.load(Relaxed) {
        return Ok(true);
    }
    let now = Instant::now();
    let end = shared.start() + Duration::from_secs_f64(c.duration_s);
    if c.mode == Mode::Consume && c.messages.is_none() && now >= end {
        return Ok(true);
    }
    if expected != u64::MAX && now - last_progress > DRAIN_IDLE_TIMEOUT {
        bail!(
            "group {group}: nothing arrived for {} s after the producers finished",
            DRAIN_IDLE_TIMEOUT.as_secs()
        );
    }
    Ok(false)
}

/// Accounts records that arrived together at `arrived`: (partition, offset, value).
/// Consuming a set number of records, the group's members claim their share so the
/// group stops at exactly that many; each record taken is verified and, in e2e
/// mode, its latency recorded.
fn account(
    shared: &Shared,
    out: &mut ConsumerResult,
    arrived: Instant,
    records: &[(i32, i64, Option<&[u8]>)],
) {
    let c = &shared.config;
    let now_ns = (arrived - shared.epoch).as_nanos() as u64;
    shared.last_consumed_us.fetch_max(now_ns / 1000, Relaxed);
    let expected = shared.expected.load(Relaxed);
    let claimed = shared.consumed[out.group].fetch_add(records.len() as u64, Relaxed);
    let take = if c.mode == Mode::Consume && expected != u64::MAX {
        expected.saturating_sub(claimed).min(records.len() as u64) as usize
    } else {
        records.len()
    };
    let measure_from = shared.measure_from();
    let mut measured = 0;
    for (partition, offset, value) in &records[..take] {
        let Some(h) = out.verifier.check(*partition, *offset, *value) else {
            continue;
        };
        let sent = shared.epoch + Duration::from_nanos(h.sent_ns);
        if c.mode == Mode::E2e && sent >= measure_from {
            let _ = out
                .hist
                .record((now_ns.saturating_sub(h.sent_ns) / 1000).max(1));
        }
        if arrived >= measure_from {
            measured += 1;
        }
    }
    if out.group == 0 {
        shared.consumed_measured.fetch_add(measured, Relaxed);
    }
}

async fn consume_all(
    shared: &Shared,
    consumer: &mut Consumer,
    out: &mut ConsumerResult,
) -> anyhow::Result<()> {
    let mut last_progress = Instant::now();
    while !consumer_done(shared, out.group, last_progress)? {
        let records = consumer.poll().await?;
        if records.is_empty() {
            continue;
        }
        last_progress = Instant::now();
        let batch: Vec<(i32, i64, Option<&[u8]>)> = records
            .iter()
            .map(|r| (r.partition, r.offset, r.value.as_deref()))
            .collect();
        account(shared, out, last_progress, &batch);
    }
    Ok(())
}
