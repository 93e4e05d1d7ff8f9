//! ACLs through a real HTTP client: bootstrap once, tokens and policies, Consul's exact 403
//! texts, both token headers, filtering of reads, and persistence across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use common::TestServer;
use serde_json::json;

fn acl_server(default_allow: bool) -> TestServer {
    TestServer::start_with(|c| {
        c.acl.enabled = true;
        c.acl.default_allow = default_allow;
    })
}

fn bootstrap(s: &TestServer) -> String {
    let r = s.put("/v1/acl/bootstrap", "");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["SecretID"].as_str().unwrap().to_owned()
}

fn make_token(s: &TestServer, mgmt: &str, name: &str, rules: &str) -> (String, String) {
    let p = s.req(
        "PUT",
        "/v1/acl/policy",
        Some(&json!({"Name": name, "Rules": rules}).to_string()),
        Some(mgmt),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    let t = s.req(
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Description": name, "Policies": [{"Name": name}]}).to_string()),
        Some(mgmt),
    );
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    assert_eq!(
        t["Policies"][0]["ID"],
        p.json()["ID"],
        "links resolve by name to the policy's ID"
    );
    (
        t["AccessorID"].as_str().unwrap().to_owned(),
        t["SecretID"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn bootstrap_once_and_disabled_acls() {
    let off = TestServer::start();
    let r = off.put("/v1/acl/bootstrap", "");
    assert_eq!(r.status, 401);
    assert_eq!(r.body, "ACL support disabled");

    let s = acl_server(false);
    let secret = bootstrap(&s);
    let me = s
        .req("GET", "/v1/acl/token/self", None, Some(&secret))
        .json();
    assert_eq!(me["Policies"][0]["Name"], "global-management");
    assert_eq!(me["Description"], "Bootstrap Token (Global Management)");
    let again = s.put("/v1/acl/bootstrap", "");
    assert_eq!(again.status, 403);
    assert!(
        again
            .body
            .starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{}",
        again.body
    );
}

#[test]
fn default_deny_enforces_and_filters() {
    let s = acl_server(false);
    let mgmt = bootstrap(&s);
    // Anonymous: writes are 403 with Consul's text, reads are filtered (not 403).
    let r = s.put(
        "/v1/catalog/register",
        r#"{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"web"}}"#,
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        "Permission denied: anonymous token lacks permission 'service:write' on \"web\""
    );
    let r = s.get("/v1/catalog/services");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));

    // The management token can do anything; Authorization: Bearer works like X-Consul-Token.
    for (node, svc) in [("n1", "web"), ("n1", "db")] {
        let body =
            json!({"Node": node, "Address": "127.0.0.1", "Service": {"Service": svc}}).to_string();
        let url = format!("{}/v1/catalog/register", s.base);
        let resp = ureq::put(&url)
            .header("Authorization", &format!("Bearer {mgmt}"))
            .send(body)
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    let (accessor, web) = make_token(
        &s,
        &mgmt,
        "web-writer",
        "service \"web\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"write\" }",
    );
    let ok = s.req(
        "PUT",
        "/v1/catalog/register",
        Some(r#"{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"web","ID":"web-2"}}"#),
        Some(&web),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let denied = s.req(
        "PUT",
        "/v1/catalog/register",
        Some(r#"{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"db","ID":"db-2"}}"#),
        Some(&web),
    );
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body,
        format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'service:write' on \"db\""
        )
    );
    // Config entries follow the same rules; proxy-defaults needs operator:write.
    assert_eq!(
        s.req(
            "PUT",
            "/v1/config",
            Some(r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#),
            Some(&web)
        )
        .status,
        200
    );
    let r = s.req(
        "PUT",
        "/v1/config",
        Some(r#"{"Kind":"proxy-defaults","Name":"global"}"#),
        Some(&web),
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("operator:write"), "{}", r.body);
    // Intentions need `intentions = "write"` on the destination.
    let r = s.req(
        "PUT",
        "/v1/connect/intentions/exact?source=a&destination=web",
        Some(r#"{"Action":"allow"}"#),
        Some(&web),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // A read-only token for "we*" sees web but not db.
    let (_, reader) = make_token(
        &s,
        &mgmt,
        "we-reader",
        "service_prefix \"we\" { policy = \"read\" }",
    );
    let r = s.req("GET", "/v1/catalog/services", None, Some(&reader));
    let v = r.json();
    assert!(v.get("web").is_some() && v.get("db").is_none(), "{v}");
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    assert_eq!(
        s.req("GET", "/v1/catalog/service/db", None, Some(&reader))
            .json(),
        json!([])
    );

    // An unknown secret is "ACL not found".
    let r = s.req(
        "GET",
        "/v1/catalog/services",
        None,
        Some("00000000-1111-2222-3333-444444444444"),
    );
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    // Deleting the token revokes it at once.
    assert_eq!(
        s.req(
            "DELETE",
            &format!("/v1/acl/token/{accessor}"),
            None,
            Some(&mgmt)
        )
        .status,
        200
    );
    assert_eq!(
        s.req("GET", "/v1/catalog/services", None, Some(&web))
            .status,
        403
    );
}

#[test]
fn default_allow_and_bad_policies() {
    let s = acl_server(true);
    let mgmt = bootstrap(&s);
    // Default allow: anonymous may write.
    assert_eq!(
        s.put(
            "/v1/catalog/register",
            r#"{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"web"}}"#
        )
        .status,
        200
    );
    // A deny rule beats the default.
    let (_, t) = make_token(&s, &mgmt, "no-web", "service \"web\" { policy = \"deny\" }");
    assert_eq!(
        s.req("GET", "/v1/catalog/service/web", None, Some(&t))
            .json(),
        json!([])
    );
    for (rules, needle) in [
        ("service \"x\" { policy = \"sometimes\" }", "sometimes"),
        ("servicez \"x\" { policy = \"read\" }", "servicez"),
        ("service \"x\" {", "parse"),
    ] {
        let r = s.req(
            "PUT",
            "/v1/acl/policy",
            Some(&json!({"Name": "bad", "Rules": rules}).to_string()),
            Some(&mgmt),
        );
        assert_eq!(r.status, 400, "{rules}: {}", r.body);
        assert!(r.body.contains(needle), "{rules}: {}", r.body);
    }
    let r = s.req(
        "PUT",
        "/v1/acl/policy",
        Some(r#"{"Name":"has space","Rules":""}"#),
        Some(&mgmt),
    );
    assert_eq!(r.status, 400);
    let r = s.req(
        "PUT",
        "/v1/acl/policy",
        Some(r#"{"Name":"no-web","Rules":""}"#),
        Some(&mgmt),
    );
    assert_eq!(r.status, 400, "duplicate names are refused: {}", r.body);
    let r = s.req(
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"missing"}]}"#),
        Some(&mgmt),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("missing"));
    // Only management may manage ACLs.
    let r = s.req("GET", "/v1/acl/tokens", None, Some(&t));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("acl:read"), "{}", r.body);
}

#[test]
fn tokens_survive_restart_and_initial_management_works() {
    let s = TestServer::start_with(|c| {
        c.acl.enabled = true;
        c.acl.default_allow = false;
        c.acl.initial_management = Some("11111111-2222-3333-4444-555555555555".into());
    });
    let mgmt = "11111111-2222-3333-4444-555555555555";
    let (_, web) = make_token(
        &s,
        mgmt,
        "web",
        "service \"web\" { policy = \"write\" }\nnode_prefix \"\" { policy = \"write\" }",
    );
    let dir = s.stop();
    let s = TestServer::start_in(dir, |c| {
        c.acl.enabled = true;
        c.acl.default_allow = false;
        c.acl.initial_management = Some("11111111-2222-3333-4444-555555555555".into());
    });
    let r = s.req(
        "PUT",
        "/v1/catalog/register",
        Some(r#"{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"web"}}"#),
        Some(&web),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = s.req("GET", "/v1/acl/tokens", None, Some(mgmt)).json();
    let n_mgmt = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["Description"] == "Initial Management Token")
        .count();
    assert_eq!(
        n_mgmt, 1,
        "restarts must not duplicate the initial management token"
    );
}

/// Which problem a request hears about first, when it has several: a bad query option before an
/// unknown token, a disabled ACL system before a bad query, a bad check-update body before the
/// token; and the roots endpoint never looks at the token.
#[test]
fn the_first_problem_of_a_request_is_the_one_answered() {
    let s = acl_server(false);
    let bad = Some("no-such-secret");
    let r = s.req("GET", "/v1/catalog/services?index=abc", None, bad);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.starts_with("Invalid index"), "{}", r.body);
    let r = s.req("GET", "/v1/catalog/services", None, bad);
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    let r = s.req("GET", "/v1/connect/ca/roots", None, bad);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.req("GET", "/v1/connect/ca/roots?index=abc", None, None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.req("PUT", "/v1/agent/check/update/x", Some("{}"), bad);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.req(
        "PUT",
        "/v1/agent/check/update/x",
        Some(r#"{"Status": "passing"}"#),
        bad,
    );
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));

    let off = TestServer::start();
    let r = off.get("/v1/acl/tokens?index=abc");
    assert_eq!((r.status, r.body.as_str()), (401, "ACL support disabled"));
    let r = off.get("/v1/acl/tokens");
    assert_eq!((r.status, r.body.as_str()), (401, "ACL support disabled"));
}

#[test]
fn key_rules_guard_the_key_value_store() {
    let s = acl_server(false);
    let mgmt = bootstrap(&s);
    let (_, writer) = make_token(
        &s,
        &mgmt,
        "migrations",
        r#"key_prefix "lambdamesh/migrations/" { policy = "write" }"#,
    );
    let put =
        |key: &str, token: &str| s.req("PUT", &format!("/v1/kv/{key}"), Some("v"), Some(token));
    assert_eq!(put("lambdamesh/migrations/greeter", &writer).status, 200);
    assert_eq!(put("other/x", &mgmt).status, 200);
    let denied = put("other/y", &writer);
    assert_eq!(denied.status, 403);
    assert!(
        denied
            .body
            .contains("lacks permission 'key:write' on \"other/y\""),
        "{}",
        denied.body
    );
    // A recursive read shows only what the token may read, and says it filtered.
    let all = s.req("GET", "/v1/kv/?recurse", None, Some(&writer));
    assert_eq!(all.status, 200, "{}", all.body);
    let keys: Vec<String> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["lambdamesh/migrations/greeter"]);
    assert_eq!(
        all.header("X-Consul-Results-Filtered-By-ACLs"),
        Some("true")
    );
    assert_eq!(
        s.req("GET", "/v1/kv/other/x", None, Some(&writer)).status,
        403
    );
    // A recursive delete needs write on the whole prefix.
    assert_eq!(
        s.req("DELETE", "/v1/kv/?recurse", None, Some(&writer))
            .status,
        403
    );
    assert_eq!(
        s.req(
            "DELETE",
            "/v1/kv/lambdamesh/migrations/?recurse",
            None,
            Some(&writer)
        )
        .status,
        200
    );
    // Sessions are refused by name.
    let r = s.req(
        "PUT",
        "/v1/kv/lambdamesh/migrations/x?acquire=abc",
        Some("v"),
        Some(&mgmt),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("sessions"), "{}", r.body);
}
