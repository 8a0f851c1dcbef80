//! The batching producer: records accumulate per partition until the batch is full
//! (`batch_bytes`) or has waited `linger`; each closed batch becomes a produce request,
//! and up to `max_in_flight` requests are pipelined on the connection.
//!
//! Order: closed batches go through one FIFO queue to one sender task, which alone
//! waits for an in-flight slot and writes requests to the connection. So requests
//! leave in the order their batches closed (several tasks waiting on the slot
//! semaphore could be woken out of order), and the broker appends a connection's
//! batches in arrival order: per-partition order is kept.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use ringlog_schema::compression::Codec;
use ringlog_schema::wire::{BodyT, ErrorCode, PayloadRangeT, ProducePartitionT, ProduceRequestT};
use ringlog_schema::{BatchBuilder, RecordHeader};

use crate::client::cluster::unexpected;
use crate::client::partitioner::partition_for_key;
use crate::client::{Client, ClientError};
use crate::sync::signal::{Latch, Signal};
use crate::time::now_ms;

/// The producer's own tables, looked up once per record: FNV-1a instead of the
/// default SipHash (5 % of a small-record producer's CPU), since their keys (topic
/// names and partition numbers the application chose) need no flooding defence.
type TableMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

struct Fnv1a(u64);

impl Default for Fnv1a {
    /// FNV-1a's 64-bit offset basis.
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `batch.size` default.
pub const BATCH_BYTES_DEFAULT: usize = 256 * 1024;

/// Producer settings (Kafka's names in the docs).
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// `acks`: 0, 1 or -1 (all).
    pub acks: i8,
    /// `batch.size`: a partition's batch is sent once it reaches this many bytes.
    pub batch_bytes: usize,
    /// `linger.ms`: longest a record waits for its batch to fill.
    pub linger: Duration,
    /// `max.in.flight.requests`: produce requests awaiting an answer.
    pub max_in_flight: usize,
    /// Largest record accepted (the broker's `message.max.bytes` applies too).
    pub max_record_bytes: usize,
    /// Ask the broker to create missing topics.
    pub auto_create_topics: bool,
    /// `compression.type`: the codec of each batch's records.
    pub compression: Codec,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: -1,
            // Above Kafka's 16 KiB: each request is one append and one share of a
            // group commit, so bigger batches go further (BENCHMARKS.md, issue 15:
            // 16 KiB 315-372 MB/s, 64 KiB 751-910, 256 KiB 1,212-1,255).
            batch_bytes: BATCH_BYTES_DEFAULT,
            linger: Duration::from_millis(5),
            max_in_flight: 64,
            max_record_bytes: 1_000_000,
            auto_create_topics: true,
            compression: Codec::None,
        }
    }
}

/// The fate of one batch, shared by its records' [`Delivery`] handles.
#[derive(Default)]
struct BatchOutcome {
    done: Latch,
    result: RefCell<Option<Result<i64, ClientError>>>,
}

/// A record's acknowledgement: resolves to (partition, offset) once its batch is
/// committed. With acks = 0 the offset is -1.
pub struct Delivery {
    outcome: Rc<BatchOutcome>,
    index: i64,
    partition: i32,
}

impl Delivery {
    /// Whether `other` is a record of the same batch: both resolve at once, so a
    /// caller can wait for a batch instead of for each of its records.
    pub fn same_batch(&self, other: &Delivery) -> bool {
        Rc::ptr_eq(&self.outcome, &other.outcome)
    }

    pub async fn wait(self) -> Result<(i32, i64), ClientError> {
        self.outcome.done.wait().await;
        match &*self.outcome.result.borrow() {
            Some(Ok(base)) if *base >= 0 => Ok((self.partition, base + self.index)),
            Some(Ok(_)) => Ok((self.partition, -1)),
            Some(Err(e)) => Err(e.clone()),
            None => Err(ClientError::Disconnected("batch abandoned".into())),
        }
    }
}

struct Accumulator {
    builder: BatchBuilder,
    outcome: Rc<BatchOutcome>,
    /// Bumped each time the batch is sent, so a stale linger timer does nothing.
    generation: u64,
    linger_armed: bool,
}

impl Accumulator {
    fn new(compression: Codec) -> Self {
        let mut builder = BatchBuilder::new();
        builder.compression(compression);
        Self {
            builder,
            outcome: Rc::new(BatchOutcome::default()),
            generation: 0,
            linger_armed: false,
        }
    }
}

/// A batch closed and waiting for the sender task.
struct ClosedBatch {
    topic: Rc<str>,
    partition: i32,
    batch: Bytes,
    outcome: Rc<BatchOutcome>,
}

