//! The three Prometheus endpoints of the real binaries, scraped and parsed by Prometheus' own
//! Python parser (`prometheus_client`, pinned in `scripts/requirements.txt`) after known
//! traffic: the local Lambda platform's `/metrics` (five invokes, one of them a function error,
//! one throttled invoke), the registrator daemon's `-metrics-addr` (it registers the tagged
//! function), and the server's `/v1/agent/metrics?format=prometheus` with a real Envoy
//! connected (one proxy, pushes acknowledged, no NACK) and the registrator's Lambda service.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::process::{Command, Stdio};

use common::mesh::{
    Envoy, Guard, free_port, get, get_json, put, python, start_platform, wait_until,
};
use common::{BIN, Proc, stderr};
use serde_json::{Value, json};

const PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda";

/// A scrape as `prometheus_client` parsed it: every family typed, documented and unique.
struct Families(Vec<Value>);

impl Families {
    fn scrape(url: &str) -> Families {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut r = agent.get(url).call().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{url}");
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{url}"
        );
        let text = r.body_mut().read_to_string().unwrap();
        let parsed =
            test_support::parse_prometheus(&text).unwrap_or_else(|e| panic!("{url}: {e}\n{text}"));
        let families: Vec<Value> = serde_json::from_str(&parsed).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for f in &families {
            assert_ne!(f["type"], "unknown", "untyped family at {url}: {f}");
            assert!(
                !f["help"].as_str().unwrap().is_empty(),
                "no help at {url}: {f}"
            );
            assert!(
                names.insert(f["name"].as_str().unwrap().to_owned()),
                "twice: {f}"
            );
        }
        Families(families)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.0
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .find(|s| s["name"] == name && s["labels"].as_object() == Some(&want))
            .map(|s| s["value"].as_f64().unwrap())
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// Every sample of `name`, summed over its labels.
    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .filter(|s| s["name"] == name)
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    }
}

fn lambda_create(endpoint: &str, name: &str, code: &std::path::Path, extra: &[&str]) {
    let o = Command::new(BIN)
        .args(["lambda", "create", name, "--dir", code.to_str().unwrap()])
        .args(["--runtime", "python3.11", "--handler", "app.handler"])
        .args(extra)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(o.status.success(), "create {name}: {}", stderr(&o));
}

/// Five invokes of `hello` (the fifth a function error) and one throttled invoke of `limited`,
/// through boto3 with retries off (a retried throttle would count again).
fn invoke_known_traffic(endpoint: &str) {
    let script = format!(
        r#"
import boto3, json
from botocore.config import Config
lam = boto3.client('lambda', endpoint_url='{endpoint}', region_name='us-east-1',
    aws_access_key_id='test', aws_secret_access_key='test',
    config=Config(retries={{'total_max_attempts': 1}}))
for i in range(4):
    r = lam.invoke(FunctionName='hello', Payload=b'{{}}')
    assert 'FunctionError' not in r, r
r = lam.invoke(FunctionName='hello', Payload=json.dumps({{'fail': True}}))
assert r.get('FunctionError') == 'Unhandled', r
lam.put_function_concurrency(FunctionName='limited', ReservedConcurrentExecutions=0)
try:
    lam.invoke(FunctionName='limited', Payload=b'{{}}')
    raise SystemExit('limited was not throttled')
except lam.exceptions.TooManyRequestsException:
    pass
"#
    );
    let o = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "boto3: {}", stderr(&o));
}

