//! The web UI in a real browser (Debian's headless `chromium` through `chromedriver`), against
//! the real `lambdamesh agent -dev` binary, with the CLI making the changes the page must show
//! without a reload. Each test owns its server and browser and both are killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;
#[path = "ui/webdriver.rs"]
mod webdriver;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, lm, stderr, stdout};
use webdriver::Browser;

const LAMBDA_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:greeter-lambda";
/// A name and a tag that would run script if the UI ever parsed them as markup.
const XSS_NAME: &str = "<script>window.__xss=1</script>";
const XSS_TAG: &str = "<img src=x onerror=\"window.__xss=2\">";
/// What a check's output may hold (free text in Consul).
const XSS_OUTPUT: &str = "<svg onload=\"window.__xss=3\"></svg>";

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// `PUT http://<addr><path>` with a JSON body: (status, body text).
fn put(addr: &str, path: &str, body: &Value, token: Option<&str>) -> (u16, String) {
    let mut req = agent().put(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("X-Consul-Token", t);
    }
    let mut r = req.send_json(body).expect("request");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn ok(addr: &str, path: &str, body: Value) {
    let (s, t) = put(addr, path, &body, None);
    assert_eq!(s, 200, "PUT {path}: {t}");
}

fn register(addr: &str, node: &str, service: Value) {
    ok(
        addr,
        "/v1/catalog/register",
        json!({"Node": node, "Address": "127.0.0.1", "Service": service}),
    );
}

/// The greeter's shape (examples/greeter) written straight to the catalog: greeter with a
/// sidecar calling name and greeting, ingress calling greeter, greeter-lambda marked as a
/// Lambda function behind a terminating gateway, and a 50/50 splitter.
fn seed_greeter(addr: &str) {
    for (name, port) in [
        ("greeter", 9090),
        ("name", 9091),
        ("greeting", 9092),
        ("ingress", 8080),
    ] {
        register(addr, "vm", json!({"Service": name, "Port": port}));
    }
    register(
        addr,
        "vm",
        json!({"Kind": "connect-proxy", "Service": "greeter-sidecar-proxy", "Port": 21000,
            "Proxy": {"DestinationServiceName": "greeter", "LocalServicePort": 9090,
                "Upstreams": [{"DestinationName": "name", "LocalBindPort": 9201},
                              {"DestinationName": "greeting", "LocalBindPort": 9202}]}}),
    );
    register(
        addr,
        "vm",
        json!({"Kind": "connect-proxy", "Service": "ingress-sidecar-proxy", "Port": 21001,
            "Proxy": {"DestinationServiceName": "ingress", "LocalServicePort": 8080,
                "Upstreams": [{"DestinationName": "greeter", "LocalBindPort": 9200}]}}),
    );
    register(
        addr,
        "lambdas",
        json!({"Service": "greeter-lambda", "Port": 443,
            "Meta": {"managed-by-lambda-registrator": "true"}}),
    );
    register(
        addr,
        "vm",
        json!({"Kind": "terminating-gateway", "Service": "terminating-gateway", "Port": 8443}),
    );
    register(
        addr,
        "vm",
        json!({"Kind": "mesh-gateway", "Service": "mesh-gateway", "Port": 8444}),
    );
    for entry in [
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
        json!({"Kind": "service-defaults", "Name": "greeter-lambda", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {
                "ARN": LAMBDA_ARN, "PayloadPassthrough": true, "InvocationMode": "synchronous"}}]}),
        json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 50, "Service": "greeter"}, {"Weight": 50, "Service": "greeter-lambda"}]}),
        json!({"Kind": "terminating-gateway", "Name": "terminating-gateway",
            "Services": [{"Name": "greeter-lambda"}]}),
    ] {
        ok(addr, "/v1/config", entry);
    }
}

fn ui(server: &Proc, route: &str) -> String {
    format!("http://{}/ui/#/{route}", server.http)
}

/// Waits until the page's data has arrived (`main[data-loaded=<page>]`).
fn loaded(b: &Browser, page: &str) {
    b.wait(
        &format!("the {page} page"),
        &format!("return document.getElementById('main').dataset.loaded === '{page}';"),
    );
}

