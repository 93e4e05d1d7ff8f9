//! `lambdamesh migrate` with the real parts (issue 17): the greeter example started by
//! `lambdamesh up` (server, platform, Python services with real Envoy sidecars, the terminating
//! gateway invoking greeter-lambda, the registrator), a load client calling `ingress` about 20
//! times a second, and `migrate` as a child process judging from the Envoys' own figures
//! (the ingress sidecar's and the terminating gateway's metrics listeners, which `up` gives
//! every proxy through `envoy_prometheus_bind_addr`).
//!
//! One run of the topology carries every scenario in turn (starting it takes minutes on a
//! loaded machine): bad input refused with nothing changed; a healthy function reaching 100 %
//! with every step's figures printed and `--status` reporting it; a function failing 30 % of
//! its invocations rolled back to 0 % naming the error rate; one sleeping past `--max-p99`
//! rolled back naming the latency; a hand edit of the splitter stopping a migration with
//! nothing overwritten; a second `migrate` refused while one runs; Ctrl-C leaving the last
//! healthy weight, `--status` reporting it, and a new `migrate` resuming from the record;
//! `--abort` from another terminal stopping a running one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::{
    path::Path,
    process::{Command, Output},
    sync::atomic::Ordering,
    time::Duration,
};

use common::mesh::{get, get_json, wait_until};
use common::up::{Load, Running, Up, lambdamesh};
use serde_json::{Value, json};

struct Cluster {
    http: String,
    lambda: String,
}

impl Cluster {
    fn migrate(&self, args: &[&str]) -> Command {
        let mut c = lambdamesh(&["migrate"]);
        // Its own lines only: the tests read its progress output.
        c.args(args)
            .env("CONSUL_HTTP_ADDR", &self.http)
            .env("LAMBDAMESH_LOG", "warn");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.migrate(args).output().unwrap()
    }

    fn splitter(&self) -> Value {
        get_json(&self.http, "/v1/config/service-splitter/greeter")
    }

    fn lambda_weight(&self) -> f64 {
        mesh_model::migration::weight_in(&self.splitter(), "greeter-lambda")
    }