#[test]
fn every_prometheus_endpoint_parses_and_counts_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (_platform, endpoint) = start_platform(&dir.path().join("data"));
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("app.py"),
        "def handler(event, context):\n    if event.get('fail'):\n        raise Exception('boom')\n    return {'ok': True}\n",
    )
    .unwrap();
    lambda_create(
        &endpoint,
        "hello",
        &code,
        &["--tag", &format!("{PREFIX}/enabled=true")],
    );
    lambda_create(&endpoint, "limited", &code, &[]);

    // The platform: CloudWatch's metrics per function.
    invoke_known_traffic(&endpoint);
    let m = Families::scrape(&format!("{endpoint}/metrics"));
    let hello = [("function_name", "hello"), ("resource", "hello")];
    let limited = [("function_name", "limited"), ("resource", "limited")];
    assert_eq!(m.get("aws_lambda_invocations_total", &hello), 5.0);
    assert_eq!(m.get("aws_lambda_errors_total", &hello), 1.0);
    assert_eq!(m.get("aws_lambda_throttles_total", &hello), 0.0);
    assert_eq!(m.get("aws_lambda_duration_milliseconds_count", &hello), 5.0);
    assert!(m.get("aws_lambda_duration_milliseconds_sum", &hello) > 0.0);
    assert_eq!(m.get("aws_lambda_concurrent_executions", &hello), 0.0);
    // The error does not end the sandbox (an Unhandled error keeps it warm), so one cold start;
    // the platform may start another only if the first exited, never more than one per invoke.
    let cold = m.get("aws_lambda_cold_starts_total", &hello);
    assert!((1.0..=5.0).contains(&cold), "{cold}");
    assert_eq!(
        m.get("aws_lambda_init_duration_milliseconds_count", &hello),
        cold
    );
    assert_eq!(m.get("aws_lambda_throttles_total", &limited), 1.0);
    assert_eq!(m.get("aws_lambda_invocations_total", &limited), 0.0);
    assert_eq!(m.get("aws_lambda_cold_starts_total", &limited), 0.0);

    // The server with three services and a sidecar, and a real Envoy for it, which serves its
    // Prometheus stats on `envoy_prometheus_bind_addr` as Consul's bootstrap makes it.
    let envoy_metrics = free_port();
    let server = Proc::start(&["agent", "-dev", "-lambda-endpoint", &endpoint]);
    let http = server.http.clone();
    for name in ["a", "b", "c"] {
        put(
            &http,
            "/v1/catalog/register",
            &json!({"Node": "n1", "Address": "127.0.0.1", "Service": {"Service": name, "Port": 80}}),
        );
    }
    put(
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "web", "Port": free_port(), "Connect": {"SidecarService": {
            "Port": free_port(),
            "Proxy": {"Config": {"envoy_prometheus_bind_addr": format!("127.0.0.1:{envoy_metrics}")}}
        }}}),
    );
    let _envoy = Envoy::start(&http, &server.grpc, &["-sidecar-for", "web"]);

    // The registrator daemon registers the tagged function.
    let registrator_metrics = free_port();
    let _registrator = Guard(
        Command::new(BIN)
            .args(["registrator", "run", "-sync-interval", "1s"])
            .args(["-metrics-addr", &format!("127.0.0.1:{registrator_metrics}")])
            .env("CONSUL_HTTP_ADDR", &http)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(30, "hello registered by the registrator", || {
        get_json(&http, "/v1/catalog/services")
            .as_object()
            .is_some_and(|s| s.contains_key("hello"))
    });
    let r = Families::scrape(&format!("http://127.0.0.1:{registrator_metrics}/metrics"));
    assert!(r.get("lambda_registrator_full_syncs_total", &[]) >= 1.0);
    // Only tagged functions are listed as seen (`hello`, not `limited`).
    assert!(r.get("lambda_registrator_functions_seen_total", &[]) >= 1.0);
    assert!(r.get("lambda_registrator_upserts_total", &[]) >= 1.0);
    assert_eq!(r.get("lambda_registrator_errors_total", &[]), 0.0);

    // The server: one Envoy connected, its pushes acknowledged, nothing refused.
    let url = format!("http://{http}/v1/agent/metrics?format=prometheus");
    wait_until(30, "Envoy connected and its listeners acknowledged", || {
        let m = Families::scrape(&url);
        m.value(
            "lambdamesh_xds_push_latency_seconds_count",
            &[("type", "listener")],
        )
        .is_some_and(|n| n >= 1.0)
    });
    let m = Families::scrape(&url);
    let dc = ("datacenter", "dc1");
    assert_eq!(
        m.get("consul_xds_server_streams", &[("version", "v3")]),
        1.0
    );
    assert_eq!(m.sum("lambdamesh_xds_connected_proxies"), 1.0);
    assert!(m.get("lambdamesh_xds_pushes_total", &[("type", "cluster")]) >= 1.0);
    assert_eq!(
        m.sum("lambdamesh_xds_nacks_total"),
        0.0,
        "Envoy refused a push"
    );
    assert!(m.get("lambdamesh_connect_leaf_certificates_issued_total", &[]) >= 1.0);
    let services = get_json(&http, "/v1/catalog/services");
    let services = services.as_object().unwrap();
    for name in ["a", "b", "c", "web", "web-sidecar-proxy", "hello"] {
        assert!(services.contains_key(name), "{name}: {services:?}");
    }
    assert_eq!(m.get("consul_state_services", &[dc]), services.len() as f64);
    assert_eq!(
        m.get(
            "consul_state_connect_instances",
            &[dc, ("kind", "connect-proxy")]
        ),
        1.0
    );
    // The registrator marked `hello` as a Lambda function.
    assert_eq!(m.get("lambdamesh_lambda_services", &[dc]), 1.0);
    assert_eq!(
        m.get(
            "consul_state_config_entries",
            &[dc, ("kind", "service-defaults")]
        ),
        1.0
    );
    assert!(m.get("lambdamesh_store_commit_duration_seconds_count", &[]) >= 1.0);
    let (status, _) = get(&format!("http://{http}/v1/agent/metrics"));
    assert_eq!(status, 200);

    // Envoy's own endpoint (`envoy_prometheus_bind_addr`): Envoy writes TYPE lines without HELP,
    // so only the parse and the values are checked here.
    let (status, text) = get(&format!("http://127.0.0.1:{envoy_metrics}/metrics"));
    assert_eq!(status, 200, "{text}");
    let parsed = test_support::parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let families: Vec<Value> = serde_json::from_str(&parsed).unwrap();
    let sample = |family: &str| {
        families
            .iter()
            .find(|f| f["name"] == family)
            .and_then(|f| f["samples"][0]["value"].as_f64())
            .unwrap_or_else(|| panic!("no {family} in Envoy's scrape"))
    };
    assert_eq!(sample("envoy_server_live"), 1.0);
    // Its ADS stream to the server: the control plane's cluster made at least one connection.
    let ads = families
        .iter()
        .find(|f| f["name"] == "envoy_cluster_upstream_cx")
        .and_then(|f| {
            f["samples"].as_array()?.iter().find(|s| {
                s["labels"]["envoy_cluster_name"] == "local_agent"
                    && s["name"] == "envoy_cluster_upstream_cx_total"
            })
        })
        .and_then(|s| s["value"].as_f64())
        .unwrap_or_else(|| panic!("no local_agent connection count in Envoy's scrape"));
    assert!(ads >= 1.0, "{ads}");
}
