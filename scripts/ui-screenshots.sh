#!/usr/bin/env bash
# Screenshots of the web UI's main pages into docs/ui/ (1280×800, and the services page at a
# phone's 390×844), from a `lambdamesh agent -dev` seeded with the greeter example's shape, two
# migration records and a few intentions, each taken through chromedriver once the page has its
# data (scripts/ui_shot.py). Needs Debian's chromium and chromedriver (scripts/setup.sh) and a built
# binary (`cargo build -p lambdamesh`). Usage: scripts/ui-screenshots.sh [out-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/ui}
bin=${LAMBDAMESH_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/lambdamesh/target}/debug/lambdamesh}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
A="http://127.0.0.1:$port"
"$bin" agent -dev -http-addr "127.0.0.1:$port" -grpc-addr 127.0.0.1:0 -data-dir "$work/data" \
  >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "$A/v1/status/leader" >/dev/null && break; sleep 0.1; done

put() { curl -sf -X PUT "$A$1" --data-binary "$2" >/dev/null || { echo "PUT $1 failed" >&2; exit 1; }; }
reg() { put /v1/catalog/register "$1"; }
for s in greeter:9090 name:9091 greeting:9092 ingress:8080; do
  n=${s%%:*}; p=${s##*:}
  reg "{\"Node\":\"vm\",\"Address\":\"127.0.0.1\",\"Service\":{\"Service\":\"$n\",\"ID\":\"$n\",\"Port\":$p,\"Tags\":[\"python\"]},\"Checks\":[{\"CheckID\":\"$n-health\",\"Name\":\"HTTP /health\",\"ServiceID\":\"$n\",\"Status\":\"passing\",\"Output\":\"HTTP GET http://127.0.0.1:$p/health: 200 OK\"}]}"
done
reg '{"Node":"vm","Address":"127.0.0.1","Service":{"Kind":"connect-proxy","Service":"greeter-sidecar-proxy","Port":21000,"Proxy":{"DestinationServiceName":"greeter","LocalServicePort":9090,"Upstreams":[{"DestinationName":"name","LocalBindPort":9201},{"DestinationName":"greeting","LocalBindPort":9202}]}}}'
reg '{"Node":"vm","Address":"127.0.0.1","Service":{"Kind":"connect-proxy","Service":"ingress-sidecar-proxy","Port":21001,"Proxy":{"DestinationServiceName":"ingress","LocalServicePort":8080,"Upstreams":[{"DestinationName":"greeter","LocalBindPort":9200}]}}}'
reg '{"Node":"lambda-registrator","Address":"127.0.0.1","Service":{"Service":"greeter-lambda","Port":443,"Meta":{"managed-by-lambda-registrator":"true"}}}'
reg '{"Node":"vm","Address":"127.0.0.1","Service":{"Kind":"terminating-gateway","Service":"terminating-gateway","Port":8443},"Checks":[{"CheckID":"tgw","Name":"Envoy ready","ServiceID":"terminating-gateway","Status":"passing"}]}'
reg '{"Node":"vm","Address":"127.0.0.1","Service":{"Kind":"mesh-gateway","Service":"mesh-gateway","Port":8444,"TaggedAddresses":{"lan":{"Address":"127.0.0.1","Port":8444},"wan":{"Address":"127.0.0.1","Port":8444}}}}'
put /v1/config '{"Kind":"proxy-defaults","Name":"global","Config":{"protocol":"http"}}'
put /v1/config '{"Kind":"service-defaults","Name":"greeter-lambda","Protocol":"http","EnvoyExtensions":[{"Name":"builtin/aws/lambda","Arguments":{"ARN":"arn:aws:lambda:us-east-1:123456789012:function:greeter-lambda","PayloadPassthrough":true,"InvocationMode":"synchronous"}}]}'
put /v1/config '{"Kind":"service-splitter","Name":"greeter","Splits":[{"Weight":50,"Service":"greeter"},{"Weight":50,"Service":"greeter-lambda"}]}'
put /v1/config '{"Kind":"terminating-gateway","Name":"terminating-gateway","Services":[{"Name":"greeter-lambda"}]}'
for pair in "ingress greeter" "ingress greeter-lambda" "greeter name" "greeter greeting" "greeter-lambda name" "greeter-lambda greeting"; do
  set -- $pair; put "/v1/connect/intentions/exact?source=$1&destination=$2" '{"Action":"allow"}'
done
put "/v1/connect/intentions/exact?source=*&destination=*" '{"Action":"deny","Description":"default deny"}'
step() { echo "{\"Weight\":$1,\"StartedAt\":\"2026-12-02T16:00:00Z\",\"EndedAt\":\"2026-12-02T16:00:05Z\",\"Requests\":$2,\"Errors\":$3,\"ErrorRate\":$4,\"P99Ms\":$5,\"TargetRequests\":$6,\"TargetErrors\":$3,\"TargetErrorRate\":$7,\"TargetP99Ms\":$8,\"Outcome\":\"$9\"}"; }
put /v1/kv/lambdamesh/migrations/greeter "{\"Service\":\"greeter\",\"Target\":\"greeter-lambda\",\"Steps\":[10,50,100],\"Interval\":\"5s\",\"Thresholds\":{\"MaxErrorRate\":0.01,\"MaxP99Ms\":500,\"MinRequests\":20},\"State\":\"running\",\"StepIndex\":1,\"Weight\":50,\"LastHealthyWeight\":10,\"Reason\":\"\",\"Owner\":{\"Host\":\"laptop\",\"Pid\":4242,\"HeartbeatAt\":\"2026-12-02T16:00:09Z\"},\"StartedAt\":\"2026-12-02T16:00:00Z\",\"UpdatedAt\":\"2026-12-02T16:00:09Z\",\"History\":[$(step 10 120 0 0.0 12.5 12 0.0 20.1 promoted),$(step 50 88 0 0.0 14.0 44 0.0 22.3 waiting)]}"
put /v1/kv/lambdamesh/migrations/ingress "{\"Service\":\"ingress\",\"Target\":\"ingress-lambda\",\"Steps\":[10,50,100],\"Interval\":\"5s\",\"Thresholds\":{\"MaxErrorRate\":0.01,\"MaxP99Ms\":500,\"MinRequests\":20},\"State\":\"rolled_back\",\"StepIndex\":0,\"Weight\":0,\"LastHealthyWeight\":10,\"Reason\":\"error rate 30.0% > 1.0% (60 of 200 requests)\",\"StartedAt\":\"2026-12-02T15:40:00Z\",\"UpdatedAt\":\"2026-12-02T15:40:10Z\",\"History\":[$(step 10 130 0 0.0 11.0 13 0.0 19.0 promoted),$(step 50 200 60 0.3 40.0 100 0.6 80.0 rolled_back)]}"

mkdir -p "$out"
python3 "$root/scripts/ui_shot.py" "$A" "$out" \
  services=services@1280x800 \
  service-greeter=services/greeter@1280x800 \
  service-greeter-lambda=services/greeter-lambda@1280x800 \
  intentions=intentions@1280x800 \
  config-entries=config@1280x800 \
  config-editor=config/service-splitter/greeter@1280x800 \
  gateways=gateways@1280x800 \
  migrations=migrations@1280x800 \
  services-phone=services@390x844
