#!/usr/bin/env bash
# Registrator benchmark: full sync of N functions (30 % enabled, some with aliases) on the local
# platform into a real server — wall time, AWS calls and writes; a no-op resync; the same resync
# with the reference's ListFunctions + per-function call pattern; event → registered latency.
# Usage: bench/registrator.sh [functions=10000] [events=50]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/lambdamesh/target}"
cd "$ROOT"
cargo build --release -q -p lambdamesh -p bench --bin lambdamesh --bin registrator-bench
BIN="$CARGO_TARGET_DIR/release"
echo "# registrator benchmark — $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
"$BIN/registrator-bench" "$BIN/lambdamesh" "${1:-10000}" "${2:-50}"
