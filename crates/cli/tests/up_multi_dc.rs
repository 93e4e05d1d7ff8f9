//! `lambdamesh up` of two datacenters from one file (issue 19 item 6): `examples/multi-dc` on free
//! ports, with the real parts (two servers, two platforms, Envoy mesh gateways exposing the
//! servers, sidecars, a terminating gateway, the registrator and functions in dc2).
//!
//! - dc2 joins dc1 through dc1's mesh gateway: each lists both datacenters, dc2's federation
//!   status shows the link healthy, dc2 holds dc1's roots with an intermediate, dc1's gateway
//!   counted the connections to its server, and dc1's config entries are in dc2;
//! - same-datacenter traffic works in each: dc1's `web` → `users`; dc2's `api` → the Lambda
//!   function `authentication` through dc2's terminating gateway;
//! - `status` and `logs` name each datacenter's parts; `down` leaves no process and no listener;
//!   `kill -9` of `up` takes the parts of both, and the next `up` comes back on the same state;
//! - a bad two-datacenter file is refused before anything starts, with file and line;
//! - calls across: dc1's `web` → `authentication:dc2`,
//!   dc2's function `profile` → `users:dc1` through the Lambda extension.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::path::{Path, PathBuf};

use common::mesh::{get, get_json, wait_until};
use common::up::{Up, endpoint_ports, lambdamesh, listening, run_processes};
use serde_json::{Value, json};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi-dc")
}

