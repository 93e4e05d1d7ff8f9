#!/usr/bin/env bash
# `lambdamesh up` benchmark: the greeter example (examples/greeter) next to the same topology
# without its Lambda side — time from `up` to ready (warm build: nothing to compile), processes,
# RSS and CPU of the whole run at idle and under an open-loop load on ingress, answers' latency.
# Usage: bench/up.sh [seconds=20] [rate=50]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/lambdamesh/target}"
cd "$ROOT"
./scripts/setup.sh >/dev/null
cargo build -q -p lambdamesh -p lambdamesh-extension
export LAMBDAMESH_PYTHON="$ROOT/.venv/bin/python" ENVOY_BIN="${ENVOY_BIN:-$ROOT/.venv/bin/envoy}"
echo "# up benchmark — $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr), debug build"
"$LAMBDAMESH_PYTHON" bench/up_bench.py "$CARGO_TARGET_DIR/debug/lambdamesh" examples/greeter "${1:-20}" "${2:-50}"
