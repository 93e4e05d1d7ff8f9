#!/usr/bin/env bash
# HA benchmark (docs/ha.md, docs/benchmarks.md): a real 3-member etcd cluster and 3 replicas on
# loopback, driven by crates/bench/src/ha_bench.rs. In one run: durable writes/s with 16 clients
# over the replicas next to etcd's own raw put rate (same client) and the embedded store;
# cross-replica blocking-query wake-ups; fan-out to 1,000 watchers; writer failover after
# kill -9 of the etcd leader and of a replica; Envoy failover after kill -9 of its xDS replica.
# Prints JSON. Knobs: HA_BENCH_SECS=10 HA_BENCH_CLIENTS=16 HA_BENCH_WATCHERS=1000 HA_BENCH_CHANGES=200
# HA_BENCH_ROUNDS=1 (alternations of the raw and replicated write phases) HA_BENCH_WRITES_ONLY=0 HA_BENCH_APPENDS_IN_FLIGHT (the store setting; server default when unset)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" >&2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
export PATH="$root/.venv/bin:$PATH"
(cd "$root" && cargo build --quiet --release -p lambdamesh -p bench)
export LAMBDAMESH_BIN=${LAMBDAMESH_BIN:-$CARGO_TARGET_DIR/release/lambdamesh}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(etcd --version | head -1), date: $(date -u '+%F %H:%M UTC')" >&2
ulimit -n 65536 2>/dev/null || true
exec "$CARGO_TARGET_DIR/release/ha-bench"
