//! Catalog, agent, health and status endpoints through a real HTTP client, including blocking
//! queries and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;

const LAMBDA_REG: &str = r#"{"Node":"lambdas","SkipNodeUpdate":true,"NodeMeta":{"external-node":"true","external-probe":"true"},
  "Service":{"ID":"greeter","Service":"greeter","Tags":["managed-by-lambda-registrator"]}}"#;

#[test]
fn catalog_register_read_deregister() {
    let s = TestServer::start();
    let r = s.put("/v1/catalog/register", LAMBDA_REG);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!(true));

    let services = s.get("/v1/catalog/services");
    assert_eq!(services.status, 200);
    assert!(services.index.unwrap() >= 1);
    assert_eq!(services.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(
        services.json()["greeter"],
        json!(["managed-by-lambda-registrator"])
    );
    assert_eq!(
        services.json()["consul"],
        json!([]),
        "the server registers itself"
    );

    let rows = s.get("/v1/catalog/service/greeter").json();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["Node"], "lambdas");
    assert_eq!(rows[0]["ServiceID"], "greeter");
    assert_eq!(rows[0]["NodeMeta"]["external-node"], "true");
    assert_eq!(rows[0]["Datacenter"], "dc1");
    assert_eq!(rows[0]["Namespace"], "default");

    // ?tag filters; an unknown tag gives an empty list, not an error.
    assert_eq!(
        s.get("/v1/catalog/service/greeter?tag=managed-by-lambda-registrator")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/v1/catalog/service/greeter?tag=other").json(),
        json!([])
    );
    // ?filter with go-bexpr syntax.
    assert_eq!(
        s.get("/v1/catalog/service/greeter?filter=NodeMeta.external-node%20%3D%3D%20true")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/v1/catalog/service/greeter?filter=ServicePort%20%3D%3D%2099")
            .json(),
        json!([])
    );
    let bad = s.get("/v1/catalog/service/greeter?filter=ServicePort%20%3D%3D");
    assert_eq!(bad.status, 400, "{}", bad.body);

    let nodes = s.get("/v1/catalog/nodes").json();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Node"] == "lambdas")
    );
    // ?filter on nodes too (what `catalog nodes -filter` sends).
    let only = s
        .get("/v1/catalog/nodes?filter=Node%20%3D%3D%20lambdas")
        .json();
    assert_eq!(
        only.as_array()
            .unwrap()
            .iter()
            .map(|n| n["Node"].clone())
            .collect::<Vec<_>>(),
        [json!("lambdas")]
    );
    assert_eq!(s.get("/v1/catalog/nodes?filter=Node%20%3D%3D").status, 400);
    let node = s.get("/v1/catalog/node/lambdas").json();
    assert_eq!(node["Services"]["greeter"]["Service"], "greeter");

    let r = s.put(
        "/v1/catalog/deregister",
        r#"{"Node":"lambdas","ServiceID":"greeter"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get("/v1/catalog/service/greeter").json(), json!([]));
    assert!(
        s.get("/v1/catalog/services")
            .json()
            .get("greeter")
            .is_none()
    );
}

