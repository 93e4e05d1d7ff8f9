//! Integration tests of the local Lambda platform through real clients: boto3 (subprocess),
//! awslambdaric, a `lambda_runtime` Rust function, a raw Extensions API client and Envoy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

#[path = "platform/async_invoke.rs"]
mod async_invoke;
#[path = "platform/envoy.rs"]
mod envoy;
#[path = "platform/harness.rs"]
mod harness;
#[path = "platform/lambda_api.rs"]
mod lambda_api;
#[path = "platform/runtimes.rs"]
mod runtimes;
#[path = "platform/services.rs"]
mod services;