/// An endpoint of the run record, without its scheme.
fn endpoint(record: &Value, key: &str) -> String {
    record["endpoints"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no endpoint {key:?} in {record:#}"))
        .trim_start_matches("http://")
        .to_owned()
}

/// An Envoy counter from its admin API (0 when absent).
fn envoy_counter(admin: &str, name: &str) -> u64 {
    let (_, body) = get(&format!("http://{admin}/stats?filter=^{name}$"));
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What holds once both datacenters are up: joined through the gateways, both listed in each,
/// the link healthy, the primary's entries replicated.
fn check_federation(record: &Value) {
    let dc1 = endpoint(record, "dc1/http");
    let dc2 = endpoint(record, "dc2/http");
    wait_until(30, "each datacenter lists both, its own first", || {
        get_json(&dc1, "/v1/catalog/datacenters") == json!(["dc1", "dc2"])
            && get_json(&dc2, "/v1/catalog/datacenters") == json!(["dc2", "dc1"])
    });
    let status = get_json(&dc2, "/v1/internal/federation/status");
    assert_eq!(status["Datacenter"], "dc2", "{status:#}");
    assert_eq!(status["PrimaryDatacenter"], "dc1", "{status:#}");
    assert_eq!(status["Secondary"], true, "{status:#}");
    assert!(status["Primary"]["LastError"].is_null(), "{status:#}");
    assert!(
        status["Primary"]["LastContactUnix"].as_u64().unwrap() > 0,
        "{status:#}"
    );
    let replication = &status["ConfigEntryReplication"];
    assert!(replication["LastError"].is_null(), "{status:#}");
    assert!(
        replication["ReplicatedIndex"].as_u64().unwrap() > 0,
        "{status:#}"
    );
    // A blocking exchange returns at least every 30 s: a healthy link stays under about 30 s.
    assert!(
        replication["LagSeconds"].as_u64().unwrap() <= 45,
        "{status:#}"
    );

    // One trust domain: dc2 holds dc1's active root, with the intermediate dc1 signed.
    let roots1 = get_json(&dc1, "/v1/agent/connect/ca/roots");
    let roots2 = get_json(&dc2, "/v1/agent/connect/ca/roots");
    assert_eq!(roots2["TrustDomain"], roots1["TrustDomain"]);
    assert_eq!(roots2["ActiveRootID"], roots1["ActiveRootID"]);
    let active = roots2["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Active"] == true)
        .unwrap();
    assert!(active["IntermediateCerts"].is_array(), "{roots2:#}");

    // dc2 reached dc1's server through dc1's mesh gateway, registered to expose the servers.
    let admin = endpoint(record, "dc1/gateway mesh-gateway admin");
    assert!(
        envoy_counter(&admin, "cluster.server.dc1.consul.upstream_cx_total") > 0,
        "dc2 joined through dc1's gateway"
    );
    for http in [&dc1, &dc2] {
        let gw = get_json(http, "/v1/catalog/service/mesh-gateway");
        assert_eq!(
            gw[0]["ServiceMeta"]["consul-wan-federation"], "1",
            "{http}: {gw:#}"
        );
    }

    // Config entries are the primary's, replicated: dc1's proxy-defaults is in dc2, and dc2's
    // terminating-gateway entry (written to dc2, sent on to dc1) is in both.
    let pd = get_json(&dc2, "/v1/config/proxy-defaults/global");
    assert_eq!(pd["MeshGateway"]["Mode"], "local", "{pd:#}");
    get_json(&dc1, "/v1/config/terminating-gateway/terminating-gateway");

    // Each datacenter's catalog is its own: the function is registered in dc2 only, and dc1
    // reads it with ?dc=dc2 (forwarded through the gateways).
    assert_eq!(
        get_json(&dc1, "/v1/catalog/service/authentication"),
        json!([])
    );
    let in_dc2 = get_json(&dc2, "/v1/catalog/service/authentication");
    assert_eq!(in_dc2[0]["Datacenter"], "dc2", "{in_dc2:#}");
    let via_dc1 = get_json(&dc1, "/v1/catalog/service/authentication?dc=dc2");
    assert_eq!(via_dc1[0]["ServiceID"], in_dc2[0]["ServiceID"]);
}

/// Same-datacenter calls in each: dc1's web → users, dc2's api → authentication (Lambda).
fn check_local_traffic(record: &Value) {
    let web = endpoint(record, "dc1/web");
    wait_until(30, "web → users in dc1", || {
        let (status, body) = get(&format!("http://{web}/users?user=ann"));
        status == 200 && body.contains("\"datacenter\": \"dc1\"") && body.contains("\"Ann\"")
    });
    let api = endpoint(record, "dc2/api → authentication");
    wait_until(60, "api → authentication (Lambda) in dc2", || {
        let (status, body) = get(&format!("http://{api}/login?user=ann"));
        status == 200
            && body.contains("\"authenticated\": true")
            && body.contains("\"function\": \"authentication\"")
    });
}

#[test]
fn two_datacenters_come_up_from_one_file_joined_through_their_mesh_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut up = Up::start(&example(), &state);
    let record = up.ready(240);

    // The order: dc1's server and mesh gateway, then dc2's server, joined, and its gateway.
    let out = up.output();
    let at = |line: &str| {
        out.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{out}"))
    };
    assert!(at("up: dc1/server: ready") < at("up: dc1/gateway mesh-gateway: ready"));
    assert!(at("up: dc1/gateway mesh-gateway: ready") < at("up: dc2/server: starting"));
    assert!(at("up: dc2/server: ready") < at("up: dc2/gateway mesh-gateway: starting"));
    assert!(at("up: dc2/gateway mesh-gateway: ready") < at("up: dc1/platform: starting"));
    assert!(out.contains("joined dc1"), "{out}");

    check_federation(&record);
    check_local_traffic(&record);

    // Each datacenter has its own platform, in its own region.
    let lambda2 = record["endpoints"]["dc2/lambda"].as_str().unwrap();
    assert_ne!(lambda2, record["endpoints"]["dc1/lambda"].as_str().unwrap());
    let o = lambdamesh(&["lambda", "list", "--endpoint", lambda2])
        .env("AWS_REGION", "us-west-2")
        .output()
        .unwrap();
    let listed = text(&o);
    assert!(o.status.success(), "{listed}");
    assert!(
        listed.contains("authentication") && listed.contains("profile"),
        "{listed}"
    );
    let lambda1 = record["endpoints"]["dc1/lambda"].as_str().unwrap();
    let o = lambdamesh(&["lambda", "list", "--endpoint", lambda1])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("authentication"),
        "dc1's platform: {}",
        text(&o)
    );
    // The registrator of dc2 registered the function with its ARN in dc2's region.
    let defaults = get(&format!(
        "http://{}/v1/config/service-defaults/authentication",
        endpoint(&record, "dc2/http")
    ))
    .1;
    assert!(
        defaults.contains("arn:aws:lambda:us-west-2:123456789012:function:authentication"),
        "{defaults}"
    );

    // `status` and `logs` name every part with its datacenter.
    let o = lambdamesh(&["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let st = text(&o);
    assert_eq!(o.status.code(), Some(0), "{st}");
    for part in [
        "dc1/server",
        "dc1/gateway mesh-gateway",
        "dc1/platform",
        "dc1/sidecar web",
        "dc2/server",
        "dc2/gateway mesh-gateway",
        "dc2/gateway terminating-gateway",
        "dc2/platform",
        "dc2/sidecar api",
    ] {
        assert!(
            st.lines()
                .any(|l| l.trim_start().starts_with(part) && l.ends_with("running")),
            "{part} in:\n{st}"
        );
    }
    let o = lambdamesh(&["logs", "--state-dir"])
        .arg(&state)
        .arg("dc2/server")
        .output()
        .unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("dc2"), "dc2's server log: {log}");
    let o = lambdamesh(&["logs", "--state-dir"])
        .arg(&state)
        .arg("dc2/authentication")
        .output()
        .unwrap();
    let log = text(&o);
    assert!(
        o.status.success() && log.contains("START RequestId"),
        "the function's log in dc2: {log}"
    );
    let o = lambdamesh(&["logs", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let all = text(&o);
    for label in ["dc1/sidecar-web |", "dc2/sidecar-api |", "dc1/server |"] {
        assert!(all.contains(label), "{label} in `logs`");
    }

    // `down`: no process of either datacenter, no listener on their ports.
    let ports = endpoint_ports(&record);
    assert!(ports.len() > 15, "{record:#}");
    up.down();
    assert_eq!(run_processes(&state), Vec::<u32>::new(), "processes left");
    for p in ports {
        assert!(!listening(p), "port {p} still listening after down");
    }
}

#[test]
fn kill9_of_up_takes_both_datacenters_and_the_next_up_rejoins_on_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut up = Up::start(&example(), &state);
    let record = up.ready(240);
    let dc1 = endpoint(&record, "dc1/http");
    let trust_domain = get_json(&dc1, "/v1/agent/connect/ca/roots")["TrustDomain"].clone();
    let parts = run_processes(&state);
    assert!(parts.len() >= 12, "{parts:?}");

    up.run.child.kill().unwrap(); // SIGKILL
    up.run.child.wait().unwrap();
    wait_until(30, "the parts of both datacenters die with up", || {
        run_processes(&state).is_empty()
    });
    let o = lambdamesh(&["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "status after kill -9");

    // Again on the same state: the same trust domain, dc2 joined again, traffic in each.
    let mut again = Up::start(&example(), &state);
    let record = again.ready(240);
    let dc2 = endpoint(&record, "dc2/http");
    assert_eq!(
        get_json(&dc2, "/v1/agent/connect/ca/roots")["TrustDomain"],
        trust_domain
    );
    check_federation(&record);
    check_local_traffic(&record);
    again.down();
    assert_eq!(run_processes(&state), Vec::<u32>::new());
}

#[test]
fn a_bad_two_datacenter_file_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lambdamesh.hcl");
    std::fs::write(
        &file,
        r#"datacenter "dc1" {
  service "web" {
    port = 7100
    sidecar {
      upstreams = { "auth:dc3" = 7101 }
    }
  }
  gateway "m" {
    kind = "mesh"
    port = 7102
  }
}
datacenter "dc2" {
  service "auth" {
    port = 7103
    sidecar {}
  }
}
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let o = lambdamesh(&["up", "--state-dir"])
        .arg(&state)
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let f = file.display();
    for want in [
        format!(
            "{f}:5: service \"web\": upstream \"auth:dc3\": there is no datacenter \"dc3\" in this file (dc1, dc2)"
        ),
        format!("{f}:13: datacenter \"dc2\" has no gateway with kind = \"mesh\""),
        format!(
            "{f}:13: port 8500: the server's HTTP API in dc2 clashes with the server's HTTP API in dc1 (line 1)"
        ),
    ] {
        assert!(err.contains(&want), "{want:?} in:\n{err}");
    }
    assert!(err.contains("nothing was started"), "{err}");
    assert_eq!(run_processes(&state), Vec::<u32>::new());
}

/// Polls `f` until it succeeds; on a timeout, panics with its last answer.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match f() {
            Ok(()) => return,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("timed out after {secs} s waiting for {what}; last answer: {last}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// Calls across the datacenters, through the mesh gateways (proxy-defaults `MeshGateway { Mode
/// = "local" }`): needs the sidecars' clusters for targets in another datacenter and the mesh
/// gateways' routes to the other datacenter's gateways.
#[test]
fn calls_cross_the_datacenters_through_the_mesh_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut up = Up::start(&example(), &state);
    let record = up.ready(240);
    check_federation(&record);

    // dc1's web → authentication:dc2, a Lambda function behind dc2's terminating gateway.
    let web = endpoint(&record, "dc1/web");
    wait_for(60, "web (dc1) → authentication (dc2)", || {
        let (status, body) = get(&format!("http://{web}/login?user=ann"));
        let ok = status == 200
            && body.contains("\"authenticated\": true")
            && body.contains("\"function\": \"authentication\"");
        if ok {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
    let dc1_gw = endpoint(&record, "dc1/gateway mesh-gateway admin");
    let dc2_gw = endpoint(&record, "dc2/gateway mesh-gateway admin");
    let (_, stats1) = get(&format!("http://{dc1_gw}/stats?filter=dc2"));
    assert!(
        stats1
            .lines()
            .any(|l| l.contains("upstream_cx_total") && !l.ends_with(" 0")),
        "dc1's gateway carried the call to dc2: {stats1}"
    );

    // dc2's profile → users:dc1 through its extension: dc2's gateway → dc1's gateway → users.
    let lambda2 = record["endpoints"]["dc2/lambda"].as_str().unwrap();
    wait_for(60, "profile (dc2) → users (dc1)", || {
        let o = lambdamesh(&[
            "lambda",
            "invoke",
            "--endpoint",
            lambda2,
            "profile",
            "--payload",
            "{\"user\": \"bob\"}",
        ])
        .env("AWS_REGION", "us-west-2")
        .output()
        .unwrap();
        let answer = text(&o);
        let ok = o.status.success()
            && answer.contains("\"datacenter\": \"dc1\"")
            && answer.contains("\"Bob\"");
        if ok { Ok(()) } else { Err(answer) }
    });
    let (_, stats2) = get(&format!("http://{dc2_gw}/stats?filter=dc1"));
    assert!(
        stats2
            .lines()
            .any(|l| l.contains("upstream_cx_total") && !l.ends_with(" 0")),
        "dc2's gateway carried the call to dc1: {stats2}"
    );
    up.down();
    assert_eq!(run_processes(&state), Vec::<u32>::new());
}
