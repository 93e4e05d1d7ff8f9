//! `GET /v1/agent/metrics` through a real HTTP client and a real gRPC client: known traffic (three
//! services registered, config entries, a Lambda marking, one proxy's ADS stream with a NACK and
//! an ACK, a leaf certificate, requests by route and status), then the scrape parsed by
//! Prometheus' own Python parser (`prometheus_client`) and checked by value; Consul's JSON shape;
//! `agent:read` as Consul requires it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::Duration;

use common::TestServer;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// A scrape as `prometheus_client` parsed it.
struct Families(Vec<Value>);

impl Families {
    /// Scrapes `?format=prometheus` and parses it; checks the answer's type and that every
    /// family is typed, documented and appears once.
    fn scrape(s: &TestServer) -> Families {
        let r = s.get("/v1/agent/metrics?format=prometheus");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Self::parse(&r.body)
    }

    fn parse(text: &str) -> Families {
        let json = test_support::parse_prometheus(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let families: Vec<Value> = serde_json::from_str(&json).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for f in &families {
            assert_ne!(f["type"], "unknown", "untyped family {f}");
            assert!(!f["help"].as_str().unwrap().is_empty(), "no help: {f}");
            assert!(
                names.insert(f["name"].as_str().unwrap().to_owned()),
                "twice: {f}"
            );
        }
        Families(families)
    }

    /// The value of sample `name` with exactly these labels (besides none other).
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

    fn family_type(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["type"].as_str())
            .unwrap_or_else(|| panic!("no family {name}"))
    }
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        cluster: "x".into(),
        ..Default::default()
    })
}