#[test]
fn bad_input_is_a_400_naming_the_problem() {
    let s = TestServer::start();
    let cases = [
        ("/v1/catalog/register", "{not json", "invalid JSON"),
        (
            "/v1/catalog/register",
            r#"{"Address":"1.2.3.4"}"#,
            "Must provide node",
        ),
        (
            "/v1/catalog/register",
            r#"{"Node":"n","Service":{"Service":"a/b"}}"#,
            "invalid characters",
        ),
        ("/v1/catalog/register", r#"{"Node":"n","Bogus":1}"#, "Bogus"),
        (
            "/v1/catalog/register",
            r#"{"Node":"n","Service":{"Service":"x","Port":99999}}"#,
            "Port",
        ),
        (
            "/v1/catalog/register",
            r#"{"Node":"n","Check":{"CheckID":"c","ServiceID":"missing","TTL":"5s"}}"#,
            "Missing service for check",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Port":80}"#,
            "Missing service name",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name":"x","Check":{"TTL":"soon"}}"#,
            "TTL",
        ),
        // A value of the wrong type names the field's path (in Consul's spelling, whatever
        // spelling the body used), not only what serde expected.
        (
            "/v1/catalog/register",
            r#"{"Node":"n","Service":{"Service":"web","Port":"abc"}}"#,
            r#"Service.Port: invalid type: string "abc", expected i64"#,
        ),
        (
            "/v1/catalog/register",
            r#"{"node":"n","service":{"service":"web","port":"abc"}}"#,
            "Service.Port: invalid type",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name":"web","Port":"abc"}"#,
            r#"Port: invalid type: string "abc""#,
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name":"web","Connect":{"SidecarService":{"Proxy":{"Upstreams":[{"DestinationName":"db","LocalBindPort":"x"}]}}}}"#,
            "Connect.SidecarService.Proxy.Upstreams[0].LocalBindPort: invalid type",
        ),
        (
            "/v1/agent/check/register",
            r#"{"Name":"c","TTL":5}"#,
            "TTL: invalid type",
        ),
    ];
    for (path, body, needle) in cases {
        let r = s.put(path, body);
        assert_eq!(r.status, 400, "{path} {body}: {} {}", r.status, r.body);
        assert!(
            r.body.contains(needle),
            "{path} {body}: expected {needle:?} in {:?}",
            r.body
        );
    }
    for (path, needle) in [
        ("/v1/catalog/services?index=abc", "Invalid index"),
        ("/v1/catalog/services?wait=forever", "Invalid wait time"),
        ("/v1/catalog/services?ns=Bad_NS", "namespace"),
        ("/v1/health/state/sideways", "Invalid check state"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains(needle), "{path}: {}", r.body);
    }
    // Too large a body: 413 with the limit, nothing written.
    let big = format!(
        r#"{{"Node":"n","NodeMeta":{{"k":"{}"}}}}"#,
        "x".repeat(600 * 1024)
    );
    let r = s.put("/v1/catalog/register", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("max size"), "{}", r.body);
    assert!(!s.get("/v1/catalog/nodes").body.contains("\"n\""));
    // Unknown endpoints are 404s with a message.
    let r = s.get("/v1/nope");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("/v1/nope"));
}

