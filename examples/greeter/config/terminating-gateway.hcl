# The gateway fronting the function: mesh callers reach greeter-lambda through it.
Kind = "terminating-gateway"
Name = "terminating-gateway"
Services = [
  { Name = "greeter-lambda" }
]
