#!/usr/bin/env bash
# Control-plane benchmark (issue: control plane). Builds release binaries, then prints:
# durable registrations/s with 16 clients next to the same disk's fsync rate, blocking-query
# wake-up p50/p99 with 1,000 watchers, and RSS with 10,000 services. Record results in
# docs/benchmarks.md with the date and machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
cargo build --quiet --release -p lambdamesh -p bench
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); date: $(date -u +%F)"
ulimit -n 65536 2>/dev/null || true
"$CARGO_TARGET_DIR/release/cp-bench" "$CARGO_TARGET_DIR/release/lambdamesh" "${BENCH_DIR:-$root/.cache}"
