#!/usr/bin/env bash
# Local Lambda platform against its real peers (issue 13): warm invoke p50/p99 of the same
# lambda_runtime echo binary (crates/bench/src/echo_fn.rs) on our platform (SigV4 verified), on
# AWS's Runtime Interface Emulator and on cargo-lambda's emulator (`cargo lambda watch`), one
# load client, same request, same run; concurrency 1 and 4 (4 instances of each peer, 4 sandboxes
# of ours). The peers are installed pinned by bench/peers.sh into ~/.cache/lambdamesh/peers.
# Usage: bench/lambda-peers.sh [requests=4000] [concurrency list=1,4]. Record results in docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cd "$root"
peers=$(bench/peers.sh)
rie=$(sed -n 1p <<<"$peers")
cargo_lambda=$(sed -n 2p <<<"$peers")
cargo build --quiet --release -p lambdamesh -p bench
# The echo function exactly as `cargo lambda watch --release --manifest-path crates/bench/Cargo.toml
# --bin bench-echo-fn` builds it (the bench crate alone unifies features differently from the
# build above), built last: its `cargo run` then finds it fresh, and all three servers run this
# one file (the driver compares every function process's executable with it).
cargo build --quiet --release --manifest-path crates/bench/Cargo.toml --bin bench-echo-fn
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg); date: $(date -u +%FT%H:%MZ)"
echo "peers: aws-sam-cli $(basename "$(dirname "$rie")" | sed 's/^aws-sam-cli-//') (RIE), cargo-lambda $("$cargo_lambda" lambda --version 2>/dev/null | awk '{print $2}')"
"$CARGO_TARGET_DIR/release/lambda-peers-bench" "$CARGO_TARGET_DIR/release/lambdamesh" \
  "$CARGO_TARGET_DIR/release/bench-echo-fn" "$rie" "$cargo_lambda" "$root/crates/bench/Cargo.toml" \
  "${1:-4000}" "${2:-1,4}"
