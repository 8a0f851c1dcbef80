#!/usr/bin/env bash
# Replication cost on one machine (issue 17 benchmarks): a 3-broker cluster of
# release `ringlog serve` processes (one shard each, all on 127.0.0.1), then
# ringlog-bench produce at max rate and at 50 MB/s against a replication-factor-1
# topic and a replication-factor-3 topic (acks=all; min.insync.replicas 1 so the RF 1 topic takes acks=all too — with the full ISR an acks=all write waits for all three replicas either way),
# interleaved RF1/RF3 ROUNDS times. Prints each run's summary; JSON in $OUT.
#   bench/scripts/cluster_rf.sh [ROUNDS] [SECONDS]
# EXTRA="--set key=value ..." adds broker settings (e.g. replica.fetch.max.bytes);
# BIN=dir takes ringlog and ringlog-bench from dir (an A/B of two builds).
set -euo pipefail
rounds="${1:-2}"
secs="${2:-15}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${BIN:-$root/target/release}"
work="${WORK:-$(mktemp -d)}"
OUT="${OUT:-$work/out}"
mkdir -p "$work" "$OUT"
pids=()
keep=0
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ "$keep" = 1 ] || rm -rf "$work/data-"*; }
trap cleanup EXIT

# Six distinct free ports, all held until every one is chosen.
read -r -a ports <<< "$(python3 -c '
import socket
s = [socket.socket() for _ in range(6)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
declare -a peer native
for i in 1 2 3; do peer[$i]=${ports[$((i - 1))]}; native[$i]=${ports[$((i + 2))]}; done
voters="1@127.0.0.1:${peer[1]},2@127.0.0.1:${peer[2]},3@127.0.0.1:${peer[3]}"
for i in 1 2 3; do
  "$bin/ringlog" serve --broker-id "$i" --controller-voters "$voters" \
    --cluster-addr "127.0.0.1:${peer[$i]}" --native-addr "127.0.0.1:${native[$i]}" \
    --kafka-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --shards 1 \
    --data-dir "$work/data-$i" --set min.insync.replicas=1 \
    --set log.retention.bytes=4294967296 --set log.retention.check.interval.ms=2000 \
    ${EXTRA:-} 2> "$work/broker-$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 300); do [ -f "$work/data-$i/listeners.json" ] && break; sleep 0.1; done
  [ -f "$work/data-$i/listeners.json" ] || { echo "broker $i did not start"; cat "$work/broker-$i.log"; exit 1; }
done
b="127.0.0.1:${native[1]}"
# Both topics led by broker 1 (partition 0 is on broker i mod n = the first).
"$bin/ringlog" topic create rf1 --partitions 1 --replication-factor 1 -b "$b"
"$bin/ringlog" topic create rf3 --partitions 1 --replication-factor 3 -b "$b"
"$bin/ringlog" topic describe rf3 -b "$b"

admin1="$(python3 -c "import json;print(json.load(open('$work/data-1/listeners.json'))['admin'])")"
# The leader's replication-lag histogram (append -> follower durable), saved
# before and after a run; lag_quantiles prints the run's p50/p99 from the
# difference, interpolated within buckets as Prometheus' histogram_quantile does.
scrape() { curl -s "http://$admin1/metrics" | grep '^ringlog_replication_lag_seconds_bucket' > "$1"; }
lag_quantiles() {
  python3 - "$1" "$2" <<'PY'
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.search(r'le="([^"]+)"\} (\d+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = out.get(le, 0) + int(m.group(2))
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
bounds = sorted(b)
cum = [b[le] - a.get(le, 0) for le in bounds]
total = cum[-1] if cum else 0
def q(p):
    rank, prev_le, prev_n = p * total, 0.0, 0
    for le, n in zip(bounds, cum):
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1)
        prev_le, prev_n = le, n
    return prev_le
print(f"replication lag (leader append -> follower durable): {total} samples, "
      f"p50 {q(0.5) * 1e3:.2f} ms, p99 {q(0.99) * 1e3:.2f} ms")
PY
}

run() { # name topic extra...
  local name="$1" topic="$2"; shift 2
  echo "== $name"
  "$bin/ringlog-bench" produce -b "$b" --topic "$topic" --duration "$secs" --warmup 3 \
    --acks all --quiet --json "$OUT/$name.json" "$@"
}
for r in $(seq "$rounds"); do
  run "max-rf1-$r" rf1
  run "max-rf3-$r" rf3
  run "50mb-rf1-$r" rf1 --rate 51200
  scrape "$work/lag-before"
  run "50mb-rf3-$r" rf3 --rate 51200
  scrape "$work/lag-after"
  lag_quantiles "$work/lag-before" "$work/lag-after"
done
curl -s "http://$admin1/metrics" \
  | grep -E "^ringlog_(isr_|under_replicated|under_min_isr|follower_lag)" || true
# Acceptance 1 of issue 17 at this volume: after a clean stop, every replica of
# rf3-0 holds the same batches (base offset, record count and CRC of each).
for p in "${pids[@]}"; do kill -TERM "$p"; done
wait "${pids[@]}" 2>/dev/null || true
pids=()
python3 - "$work" <<'PY' || { keep=1; echo "data kept in $work"; exit 1; }
import glob, struct, sys
work = sys.argv[1]
def batches(d):
    out = {}
    for seg in sorted(glob.glob(f"{d}/*.log")):
        b = open(seg, "rb").read()
        pos = 0
        while pos + 61 <= len(b):
            base, length = struct.unpack_from(">qi", b, pos)
            if length <= 0 or pos + 12 + length > len(b):
                break
            crc, = struct.unpack_from(">I", b, pos + 17)
            count, = struct.unpack_from(">i", b, pos + 57)
            out[base] = (count, crc)
            pos += 12 + length
    return out
copies = [batches(f"{work}/data-{i}/rf3-0") for i in (1, 2, 3)]
# Retention removes whole segments on each replica on its own schedule, so the
# copies are compared from the first batch all three still hold.
start = max(min(c) for c in copies)
common = [{b: v for b, v in c.items() if b >= start} for c in copies]
records = sum(n for n, _ in common[0].values())
same = common[0] == common[1] == common[2]
print(f"rf3-0 from offset {start}: {len(common[0])} batches, {records} records on the leader; "
      f"replicas identical (base, count, CRC per batch): {same}")
if not same:
    for i in (1, 2):
        diff = sorted(set(common[0].items()) ^ set(common[i].items()))
        print(f"  broker {i + 1} differs from broker 1 in {len(diff)} entries, first: {diff[:4]}")
        print(f"  ends: broker 1 {max(common[0])}, broker {i + 1} {max(common[i])}")
sys.exit(0 if same else 1)
PY
echo "JSON: $OUT"
