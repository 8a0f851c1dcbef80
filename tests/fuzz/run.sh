#!/usr/bin/env bash
# Bounded runs of every fuzz target, as CI makes them: build the targets with
# cargo-fuzz, write the seed corpus, replay every input of regressions/<target>
# (crashes found and fixed), then fuzz each target for FUZZ_SECONDS (default 30).
# Any crash, panic, leak or over-limit allocation fails the run; libFuzzer saves the
# input under tests/fuzz/artifacts/<target>/.
#
# With a nightly toolchain the targets run under AddressSanitizer; with only a
# stable one, without a sanitizer (Rust's own checks still catch every panic,
# overflow and out-of-bounds access; -rss_limit_mb still catches runaway memory).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-30}
targets=(native_request kafka_request record_batch segment_scan)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
bin=tests/fuzz/target/x86_64-unknown-linux-gnu/release
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: building with AddressSanitizer (nightly)"
  cargo +nightly fuzz build -O -s address --fuzz-dir tests/fuzz
  "$bin/make_seeds" "$seeds"
else
  # cargo-fuzz's coverage flags are stable rustc flags; only the sanitizer needs
  # nightly. Without it `make_seeds` (a plain binary) cannot link the coverage
  # hooks, so the targets start from the regression inputs alone.
  echo "fuzz: building without a sanitizer (no nightly toolchain)"
  for t in "${targets[@]}"; do
    cargo fuzz build -O -s none --fuzz-dir tests/fuzz "$t"
  done
fi
for t in "${targets[@]}"; do
  mkdir -p "$seeds/$t"
done

for t in "${targets[@]}"; do
  mkdir -p "tests/fuzz/corpus/$t" "tests/fuzz/artifacts/$t"
  max_len=4096
  [ "$t" = segment_scan ] && max_len=16384
  if compgen -G "tests/fuzz/regressions/$t/*" >/dev/null; then
    echo "fuzz: $t: replaying regressions"
    "$bin/$t" tests/fuzz/regressions/"$t"/* >/dev/null 2>&1 || {
      echo "fuzz: $t fails on a regression input" >&2
      "$bin/$t" tests/fuzz/regressions/"$t"/* 2>&1 | tail -30 >&2
      exit 1
    }
  fi
  echo "fuzz: $t for ${seconds} s"
  log="tests/fuzz/artifacts/$t/run.log"
  if ! "$bin/$t" "tests/fuzz/corpus/$t" "$seeds/$t" \
    -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="tests/fuzz/artifacts/$t/" >"$log" 2>&1; then
    echo "fuzz: $t failed; the input is in tests/fuzz/artifacts/$t/" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/fuzz: $t: /"
done