/// Known traffic over HTTP: three services on node n1, `web` with a sidecar on the agent, two
/// service-defaults (one a Lambda function) and a proxy-defaults, a 404 and a 400.
fn traffic(s: &TestServer) {
    for name in ["a", "b", "c"] {
        let r = s.put(
            "/v1/catalog/register",
            &json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": name, "Port": 80}})
                .to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = s.put(
        "/v1/agent/service/register",
        &json!({"Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": 21500}}})
            .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for entry in [
        json!({"Kind": "service-defaults", "Name": "a", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "fn", "Protocol": "http",
               "EnvoyExtensions": [{"Name": "builtin/aws/lambda",
                   "Arguments": {"ARN": "arn:aws:lambda:us-east-1:123456789012:function:fn"}}]}),
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
    ] {
        let r = s.put("/v1/config", &entry.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(s.get("/v1/no/such/endpoint").status, 404);
    assert_eq!(s.get("/v1/catalog/service/a?index=x").status, 400);
    assert_eq!(s.get("/v1/catalog/service/b").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrape_counts_known_traffic() {
    let s = tokio::task::spawn_blocking(|| {
        let s = TestServer::start();
        traffic(&s);
        s
    })
    .await
    .unwrap();
    // One proxy connects: a cluster push it NACKs, a listener push it ACKs.
    let mut client = AggregatedDiscoveryServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut stream = client
        .stream_aggregated_resources(tonic::Request::new(ReceiverStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    let mut next = async |type_url: &str| {
        tx.send(DiscoveryRequest {
            node: node("web-sidecar-proxy"),
            type_url: type_url.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    let cds = next(CDS).await;
    let lds = next(LDS).await;
    for (r, error) in [(&cds, Some("bad cluster")), (&lds, None)] {
        tx.send(DiscoveryRequest {
            node: node("web-sidecar-proxy"),
            type_url: r.type_url.clone(),
            version_info: r.version_info.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: error.map(|m| RpcStatus {
                code: 3,
                message: m.into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let s = tokio::task::spawn_blocking(move || {
        // The answers are read by the session in order: wait until both were seen.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let m = loop {
            let m = Families::scrape(&s);
            let answered = |t: &str| {
                m.value("lambdamesh_xds_push_latency_seconds_count", &[("type", t)]) == Some(1.0)
            };
            if answered("cluster") && answered("listener") {
                break m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ACK and NACK not counted"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The catalog, as the catalog API shows it.
        let services = s.get("/v1/catalog/services").json();
        let services = services.as_object().unwrap();
        let instances: usize = services
            .keys()
            .map(|n| {
                s.get(&format!("/v1/catalog/service/{n}"))
                    .json()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        let nodes = s.get("/v1/catalog/nodes").json().as_array().unwrap().len();
        let dc = ("datacenter", "dc1");
        assert!(services.contains_key("a") && services.contains_key("web-sidecar-proxy"));
        assert_eq!(m.get("consul_state_services", &[dc]), services.len() as f64);
        assert_eq!(
            m.get("consul_state_service_instances", &[dc]),
            instances as f64
        );
        assert_eq!(m.get("consul_state_nodes", &[dc]), nodes as f64);
        assert_eq!(
            m.get(
                "consul_state_connect_instances",
                &[dc, ("kind", "connect-proxy")]
            ),
            1.0
        );
        assert_eq!(
            m.get(
                "consul_state_connect_instances",
                &[dc, ("kind", "mesh-gateway")]
            ),
            0.0
        );
        for (kind, n) in [
            ("service-defaults", 2.0),
            ("proxy-defaults", 1.0),
            ("service-router", 0.0),
        ] {
            assert_eq!(
                m.get("consul_state_config_entries", &[dc, ("kind", kind)]),
                n,
                "{kind}"
            );
        }
        assert_eq!(m.get("lambdamesh_lambda_services", &[dc]), 1.0);
        // xDS: one connected proxy, one push of each type, one NACK.
        assert_eq!(
            m.get("consul_xds_server_streams", &[("version", "v3")]),
            1.0
        );
        assert_eq!(
            m.get("lambdamesh_xds_connected_proxies", &[("protocol", "sotw")]),
            1.0
        );
        for t in ["cluster", "listener"] {
            assert_eq!(m.get("lambdamesh_xds_pushes_total", &[("type", t)]), 1.0);
            assert_eq!(
                m.get(
                    "lambdamesh_xds_push_latency_seconds_bucket",
                    &[("type", t), ("le", "+Inf")]
                ),
                1.0
            );
        }
        assert_eq!(
            m.get("lambdamesh_xds_nacks_total", &[("type", "cluster")]),
            1.0
        );
        assert_eq!(
            m.value("lambdamesh_xds_nacks_total", &[("type", "listener")]),
            None
        );
        assert_eq!(
            m.family_type("lambdamesh_xds_push_latency_seconds"),
            "histogram"
        );
        assert_eq!(m.get("consul_xds_server_streamStart_count", &[]), 1.0);
        // The proxy's leaf was signed once for its stream.
        assert_eq!(
            m.get("lambdamesh_connect_leaf_certificates_issued_total", &[]),
            1.0
        );
        // HTTP by route and code, as Consul labels the route.
        let put = |path: &str, code: &str| {
            m.get(
                "lambdamesh_api_http_requests_total",
                &[("method", "PUT"), ("path", path), ("code", code)],
            )
        };
        assert_eq!(put("v1_catalog_register", "200"), 3.0);
        assert_eq!(put("v1_config", "200"), 3.0);
        let get = |path: &str, code: &str| {
            m.value(
                "lambdamesh_api_http_requests_total",
                &[("method", "GET"), ("path", path), ("code", code)],
            )
        };
        assert_eq!(get("unknown", "404"), Some(1.0));
        assert_eq!(get("v1_catalog_service_", "400"), Some(1.0));
        assert_eq!(get("v1_catalog_service_", "200"), Some(1.0));
        assert_eq!(m.family_type("consul_api_http"), "summary");
        assert_eq!(
            m.get(
                "consul_api_http_count",
                &[("method", "PUT"), ("path", "v1_catalog_register")]
            ),
            3.0
        );
        // Store commits: every write was one timed commit here (they came one at a time).
        let applied = m.get("consul_raft_apply_total", &[]);
        assert!(applied >= 6.0, "{applied}");
        let commits = m.get("lambdamesh_store_commit_duration_seconds_count", &[]);
        assert!(commits >= 1.0 && commits <= applied, "{commits} {applied}");
        assert_eq!(m.get("consul_raft_commitTime_count", &[]), commits);
        s
    })
    .await
    .unwrap();
    // The proxy goes away: no connected proxy left.
    drop(tx);
    drop(stream);
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Families::scrape(&s).get("consul_xds_server_streams", &[("version", "v3")]) != 0.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the stream stays counted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
}

#[test]
fn consul_json_shape() {
    let s = TestServer::start();
    traffic(&s);
    let r = s.get("/v1/agent/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    let ts = body["Timestamp"].as_str().unwrap();
    assert!(ts.ends_with(" +0000 UTC") && ts.len() == 29, "{ts}");
    assert_eq!(body["Points"], json!([]));
    let find = |list: &str, name: &str, labels: Value| -> Value {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Name"] == name && m["Labels"] == labels)
            .unwrap_or_else(|| panic!("no {name} {labels} in {list}"))
            .clone()
    };
    let entries = find(
        "Gauges",
        "consul.state.config_entries",
        json!({"datacenter": "dc1", "kind": "service-defaults"}),
    );
    assert_eq!(entries["Value"], json!(2.0));
    let requests = find(
        "Counters",
        "lambdamesh.api.http.requests",
        json!({"method": "PUT", "path": "v1_catalog_register", "code": "200"}),
    );
    assert_eq!(requests["Count"], json!(3));
    assert_eq!(requests["Sum"], json!(3));
    let http = find(
        "Samples",
        "consul.api.http",
        json!({"method": "PUT", "path": "v1_catalog_register"}),
    );
    assert_eq!(http["Count"], json!(3));
    for k in ["Rate", "Sum", "Min", "Max", "Mean", "Stddev"] {
        assert!(http[k].as_f64().unwrap() >= 0.0, "{k}: {http}");
    }
    assert!(http["Min"].as_f64() <= http["Mean"].as_f64());
    assert!(http["Mean"].as_f64() <= http["Max"].as_f64());
    // Any other `format` is the JSON too, as in Consul.
    assert_eq!(
        s.get("/v1/agent/metrics?format=json")
            .header("content-type"),
        Some("application/json")
    );
}

#[test]
fn agent_read_is_required_when_acls_are_on() {
    let s = TestServer::start_with(|c| {
        c.acl.enabled = true;
        c.acl.default_allow = false;
    });
    let mgmt = s.put("/v1/acl/bootstrap", "").json()["SecretID"]
        .as_str()
        .unwrap()
        .to_owned();
    let anonymous = s.get("/v1/agent/metrics?format=prometheus");
    assert_eq!(anonymous.status, 403, "{}", anonymous.body);
    assert!(
        anonymous.body.contains("lacks permission 'agent:read'"),
        "{}",
        anonymous.body
    );
    for (name, rules) in [
        ("reader", r#"agent_prefix "" { policy = "read" }"#),
        ("other", r#"service_prefix "" { policy = "read" }"#),
    ] {
        let p = s.req(
            "PUT",
            "/v1/acl/policy",
            Some(&json!({"Name": name, "Rules": rules}).to_string()),
            Some(&mgmt),
        );
        assert_eq!(p.status, 200, "{}", p.body);
        let t = s.req(
            "PUT",
            "/v1/acl/token",
            Some(&json!({"Policies": [{"Name": name}]}).to_string()),
            Some(&mgmt),
        );
        let secret = t.json()["SecretID"].as_str().unwrap().to_owned();
        let r = s.req(
            "GET",
            "/v1/agent/metrics?format=prometheus",
            None,
            Some(&secret),
        );
        let want = if name == "reader" { 200 } else { 403 };
        assert_eq!(r.status, want, "{name}: {}", r.body);
        if want == 200 {
            Families::parse(&r.body);
        }
    }
    assert_eq!(
        s.req("GET", "/v1/agent/metrics", None, Some(&mgmt)).status,
        200
    );
}