#[test]
fn agent_register_expands_the_seed_sidecar() {
    let s = TestServer::start();
    let body = json!({
        "Name": "api", "ID": "api", "Port": 9090,
        "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"DestinationName": "authentication", "LocalBindPort": 2345}]}}}
    });
    let r = s.put("/v1/agent/service/register", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let services = s.get("/v1/agent/services").json();
    let sidecar = &services["api-sidecar-proxy"];
    assert_eq!(sidecar["Kind"], "connect-proxy");
    assert_eq!(sidecar["Service"], "api-sidecar-proxy");
    assert_eq!(sidecar["Port"], 21000);
    assert_eq!(sidecar["Proxy"]["DestinationServiceName"], "api");
    assert_eq!(sidecar["Proxy"]["LocalServicePort"], 9090);
    assert_eq!(
        sidecar["Proxy"]["Upstreams"][0]["DestinationName"],
        "authentication"
    );
    assert_eq!(sidecar["Proxy"]["Upstreams"][0]["LocalBindPort"], 2345);

    // health/connect lists the sidecar for the service.
    let c = s.get("/v1/health/connect/api").json();
    assert_eq!(c.as_array().unwrap().len(), 1);
    assert_eq!(c[0]["Service"]["ID"], "api-sidecar-proxy");

    // A second service gets the next port; re-registering keeps the sidecar's port.
    let web = json!({"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}});
    assert_eq!(
        s.put("/v1/agent/service/register", &web.to_string()).status,
        200
    );
    assert_eq!(
        s.get("/v1/agent/service/web-sidecar-proxy").json()["Port"],
        21001
    );
    assert_eq!(
        s.put("/v1/agent/service/register", &web.to_string()).status,
        200
    );
    assert_eq!(
        s.get("/v1/agent/service/web-sidecar-proxy").json()["Port"],
        21001
    );

    // Deregistering the service removes its sidecar too.
    assert_eq!(s.put("/v1/agent/service/deregister/api", "").status, 200);
    let services = s.get("/v1/agent/services").json();
    assert!(services.get("api").is_none() && services.get("api-sidecar-proxy").is_none());
    let r = s.put("/v1/agent/service/deregister/api", "");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("Unknown service ID"));
}

#[test]
fn ttl_checks_drive_health() {
    let s = TestServer::start();
    let body = json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"CheckID": "web-ttl", "TTL": "1s"}});
    assert_eq!(
        s.put("/v1/agent/service/register", &body.to_string())
            .status,
        200
    );
    // New checks start critical, so ?passing hides the instance.
    assert_eq!(
        s.get("/v1/health/service/web")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.get("/v1/health/service/web?passing").json(), json!([]));
    assert_eq!(
        s.put("/v1/agent/check/pass/web-ttl?note=fine", "").status,
        200
    );
    let h = s.get("/v1/health/service/web?passing").json();
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(
        h[0]["Checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["CheckID"] == "web-ttl")
            .unwrap()["Output"],
        "fine"
    );
    let checks = s.get("/v1/health/checks/web").json();
    assert_eq!(checks[0]["Status"], "passing");
    // Without a refresh the TTL expires and the instance turns critical.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s.get("/v1/health/checks/web").json()[0]["Status"].clone();
        if st == "critical" {
            break;
        }
        assert!(Instant::now() < deadline, "TTL never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        s.get("/v1/health/checks/web").json()[0]["Output"]
            .as_str()
            .unwrap()
            .contains("TTL expired")
    );
    // warn/fail/update, and bad ids.
    assert_eq!(s.put("/v1/agent/check/warn/web-ttl", "").status, 200);
    assert_eq!(
        s.get("/v1/agent/checks").json()["web-ttl"]["Status"],
        "warning"
    );
    assert_eq!(
        s.put(
            "/v1/agent/check/update/web-ttl",
            r#"{"Status":"passing","Output":"ok"}"#
        )
        .status,
        200
    );
    assert_eq!(
        s.put("/v1/agent/check/update/web-ttl", r#"{"Status":"great"}"#)
            .status,
        400
    );
    assert_eq!(s.put("/v1/agent/check/fail/nope", "").status, 404);
}

#[test]
fn blocking_query_wakes_on_change_and_times_out_otherwise() {
    let s = TestServer::start();
    assert_eq!(s.put("/v1/catalog/register", LAMBDA_REG).status, 200);
    let first = s.get("/v1/catalog/service/greeter");
    let idx = first.index.unwrap();

    // Nothing changes: the wait times out after ~wait and returns the same index.
    let t = Instant::now();
    let r = s.get(&format!(
        "/v1/catalog/service/greeter?index={idx}&wait=300ms"
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "returned early: {:?}",
        t.elapsed()
    );
    assert_eq!(r.index, Some(idx));

    // An unrelated write does not end the wait; a write to the service does.
    let base = s.base.clone();
    let waiter = std::thread::spawn(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let t = Instant::now();
        let mut resp = agent
            .get(&format!(
                "{base}/v1/catalog/service/greeter?index={idx}&wait=20s"
            ))
            .call()
            .unwrap();
        let index: u64 = resp
            .headers()
            .get("X-Consul-Index")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (
            t.elapsed(),
            index,
            resp.body_mut().read_to_string().unwrap(),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.put(
            "/v1/catalog/register",
            r#"{"Node":"other","Address":"127.0.0.2","Service":{"Service":"db"}}"#
        )
        .status,
        200
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiter.is_finished(), "an unrelated write woke the watcher");
    let r = s.put(
        "/v1/catalog/register",
        r#"{"Node":"other","Address":"127.0.0.2","Service":{"Service":"greeter","ID":"g2"}}"#,
    );
    assert_eq!(r.status, 200);
    let (elapsed, new_idx, body) = waiter.join().unwrap();
    assert!(elapsed < Duration::from_secs(10));
    assert!(new_idx > idx);
    assert!(body.contains("g2"));
}

#[test]
fn status_and_self() {
    let s = TestServer::start();
    let leader = s.get("/v1/status/leader");
    assert_eq!(leader.status, 200);
    assert!(leader.json().as_str().unwrap().ends_with(":8300"));
    let me = s.get("/v1/agent/self").json();
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["NodeName"], "test-node");
    assert_eq!(s.get("/v1/catalog/datacenters").json(), json!(["dc1"]));
}

#[test]
fn state_survives_restart() {
    let s = TestServer::start();
    assert_eq!(s.put("/v1/catalog/register", LAMBDA_REG).status, 200);
    let idx = s.get("/v1/catalog/services").index.unwrap();
    let dir = s.stop();
    let s = TestServer::start_in(dir, |_| {});
    let r = s.get("/v1/catalog/services");
    assert!(r.json().get("greeter").is_some());
    assert!(
        r.index.unwrap() >= idx,
        "index went backwards across a restart"
    );
}
