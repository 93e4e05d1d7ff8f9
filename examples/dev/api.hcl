# The seeds' example: an `api` service whose sidecar reaches `authentication` on localhost:2345.
service {
  name = "api"
  id   = "api"
  port = 9090
  connect {
    sidecar_service {
      proxy {
        upstreams {
          local_bind_port  = 2345
          destination_name = "authentication"
        }
      }
    }
  }
}
