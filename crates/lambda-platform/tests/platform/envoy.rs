//! Real Envoy's `aws_lambda` filter invokes a function on the platform: its SigV4 signature (full
//! ARN in the path, single-encoded canonical URI) is verified, and a wrong key is rejected.

use std::{process::Stdio, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::TestPlatform;

/// Owns the Envoy process; `kill_on_drop` stops it when the test ends.
struct Envoy {
    _child: tokio::process::Child,
}

use test_support::free_port;

fn envoy_path() -> String {
    test_support::envoy_path().unwrap_or_else(|e| panic!("{e}"))
}

fn listener(name: &str, port: u16, secret: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts: [{{ name: all, domains: ["*"], routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: platform }} }}] }}]
          http_filters:
          - name: envoy.filters.http.aws_lambda
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.aws_lambda.v3.Config
              arn: "arn:aws:lambda:us-east-1:123456789012:function:greeter:live"
              payload_passthrough: false
              invocation_mode: SYNCHRONOUS
              credentials: {{ access_key_id: test, secret_access_key: {secret} }}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_aws_lambda_filter_invokes_with_verified_sigv4() {
    let p = TestPlatform::start().await;
    p.boto3(
        r#"
app = '''
def handler(event, context):
    return {"statusCode": 201, "headers": {"x-from-lambda": "yes", "content-type": "text/plain"},
            "body": "hello " + event["raw_path"] + " via " + context.invoked_function_arn}
'''
lam.create_function(FunctionName="greeter", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": zip_files({"app.py": app})}, Publish=True)
lam.create_alias(FunctionName="greeter", Name="live", FunctionVersion="1")
print("{}")
"#,
    )
    .await;
    let platform_port: u16 = p.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let (good, bad, admin) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
{l1}
{l2}
  clusters:
  - name: platform
    connect_timeout: 1s
    type: STATIC
    metadata: {{ filter_metadata: {{ com.amazonaws.lambda: {{ egress_gateway: true }} }} }}
    load_assignment:
      cluster_name: platform
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {platform_port} }} }} }} }}] }}]
"#,
        l1 = listener("good", good, "test"),
        l2 = listener("bad", bad, "wrong-secret"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg_path = tmp.path().join("envoy.yaml");
    std::fs::write(&cfg_path, config).unwrap();
    let child = tokio::process::Command::new(envoy_path())
        .arg("-c")
        .arg(&cfg_path)
        .args(["--disable-hot-restart", "-l", "warning", "--base-id-path"])
        .arg(tmp.path().join("base-id"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _envoy = Envoy { _child: child };
    let mut ready = false;
    for _ in 0..100 {
        if http_get(admin, "/ready")
            .await
            .is_some_and(|r| r.contains("LIVE"))
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "envoy did not become ready");
    let resp = http_get(good, "/hello/world?x=1").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert!(resp.contains("x-from-lambda: yes"), "{resp}");
    assert!(
        resp.contains(
            "hello /hello/world?x=1 via arn:aws:lambda:us-east-1:123456789012:function:greeter:live"
        ),
        "{resp}"
    );
    let resp = http_get(bad, "/hello").await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("InvalidSignatureException") || resp.contains("signature"),
        "{resp}"
    );
    p.stop().await;
}
