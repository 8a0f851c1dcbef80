#!/usr/bin/env python3
"""confluent-kafka (librdkafka) against ringlog's Kafka listener, driven by
tests/kafka_confluent.rs. Prints "OK <figures>" or fails with a message.

kafka_confluent_client.py ADDR

- AdminClient creates a 6-partition topic, describes it, alters its retention.ms
  (IncrementalAlterConfigs; segment.bytes is refused), and at the end deletes it;
- three idempotent, acks=all producers (compression none, lz4, zstd) send 2,000
  keyed records each;
- three consumers of one group read it; one leaves midway (a rebalance), the other
  two finish; every record must be seen, each producer's records in order within a
  partition (a record may come twice around the rebalance: at least once), and a
  member never reads a partition's offsets backwards (it resumes where it
  committed: the commit and the OffsetFetch after it share a connection);
- CreatePartitions grows the topic to 8 (the new partitions take writes) and refuses
  to shrink it.
"""
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic)

ADDR = sys.argv[1]
TOPIC = "cf"
PER_PRODUCER = 2000
CODECS = ["none", "lz4", "zstd"]
TOTAL = PER_PRODUCER * len(CODECS)
PROCESS_S = 0.0005   # a consumer's work per record


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


admin = AdminClient({"bootstrap.servers": ADDR})
for _, f in admin.create_topics([NewTopic(TOPIC, num_partitions=6, replication_factor=1)]).items():
    f.result(timeout=30)
md = admin.list_topics(topic=TOPIC, timeout=30)
if len(md.topics[TOPIC].partitions) != 6:
    fail("describe: %s" % md.topics[TOPIC].partitions)
for _, f in admin.describe_configs([ConfigResource("topic", TOPIC)]).items():
    configs = f.result(timeout=30)
    if "retention.ms" not in configs:
        fail("describe_configs: %s" % sorted(configs))

# IncrementalAlterConfigs: a SET shows in DescribeConfigs as the topic's own
# value; a config fixed at creation is refused and changes nothing.
retention = ConfigEntry("retention.ms", "3600000",
                        incremental_operation=AlterConfigOpType.SET)
res = ConfigResource("topic", TOPIC, incremental_configs=[retention])
for _, f in admin.incremental_alter_configs([res]).items():
    f.result(timeout=30)
for _, f in admin.describe_configs([ConfigResource("topic", TOPIC)]).items():
    entry = f.result(timeout=30)["retention.ms"]
    if entry.value != "3600000" or entry.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
        fail("retention.ms after incremental_alter_configs: %s (source %s)"
             % (entry.value, entry.source))
segment = ConfigEntry("segment.bytes", "1048576",
                      incremental_operation=AlterConfigOpType.SET)
res = ConfigResource("topic", TOPIC, incremental_configs=[segment])
for _, f in admin.incremental_alter_configs([res]).items():
    try:
        f.result(timeout=30)
        fail("segment.bytes was altered")
    except KafkaException as e:
        if "segment.bytes" not in str(e):
            fail("segment.bytes refusal: %s" % e)

for codec in CODECS:
    errors = []
    p = Producer({"bootstrap.servers": ADDR, "enable.idempotence": True, "acks": "all",
                  "compression.type": codec, "linger.ms": 5})
    for i in range(PER_PRODUCER):
        p.produce(TOPIC, key="k%d" % (i % 97), value="%s-%d" % (codec, i),
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    if p.flush(30) != 0 or errors:
        fail("produce %s: %d errors, first %s" % (codec, len(errors), errors[:1]))

lock = threading.Lock()
seen = {}            # value -> times
order_ok = [True]
backwards = []       # (member, partition, last offset, next offset)
stop = threading.Event()


def member(name, leave_after):
    c = Consumer({"bootstrap.servers": ADDR, "group.id": "cfg", "auto.offset.reset": "earliest",
                  "enable.auto.commit": True, "auto.commit.interval.ms": 500,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([TOPIC])
    last = {}        # (partition, codec) -> last index seen
    offsets = {}     # partition -> last offset this member consumed
    got = 0
    deadline = time.time() + 60
    while not stop.is_set() and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            fail("%s: %s" % (name, m.error()))
        codec, i = m.value().decode().rsplit("-", 1)
        i = int(i)
        key = (m.partition(), codec)
        # A member resumes a partition where it committed: auto-commit stores each
        # polled offset and commits on revoke, before the rejoin's OffsetFetch on
        # the same connection, which must see it.
        prev = offsets.get(m.partition())
        if prev is not None and m.offset() <= prev:
            with lock:
                backwards.append((name, m.partition(), prev, m.offset()))
        offsets[m.partition()] = m.offset()
        # Order within a partition: never backwards, except a restart of the
        # partition after a rebalance (records since the last commit come again).
        if key in last and i <= last[key]:
            with lock:
                seen_before = seen.get(m.value().decode(), 0) > 0
            if not seen_before:
                order_ok[0] = False
        last[key] = i
        with lock:
            seen[m.value().decode()] = seen.get(m.value().decode(), 0) + 1
            if len(seen) >= TOTAL:
                stop.set()
        got += 1
        # Work takes time, so the member leaving finds the others mid-stream with
        # offsets polled but not yet auto-committed (the rebalance commits them).
        time.sleep(PROCESS_S)
        if leave_after and got >= leave_after:
            break
    c.close()  # commits and leaves the group


threads = [threading.Thread(target=member, args=("m%d" % i, 500 if i == 0 else None)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
expected = {"%s-%d" % (c, i) for c in CODECS for i in range(PER_PRODUCER)}
missing = expected - set(seen)
if missing:
    fail("%d records never consumed, e.g. %s" % (len(missing), sorted(missing)[:3]))
if backwards:
    fail("a member's offsets went backwards after a rebalance (member, partition, "
         "last, next): %s" % backwards[:5])
if not order_ok[0]:
    fail("a producer's records went backwards within a partition")
duplicates = sum(n - 1 for n in seen.values())

# Growing the topic: 8 partitions, the new ones writable; shrinking is refused.
for _, f in admin.create_partitions([NewPartitions(TOPIC, 8)]).items():
    f.result(timeout=30)
if len(admin.list_topics(topic=TOPIC, timeout=30).topics[TOPIC].partitions) != 8:
    fail("create_partitions did not grow the topic to 8")
p = Producer({"bootstrap.servers": ADDR, "enable.idempotence": True, "acks": "all"})
p.produce(TOPIC, value="in-new-partition", partition=7)
if p.flush(30) != 0:
    fail("cannot produce to a new partition")
try:
    for _, f in admin.create_partitions([NewPartitions(TOPIC, 4)]).items():
        f.result(timeout=30)
    fail("shrinking a topic was accepted")
except Exception as e:  # KafkaException(INVALID_PARTITIONS)
    if "INVALID_PARTITIONS" not in str(e):
        fail("shrinking refused with an unexpected error: %s" % e)

for _, f in admin.delete_topics([TOPIC]).items():
    f.result(timeout=30)
if TOPIC in admin.list_topics(timeout=30).topics:
    fail("topic still listed after delete")
print("OK consumed=%d duplicates=%d" % (len(seen), duplicates))
