#!/usr/bin/env bash
# Local Lambda platform benchmark: warm invoke p50/p99 + throughput (Rust lambda_runtime echo,
# 4 concurrent sandboxes) next to a plain loopback HTTP echo server in the same run; cold start
# of the Python (awslambdaric) and Rust runtimes; ListFunctions over 10,000 functions; then the
# platform against its real peers (AWS's Runtime Interface Emulator, cargo-lambda): same function,
# same client, same run (bench/lambda-peers.sh, which also runs alone).
# Usage: bench/lambda-platform.sh [functions=10000] [invokes=20000] [peer invokes=4000]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/lambdamesh/target}"
PYTHON="${LAMBDAMESH_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || { echo "no Python venv at $PYTHON: run scripts/setup.sh" >&2; exit 1; }
cd "$ROOT"
cargo build --release -q -p lambda-platform --example bench --example echo_rust
BIN="$CARGO_TARGET_DIR/release/examples"
echo "# lambda-platform benchmark — $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
LAMBDAMESH_LOG=warn "$BIN/bench" "$BIN/echo_rust" "$PYTHON" "${1:-10000}" "${2:-20000}"
"$ROOT/bench/lambda-peers.sh" "${3:-4000}"
