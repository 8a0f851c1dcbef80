#!/usr/bin/env bash
# Applies the host settings tuning/README.md recommends, idempotently. A dry run by
# default: it prints what it would change. --apply changes it (as root).
#   tuning/apply.sh [--apply] [--device nvme0n1 ...] [--shard-cpus 2-7]
set -euo pipefail
apply=0
devices=()
shard_cpus=""
while [ $# -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --dry-run) apply=0 ;;
    --device) devices+=("$2"); shift ;;
    --shard-cpus) shard_cpus="$2"; shift ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "apply.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
changed=0

# set FILE VALUE WHY: writes VALUE to FILE unless it already holds it.
set_file() {
  local file="$1" want="$2" why="$3" have
  if [ ! -e "$file" ]; then
    echo "skip   $file (absent on this host): $why"
    return
  fi
  have=$(cat "$file" 2>/dev/null || true)
  # Multiple-choice sysfs files show the choice in brackets.
  case "$have" in *"[$want]"*) have="$want" ;; esac
  if [ "$have" = "$want" ]; then
    echo "ok     $file = $want"
    return
  fi
  changed=$((changed + 1))
  if [ "$apply" = 1 ]; then
    echo "$want" > "$file"
    echo "set    $file: $have -> $want ($why)"
  else
    echo "would  $file: $have -> $want ($why)"
  fi
}

set_file /proc/sys/vm/swappiness 1 "a swapped-out shard stalls its partitions"
set_file /proc/sys/net/core/somaxconn 4096 "connection bursts"
set_file /proc/sys/net/core/rmem_max 16777216 "socket buffers for fast streams"
set_file /proc/sys/net/core/wmem_max 16777216 "socket buffers for fast streams"
set_file /proc/sys/fs/aio-max-nr 1048576 "asynchronous I/O contexts"
set_file /sys/kernel/mm/transparent_hugepage/enabled madvise "THP compaction stalls"
for gov in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
  [ -e "$gov" ] && set_file "$gov" performance "no frequency ramps on shard cores"
done
for dev in "${devices[@]}"; do
  set_file "/sys/block/$dev/queue/scheduler" none "NVMe needs no I/O scheduler"
  set_file "/sys/block/$dev/queue/nomerges" 2 "no merging of sequential appends"
done
if [ -n "$shard_cpus" ]; then
  echo "note   keep IRQs off the shard CPUs $shard_cpus: set irqbalance's IRQBALANCE_BANNED_CPULIST=$shard_cpus"
fi
echo "sysctl and sysfs values do not survive a reboot: put them in /etc/sysctl.d and a udev rule (tuning/README.md)."
if [ "$apply" = 0 ] && [ "$changed" -gt 0 ]; then
  echo "dry run: $changed change(s) not made; run with --apply as root."
fi