/// A topic's open batches and what the producer knows of it.
struct TopicBatches {
    name: Rc<str>,
    /// The client's `topics_generation` when `partition_count` was read.
    generation: u64,
    partition_count: usize,
    partitions: TableMap<i32, Accumulator>,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    /// By topic name; looked up by `&str`, so a record costs no allocation.
    topics: RefCell<TableMap<Rc<str>, TopicBatches>>,
    round_robin: Cell<usize>,
    /// Closed batches in closing order; bounded, so `send` waits when the sender
    /// falls behind.
    closed: flume::Sender<ClosedBatch>,
    outstanding: Cell<usize>,
    idle: Signal,
    first_error: RefCell<Option<ClientError>>,
    /// A metadata refresh after a stale leadership is under way (one at a time,
    /// however many in-flight batches met it).
    refreshing: Cell<bool>,
}

impl Inner {
    /// After a batch met a moved or unreachable leader: refreshes the topic's
    /// metadata so the next batches go to the new leader. The failed batch itself
    /// is not sent again: without producer ids and sequences a retry could store
    /// it twice or behind later batches.
    async fn follow_leadership(&self, topic: &str, result: &Result<i64, ClientError>) {
        let stale = matches!(result, Err(e) if e.is_stale_leadership());
        if stale && !self.refreshing.replace(true) {
            self.client.refresh_leadership(topic).await;
            self.refreshing.set(false);
        }
    }
}

/// A record on its way into a batch.
struct Record<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [RecordHeader],
    /// CreateTime, ms since the epoch; `None`: now.
    timestamp_ms: Option<i64>,
    size: usize,
}

/// What `try_push` did.
enum Pushed {
    Added(Added),
    /// The topic is not in the table, or the client's metadata changed since.
    UnknownTopic,
    /// The partition's open batch has no room: send it, then push again.
    FullFirst(i32),
}

struct Added {
    delivery: Delivery,
    topic: Rc<str>,
    /// The batch reached `batch.size`: send it now.
    full: bool,
    /// The batch's first record: arm its linger timer for this generation.
    arm: Option<u64>,
}

impl Inner {
    /// Adds `record` to its partition's batch with one lookup of the topic and no
    /// await (the common case), or says what must happen first.
    fn try_push(
        &self,
        topic: &str,
        partition: Option<i32>,
        record: &Record<'_>,
    ) -> Result<Pushed, ClientError> {
        let generation = self.client.topics_generation();
        let mut topics = self.topics.borrow_mut();
        let Some(t) = topics.get_mut(topic).filter(|t| t.generation == generation) else {
            return Ok(Pushed::UnknownTopic);
        };
        let count = t.partition_count;
        let partition = match partition {
            Some(p) if p >= 0 && (p as usize) < count => p,
            Some(p) => {
                return Err(ClientError::UnknownPartition {
                    topic: topic.to_string(),
                    partition: p,
                    count,
                })
            }
            None => match record.key {
                Some(k) => partition_for_key(k, count) as i32,
                None => {
                    let n = self.round_robin.get();
                    self.round_robin.set(n.wrapping_add(1));
                    (n % count.max(1)) as i32
                }
            },
        };
        let acc = t
            .partitions
            .entry(partition)
            .or_insert_with(|| Accumulator::new(self.config.compression));
        if !acc.builder.is_empty()
            && acc.builder.estimated_size() + record.size > self.config.batch_bytes
        {
            return Ok(Pushed::FullFirst(partition));
        }
        let timestamp = record.timestamp_ms.unwrap_or_else(now_ms);
        acc.builder
            .push_slices(record.key, record.value, record.headers, timestamp);
        let delivery = Delivery {
            outcome: acc.outcome.clone(),
            index: acc.builder.len() as i64 - 1,
            partition,
        };
        let full = acc.builder.estimated_size() >= self.config.batch_bytes;
        let arm = !full && !acc.linger_armed;
        if arm {
            acc.linger_armed = true;
        }
        Ok(Pushed::Added(Added {
            delivery,
            topic: t.name.clone(),
            full,
            arm: arm.then_some(acc.generation),
        }))
    }

    /// Runs `f` on the topic's shared name and the partition's batch; `None` when
    /// the producer has no batch there (then there is nothing to send).
    fn with_batch<R>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&Rc<str>, &mut Accumulator) -> R,
    ) -> Option<R> {
        let mut topics = self.topics.borrow_mut();
        let t = topics.get_mut(topic)?;
        let acc = t.partitions.get_mut(&partition)?;
        Some(f(&t.name, acc))
    }
}

/// A batching, pipelining producer. Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: Rc<Inner>,
}

