# The gateway that invokes the function: mesh callers reach `authentication` through it, and it
# enforces intentions before Envoy's aws_lambda filter signs and sends the invocation.
Kind = "terminating-gateway"
Name = "terminating-gateway"
Services = [
  {
    Name = "authentication"
  }
]
