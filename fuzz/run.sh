#!/usr/bin/env bash
# Runs every fuzz target for RUNS inputs (default 100,000: CI's size; 1,000,000 for the figures
# in the README) and prints one line per target. Exit status 1 if any target crashed or hung
# (the input is left in fuzz/artifacts/TARGET/). Needs cargo-fuzz (`cargo install cargo-fuzz
# --locked`); on a stable toolchain it builds without a sanitizer through RUSTC_BOOTSTRAP.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-100000}
export RUSTC_BOOTSTRAP=1
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^callsync-fuzz$')
cargo fuzz build -s none >/dev/null 2>&1 || cargo fuzz build -s none
failed=0
for t in $targets; do
  mkdir -p "corpus/$t" "seeds/$t" # an empty seed folder is not kept by git
  start=$(date +%s)
  # -timeout: an input running over 10 s counts as a hang.
  if out=$(cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- -runs="$RUNS" -timeout=10 -rss_limit_mb=2048 2>&1); then
    echo "$t: $RUNS inputs in $(( $(date +%s) - start )) s, no crash, no hang"
  else
    echo "$t: FAILED after $(( $(date +%s) - start )) s"
    echo "$out" | grep -E 'panicked|ERROR|SUMMARY|Test unit written|^Error' | head -5
    echo "$out" | tail -5
    failed=1
  fi
done
exit $failed
