#!/usr/bin/env bash
# `lambdamesh migrate` benchmark: on the greeter example under load, the time from the judgement
# that sees a threshold crossed to the splitter at 0 % and to the caller's Envoy applying it.
# Usage: bench/migrate.sh [runs=5]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/lambdamesh/target}"
cd "$ROOT"
./scripts/setup.sh >/dev/null
cargo build -q -p lambdamesh -p lambdamesh-extension
export LAMBDAMESH_PYTHON="$ROOT/.venv/bin/python" ENVOY_BIN="${ENVOY_BIN:-$ROOT/.venv/bin/envoy}"
echo "# migrate benchmark — $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr), debug build, load avg $(cut -d' ' -f1-3 /proc/loadavg)"
"$LAMBDAMESH_PYTHON" bench/migrate_bench.py "$CARGO_TARGET_DIR/debug/lambdamesh" examples/greeter "${1:-5}"
