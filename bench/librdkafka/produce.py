#!/usr/bin/env python3
"""Produce at the limit through a Kafka listener with librdkafka (confluent-kafka).

The native figures come from `ringlog-bench`; this is the same measurement through
the Kafka protocol with the client most Kafka users run (librdkafka, here through
its Python binding). It produces fixed-size records to one partition for a time,
waits for every delivery report, and prints one JSON object: records and bytes
acknowledged per second, the delivery latency percentiles (librdkafka's own
per-message latency: from produce() to the broker's acknowledgement), and the CPU
the client process and the broker (`--broker-pid`, read from /proc) used.

    produce.py --bootstrap 127.0.0.1:9092 --topic t --seconds 10 --size 1024

Only the time after `--warmup` counts. The topic must exist with one partition.
"""

import argparse
import json
import os
import sys
import time

import confluent_kafka
from confluent_kafka import KafkaException, Producer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (None if it is not readable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields after the command: state is [0], utime [11], stime [12].
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=1024, help="record value bytes")
    ap.add_argument("--acks", default="all")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16384, help="librdkafka batch.size")
    ap.add_argument("--broker-pid", type=int)
    args = ap.parse_args()
    if args.size < 1 or args.seconds <= 0 or args.warmup < 0:
        ap.error("--size must be at least 1 and --seconds above 0")

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": args.acks,
            "linger.ms": args.linger_ms,
            "batch.size": args.batch_size,
            "enable.idempotence": False,
            "queue.buffering.max.kbytes": 1048576,
            "queue.buffering.max.messages": 1000000,
        }
    )
    value = os.urandom(args.size)
    counting = False
    latencies = []
    acked = 0
    errors = []

    def delivered(err, msg):
        nonlocal acked
        if err is not None:
            if len(errors) < 10:
                errors.append(str(err))
            return
        if counting:
            acked += 1
            latencies.append(msg.latency())

    started = time.monotonic()
    measure_from = started + args.warmup
    end = measure_from + args.seconds
    cpu0 = broker0 = None
    t0 = None
    while True:
        now = time.monotonic()
        if not counting and now >= measure_from:
            producer.poll(0)
            counting = True
            t0 = now
            cpu0 = time.process_time()
            broker0 = cpu_seconds(args.broker_pid) if args.broker_pid else None
        if now >= end:
            break
        for _ in range(1000):
            try:
                producer.produce(args.topic, value, partition=0, on_delivery=delivered)
            except BufferError:
                producer.poll(0.001)
                break
        producer.poll(0)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    broker = cpu_seconds(args.broker_pid) if broker0 is not None else None
    # Reports for what was sent in the window still count; later sends do not.
    counting = False
    remaining = producer.flush(30)
    if errors:
        print(json.dumps({"errors": errors}), file=sys.stderr)
    if remaining:
        print(f"{remaining} records were not delivered within 30 s", file=sys.stderr)
    latencies.sort()
    ms = lambda s: None if s is None else round(s * 1000, 3)
    print(
        json.dumps(
            {
                "client": f"confluent-kafka {confluent_kafka.version()}"
                f" / librdkafka {confluent_kafka.libversion()[0]}",
                "acks": args.acks,
                "linger_ms": args.linger_ms,
                "batch_size": args.batch_size,
                "record_bytes": args.size,
                "seconds": round(elapsed, 3),
                "records_per_s": round(acked / elapsed),
                "mb_per_s": round(acked * args.size / elapsed / 1e6, 1),
                "latency_ms": {
                    "p50": ms(percentile(latencies, 50)),
                    "p99": ms(percentile(latencies, 99)),
                    "p999": ms(percentile(latencies, 99.9)),
                },
                "client_cores": round(cpu / elapsed, 2),
                "broker_cores": None if broker is None else round((broker - broker0) / elapsed, 2),
                "errors": len(errors),
            }
        )
    )
    return 1 if errors or remaining else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"kafka error: {e}", file=sys.stderr)
        sys.exit(2)
