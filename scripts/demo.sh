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
# intention change the check does not stop at the first answer that shows it: once the gateway has
# the change (and 1 s after the write at the latest), 20 of 20 requests on a kept-alive connection
# must agree.
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

# The gateway's count of accepted updates of `authentication`'s intentions (its ECDS resource).
admin=$(endpoint 'gateway terminating-gateway admin')
rbac_updates() {
  curl -sf "$admin/stats?filter=lambdamesh\.intentions\.authentication\..*config_reload" |
    awk -F': ' '{n += $2} END {print n + 0}'
}
# An intention change decides every request once the gateway has it, also on the connections
# already open (api's sidecar keeps its connection to the gateway): once the gateway has accepted
# the change, and at the latest 1 s after the write (the spec's bound), 20 of 20 requests on one
# keep-alive connection must give the new answer. Not a wait for the first matching answer.
every_request_answers() { # status, intention create flags...
  local expect=$1 before written codes n=20
  shift
  before=$(rbac_updates)
  written=$(date +%s.%N)
  "$bin" intention create "$@" >/dev/null
  for _ in $(seq 1 300); do (($(rbac_updates) > before)) && break; sleep 0.1; done
  (($(rbac_updates) > before)) || fail "the gateway never accepted 'intention create $*'"
  sleep "$("$LAMBDAMESH_PYTHON" -c "import time; print(max(0.0, $written + 1 - time.time()))")"
  local args=()
  for _ in $(seq 1 $n); do args+=(-o /dev/null "$url"); done
  codes=$(curl -s -w '%{http_code}\n' "${args[@]}" | sort | uniq -c | xargs)
  [[ $codes == "$n $expect" ]] || fail "after 'intention create $*' expected $n × $expect, got: $codes"
}

for _ in $(seq 1 600); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
body=$(curl -sf "$url") || fail "api → authentication does not answer at $url"
grep -q '"authenticated": true' <<<"$body" || fail "unexpected answer: $body"
every_request_answers 403 -deny -replace api authentication
every_request_answers 200 -allow -replace api authentication

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
