//! The web UI end to end with the greeter example up (`lambdamesh up examples/greeter`, every part
//! real: server, platform, registrator, Envoy sidecars and gateways): the services page lists
//! greeter-lambda as a Lambda function with its ARN (as the registrator registered it), the
//! greeter page shows the splitter's weights, and a `lambdamesh config write` of new weights
//! appears on the open page without a reload; then `lambdamesh migrate` run from the CLI is
//! shown step by step on the migrations page, and when the function starts failing, the
//! rollback and its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;
#[allow(dead_code)] // the other browser tests use the rest
#[path = "ui/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::mesh::wait_until;
use common::up::{Load, Up, lambdamesh};
use webdriver::Browser;

/// Sets greeter-lambda's failure rate through the platform's Lambda API (new sandboxes take it).
fn function_fail_rate(lambda: &str, rate: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = lambda_platform::client::Client::new(
        lambda,
        lambda_platform::Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        },
        "us-east-1",
    )
    .unwrap();
    let path = "/2015-03-31/functions/greeter-lambda/configuration";
    let now = rt.block_on(client.lambda("GET", path, None)).unwrap();
    let mut vars = now["Environment"]["Variables"].clone();
    vars["GREETER_FAIL_RATE"] = serde_json::json!(rate);
    rt.block_on(client.lambda(
        "PUT",
        path,
        Some(&serde_json::json!({"Environment": {"Variables": vars}})),
    ))
    .unwrap();
    wait_until(60, "the configuration update", || {
        let c = rt.block_on(client.lambda("GET", path, None)).unwrap();
        c["LastUpdateStatus"] == "Successful"
    });
}

#[test]
fn the_greeter_in_the_browser_lambda_listed_and_weights_live() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(&examples.join("greeter"), &dir.path().join("state"));
    let record = up.ready(240);
    let http = record["endpoints"]["http"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    let b = Browser::start();
    b.goto(&format!("http://{http}/ui/#/services"));
    // The registrator registers the function on its first sync: wait for it on the open page.
    let row = b.wait_up_to(
        Duration::from_secs(120),
        "greeter-lambda as a Lambda function",
        "const r = document.querySelector('tr[data-service=\"greeter-lambda\"]');
         return r && r.innerText.includes('Lambda function') && r.querySelector('code.arn') && r.innerText;",
    );
    let row = row.as_str().unwrap_or_default();
    assert!(row.contains(":function:greeter-lambda"), "{row}");

    b.goto(&format!("http://{http}/ui/#/services/greeter"));
    b.wait(
        "the splitter's weights",
        "const w = s => { const e = document.querySelector(`tr[data-split=\"${s}\"] .weight`); return e && e.textContent; };
         return w('greeter') === '50%' && w('greeter-lambda') === '50%';",
    );
    b.js("window.__noReload = 'still here';", vec![]);
    let file = dir.path().join("splitter.hcl");
    std::fs::write(
        &file,
        "Kind = \"service-splitter\"\nName = \"greeter\"\nSplits = [\n  { Weight = 80, Service = \"greeter\" },\n  { Weight = 20, Service = \"greeter-lambda\" },\n]\n",
    )
    .unwrap();
    let started = Instant::now();
    let o = lambdamesh(&["config", "write", file.to_str().unwrap()])
        .env("CONSUL_HTTP_ADDR", &http)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    b.wait(
        "the new weights",
        "const w = s => { const e = document.querySelector(`tr[data-split=\"${s}\"] .weight`); return e && e.textContent; };
         return w('greeter') === '80%' && w('greeter-lambda') === '20%';",
    );
    eprintln!(
        "greeter: weight change shown {} ms after `config write` started",
        started.elapsed().as_millis()
    );
    assert_eq!(
        b.js("return window.__noReload;", vec![]),
        serde_json::json!("still here")
    );

    // A migration started from the CLI, watched on the migrations page.
    let ingress = format!("{}/", record["endpoints"]["ingress"].as_str().unwrap());
    let lambda = record["endpoints"]["lambda"].as_str().unwrap().to_owned();
    let _load = Load::start(&ingress);
    b.goto(&format!("http://{http}/ui/#/migrations"));
    b.wait(
        "the migrations page",
        "return document.getElementById('main').dataset.loaded === 'migrations';",
    );
    b.js("window.__noReload = 'migrations';", vec![]);
    let mut migrate = lambdamesh(&[
        "migrate",
        "greeter",
        "--to",
        "greeter-lambda",
        "--steps",
        "10,50,100",
        "--interval",
        "5s",
        "--min-requests",
        "5",
        "--max-p99",
        "3s",
    ])
    .env("CONSUL_HTTP_ADDR", &http)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let first = b.wait_up_to(
        Duration::from_secs(120),
        "the first step promoted on the page",
        "const m = document.querySelector('[data-migration=\"greeter\"]');
         const r = m && m.querySelector('tr[data-step=\"10\"]');
         return r && r.innerText.includes('promoted') && m.innerText;",
    );
    let first = first.as_str().unwrap_or_default();
    assert!(first.contains("running"), "{first}");
    assert_eq!(
        b.text("[data-migration=\"greeter\"] ol.steps [aria-current=step]"),
        "50%"
    );
    // The function starts failing: the next judgement rolls back, and the page says why.
    function_fail_rate(&lambda, "0.3");
    let reason = b.wait_up_to(
        Duration::from_secs(120),
        "the rollback's reason",
        "const e = document.querySelector('[data-migration=\"greeter\"] [data-reason]'); return e && e.innerText;",
    );
    let reason = reason.as_str().unwrap_or_default();
    assert!(reason.starts_with("Rolled back: error rate "), "{reason}");
    assert!(
        b.text("[data-migration=\"greeter\"]")
            .contains("rolled back"),
        "the state badge"
    );
    assert_eq!(b.text("[data-migration=\"greeter\"] [data-weight]"), "0%");
    let status = migrate.wait().unwrap();
    assert_eq!(status.code(), Some(1), "migrate exits 1 after a rollback");
    assert_eq!(
        b.js("return window.__noReload;", vec![]),
        serde_json::json!("migrations")
    );
}
