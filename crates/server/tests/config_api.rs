//! `/v1/config` through a real HTTP client: write/read/list/delete, check-and-set, Consul's
//! validation (weights, protocols, subsets), blocking reads, tenancy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::json;

#[test]
fn write_read_list_delete() {
    let s = TestServer::start();
    let entry = json!({
        "Kind": "service-defaults", "Name": "authentication", "Protocol": "http",
        "Meta": {"serverless.consul.hashicorp.com/v1alpha1/lambda/enabled": "true"},
        "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:lambda:us-east-1:123456789012:function:authentication"}}]
    });
    let r = s.put("/v1/config", &entry.to_string());
    assert_eq!((r.status, r.json()), (200, json!(true)), "{}", r.body);

    let got = s.get("/v1/config/service-defaults/authentication");
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(v["Kind"], "service-defaults");
    assert_eq!(v["Protocol"], "http");
    assert_eq!(
        v["Meta"]["serverless.consul.hashicorp.com/v1alpha1/lambda/enabled"],
        "true"
    );
    assert_eq!(v["EnvoyExtensions"][0]["Name"], "builtin/aws/lambda");
    let (create, modify) = (
        v["CreateIndex"].as_u64().unwrap(),
        v["ModifyIndex"].as_u64().unwrap(),
    );
    assert_eq!(create, modify);
    assert_eq!(got.index, Some(modify));

    // snake_case / lowercase keys are accepted as Consul accepts them.
    let r = s.put(
        "/v1/config",
        r#"{"kind":"service-defaults","name":"web","protocol":"http"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let list = s.get("/v1/config/service-defaults").json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["authentication", "web"]);

    let r = s.delete("/v1/config/service-defaults/web");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({})),
        "a plain delete answers an empty object, as Consul does"
    );
    let r = s.get("/v1/config/service-defaults/web");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("Config entry not found"), "{}", r.body);
}

#[test]
fn check_and_set() {
    let s = TestServer::start();
    let e = r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#;
    assert_eq!(s.put("/v1/config?cas=0", e).json(), json!(true));
    assert_eq!(
        s.put("/v1/config?cas=0", e).json(),
        json!(false),
        "cas=0 only creates"
    );
    let m = s.get("/v1/config/service-defaults/web").json()["ModifyIndex"]
        .as_u64()
        .unwrap();
    let e2 = r#"{"Kind":"service-defaults","Name":"web","Protocol":"grpc"}"#;
    assert_eq!(
        s.put(&format!("/v1/config?cas={}", m + 7), e2).json(),
        json!(false)
    );
    assert_eq!(
        s.get("/v1/config/service-defaults/web").json()["Protocol"],
        "http"
    );
    assert_eq!(
        s.put(&format!("/v1/config?cas={m}"), e2).json(),
        json!(true)
    );
    assert_eq!(
        s.get("/v1/config/service-defaults/web").json()["Protocol"],
        "grpc"
    );
    assert_eq!(
        s.delete("/v1/config/service-defaults/web?cas=1").json(),
        json!(false)
    );
    assert_eq!(s.put("/v1/config?cas=x", e).status, 400);
    // A datacenter with no path to it: Consul's 500 and text.
    let r = s.get("/v1/config/service-defaults/web?dc=dc9");
    assert_eq!(r.status, 500);
    assert_eq!(r.body.trim(), "No path to datacenter");
    assert_eq!(s.get("/v1/config/service-defaults/web?dc=dc1").status, 200);
}