#[test]
fn services_page_shows_a_lambda_function_and_escapes_every_name() {
    let server = Proc::start(&["agent", "-dev"]);
    seed_greeter(&server.http);
    // The API refuses such a service name outright (its own message); what it lets through
    // (tags, check output) must still be shown as text.
    let (status, text) = put(
        &server.http,
        "/v1/catalog/register",
        &json!({"Node": "vm", "Address": "127.0.0.1", "Service": {"Service": XSS_NAME, "Port": 1}}),
        None,
    );
    assert_eq!(status, 400, "{text}");
    ok(
        &server.http,
        "/v1/catalog/register",
        json!({"Node": "vm", "Address": "127.0.0.1",
            "Service": {"Service": "xss", "ID": "xss", "Port": 1, "Tags": [XSS_TAG]},
            "Checks": [{"CheckID": "xss-check", "Name": XSS_TAG, "ServiceID": "xss",
                "Status": "warning", "Output": XSS_OUTPUT}]}),
    );
    let b = Browser::start();
    b.goto(&ui(&server, "services"));
    loaded(&b, "services");

    let lambda = b.text("tr[data-service=\"greeter-lambda\"]");
    assert!(lambda.contains("Lambda function"), "{lambda}");
    assert!(lambda.contains(LAMBDA_ARN), "{lambda}");
    assert!(lambda.contains("us-east-1"), "{lambda}");
    assert!(lambda.contains("synchronous"), "{lambda}");
    let tgw = b.text("tr[data-service=\"terminating-gateway\"]");
    assert!(tgw.contains("terminating gateway"), "{tgw}");
    assert!(
        b.text("tr[data-service=\"greeter\"]").contains("in mesh"),
        "greeter has a sidecar"
    );

    // The hostile name and tag are text: the exact characters in the DOM, no element made from
    // them, and nothing they would have run has run.
    let found = b.js(
        "const row = [...document.querySelectorAll('tr[data-service]')]
            .find(r => r.dataset.service === arguments[0]);
         if (!row) return null;
         return {
           name: row.querySelector('a').textContent,
           tag: row.querySelector('.tag').textContent,
           scripts: document.querySelectorAll('main script').length,
           imgs: document.querySelectorAll('main img').length,
           xss: window.__xss === undefined ? null : window.__xss,
         };",
        vec![json!("xss")],
    );
    assert_eq!(found["name"], "xss", "{found}");
    assert_eq!(found["tag"], XSS_TAG, "{found}");
    assert_eq!(found["scripts"], 0, "{found}");
    assert_eq!(found["imgs"], 0, "{found}");
    assert_eq!(found["xss"], Value::Null, "{found}");

    // Search filters without a request; the kind filter narrows to Lambda functions.
    b.type_into("input[name=search]", "greet");
    let rows = b.js(
        "return [...document.querySelectorAll('tr[data-service]')].map(r => r.dataset.service);",
        vec![],
    );
    assert_eq!(rows, json!(["greeter", "greeter-lambda", "greeting"]));
    // Tags are searched too.
    b.type_into("input[name=search]", "onerror");
    let rows = b.js(
        "return [...document.querySelectorAll('tr[data-service]')].map(r => r.dataset.service);",
        vec![],
    );
    assert_eq!(rows, json!(["xss"]));
    b.type_into("input[name=search]", "");
    b.select("select[name=kind]", "lambda");
    let rows = b.js(
        "return [...document.querySelectorAll('tr[data-service]')].map(r => r.dataset.service);",
        vec![],
    );
    assert_eq!(rows, json!(["greeter-lambda"]));

    // Its page shows the check's name and output as text.
    b.goto(&ui(&server, "services/xss"));
    loaded(&b, "service");
    let checks = b.wait(
        "the check",
        "const e = document.querySelector('ul.checks'); return e && e.textContent;",
    );
    let checks = checks.as_str().unwrap_or_default();
    assert!(
        checks.contains(XSS_TAG) && checks.contains(XSS_OUTPUT),
        "{checks}"
    );
    // A hostile name in the address (a crafted link) is text as well, on a "not found" page.
    b.goto(&ui(&server, &format!("services/{}", urlencode(XSS_NAME))));
    loaded(&b, "service");
    let h1 = b.js(
        "return document.querySelector('main h1').textContent;",
        vec![],
    );
    assert_eq!(h1, XSS_NAME);
    assert!(b.text("[data-not-found]").contains("not found"));
    assert_eq!(
        b.js(
            "return [window.__xss === undefined, document.querySelectorAll('main script, main img, main svg:not(.topology)').length];",
            vec![]
        ),
        json!([true, 0])
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

#[test]
fn a_splitter_weight_written_with_the_cli_appears_on_the_open_page() {
    let server = Proc::start(&["agent", "-dev"]);
    seed_greeter(&server.http);
    let b = Browser::start();
    b.goto(&ui(&server, "services/greeter"));
    loaded(&b, "service");
    let weight = |svc: &str| b.text(&format!("tr[data-split=\"{svc}\"] .weight"));
    assert_eq!(weight("greeter"), "50%");
    assert_eq!(weight("greeter-lambda"), "50%");
    let topo = b.text("svg.topology");
    for n in ["ingress", "name", "greeting"] {
        assert!(topo.contains(n), "topology lacks {n}: {topo}");
    }
    // A marker that a reload would lose.
    b.js("window.__noReload = 42;", vec![]);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("splitter.json");
    std::fs::write(
        &file,
        r#"{"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 90, "Service": "greeter"}, {"Weight": 10, "Service": "greeter-lambda"}]}"#,
    )
    .unwrap();
    let started = Instant::now();
    let o = lm(&server.http, &["config", "write", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    b.wait(
        "the new weights",
        "const w = s => { const e = document.querySelector(`tr[data-split=\"${s}\"] .weight`); return e && e.textContent; };
         return w('greeter') === '90%' && w('greeter-lambda') === '10%';",
    );
    let elapsed = started.elapsed();
    eprintln!(
        "weight change shown {} ms after `config write` started",
        elapsed.as_millis()
    );
    assert_eq!(b.js("return window.__noReload;", vec![]), json!(42));
    // The compiled routes (what Envoy is sent) moved too.
    let routes = b.text(".stage.compiled");
    assert!(routes.contains("greeter 90%"), "{routes}");
    assert!(routes.contains("greeter-lambda 10%"), "{routes}");
}

#[test]
fn a_deny_intention_made_in_the_ui_decides_the_cli_check_and_deleting_it_restores_allowed() {
    let server = Proc::start(&["agent", "-dev"]);
    let check = || {
        let o = lm(&server.http, &["intention", "check", "web", "db"]);
        stdout(&o).trim().to_owned()
    };
    assert_eq!(check(), "Allowed");
    let b = Browser::start();
    b.goto(&ui(&server, "intentions"));
    loaded(&b, "intentions");
    b.type_into("input[name=source]", "web");
    b.type_into("input[name=destination]", "db");
    b.select("select[name=action]", "deny");
    b.click("form button[type=submit]");
    b.wait(
        "the new intention's row",
        "const r = document.querySelector('tr[data-intention=\"web>db\"]'); return r && r.innerText.includes('deny');",
    );
    assert_eq!(check(), "Denied");

    // The UI's own check agrees.
    b.type_into("input[name=check-source]", "web");
    b.type_into("input[name=check-destination]", "db");
    b.click("form[aria-labelledby=h-check] button[type=submit]");
    b.wait(
        "the check's answer",
        "return document.querySelector('.answer').innerText.includes('denied');",
    );

    // A bad name gets the API's own message.
    b.type_into("input[name=source]", "bad name!");
    b.click("form[aria-labelledby=h-new] button[type=submit]");
    let msg = b.wait(
        "the API's error",
        "const e = document.querySelector('form[aria-labelledby=h-new] [role=alert]'); return e && !e.hidden && e.textContent;",
    );
    let (status, api_text) = put(
        &server.http,
        "/v1/connect/intentions/exact?source=bad%20name!&destination=db",
        &json!({"Action": "deny"}),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(msg, json!(format!("400: {}", api_text.trim())));

    b.click("tr[data-intention=\"web>db\"] button.danger");
    b.wait(
        "the row to go",
        "return !document.querySelector('tr[data-intention=\"web>db\"]');",
    );
    assert_eq!(check(), "Allowed");
}

#[test]
fn config_entries_show_validation_errors_in_place_and_a_deleted_entry_is_not_found() {
    let server = Proc::start(&["agent", "-dev"]);
    seed_greeter(&server.http);
    let b = Browser::start();
    // Every kind's entries on one page (one blocking query for all kinds).
    b.goto(&ui(&server, "config"));
    loaded(&b, "config");
    for entry in [
        "proxy-defaults/global",
        "service-defaults/greeter-lambda",
        "service-splitter/greeter",
        "terminating-gateway/terminating-gateway",
    ] {
        assert!(
            !b.text(&format!("[data-entry=\"{entry}\"]")).is_empty(),
            "{entry} not listed"
        );
    }
    b.goto(&ui(&server, "config/service-splitter/greeter"));
    loaded(&b, "config-edit");
    let text = b.js("return document.querySelector('textarea').value;", vec![]);
    assert!(
        text.as_str().unwrap_or("").contains("greeter-lambda"),
        "{text}"
    );
    // Shown as HCL, and back: the same entry.
    b.select("select[name=format]", "hcl");
    let hcl = b.wait(
        "the entry as HCL",
        "const t = document.querySelector('textarea').value; return t.startsWith('Kind = \"service-splitter\"') && t;",
    );
    assert!(
        hcl.as_str()
            .unwrap_or("")
            .contains("Service = \"greeter-lambda\""),
        "{hcl}"
    );
    b.select("select[name=format]", "json");
    let back = b.wait(
        "the entry as JSON again",
        "const t = document.querySelector('textarea').value; return t.startsWith('{') && t;",
    );
    let back: Value = serde_json::from_str(back.as_str().unwrap_or("")).unwrap();
    assert_eq!(back["Splits"][1]["Service"], "greeter-lambda");
    assert_eq!(back["Splits"][1]["Weight"], 50.0);

    // Weights that do not add up to 100: the server's message, next to the editor.
    let bad = r#"{"Kind": "service-splitter", "Name": "greeter", "Splits": [{"Weight": 60, "Service": "greeter"}, {"Weight": 10, "Service": "greeter-lambda"}]}"#;
    b.type_into("textarea", bad);
    b.click("form button[type=submit]");
    let msg = b.wait(
        "the validation error",
        "const e = document.getElementById('entry-err'); return !e.hidden && e.textContent;",
    );
    let (status, api_text) = put(
        &server.http,
        "/v1/config",
        &serde_json::from_str(bad).unwrap(),
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(msg, json!(format!("400: {}", api_text.trim())));
    assert_eq!(
        b.js(
            "return document.querySelector('textarea').getAttribute('aria-invalid');",
            vec![]
        ),
        json!("true")
    );

    // Changed elsewhere while being edited: the save is a check-and-set and is refused.
    ok(
        &server.http,
        "/v1/config",
        json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 20, "Service": "greeter"}, {"Weight": 80, "Service": "greeter-lambda"}]}),
    );
    b.wait(
        "the notice of a change elsewhere",
        "return document.querySelector('form p[role=status]').textContent.includes('Changed on the server');",
    );
    let good = r#"{"Kind": "service-splitter", "Name": "greeter", "Splits": [{"Weight": 60, "Service": "greeter"}, {"Weight": 40, "Service": "greeter-lambda"}]}"#;
    b.type_into("textarea", good);
    b.click("form button[type=submit]");
    b.wait(
        "the refused save",
        "const e = document.getElementById('entry-err'); return !e.hidden && e.textContent.includes('changed by someone else');",
    );
    let now = agent()
        .get(format!(
            "http://{}/v1/config/service-splitter/greeter",
            server.http
        ))
        .call()
        .unwrap()
        .body_mut()
        .read_json::<Value>()
        .unwrap();
    assert_eq!(now["Splits"][1]["Weight"], 80.0, "the other write stands");

    // Deleted while open, or never there: "not found", not a blank page.
    let o = lm(
        &server.http,
        &[
            "config",
            "delete",
            "-kind",
            "service-splitter",
            "-name",
            "greeter",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    b.wait(
        "not found",
        "const e = document.querySelector('[data-not-found]'); return e && e.textContent.includes('not found');",
    );
    b.goto(&ui(&server, "services/no-such-service"));
    b.wait(
        "service not found",
        "const e = document.querySelector('[data-not-found]'); return e && e.textContent.includes('not found');",
    );

    // A new entry written as HCL is saved (and then shown as the server's JSON); bad HCL gets
    // the decoder's message in place.
    b.goto(&ui(&server, "config/new"));
    loaded(&b, "config-edit");
    b.type_into(
        "textarea",
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"http2\"\n",
    );
    b.click("form button[type=submit]");
    b.wait(
        "the saved entry's editor",
        "return location.hash === '#/config/service-defaults/web' && document.querySelector('textarea').value.includes('http2');",
    );
    b.goto(&ui(&server, "config/new"));
    loaded(&b, "config-edit");
    b.type_into("textarea", "Kind = \"service-defaults\"\nName = \n");
    b.click("form button[type=submit]");
    let msg = b.wait(
        "the HCL error",
        "const e = document.getElementById('entry-err'); return !e.hidden && e.textContent;",
    );
    assert!(msg.as_str().unwrap_or("").starts_with("400: "), "{msg}");
}

#[test]
fn a_lost_connection_is_shown_and_the_page_recovers_when_the_server_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = test_support::free_port().to_string();
    let http = format!("127.0.0.1:{port}");
    let args = [
        "agent",
        "-dev",
        "-http-addr",
        http.as_str(),
        "-grpc-addr",
        "127.0.0.1:0",
        "-data-dir",
        data.to_str().unwrap(),
    ];
    let mut server = Proc::start_exact(&args);
    seed_greeter(&server.http);
    let b = Browser::start();
    b.goto(&ui(&server, "services/greeter"));
    loaded(&b, "service");
    b.js("window.__noReload = 1;", vec![]);
    server.kill9();
    let banner = b.wait(
        "the connection-lost banner",
        "const e = document.getElementById('banner'); return !e.hidden && e.textContent;",
    );
    assert!(
        banner.as_str().unwrap_or("").contains("retrying"),
        "{banner}"
    );
    let server = Proc::start_exact(&args);
    b.wait(
        "the banner to clear",
        "return document.getElementById('banner').hidden;",
    );
    // Live again: a write after the restart shows without a reload.
    ok(
        &server.http,
        "/v1/config",
        json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 30, "Service": "greeter"}, {"Weight": 70, "Service": "greeter-lambda"}]}),
    );
    b.wait(
        "the weights written after the restart",
        "const e = document.querySelector('tr[data-split=\"greeter-lambda\"] .weight'); return e && e.textContent === '70%';",
    );
    assert_eq!(b.js("return window.__noReload;", vec![]), json!(1));
}

