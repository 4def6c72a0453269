#!/usr/bin/env bash
# Runs every fuzz target for RUNS inputs (default 100,000: CI's size; 1,000,000 for the figures
# in the README) and prints one line per target. Exit status 1 if any target crashed or hung
# (the input is left in fuzz/artifacts/TARGET/). Needs cargo-fuzz (`cargo install cargo-fuzz
# --locked`); on a stable toolchain it builds without a sanitizer through RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-100000}
export RUSTC_BOOTSTRAP=1
# Newest targets first: they are the slowest (the index file writes a file per input), so the
# parallel lanes below end together.
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^callsync-fuzz$' | tac)
cargo fuzz build -s none >/dev/null 2>&1 || cargo fuzz build -s none
# Targets run side by side, one per core (`FUZZ_JOBS` to change it); their lines print in order.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
out_dir=$(mktemp -d)
trap 'rm -rf "$out_dir"' EXIT
run_one() {
  local t=$1 start out
  mkdir -p "corpus/$t" "seeds/$t" # an empty seed folder is not kept by git
  start=$(date +%s)
  # -timeout: an input running over 10 s counts as a hang.
  if out=$(cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- -runs="$RUNS" -timeout=10 -rss_limit_mb=2048 2>&1); then
    echo "$t: $RUNS inputs in $(( $(date +%s) - start )) s, no crash, no hang" > "$out_dir/$t"
  else
    {
      echo "$t: FAILED after $(( $(date +%s) - start )) s"
      echo "$out" | grep -E 'panicked|ERROR|SUMMARY|Test unit written|^Error' | head -5
      echo "$out" | tail -5
    } > "$out_dir/$t"
    return 1
  fi
}
failed=0
running=0
for t in $targets; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
for t in $targets; do cat "$out_dir/$t"; done
exit $failed