impl Producer {
    pub fn new(client: Client, config: ProducerConfig) -> Self {
        let in_flight = config.max_in_flight.max(1);
        // One batch waits for the sender at most: the in-flight slots are the buffer.
        let (closed, queue) = flume::bounded(1);
        let inner = Rc::new(Inner {
            client,
            config,
            topics: RefCell::new(TableMap::default()),
            round_robin: Cell::new(0),
            closed,
            outstanding: Cell::new(0),
            idle: Signal::default(),
            first_error: RefCell::new(None),
            refreshing: Cell::new(false),
        });
        let slots = Rc::new(Semaphore::new(in_flight as u64));
        glommio::spawn_local(sender_loop(Rc::downgrade(&inner), queue, slots)).detach();
        Self { inner }
    }

    /// Adds a record to its partition's batch. `partition` overrides the partitioner
    /// (murmur2 of the key, else round-robin).
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: &[RecordHeader],
    ) -> Result<Delivery, ClientError> {
        self.send_slices(topic, partition, key.as_deref(), value.as_deref(), headers)
            .await
    }

    /// [`Producer::send`] from borrowed bytes: the key and value are copied into the
    /// batch, so a caller can reuse its buffers.
    pub async fn send_slices(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<Delivery, ClientError> {
        self.send_slices_at(topic, partition, key, value, headers, None)
            .await
    }

    /// [`Producer::send_slices`] with the record's timestamp (CreateTime, ms since
    /// the epoch) given, as Kafka's `ProducerRecord` may carry one; `None` stamps it
    /// with the time of the call. A caller that knows the time already spares a
    /// clock read per record.
    pub async fn send_slices_at(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        timestamp_ms: Option<i64>,
    ) -> Result<Delivery, ClientError> {
        let inner = &self.inner;
        inner.client.connection().check()?;
        let size = BatchBuilder::record_size_estimate_of(
            key.map(<[u8]>::len),
            value.map(<[u8]>::len),
            headers,
        );
        if size > inner.config.max_record_bytes {
            return Err(ClientError::RecordTooLarge {
                size,
                max: inner.config.max_record_bytes,
            });
        }
        let record = Record {
            key,
            value,
            headers,
            timestamp_ms,
            size,
        };
        let mut partition = partition;
        loop {
            match inner.try_push(topic, partition, &record)? {
                Pushed::Added(added) => return Ok(self.after_push(added).await),
                Pushed::UnknownTopic => self.refresh_topic(topic).await?,
                Pushed::FullFirst(p) => {
                    // Once per batch: the record goes to the next one, same partition.
                    partition = Some(p);
                    self.send_batch(topic, p).await;
                }
            }
        }
    }

    /// Sends the batch a record filled, or arms its linger timer.
    async fn after_push(&self, added: Added) -> Delivery {
        let Added {
            delivery,
            topic,
            full,
            arm,
        } = added;
        let partition = delivery.partition;
        if full {
            self.send_batch(&topic, partition).await;
        } else if let Some(generation) = arm {
            let me = self.clone();
            let linger = self.inner.config.linger;
            glommio::spawn_local(async move {
                // glommio polls a spawned task at once: a zero sleep would send the
                // batch right here with one record. Yielding instead lets the caller
                // keep adding records until it yields, as Kafka's `linger.ms` = 0
                // batches what accumulates while the sender is busy.
                if linger.is_zero() {
                    futures_lite::future::yield_now().await;
                } else {
                    glommio::timer::sleep(linger).await;
                }
                let due = me
                    .inner
                    .with_batch(&topic, partition, |_, a| {
                        a.generation == generation && !a.builder.is_empty()
                    })
                    .unwrap_or(false);
                if due {
                    me.send_batch(&topic, partition).await;
                }
            })
            .detach();
        }
        delivery
    }

    /// Reads the topic's partition count from the client (which asks the broker if
    /// it does not know the topic) into this producer's table.
    async fn refresh_topic(&self, topic: &str) -> Result<(), ClientError> {
        let inner = &self.inner;
        let info = inner
            .client
            .topic(topic, inner.config.auto_create_topics)
            .await?;
        let count = info.partitions.len();
        let generation = inner.client.topics_generation();
        let mut topics = inner.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(t) => {
                t.generation = generation;
                t.partition_count = count;
            }
            None => {
                topics.insert(
                    Rc::from(topic),
                    TopicBatches {
                        name: Rc::from(topic),
                        generation,
                        partition_count: count,
                        partitions: TableMap::default(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Closes the partition's batch and queues it for the sender task.
    async fn send_batch(&self, topic: &str, partition: i32) {
        let inner = &self.inner;
        let taken = inner.with_batch(topic, partition, |name, acc| {
            if acc.builder.is_empty() {
                return None;
            }
            acc.generation += 1;
            acc.linger_armed = false;
            let outcome = std::mem::take(&mut acc.outcome);
            Some((name.clone(), acc.builder.build(), outcome))
        });
        let Some((topic, built, outcome)) = taken.flatten() else {
            return;
        };
        inner.outstanding.set(inner.outstanding.get() + 1);
        let batch = match built {
            Ok(b) => b,
            Err(e) => {
                settle(inner, &outcome, Err(ClientError::Records(e.to_string())));
                return;
            }
        };
        let closed = ClosedBatch {
            topic,
            partition,
            batch,
            outcome,
        };
        // The queue is FIFO for waiting senders too, so batches keep closing order.
        if let Err(flume::SendError(closed)) = inner.closed.send_async(closed).await {
            settle(
                inner,
                &closed.outcome,
                Err(ClientError::Disconnected("producer closed".into())),
            );
        }
    }

    /// Sends every open batch now, without waiting for the answers (as if every
    /// linger had expired).
    pub async fn send_open_batches(&self) {
        let open: Vec<(Rc<str>, i32)> = self
            .inner
            .topics
            .borrow()
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|(_, a)| !a.builder.is_empty())
                    .map(|(p, _)| (t.name.clone(), *p))
            })
            .collect();
        for (topic, partition) in open {
            self.send_batch(&topic, partition).await;
        }
    }

    /// Sends every open batch and waits for all answers. Returns the first error any
    /// batch met since the producer started (or since the last flush).
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.send_open_batches().await;
        while self.inner.outstanding.get() > 0 {
            self.inner.idle.wait().await;
        }
        match self.inner.first_error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The sender task: takes closed batches in order and writes each as a produce
/// request once an in-flight slot is free. It is the only task that waits for a slot,
/// so requests leave in closing order. Ends when the producer is dropped.
async fn sender_loop(
    producer: Weak<Inner>,
    queue: flume::Receiver<ClosedBatch>,
    slots: Rc<Semaphore>,
) {
    while let Ok(closed) = queue.recv_async().await {
        let Ok(permit) = slots.clone().acquire_static_permit(1).await else {
            return;
        };
        let Some(inner) = producer.upgrade() else {
            return;
        };
        let ClosedBatch {
            topic,
            partition,
            batch,
            outcome,
        } = closed;
        let len = batch.len() as u32;
        let body = BodyT::ProduceRequest(Box::new(ProduceRequestT {
            acks: inner.config.acks,
            timeout_ms: 30_000,
            partitions: Some(vec![ProducePartitionT {
                topic: topic.to_string(),
                partition,
                records: Some(PayloadRangeT {
                    offset: 0,
                    length: len,
                }),
            }]),
        }));
        // Each partition's batches go to its leader.
        let conn = match inner.client.leader_connection(&topic, partition).await {
            Ok(c) => c,
            Err(e) => {
                drop(permit);
                let result = Err(e);
                inner.follow_leadership(&topic, &result).await;
                settle(&inner, &outcome, result);
                continue;
            }
        };
        if inner.config.acks == 0 {
            let r = conn.send_oneway(body, vec![batch]).await.map(|()| -1);
            drop(permit);
            settle(&inner, &outcome, r);
            continue;
        }
        let pending = match conn.send(body, vec![batch]).await {
            Ok(p) => p,
            Err(e) => {
                drop(permit);
                let result = Err(e);
                inner.follow_leadership(&topic, &result).await;
                settle(&inner, &outcome, result);
                continue;
            }
        };
        let answer = async move {
            let result = match pending.await_response().await {
                Ok(frame) => match frame.envelope.body {
                    BodyT::ProduceResponse(r) => {
                        match r.partitions.unwrap_or_default().into_iter().next() {
                            Some(p) if p.error == ErrorCode::NONE => Ok(p.base_offset),
                            Some(p) => Err(ClientError::broker(p.error, p.message)),
                            None => Err(ClientError::Protocol("empty produce answer".into())),
                        }
                    }
                    other => Err(unexpected(other)),
                },
                Err(e) => Err(e),
            };
            drop(permit);
            inner.follow_leadership(&topic, &result).await;
            settle(&inner, &outcome, result);
        };
        glommio::spawn_local(answer).detach();
    }
}

/// Records a batch's fate and wakes `flush` when nothing is outstanding.
fn settle(inner: &Inner, outcome: &BatchOutcome, result: Result<i64, ClientError>) {
    if let Err(e) = &result {
        inner
            .first_error
            .borrow_mut()
            .get_or_insert_with(|| e.clone());
    }
    *outcome.result.borrow_mut() = Some(result);
    outcome.done.set();
    let n = inner.outstanding.get().saturating_sub(1);
    inner.outstanding.set(n);
    if n == 0 {
        inner.idle.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_hash_is_fnv1a() {
        // Reference values of 64-bit FNV-1a.
        let hash = |bytes: &[u8]| {
            let mut h = Fnv1a::default();
            h.write(bytes);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
