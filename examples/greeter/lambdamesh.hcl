# The greeter migration on one machine (docs/up.md has the format; README.md walks through it).
#
#   curl 127.0.0.1:8080 → ingress → its sidecar → splitter 50/50 ─┬─> greeter (a plain service)
#                                                                 └─> terminating gateway → greeter-lambda
#   greeter and greeter-lambda call `name` and `greeting` through the mesh: greeter through its
#   sidecar, greeter-lambda through the Lambda extension and the mesh gateway.

server {
  http_addr = "127.0.0.1:8500" # Consul's default: the CLI and Consul's clients need no setting
  grpc_addr = "127.0.0.1:8502"
}

platform {
  addr = "127.0.0.1:9001" # the local AWS Lambda API (AWS_ENDPOINT_URL)
}

# Runs as a function on the platform, triggered by CloudTrail-shaped events and a schedule.
registrator {
  schedule = "rate(1 minute)"
}

service "name" {
  command  = ["python3", "services/name.py"]
  port     = 9091
  health   = "/health"
  protocol = "http"
  sidecar {}
}

service "greeting" {
  command  = ["python3", "services/greeting.py"]
  port     = 9092
  health   = "/health"
  protocol = "http"
  sidecar {}
}

# The container greeter: NAME_URL and GREETING_URL point at its sidecar's upstreams.
service "greeter" {
  command  = ["python3", "services/greeter.py"]
  port     = 9090
  health   = "/health"
  protocol = "http"
  sidecar {
    upstreams = { name = 9201, greeting = 9202 }
  }
}

# Its replacement, tagged for the registrator as in the seed.
function "greeter-lambda" {
  code    = "greeter-lambda"
  runtime = "python3.11"
  handler = "app.handler"
  timeout = 10
  tags = {
    "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled"             = "true"
    "serverless.consul.hashicorp.com/v1alpha1/lambda/payload-passthrough" = "true"
    "serverless.consul.hashicorp.com/v1alpha1/lambda/invocation-mode"     = "SYNCHRONOUS"
  }
  # The Lambda extension layer: NAME_URL and GREETING_URL are http://localhost:<port>.
  extension {
    upstreams = { name = 9301, greeting = 9302 }
  }
}

service "ingress" {
  command  = ["python3", "services/ingress.py"]
  port     = 8080
  health   = "/health"
  protocol = "http"
  sidecar {
    upstreams = { greeter = 9200 }
  }
}

gateway "terminating-gateway" {
  kind = "terminating" # invokes greeter-lambda (Envoy's aws_lambda filter), enforcing intentions
  port = 8443
}

gateway "mesh-gateway" {
  kind = "mesh" # how greeter-lambda's extension reaches name and greeting
  port = 8444
}

config_entries = [
  "config/terminating-gateway.hcl",
  "config/greeter-splitter.hcl",
]

intention "ingress" "greeter" {}
intention "ingress" "greeter-lambda" {}
intention "greeter" "name" {}
intention "greeter" "greeting" {}
intention "greeter-lambda" "name" {}
intention "greeter-lambda" "greeting" {}
intention "*" "*" { action = "deny" }
