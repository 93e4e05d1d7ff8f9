# A Lambda-backed service, marked the Consul 1.15+ way.
Kind     = "service-defaults"
Name     = "authentication"
Protocol = "http"
EnvoyExtensions = [
  {
    Name = "builtin/aws/lambda"
    Arguments = {
      ARN                = "arn:aws:lambda:us-east-1:123456789012:function:authentication"
      PayloadPassthrough = false
    }
  }
]
