"""Decodes a RecordBatch v2 file with kafka-python's codec and prints its records.

Used by kafka_client_compat.rs to show that a real Kafka client accepts what
ringlog's BatchBuilder encodes. Output: one line per record,
offset<TAB>timestamp<TAB>key-hex-or-None<TAB>value-hex<TAB>headers.
"""
import sys

from kafka.record.default_records import DefaultRecordBatch

data = open(sys.argv[1], "rb").read()
batch = DefaultRecordBatch(data)
if not batch.validate_crc():
    sys.exit("kafka-python: CRC check failed")
print(f"count\t{batch.records_count}\tbase\t{batch.base_offset}\tmax_ts\t{batch.max_timestamp}")
for r in batch:
    key = r.key.hex() if r.key is not None else "None"
    headers = ",".join(f"{k}={v.hex()}" for k, v in r.headers)
    print(f"{r.offset}\t{r.timestamp}\t{key}\t{r.value.hex()}\t{headers}")
