#!/usr/bin/env python3
"""kafka-python against ringlog's Kafka listener, driven by tests/kafka_python.rs.

kafka_python_client.py ADDR produce TOPIC N   -- N records v0..v{N-1}, 3 partitions, acks=all
kafka_python_client.py ADDR consume TOPIC N   -- N records as group "pyg", then commit; prints the values

The producer is idempotent (InitProducerId, sequence numbers), as kafka-python defaults to.
"""
import sys
from kafka import KafkaProducer, KafkaConsumer
addr, mode, topic = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "produce":
    p = KafkaProducer(bootstrap_servers=addr, acks="all", enable_idempotence=True)
    fs = []
    for i in range(int(sys.argv[4])):
        fs.append(p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 3))
    p.flush()
    for f in fs:
        f.get(timeout=10)
    p.close()
else:
    want = int(sys.argv[4])
    c = KafkaConsumer(topic, bootstrap_servers=addr, group_id="pyg", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=8000)
    got = []
    for m in c:
        got.append(m.value.decode())
        if len(got) >= want:
            break
    c.commit()
    c.close()
    print("\n".join(got))
