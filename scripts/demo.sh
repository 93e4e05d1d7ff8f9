#!/usr/bin/env bash
# The main job (for now): a development control plane with sample services and config entries
# loaded. Installs what it needs, builds, starts `lambdamesh agent -dev`, loads examples/dev/,
# prints where to look, and stops everything on Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cargo build --quiet -p lambdamesh
bin="$CARGO_TARGET_DIR/debug/lambdamesh"
addr=${LAMBDAMESH_HTTP_ADDR:-127.0.0.1:8500}
export CONSUL_HTTP_ADDR=$addr

"$bin" agent -dev -http-addr "$addr" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -sf "http://$addr/v1/status/leader" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "demo: the server exited; is $addr already in use? set LAMBDAMESH_HTTP_ADDR" >&2; exit 1; }
  sleep 0.1
done

"$bin" services register examples/dev/api.hcl
"$bin" services register examples/dev/greeter.hcl
for f in authentication-defaults greeter-defaults greeter-resolver greeter-splitter; do
  "$bin" config write "examples/dev/$f.hcl"
done
"$bin" intention create -allow api authentication
"$bin" intention create -deny '*' authentication

cat <<MSG

lambdamesh dev control plane is running at http://$addr  (Ctrl-C stops it)
Try:
  curl -s http://$addr/v1/catalog/services
  curl -s http://$addr/v1/health/connect/greeter
  curl -s http://$addr/v1/config/service-splitter/greeter
  curl -s 'http://$addr/v1/connect/intentions/check?source=api&destination=authentication'
  CONSUL_HTTP_ADDR=$addr $bin intention check web authentication
MSG
wait $server
