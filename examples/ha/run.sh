#!/usr/bin/env bash
# A highly available control plane on loopback (docs/ha.md): a 3-member etcd cluster and 3
# `lambdamesh server` replicas sharing it, started by this one command and all stopped by Ctrl-C
# (or when this script exits for any reason).
#
#   examples/ha/run.sh              # run until Ctrl-C
#   HA_CHECK=1 examples/ha/run.sh   # start, write through r0, read it through r2, stop
#
# Replicas: HTTP 127.0.0.1:8500/8510/8520, xDS 127.0.0.1:8502/8512/8522. An Envoy for all three:
#   lambdamesh connect envoy -sidecar-for web -grpc-addr 127.0.0.1:8502,127.0.0.1:8512,127.0.0.1:8522
# HAProxy balances the HTTP API of all three at 127.0.0.1:8600 (health check /v1/status/leader),
# the one address for the CLI, the registrator and other Consul clients:
#   CONSUL_HTTP_ADDR=127.0.0.1:8600 lambdamesh catalog services
# Needs Debian's etcd-server and haproxy (scripts/setup.sh installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LAMBDAMESH_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}/debug/lambdamesh}
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build -q -p lambdamesh)
fi
command -v etcd >/dev/null || { echo "etcd not found: run scripts/setup.sh" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy not found: run scripts/setup.sh" >&2; exit 1; }
work=$(mktemp -d -t lambdamesh-ha-XXXXXX)
pids=()
stop() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
  echo "ha: stopped, $work removed" >&2
}
trap stop EXIT INT TERM

cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((23800 + i))"; done
for i in 0 1 2; do
  etcd --name "e$i" --data-dir "$work/e$i" \
    --listen-client-urls "http://127.0.0.1:$((23790 + i))" --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
    --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token lambdamesh-ha \
    --logger zap --log-outputs "$work/e$i.log" &
  pids+=($!)
done
endpoints="http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792"
for i in 0 1 2; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$((23790 + i))/health" 2>/dev/null | grep -q '"health":"true"' && break
    sleep 0.2
  done
done
openssl rand -hex 32 >"$work/etcd.key" 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/etcd.key"
for i in 0 1 2; do
  LAMBDAMESH_LOG=${LAMBDAMESH_LOG:-info} "$bin" server -node "r$i" -data-dir "$work/r$i" \
    -http-addr "127.0.0.1:$((8500 + 10 * i))" -grpc-addr "127.0.0.1:$((8502 + 10 * i))" \
    -etcd-endpoints "$endpoints" -etcd-encryption-key-file "$work/etcd.key" 2>"$work/r$i.log" &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$((8500 + 10 * i))/v1/status/leader" >/dev/null 2>&1 && break
    sleep 0.2
  done
done
cat >"$work/haproxy.cfg" <<CFG
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
frontend api
  bind 127.0.0.1:8600
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /v1/status/leader
  default-server inter 500ms fall 2 rise 2
  server r0 127.0.0.1:8500 check
  server r1 127.0.0.1:8510 check
  server r2 127.0.0.1:8520 check
CFG
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
echo "ha: etcd at $endpoints; replicas at http://127.0.0.1:8500 :8510 :8520, balanced at http://127.0.0.1:8600 (logs in $work)" >&2

if [ "${HA_CHECK:-}" = 1 ]; then
  curl -fsS -X PUT -d '{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"web","Port":80}}' \
    http://127.0.0.1:8500/v1/catalog/register >/dev/null
  for _ in $(seq 50); do
    if curl -fsS http://127.0.0.1:8520/v1/catalog/service/web | grep -q '"ServiceName":"web"' &&
      curl -fsS http://127.0.0.1:8600/v1/catalog/service/web 2>/dev/null | grep -q '"ServiceName":"web"'; then
      echo "ha: check passed (written through r0, read through r2 and through the balancer)" >&2
      exit 0
    fi
    sleep 0.1
  done
  echo "ha: check FAILED; logs:" >&2
  tail -n 20 "$work"/r*.log >&2
  exit 1
fi
echo "ha: Ctrl-C stops everything" >&2
wait
