//! The web UI's own reads and its assets through a real HTTP client: `/v1/internal/ui/services`
//! (Consul's summary rows plus the Lambda marking), `/v1/internal/ui/service/{name}` (the
//! compiled chain with live weights, upstreams and downstreams, blocking on what it read),
//! `/v1/internal/acl/authorize`, and `/ui/` with its headers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:greeter-lambda:live";

fn ok(s: &TestServer, path: &str, body: Value) {
    let r = s.put(path, &body.to_string());
    assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
}

fn seed(s: &TestServer) {
    for (name, port) in [("greeter", 9090), ("name", 9091), ("ingress", 8080)] {
        ok(
            s,
            "/v1/catalog/register",
            json!({"Node": "vm", "Address": "127.0.0.1", "Service": {"Service": name, "Port": port},
                "Checks": [{"CheckID": format!("{name}-up"), "ServiceID": name, "Status": "passing"}]}),
        );
    }
    for (svc, up) in [("greeter", "name"), ("ingress", "greeter")] {
        ok(
            s,
            "/v1/catalog/register",
            json!({"Node": "vm", "Address": "127.0.0.1", "Service": {"Kind": "connect-proxy",
                "Service": format!("{svc}-sidecar-proxy"), "Port": 21000,
                "Proxy": {"DestinationServiceName": svc, "Upstreams": [{"DestinationName": up, "LocalBindPort": 9000}]}}}),
        );
    }
    ok(
        s,
        "/v1/catalog/register",
        json!({"Node": "lambdas", "Address": "lambda", "Service": {"Service": "greeter-lambda", "Port": 443,
            "Meta": {"managed-by-lambda-registrator": "true"}}}),
    );
    ok(
        s,
        "/v1/config",
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
    );
    ok(
        s,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "greeter-lambda", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN, "InvocationMode": "asynchronous"}}]}),
    );
    ok(
        s,
        "/v1/config",
        json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 75, "Service": "greeter"}, {"Weight": 25, "Service": "greeter-lambda"}]}),
    );
}

#[test]
fn services_summary_marks_lambda_functions_and_folds_sidecars() {
    let s = TestServer::start();
    seed(&s);
    let r = s.get("/v1/internal/ui/services");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.index.is_some());
    let rows = r.json();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with("sidecar-proxy")),
        "{names:?}"
    );
    let row = |n: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["Name"] == n)
            .unwrap()
            .clone()
    };
    let l = row("greeter-lambda");
    assert_eq!(l["Lambda"]["ARN"], ARN);
    assert_eq!(l["Lambda"]["Region"], "us-east-1");
    assert_eq!(l["Lambda"]["InvocationMode"], "asynchronous");
    assert_eq!(l["Lambda"]["PayloadPassthrough"], false);
    assert_eq!(l["ExternalSources"], json!(["lambda-registrator"]));
    let g = row("greeter");
    assert!(g.get("Lambda").is_none());
    assert_eq!(g["ConnectedWithProxy"], true);
    assert_eq!(g["InstanceCount"], 1);
    assert_eq!(g["ChecksPassing"], 1);
}

#[test]
fn service_view_has_live_weights_neighbours_and_blocks_on_its_chain() {
    let s = TestServer::start();
    seed(&s);
    let r = s.get("/v1/internal/ui/service/greeter");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["Upstreams"], json!(["name"]));
    assert_eq!(v["Downstreams"], json!(["ingress"]));
    assert_eq!(v["Protocol"], "http");
    assert_eq!(v["Splitter"]["Splits"][1]["Weight"], 25.0);
    let dests = &v["Routes"][0]["Destinations"];
    let weight = |svc: &str| {
        dests
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["Service"] == svc)
            .map(|d| d["Weight"].clone())
    };
    assert_eq!(weight("greeter"), Some(json!(75.0)));
    assert_eq!(weight("greeter-lambda"), Some(json!(25.0)));

    // A blocking read wakes on the splitter write.
    let index = r.index.unwrap();
    let base = s.base.clone();
    let waiter = std::thread::spawn(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        agent
            .get(format!(
                "{base}/v1/internal/ui/service/greeter?index={index}&wait=30s"
            ))
            .call()
            .unwrap()
            .body_mut()
            .read_json::<Value>()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    ok(
        &s,
        "/v1/config",
        json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 10, "Service": "greeter"}, {"Weight": 90, "Service": "greeter-lambda"}]}),
    );
    let after = waiter.join().unwrap();
    assert_eq!(after["Splitter"]["Splits"][1]["Weight"], 90.0);

    let lambda = s.get("/v1/internal/ui/service/greeter-lambda").json();
    assert_eq!(lambda["Lambda"]["ARN"], ARN);
    // ingress calls greeter, whose splitter sends to greeter-lambda.
    assert_eq!(lambda["Downstreams"], json!(["ingress"]));
    assert_eq!(lambda["Registrator"][0]["Node"], "lambdas");
    let entries = s.get("/v1/internal/ui/config").json();
    let kinds: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["Kind"].as_str().unwrap().to_owned(),
                e["Name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("service-splitter".into(), "greeter".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("proxy-defaults".into(), "global".into())),
        "{kinds:?}"
    );
    let missing = s.get("/v1/internal/ui/service/nothing").json();
    assert_eq!(missing["Exists"], false);
}