#[test]
fn a_read_only_token_sees_disabled_controls_and_the_api_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("acl.hcl");
    std::fs::write(
        &cfg,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens {\n    initial_management = \"root-secret\"\n  }\n}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Proc::start(&[
        "server",
        "-data-dir",
        data.to_str().unwrap(),
        "-config-file",
        cfg.to_str().unwrap(),
    ]);
    let root = Some("root-secret");
    let (s, t) = put(
        &server.http,
        "/v1/acl/policy",
        &json!({"Name": "read-only", "Rules": "service_prefix \"\" {\n  policy = \"read\"\n  intentions = \"read\"\n}\nnode_prefix \"\" { policy = \"read\" }"}),
        root,
    );
    assert_eq!(s, 200, "{t}");
    let (s, t) = put(
        &server.http,
        "/v1/acl/token",
        &json!({"Description": "viewer", "SecretID": "00000000-0000-4000-8000-000000000001", "Policies": [{"Name": "read-only"}]}),
        root,
    );
    assert_eq!(s, 200, "{t}");
    let (s, t) = put(
        &server.http,
        "/v1/connect/intentions/exact?source=web&destination=db",
        &json!({"Action": "allow"}),
        root,
    );
    assert_eq!(s, 200, "{t}");
    let viewer = "00000000-0000-4000-8000-000000000001";

    let b = Browser::start();
    b.goto(&ui(&server, "login"));
    b.type_into("input[name=token]", viewer);
    b.click("form button[type=submit]");
    b.wait(
        "the token's name in the header",
        "return document.getElementById('who').textContent.includes('viewer');",
    );
    b.goto(&ui(&server, "intentions"));
    loaded(&b, "intentions");
    b.wait(
        "the existing intention",
        "return document.querySelector('tr[data-intention=\"web>db\"]');",
    );
    let disabled = b.wait(
        "disabled controls",
        "const q = s => document.querySelector(s);
         const save = q('form[aria-labelledby=h-new] button[type=submit]');
         const del = q('tr[data-intention=\"web>db\"] button.danger');
         return save.disabled && del.disabled && 'yes';",
    );
    assert_eq!(disabled, json!("yes"));
    // The API refuses it too (the UI's disabled button is a convenience, not the guard).
    let (s, t) = put(
        &server.http,
        "/v1/connect/intentions/exact?source=web&destination=db",
        &json!({"Action": "deny"}),
        Some(viewer),
    );
    assert_eq!(s, 403, "{t}");
    // Submitting the form anyway (as a user who re-enables the button could) shows the API's
    // refusal.
    b.type_into("input[name=source]", "web");
    b.type_into("input[name=destination]", "db");
    b.js(
        "document.querySelector('form[aria-labelledby=h-new]').requestSubmit();",
        vec![],
    );
    let msg = b.wait(
        "the refusal",
        "const e = document.querySelector('form[aria-labelledby=h-new] [role=alert]'); return !e.hidden && e.textContent;",
    );
    assert!(
        msg.as_str()
            .unwrap_or("")
            .starts_with("403: Permission denied"),
        "{msg}"
    );

    // The config editor's save is disabled for the same token.
    ok_with(
        &server.http,
        root,
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    );
    b.goto(&ui(&server, "config/service-defaults/web"));
    loaded(&b, "config-edit");
    b.wait(
        "the disabled save",
        "return document.querySelector('form button[type=submit]').disabled;",
    );
}

