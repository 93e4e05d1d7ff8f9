# Two versions of a regular service, for the splitter below.
services {
  name = "greeter"
  id   = "greeter-v1"
  port = 8081
  meta { version = "v1" }
  connect {
    sidecar_service {}
  }
}
services {
  name = "greeter"
  id   = "greeter-v2"
  port = 8082
  meta { version = "v2" }
  connect {
    sidecar_service {}
  }
}