#[test]
fn authorize_answers_per_access_and_acl_filters_the_summary() {
    let s = TestServer::start_with(|c| {
        c.acl.enabled = true;
        c.acl.default_allow = false;
    });
    let mgmt = s.put("/v1/acl/bootstrap", "").json()["SecretID"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = s.req(
        "PUT",
        "/v1/acl/policy",
        Some(&json!({"Name": "ro", "Rules": "service \"web\" {\n policy = \"read\"\n intentions = \"read\"\n}"}).to_string()),
        Some(&mgmt),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    let t = s.req(
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Policies": [{"Name": "ro"}]}).to_string()),
        Some(&mgmt),
    );
    let ro = t.json()["SecretID"].as_str().unwrap().to_owned();
    for name in ["web", "db"] {
        let r = s.req(
            "PUT",
            "/v1/catalog/register",
            Some(
                &json!({"Node": "n", "Address": "1.2.3.4", "Service": {"Service": name}})
                    .to_string(),
            ),
            Some(&mgmt),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let body = json!([
        {"Resource": "service", "Segment": "web", "Access": "read"},
        {"Resource": "service", "Segment": "web", "Access": "write"},
        {"Resource": "intention", "Segment": "web", "Access": "write"},
        {"Resource": "operator", "Access": "write"},
    ])
    .to_string();
    let r = s.req("POST", "/v1/internal/acl/authorize", Some(&body), Some(&ro));
    assert_eq!(r.status, 200, "{}", r.body);
    let allow: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Allow"].clone())
        .collect();
    assert_eq!(
        allow,
        [json!(true), json!(false), json!(false), json!(false)]
    );
    let r = s.req(
        "POST",
        "/v1/internal/acl/authorize",
        Some(&body),
        Some(&mgmt),
    );
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["Allow"] == true)
    );
    let r = s.req(
        "POST",
        "/v1/internal/acl/authorize",
        Some(r#"[{"Resource": "spaceship", "Access": "read"}]"#),
        Some(&ro),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("Invalid resource \"spaceship\""),
        "{}",
        r.body
    );

    let r = s.req("GET", "/v1/internal/ui/services", None, Some(&ro));
    let names: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].clone())
        .collect();
    assert_eq!(names, [json!("web")]);
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    let r = s.req("GET", "/v1/internal/ui/service/db", None, Some(&ro));
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn assets_are_served_with_etags_and_a_strict_policy() {
    let s = TestServer::start();
    let r = s.get("/ui/");
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("<script type=\"module\" src=\"/ui/app.js\">")
    );
    assert!(
        r.header("Content-Security-Policy")
            .unwrap()
            .starts_with("default-src 'self'")
    );
    let r = s.get("/ui/pages/services.js");
    assert_eq!(r.status, 200);
    assert!(
        r.header("Content-Type")
            .unwrap()
            .starts_with("text/javascript")
    );
    // A client-side route is the page; a missing file is a 404.
    assert!(s.get("/ui/services/web").body.contains("/ui/app.js"));
    assert_eq!(s.get("/ui/nope.js").status, 404);
    assert_eq!(s.get("/ui/../Cargo.toml").status, 404);
}
