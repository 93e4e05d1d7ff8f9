#!/usr/bin/env bash
# HA benchmark (docs/ha.md, docs/benchmarks.md): a real 3-member etcd cluster and 3 replicas on
# loopback. Durable writes/s with 16 clients over the replicas next to etcd's own raw put rate
# and the embedded store in the same run; blocking-query fan-out over the replicas; writer
# failover after kill -9 of the etcd leader and of a replica. Prints JSON.
#   HA_BENCH_SECS=10 HA_BENCH_CLIENTS=16 HA_BENCH_WATCHERS=1000 bench/ha.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
target=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
if [ -z "${LAMBDAMESH_BIN:-}" ]; then
  (cd "$root" && cargo build -q --release -p lambdamesh)
  export LAMBDAMESH_BIN="$target/release/lambdamesh"
fi
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(etcd --version | head -1)" >&2
ulimit -n 65536 2>/dev/null || true
exec python3 "$root/bench/ha_bench.py"
