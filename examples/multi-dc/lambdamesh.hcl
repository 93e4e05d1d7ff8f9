# Two datacenters on one machine, joined through their mesh gateways (docs/up.md, "Several
# datacenters"; docs/multi-dc.md). README.md walks through it.
#
#   dc1 (primary)                                     dc2
#   web ──> its sidecar ─┬─> users                    api's sidecar ──> terminating gateway ──> authentication (Lambda)
#                        └─> authentication:dc2 ──> dc1 mesh gateway ──> dc2 mesh gateway ──> terminating gateway ──> authentication
#   users <── dc1 mesh gateway <── dc2 mesh gateway <── the extension of profile (Lambda, upstream users:dc1)
#
# `lambdamesh up examples/multi-dc` starts dc1's server and mesh gateway, then dc2's server, which
# joins dc1 through that gateway, then dc2's mesh gateway, then everything else.

primary_datacenter = "dc1"

datacenter "dc1" {
  server {
    http_addr = "127.0.0.1:8500" # Consul's default: the CLI and Consul's clients need no setting
    grpc_addr = "127.0.0.1:8502"
  }

  platform {
    addr = "127.0.0.1:9001"
  }

  service "users" {
    command  = ["python3", "services/users.py"]
    port     = 9091
    health   = "/health"
    protocol = "http"
    env      = { DATACENTER = "dc1" }
    sidecar {}
  }

  # /users → users in dc1; /login → authentication in dc2.
  service "web" {
    command  = ["python3", "services/web.py"]
    port     = 8080
    health   = "/health"
    protocol = "http"
    sidecar {
      upstreams = { users = 9201, "authentication:dc2" = 9203 }
    }
  }

  # Exposes dc1's servers to dc2 (the secondary joins through it) and carries the calls between
  # the datacenters.
  gateway "mesh-gateway" {
    kind = "mesh"
    port = 8444
  }

  # Config entries are shared by every datacenter: dc2 replicates this one from dc1, so in both
  # a call to another datacenter goes caller → its own mesh gateway → the other's mesh gateway.
  config_entry {
    Kind = "proxy-defaults"
    Name = "global"
    MeshGateway = { Mode = "local" }
  }

  intention "web" "users" {}
  intention "web" "authentication" {}
  intention "profile" "users" {}
}

datacenter "dc2" {
  server {
    http_addr = "127.0.0.1:8510"
    grpc_addr = "127.0.0.1:8512"
  }

  platform {
    addr   = "127.0.0.1:9011"
    region = "us-west-2"
  }

  registrator {
    schedule = "rate(1 minute)"
  }

  # The seed's authentication function, invoked through dc2's terminating gateway.
  function "authentication" {
    code    = "authentication"
    runtime = "python3.11"
    handler = "app.handler"
    tags = {
      "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled" = "true"
    }
  }

  # Reads a user from dc1's `users` through the Lambda extension (USERS_DC1_URL).
  function "profile" {
    code    = "profile"
    runtime = "python3.11"
    handler = "app.handler"
    timeout = 10
    tags = {
      "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled" = "true"
    }
    extension {
      upstreams = { "users:dc1" = 9302 }
    }
  }

  # Runs elsewhere (no command): its sidecar's upstream authentication is dc2's own way in.
  service "api" {
    port = 9090
    sidecar {
      upstreams = { authentication = 9204 }
    }
  }

  gateway "terminating-gateway" {
    kind = "terminating"
    port = 8453
  }

  gateway "mesh-gateway" {
    kind = "mesh"
    port = 8454
  }

  config_entry {
    Kind = "terminating-gateway"
    Name = "terminating-gateway"
    Services = [{ Name = "authentication" }]
  }

  intention "api" "authentication" {}
}
