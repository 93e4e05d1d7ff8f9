#!/usr/bin/env bash
# The seeds' smaller story, `examples/authentication`, run by `lambdamesh up`: an `api` whose
# sidecar reaches the Lambda function `authentication` (tagged, registered by the registrator
# running as a function on the local platform) through a terminating gateway that enforces
# intentions and invokes the function.
#
#   curl 'localhost:2345/login?user=ann' → api's sidecar → (mTLS) → terminating gateway
#        → intentions → Envoy's aws_lambda filter (SigV4) → the platform → the function
#
# Installs what it needs (scripts/setup.sh), builds, runs `lambdamesh up examples/authentication`
# (Ctrl-C stops everything). `DEMO_CHECK=1` runs it on free ports with a throw-away state
# directory, checks the story end to end and exits; the test suite runs it that way. After each
# intention change the check does not stop at the first answer that shows it: it requires a run of
# 20 consecutive answers to agree.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cargo build --quiet -p lambdamesh -p lambdamesh-extension
bin="$CARGO_TARGET_DIR/debug/lambdamesh"
export LAMBDAMESH_PYTHON="$root/.venv/bin/python"

if [[ -z ${DEMO_CHECK:-} ]]; then
  exec "$bin" up examples/authentication
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/lambdamesh-demo.XXXXXX")
"$bin" up examples/authentication --free-ports --state-dir "$state" >"$state/up.out" 2>&1 &
up_pid=$!
cleanup() {
  "$bin" down --state-dir "$state" --purge >/dev/null 2>&1 || true
  wait "$up_pid" 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
fail() { echo "demo: $*" >&2; cat "$state/up.out" >&2 || true; exit 1; }

for _ in $(seq 1 1200); do
  "$bin" status --state-dir "$state" >/dev/null 2>&1 && break
  kill -0 "$up_pid" 2>/dev/null || fail "up exited before the topology was ready"
  sleep 0.1
done
"$bin" status --state-dir "$state" >/dev/null || fail "not ready after 120 s"
endpoint() { "$bin" status --state-dir "$state" --json | "$LAMBDAMESH_PYTHON" -c "import json,sys; print(json.load(sys.stdin)['endpoints'][sys.argv[1]])" "$1"; }
http=$(endpoint http)
export CONSUL_HTTP_ADDR=${http#http://} AWS_ENDPOINT_URL=$(endpoint lambda)
url="$(endpoint 'api → authentication')/login?user=ann"

code() { curl -s -o /dev/null -m 10 -w '%{http_code}' "$url" || true; }
# Waits (30 s) until 20 consecutive answers are $1: a disagreeing answer starts the run again.
# (Connections opened before a change keep the old filter chain until Envoy has drained them,
# which `connect envoy` bounds to 2 s: the first new answer is not yet the settled state.)
settle() {
  local want=$1 got run=0 start=$SECONDS
  while (( run < 20 )); do
    (( SECONDS - start < 30 )) || fail "no run of 20 consecutive HTTP $want from $url in 30 s (last: $got)"
    got=$(code)
    if [[ $got == "$want" ]]; then run=$((run + 1)); else run=0; sleep 0.1; fi
  done
}

settle 200
body=$(curl -sf "$url")
grep -q '"authenticated": true' <<<"$body" || fail "unexpected answer: $body"
"$bin" intention create -deny -replace api authentication >/dev/null
settle 403
"$bin" intention create -allow -replace api authentication >/dev/null
settle 200

# A new tagged function becomes a mesh service on its own; deleting it removes it.
tag=serverless.consul.hashicorp.com/v1alpha1/lambda/enabled=true
"$bin" lambda create hello --dir examples/authentication/authentication --runtime python3.11 \
  --handler app.handler --tag "$tag" >/dev/null
for _ in $(seq 1 300); do
  curl -sf "$http/v1/catalog/service/hello" | grep -q managed-by-lambda-registrator && break; sleep 0.1
done
curl -sf "$http/v1/catalog/service/hello" | grep -q managed-by-lambda-registrator || fail "hello not registered"
"$bin" lambda rm hello >/dev/null
for _ in $(seq 1 300); do
  [[ $(curl -sf "$http/v1/catalog/service/hello") == '[]' ]] && break; sleep 0.1
done
[[ $(curl -sf "$http/v1/catalog/service/hello") == '[]' ]] || fail "hello not deregistered"

# `down` stops everything: `up` exits, nothing of the run is left.
"$bin" down --state-dir "$state" >/dev/null
wait "$up_pid" || fail "up exited with an error"
"$bin" status --state-dir "$state" >/dev/null 2>&1 && fail "still running after down"
left=$(grep -l "LAMBDAMESH_UP_STATE=$state" /proc/[0-9]*/environ 2>/dev/null | wc -l || true)
[[ $left == 0 ]] || fail "$left process(es) left after down"
echo "demo check: allow → 200 ($body), deny → 403 ×20, allow again → 200 ×20; a tagged function registered and deregistered by the registrator; down left nothing"
