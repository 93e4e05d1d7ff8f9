//! Mesh → Lambda through the caller's sidecar (issue 5, first slice): a real Envoy signs and
//! invokes a Python function (awslambdaric) on the local Lambda platform, which verifies the
//! SigV4 signature; both Consul markings (≤1.14 `Meta`, 1.15+ `EnvoyExtensions`) work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::process::{Command, Stdio};

use common::mesh::{Guard, envoy_path, free_port, get, put, python, wait_until};
use common::{BIN, Proc, stderr};
use serde_json::json;

#[test]
fn sidecar_invokes_a_lambda_with_either_marking() {
    let dir = tempfile::tempdir().unwrap();
    let lport = free_port();
    let endpoint = format!("http://127.0.0.1:{lport}");
    let _platform = Guard(
        Command::new(BIN)
            .args([
                "lambda",
                "serve",
                "-addr",
                &format!("127.0.0.1:{lport}"),
                "-data-dir",
                dir.path().join("data").to_str().unwrap(),
                "-python",
                &python(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(30, "the platform listens", || {
        std::net::TcpStream::connect(("127.0.0.1", lport)).is_ok()
    });
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("app.py"),
        "def handler(event, context):\n    return {'statusCode': 201, 'headers': {'x-from': 'lambda'}, 'body': event['method'] + ' ' + event['raw_path'] + ' ' + event['body']}\n",
    )
    .unwrap();
    for f in ["authentication", "legacy"] {
        let o = Command::new(BIN)
            .args([
                "lambda",
                "create",
                f,
                "--dir",
                code.to_str().unwrap(),
                "--runtime",
                "python3.11",
                "--handler",
                "app.handler",
            ])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let server = Proc::start(&["agent", "-dev", "-lambda-endpoint", &endpoint]);
    let http = server.http.clone();
    // 1.15+ marking.
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "authentication", "Protocol": "http",
        "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"arn": "arn:aws:lambda:us-east-1:123456789012:function:authentication"}}]}),
    );
    // ≤1.14 marking.
    let p = "serverless.consul.hashicorp.com/v1alpha1/lambda/";
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "legacy", "Protocol": "http", "Meta": {
        format!("{p}enabled"): "true", format!("{p}arn"): "arn:aws:lambda:us-east-1:123456789012:function:legacy", format!("{p}region"): "us-east-1"}}),
    );
    let (up1, up2) = (free_port(), free_port());
    put(
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "api", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
        {"DestinationName": "authentication", "LocalBindPort": up1}, {"DestinationName": "legacy", "LocalBindPort": up2}]}}}}),
    );
    let _envoy = Guard(
        Command::new(BIN)
            .args([
                "connect",
                "envoy",
                "-sidecar-for",
                "api",
                "-http-addr",
                &http,
                "-grpc-addr",
                &server.grpc,
                "-admin-bind",
                &format!("127.0.0.1:{}", free_port()),
                "--",
                "-l",
                "error",
            ])
            .env("ENVOY_BIN", envoy_path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for up in [up1, up2] {
        let url = format!("http://127.0.0.1:{up}/login?user=x");
        wait_until(30, "the function answers through the sidecar", || {
            get(&url) == (201, "GET /login?user=x ".to_owned())
        });
    }
    let r = ureq::post(&format!("http://127.0.0.1:{up1}/p"))
        .header("content-type", "application/json")
        .send(r#"{"k":1}"#)
        .unwrap();
    assert_eq!(r.headers().get("x-from").unwrap(), "lambda");
}