#[test]
fn consul_validation_rules() {
    let s = TestServer::start();
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#
        )
        .status,
        200
    );
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"db","Protocol":"tcp"}"#
        )
        .status,
        200
    );
    let cases = [
        (
            r#"{"Kind":"service-splitter","Name":"web","Splits":[{"Weight":50},{"Weight":40,"Service":"b"}]}"#,
            "100",
        ),
        (
            r#"{"Kind":"service-splitter","Name":"db","Splits":[{"Weight":100}]}"#,
            "protocol",
        ),
        (
            r#"{"Kind":"service-splitter","Name":"web","Splits":[{"Weight":50,"ServiceSubset":"v9"},{"Weight":50}]}"#,
            "v9",
        ),
        (
            r#"{"Kind":"service-widgets","Name":"web"}"#,
            "service-widgets",
        ),
        (r#"{"Name":"web"}"#, "Kind"),
        (
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"smtp"}"#,
            "Protocol",
        ),
        (
            r#"{"Kind":"service-defaults","Name":"web","Protcol":"http"}"#,
            "Protcol",
        ),
        (r#"{"Kind":"proxy-defaults","Name":"web"}"#, "global"),
        (
            r#"{"Kind":"service-router","Name":"web","Routes":[{"Match":{"HTTP":{"PathPrefix":"nope"}}}]}"#,
            "/",
        ),
        (r#"{"Kind":"service-defaults","Name":"a/b"}"#, "a/b"),
        ("Kind = ", "JSON"),
    ];
    for (body, needle) in cases {
        let r = s.put("/v1/config", body);
        assert_eq!(r.status, 400, "{body}: {} {}", r.status, r.body);
        assert!(
            r.body.contains(needle),
            "{body}: expected {needle:?} in {:?}",
            r.body
        );
    }
    // A valid splitter over a resolver's subsets is accepted; removing the subset it uses is not.
    let resolver = r#"{"Kind":"service-resolver","Name":"web","Subsets":{"v1":{"Filter":"Service.Meta.version == v1"},"v2":{"Filter":"Service.Meta.version == v2"}}}"#;
    assert_eq!(s.put("/v1/config", resolver).status, 200);
    let splitter = r#"{"Kind":"service-splitter","Name":"web","Splits":[{"Weight":50,"ServiceSubset":"v1"},{"Weight":50,"ServiceSubset":"v2"}]}"#;
    let r = s.put("/v1/config", splitter);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.put("/v1/config", r#"{"Kind":"service-resolver","Name":"web","Subsets":{"v1":{"Filter":"Service.Meta.version == v1"}}}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    // Making the service tcp would orphan the splitter.
    let r = s.put(
        "/v1/config",
        r#"{"Kind":"service-defaults","Name":"web","Protocol":"tcp"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        s.get("/v1/config/service-defaults/web").json()["Protocol"],
        "http",
        "nothing partially written"
    );
}

#[test]
fn blocking_read_of_one_entry() {
    let s = TestServer::start();
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#
        )
        .status,
        200
    );
    let idx = s.get("/v1/config/service-defaults/web").index.unwrap();
    let base = s.base.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut r = agent
            .get(&format!(
                "{base}/v1/config/service-defaults/web?index={idx}&wait=20s"
            ))
            .call()
            .unwrap();
        (t.elapsed(), r.body_mut().read_to_string().unwrap())
    });
    std::thread::sleep(Duration::from_millis(150));
    // Another entry of the same kind does not wake a watcher of this one.
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"other","Protocol":"http"}"#
        )
        .status,
        200
    );
    std::thread::sleep(Duration::from_millis(150));
    assert!(!waiter.is_finished());
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"grpc"}"#
        )
        .status,
        200
    );
    let (elapsed, body) = waiter.join().unwrap();
    assert!(elapsed < Duration::from_secs(10));
    assert!(body.contains("grpc"));
}

#[test]
fn namespaces_are_part_of_the_name() {
    let s = TestServer::start();
    assert_eq!(
        s.put(
            "/v1/config?ns=team-a",
            r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#
        )
        .status,
        200
    );
    assert_eq!(s.get("/v1/config/service-defaults/web").status, 404);
    let v = s.get("/v1/config/service-defaults/web?ns=team-a").json();
    assert_eq!(v["Namespace"], "team-a");
    assert_eq!(s.get("/v1/config/service-defaults").json(), json!([]));
    assert_eq!(
        s.get("/v1/config/service-defaults?ns=team-a")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A misspelt `builtin/aws/lambda` argument is a 400 naming it (Consul stored it and passthrough
/// silently stayed off); every spelling Consul reads (any case) is still accepted.
#[test]
fn lambda_extension_arguments_are_checked_by_name() {
    let s = TestServer::start();
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:greeter";
    let entry = |args: serde_json::Value| {
        json!({"Kind": "service-defaults", "Name": "greeter", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": args}]})
        .to_string()
    };
    let r = s.put(
        "/v1/config",
        &entry(json!({"ARN": arn, "PayloadPasthrough": true})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("EnvoyExtensions[0].Arguments")
            && r.body.contains("\"PayloadPasthrough\"")
            && r.body.contains("did you mean \"PayloadPassthrough\""),
        "{}",
        r.body
    );
    assert_eq!(
        s.get("/v1/config/service-defaults/greeter").status,
        404,
        "nothing stored"
    );
    for args in [
        json!({"ARN": arn, "PayloadPassthrough": true, "InvocationMode": "synchronous"}),
        json!({"arn": arn, "payloadPassthrough": true, "invocationMode": "asynchronous"}),
        json!({"Arn": arn}),
    ] {
        let r = s.put("/v1/config", &entry(args.clone()));
        assert_eq!(r.status, 200, "{args}: {}", r.body);
    }
}
