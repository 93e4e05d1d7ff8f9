# The seeds' smaller story: `api` calls the Lambda function `authentication` through its
# sidecar and a terminating gateway, which enforces intentions and invokes the function.
#
#   curl 'localhost:2345/login?user=ann' → api's sidecar → (mTLS) → terminating gateway
#        → intentions → Envoy's aws_lambda filter (SigV4) → the platform → the function
#
# Run it with `lambdamesh up examples/authentication`.

registrator {
  schedule = "rate(1 minute)"
}

function "authentication" {
  code    = "authentication"
  runtime = "python3.11"
  handler = "app.handler"
  tags = {
    "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled" = "true"
  }
}

# `api` runs elsewhere (no command): only its registration and its sidecar, whose upstream
# `authentication` listens on localhost:2345.
service "api" {
  port = 9090
  sidecar {
    upstreams = { authentication = 2345 }
  }
}

gateway "terminating-gateway" {
  kind = "terminating"
  port = 8443
}

config_entries = ["terminating-gateway.hcl"]

intention "api" "authentication" {}
intention "*" "authentication" { action = "deny" }
