Kind     = "service-defaults"
Name     = "greeter"
Protocol = "http"