fn ok_with(addr: &str, token: Option<&str>, entry: Value) {
    let (s, t) = put(addr, "/v1/config", &entry, token);
    assert_eq!(s, 200, "{t}");
}

#[test]
fn gateways_page_shows_what_each_gateway_fronts() {
    let server = Proc::start(&["agent", "-dev"]);
    seed_greeter(&server.http);
    let b = Browser::start();
    b.goto(&ui(&server, "gateways"));
    loaded(&b, "gateways");
    let fronts = b.wait(
        "the fronted function",
        "const e = document.querySelector('[data-gateway=\"terminating-gateway\"] [data-fronts=\"greeter-lambda\"]'); return e && e.innerText;",
    );
    assert!(
        fronts.as_str().unwrap_or("").contains(LAMBDA_ARN),
        "{fronts}"
    );
    let mesh = b.text("[data-gateway=\"mesh-gateway\"]");
    assert!(mesh.contains("dc1"), "{mesh}");
}

#[test]
fn the_page_makes_no_outside_request_and_serves_a_strict_policy() {
    let server = Proc::start(&["agent", "-dev"]);
    let mut r = agent()
        .get(format!("http://{}/", server.http))
        .config()
        .max_redirects(0)
        .build()
        .call()
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/ui/");
    let _ = r.body_mut().read_to_string();
    let r = agent()
        .get(format!("http://{}/ui/", server.http))
        .call()
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = agent()
        .get(format!("http://{}/ui/", server.http))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(r.status(), 304);

    seed_greeter(&server.http);
    ok(
        &server.http,
        "/v1/connect/intentions/exact?source=ingress&destination=greeter",
        json!({"Action": "allow"}),
    );
    let b = Browser::start();
    for (route, page) in [
        ("services", "services"),
        ("services/greeter", "service"),
        ("intentions", "intentions"),
        ("config", "config"),
        ("config/service-splitter/greeter", "config-edit"),
        ("gateways", "gateways"),
        ("migrations", "migrations"),
        ("login", ""),
    ] {
        b.goto(&ui(&server, route));
        if !page.is_empty() {
            loaded(&b, page);
        }
        // Every control has a label or a name, and none is taken out of the tab order.
        let unlabelled = b.js(
            "return [...document.querySelectorAll('input, select, textarea, button, a[href]')]
               .filter(e => e.tabIndex < 0
                 || (['INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName) && !(e.labels && e.labels.length))
                 || (!['INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName)
                     && !(e.getAttribute('aria-label') || e.textContent.trim())))
               .map(e => e.outerHTML.slice(0, 80));",
            vec![],
        );
        assert_eq!(
            unlabelled,
            json!([]),
            "{route}: unlabelled or unreachable controls"
        );
    }
    let origins = b.js(
        "return [...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin))];",
        vec![],
    );
    assert_eq!(origins, json!([format!("http://{}", server.http)]));
    // No script error and no policy violation (a 404 of the KV API on a server without it is a
    // network entry, which the page handles).
    let console: Value = serde_json::from_str(&b.console()).unwrap_or(Value::Null);
    let bad: Vec<&Value> = console["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["level"] == "SEVERE" && m["source"] != "network")
        .collect();
    assert!(bad.is_empty(), "console errors: {bad:?}");
}

/// A migration record as `lambdamesh migrate` writes it (docs/migrate.md).
fn record(state: &str, step: usize, weight: u32, reason: &str, history: Value) -> Value {
    json!({
        "Service": "greeter", "Target": "greeter-lambda", "Steps": [10, 50, 100],
        "Interval": "5s",
        "Thresholds": {"MaxErrorRate": 0.01, "MaxP99Ms": 500, "MinRequests": 20},
        "State": state, "StepIndex": step, "Weight": weight, "LastHealthyWeight": 10,
        "Reason": reason,
        "Owner": {"Host": "laptop", "Pid": 1234, "HeartbeatAt": "2026-12-02T16:00:00Z"},
        "SplitterModifyIndex": 12,
        "StartedAt": "2026-12-02T16:00:00Z", "UpdatedAt": "2026-12-02T16:00:05Z",
        "History": history,
    })
}

#[test]
fn a_migration_is_shown_step_by_step_and_a_rollback_shows_its_reason() {
    let server = Proc::start(&["agent", "-dev"]);
    let key = "/v1/kv/lambdamesh/migrations/greeter";
    let step1 = json!({"Weight": 10, "StartedAt": "2026-12-02T16:00:00Z", "EndedAt": "2026-12-02T16:00:05Z",
        "Requests": 120, "Errors": 0, "ErrorRate": 0.0, "P99Ms": 12.5, "TargetRequests": 12,
        "TargetErrors": 0, "TargetErrorRate": 0.0, "TargetP99Ms": 20.1, "Outcome": "promoted"});
    ok(
        &server.http,
        key,
        record("running", 1, 50, "", json!([step1])),
    );
    let b = Browser::start();
    b.goto(&ui(&server, "migrations"));
    loaded(&b, "migrations");
    let m = b.wait(
        "the running migration",
        "const e = document.querySelector('[data-migration=\"greeter\"]'); return e && e.innerText;",
    );
    let m = m.as_str().unwrap_or_default();
    assert!(m.contains("running"), "{m}");
    assert_eq!(b.text("[data-migration=\"greeter\"] [data-weight]"), "50%");
    assert_eq!(b.text("ol.steps [aria-current=step]"), "50%");
    let row = b.text("tr[data-step=\"10\"]");
    assert!(
        row.contains("120") && row.contains("12.5 ms") && row.contains("promoted"),
        "{row}"
    );
    b.js("window.__noReload = 7;", vec![]);

    // The next step fails: the record says so and the open page shows the reason.
    let step2 = json!({"Weight": 50, "StartedAt": "2026-12-02T16:00:05Z", "EndedAt": "2026-12-02T16:00:10Z",
        "Requests": 200, "Errors": 60, "ErrorRate": 0.3, "P99Ms": 40.0, "TargetRequests": 100,
        "TargetErrors": 60, "TargetErrorRate": 0.6, "TargetP99Ms": 80.0, "Outcome": "rolled_back"});
    let reason = "error rate 30.0% > 1.0% (60 of 200 requests)";
    ok(
        &server.http,
        key,
        record("rolled_back", 0, 0, reason, json!([step1, step2])),
    );
    let shown = b.wait(
        "the rollback's reason",
        "const e = document.querySelector('[data-migration=\"greeter\"] [data-reason]'); return e && e.innerText;",
    );
    assert_eq!(shown, json!(format!("Rolled back: {reason}")));
    assert_eq!(b.text("[data-migration=\"greeter\"] [data-weight]"), "0%");
    let row = b.text("tr[data-step=\"50\"]");
    assert!(
        row.contains("30.0%") && row.contains("rolled_back"),
        "{row}"
    );
    assert_eq!(b.js("return window.__noReload;", vec![]), json!(7));
}
