//! `/v1/connect/intentions/*` through a real HTTP client: exact CRUD, match ordering, check with
//! Consul's precedence, L7 permissions, and the config-entry view of the same data.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use common::TestServer;
use serde_json::json;

fn put_intention(s: &TestServer, src: &str, dst: &str, body: serde_json::Value) -> common::Resp {
    s.put(
        &format!("/v1/connect/intentions/exact?source={src}&destination={dst}"),
        &body.to_string(),
    )
}

fn allowed(s: &TestServer, src: &str, dst: &str) -> bool {
    let r = s.get(&format!(
        "/v1/connect/intentions/check?source={src}&destination={dst}"
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["Allowed"].as_bool().unwrap()
}

#[test]
fn exact_crud_and_config_entry_view() {
    let s = TestServer::start();
    let r = put_intention(
        &s,
        "api",
        "authentication",
        json!({"Action": "allow", "Description": "api may log in"}),
    );
    assert_eq!((r.status, r.json()), (200, json!(true)), "{}", r.body);
    let i = s
        .get("/v1/connect/intentions/exact?source=api&destination=authentication")
        .json();
    assert_eq!(i["SourceName"], "api");
    assert_eq!(i["DestinationName"], "authentication");
    assert_eq!(i["Action"], "allow");
    assert_eq!(i["Precedence"], 9);
    assert_eq!(i["SourceNS"], "default");
    // The same data is a service-intentions config entry.
    let e = s.get("/v1/config/service-intentions/authentication").json();
    assert_eq!(e["Sources"][0]["Name"], "api");
    assert_eq!(e["Sources"][0]["Action"], "allow");
    // A second source on the same destination is added, not replacing the first.
    assert_eq!(
        put_intention(&s, "web", "authentication", json!({"Action": "deny"})).status,
        200
    );
    assert_eq!(
        s.get("/v1/config/service-intentions/authentication").json()["Sources"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.get("/v1/connect/intentions")
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Delete one, then the other: the entry disappears.
    assert_eq!(
        s.delete("/v1/connect/intentions/exact?source=web&destination=authentication")
            .status,
        200
    );
    assert_eq!(
        s.get("/v1/connect/intentions")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.delete("/v1/connect/intentions/exact?source=api&destination=authentication")
            .status,
        200
    );
    assert_eq!(
        s.get("/v1/config/service-intentions/authentication").status,
        404
    );
    let r = s.get("/v1/connect/intentions/exact?source=api&destination=authentication");
    assert_eq!(r.status, 404);
}

#[test]
fn precedence_decides() {
    let s = TestServer::start();
    // Default allow (ACLs off): nothing matches → allowed.
    assert!(allowed(&s, "api", "web"));
    assert_eq!(
        put_intention(&s, "*", "*", json!({"Action": "deny"})).status,
        200
    );
    assert!(!allowed(&s, "api", "web"));
    assert_eq!(
        put_intention(&s, "*", "web", json!({"Action": "allow"})).status,
        200
    );
    assert!(
        allowed(&s, "api", "web"),
        "(default/*→web)=8 beats (default/*→default/*)=5"
    );
    assert_eq!(
        put_intention(&s, "api", "web", json!({"Action": "deny"})).status,
        200
    );
    assert!(!allowed(&s, "api", "web"), "(api→web)=9 beats (*→web)=8");
    assert!(allowed(&s, "other", "web"));
    assert!(!allowed(&s, "api", "db"));

    let m = s
        .get("/v1/connect/intentions/match?by=destination&name=web")
        .json();
    let order: Vec<(String, u64)> = m["web"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["SourceName"].as_str().unwrap().to_owned(),
                i["Precedence"].as_u64().unwrap(),
            )
        })
        .collect();
    // The source "*" keeps the exact namespace "default": (E,*→E,E)=8 and (E,*→E,*)=5.
    assert_eq!(
        order,
        [
            ("api".to_owned(), 9),
            ("*".to_owned(), 8),
            ("*".to_owned(), 5)
        ]
    );
    let by_src = s
        .get("/v1/connect/intentions/match?by=source&name=api")
        .json();
    assert_eq!(by_src["api"].as_array().unwrap().len(), 3);
}

#[test]
fn l7_permissions_and_bad_input() {
    let s = TestServer::start();
    let perm = json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/login", "Methods": ["POST"]}}]});
    // L7 needs an HTTP destination.
    let r = put_intention(&s, "api", "authentication", perm.clone());
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"authentication","Protocol":"http"}"#
        )
        .status,
        200
    );
    let r = put_intention(&s, "api", "authentication", perm);
    assert_eq!(r.status, 200, "{}", r.body);
    let i = s
        .get("/v1/connect/intentions/exact?source=api&destination=authentication")
        .json();
    assert_eq!(i["Permissions"][0]["HTTP"]["PathPrefix"], "/login");
    // An L7 intention counts as deny for /check (it cannot see the request).
    assert!(!allowed(&s, "api", "authentication"));

    for (q, body, needle) in [
        (
            "source=api&destination=web",
            r#"{"Action":"maybe"}"#,
            "maybe",
        ),
        (
            "source=api&destination=web",
            r#"{"Action":"allow","Permissions":[{"Action":"allow","HTTP":{"PathExact":"/x"}}]}"#,
            "Permissions",
        ),
        ("destination=web", r#"{"Action":"allow"}"#, "source"),
        ("source=api&destination=web", "{", "JSON"),
        (
            "source=a%2Fb%2Fc%2Fd&destination=web",
            r#"{"Action":"allow"}"#,
            "source",
        ),
    ] {
        let r = s.put(&format!("/v1/connect/intentions/exact?{q}"), body);
        assert_eq!(r.status, 400, "{q} {body}: {}", r.body);
        assert!(
            r.body.to_lowercase().contains(&needle.to_lowercase()),
            "{q} {body}: {needle:?} not in {}",
            r.body
        );
    }
    assert_eq!(
        s.get("/v1/connect/intentions/match?by=sideways&name=x")
            .status,
        400
    );
    assert_eq!(s.get("/v1/connect/intentions/match?by=source").status, 400);
}
