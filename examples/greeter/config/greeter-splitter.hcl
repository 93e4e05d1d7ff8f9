# Half of greeter's traffic goes to the function. Edit the weights and run
#   lambdamesh config write config/greeter-splitter.hcl
Kind = "service-splitter"
Name = "greeter"
Splits = [
  { Weight = 50, Service = "greeter" },
  { Weight = 50, Service = "greeter-lambda" },
]