    fn record(&self) -> Value {
        let (status, body) = get(&format!(
            "http://{}/v1/kv/lambdamesh/migrations/greeter?raw",
            self.http
        ));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Sets greeter-lambda's switches (an UpdateFunctionConfiguration through the platform's
    /// Lambda API, signed as any AWS client signs it); new sandboxes take them.
    fn function_env(&self, fail_rate: &str, sleep_ms: &str) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = lambda_platform::client::Client::new(
            &self.lambda,
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
        vars["GREETER_FAIL_RATE"] = json!(fail_rate);
        vars["GREETER_SLEEP_MS"] = json!(sleep_ms);
        rt.block_on(client.lambda(
            "PUT",
            path,
            Some(&json!({"Environment": {"Variables": vars}})),
        ))
        .unwrap();
        wait_until(60, "the configuration update", || {
            let c = rt.block_on(client.lambda("GET", path, None)).unwrap();
            c["LastUpdateStatus"] == "Successful"
        });
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn migrate_promotes_rolls_back_stops_and_resumes_on_the_greeter() {
    let dir = tempfile::tempdir().unwrap();
    let greeter = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/greeter");
    let mut up = Up::start(&greeter, &dir.path().join("state"));
    let record = up.ready(300);
    let eps = &record["endpoints"];
    let c = Cluster {
        http: eps["http"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://")
            .to_owned(),
        lambda: eps["lambda"].as_str().unwrap().to_owned(),
    };
    // `up` gives every proxy a metrics listener and records it.
    for part in ["sidecar ingress", "gateway terminating-gateway"] {
        let url = eps[format!("{part} metrics")].as_str().unwrap();
        let (status, body) = get(url);
        assert_eq!(status, 200, "{part}: {url}");
        assert!(body.contains("envoy_cluster_"), "{part}: {body:.200}");
    }
    let ingress = format!("{}/", eps["ingress"].as_str().unwrap());
    let load = Load::start(&ingress);
    let before = c.splitter();

    // Bad input: refused with a message, nothing changed.
    c.function_env("0", "0");
    let http = c.http.clone();
    let agent_register = |body: Value| {
        common::mesh::put(&http, "/v1/agent/service/register", &body);
    };
    agent_register(json!({"Name": "plain-tcp", "Port": 7000, "Address": "127.0.0.1"}));
    for (args, says) in [
        (
            vec!["nobody", "--to", "greeter-lambda"],
            "unknown service \"nobody\"",
        ),
        (
            vec!["greeter", "--to", "nothing"],
            "unknown target \"nothing\"",
        ),
        (vec!["greeter", "--to", "plain-tcp"], "speaks \"tcp\""),
        (
            vec!["greeter", "--to", "greeter-lambda", "--steps", "10,50"],
            "the last step must be 100",
        ),
        (
            vec!["greeter", "--to", "greeter-lambda", "--steps", "50,10,100"],
            "weights must go up",
        ),
        (
            vec![
                "greeter",
                "--to",
                "greeter-lambda",
                "--max-error-rate",
                "lots",
            ],
            "--max-error-rate",
        ),
        (
            vec!["greeter", "--to", "greeter-lambda", "--max-p99", "fast"],
            "--max-p99",
        ),
    ] {
        let o = c.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    assert_eq!(c.splitter()["ModifyIndex"], before["ModifyIndex"]);
    let (status, _) = get(&format!(
        "http://{}/v1/kv/lambdamesh/migrations/greeter",
        c.http
    ));
    assert_eq!(status, 404, "no record was written");
    // A dry run names the Envoys it would read and writes nothing.
    let o = c.run(&["greeter", "--to", "greeter-lambda", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("caller Envoy ingress-sidecar-proxy"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("gateway Envoy terminating-gateway"),
        "{}",
        text(&o)
    );
    assert_eq!(c.splitter()["ModifyIndex"], before["ModifyIndex"]);

    // A healthy function reaches 100 %, every step's figures printed. The p99 bound is loose on
    // purpose: a step's first invocation may be a cold start, which took several seconds on a
    // loaded 2-core CI machine, and this scenario is about promotion; the latency gate is shown
    // below by a function sleeping past a tight bound.
    let common_args = [
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
        "10s",
    ];
    let mut healthy = Running::spawn(c.migrate(&common_args));
    // A second migrate while one runs is refused, and changes nothing.
    healthy.wait_for_line(60, "step 1/3");
    let o = c.run(&common_args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is running (owner"), "{}", text(&o));
    let (code, out) = healthy.finish(120);
    // Shown with --nocapture: the figures of each step, as a user sees them.
    eprintln!("--- the healthy migration ---\n{out}");
    assert_eq!(code, 0, "{out}");
    for step in ["step 1/3  10%", "step 2/3  50%", "step 3/3 100%"] {
        assert!(out.contains(step), "{step}: {out}");
    }
    assert!(out.contains("done: greeter-lambda receives 100%"), "{out}");
    assert_eq!(c.lambda_weight(), 100.0);
    let rec = c.record();
    assert_eq!(rec["State"], "succeeded");
    assert_eq!(rec["Weight"], 100);
    let history = rec["History"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    for step in history {
        assert_eq!(step["Outcome"], "promoted", "{step}");
        assert!(step["TargetRequests"].as_u64().unwrap() >= 5, "{step}");
    }
    let o = c.run(&["greeter", "--status"]);
    assert!(text(&o).contains("succeeded at 100%"), "{}", text(&o));
    assert!(load.ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "a healthy migration loses no request: {:?}",
        load.failures.lock()
    );

    // The function starts failing 30 % of its invocations in the middle of a migration: back
    // to 0 % at the next judgement, exit non-zero naming the error rate.
    let mut failing = Running::spawn(c.migrate(&common_args));
    failing.wait_for_line(90, "step 2/3: 50%");
    c.function_env("0.3", "0");
    let (code, out) = failing.finish(90);
    eprintln!("--- the failing function ---\n{out}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rolled back to 0%: error rate crossed: error rate "),
        "{out}"
    );
    assert_eq!(c.lambda_weight(), 0.0);
    let rec = c.record();
    assert_eq!(rec["State"], "rolled_back");
    assert!(
        rec["Reason"].as_str().unwrap().starts_with("error rate "),
        "{rec}"
    );
    let history = rec["History"].as_array().unwrap();
    assert_eq!(history[0]["Outcome"], "promoted", "{rec}");
    assert_eq!(history.last().unwrap()["Outcome"], "rolled_back", "{rec}");

    // Every answer slower than --max-p99: rolled back at the first step, naming the latency.
    c.function_env("0", "2500");
    let o = c.run(&[
        "greeter",
        "--to",
        "greeter-lambda",
        "--steps",
        "10,50,100",
        "--interval",
        "5s",
        "--min-requests",
        "3",
        "--max-p99",
        "1s",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("rolled back to 0%: p99 latency crossed: p99 latency "),
        "{out}"
    );
    assert_eq!(c.lambda_weight(), 0.0);
    assert_eq!(c.record()["History"].as_array().unwrap().len(), 1);
    c.function_env("0", "0");

    // A hand edit of the splitter during a migration stops it; nothing is overwritten.
    let mut edited = Running::spawn(c.migrate(&common_args));
    edited.wait_for_line(60, "step 1/3");
    let mut by_hand = c.splitter();
    by_hand["Splits"] =
        json!([{"Weight": 70, "Service": "greeter"}, {"Weight": 30, "Service": "greeter-lambda"}]);
    common::mesh::put(&c.http, "/v1/config", &by_hand);
    let (code, out) = edited.finish(60);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("was changed by someone else"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.lambda_weight(), 30.0, "the hand edit stands");
    assert_eq!(c.record()["State"], "stopped");

    // Ctrl-C after a healthy first step: the last healthy weight stays, --status says so.
    let mut interrupted = Running::spawn(c.migrate(&common_args));
    interrupted.wait_for_line(90, "step 2/3: 50%");
    let pid = rustix::process::Pid::from_raw(interrupted.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let (code, out) = interrupted.finish(30);
    assert_eq!(code, 130, "{out}");
    assert!(out.contains("last healthy weight, 10%"), "{out}");
    assert_eq!(c.lambda_weight(), 10.0);
    let o = c.run(&["greeter", "--status"]);
    assert!(
        text(&o).contains("interrupted at 10% (step 2/3, last healthy 10%)"),
        "{}",
        text(&o)
    );
    // The same command resumes from the record at the interrupted step.
    let mut resumed = Running::spawn(c.migrate(&common_args));
    let (code, out) = resumed.finish(90);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("resuming the migration of greeter to greeter-lambda at step 2/3"),
        "{out}"
    );
    assert!(!out.contains("step 1/3"), "{out}");
    assert_eq!(c.lambda_weight(), 100.0);

    // --abort from another terminal: the running migrate stops, the splitter goes to 0.
    let mut aborted = Running::spawn(c.migrate(&common_args));
    aborted.wait_for_line(60, "step 1/3");
    let o = c.run(&["greeter", "--abort"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("aborted: greeter sends 0% to greeter-lambda"),
        "{}",
        text(&o)
    );
    let (code, out) = aborted.finish(30);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("stopped: aborted by "), "{out}");
    assert_eq!(c.lambda_weight(), 0.0);
    assert_eq!(c.record()["State"], "aborted");
}
