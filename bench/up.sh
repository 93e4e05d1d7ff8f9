#!/usr/bin/env bash
# `lambdamesh up` benchmark: the greeter example (examples/greeter) next to the same topology
# without its Lambda side — time from `up` to ready (warm build: nothing to compile), processes,
# RSS and CPU of the whole run at idle and under an open-loop load on ingress, answers' latency.
# Usage: bench/up.sh [seconds=20] [rate=50]; PROFILE=release bench/up.sh for a release build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/lambdamesh/target}"
cd "$ROOT"
./scripts/setup.sh >/dev/null
PROFILE="${PROFILE:-debug}"
case "$PROFILE" in
  debug) cargo build -q -p lambdamesh -p lambdamesh-extension ;;
  release) cargo build -q --release -p lambdamesh -p lambdamesh-extension ;;
  *) echo "PROFILE must be debug or release, not '$PROFILE'" >&2; exit 2 ;;
esac
export LAMBDAMESH_PYTHON="$ROOT/.venv/bin/python" ENVOY_BIN="${ENVOY_BIN:-$ROOT/.venv/bin/envoy}"
echo "# up benchmark — $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr), $PROFILE build, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$LAMBDAMESH_PYTHON" bench/up_bench.py "$CARGO_TARGET_DIR/$PROFILE/lambdamesh" examples/greeter "${1:-20}" "${2:-50}"
