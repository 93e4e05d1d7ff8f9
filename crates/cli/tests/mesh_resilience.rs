//! Steady traffic through real Envoys while the control plane is killed for 10 s and restarted,
//! and while the CA root is rotated: no request may fail, and after the restart the Envoys
//! reconnect and take new configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::Proc;
use common::mesh::{Backend, Envoy, free_port, get, get_json, put, wait_until};
use serde_json::json;

/// Sends requests every 5 ms until stopped; counts (ok, failed).
fn steady_traffic(
    url: String,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    std::thread::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let (status, body) = get(&url);
            if status == 200 && body.starts_with("hello from b") {
                o.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!(
                    "request failed at {:?}: {status} {body}",
                    std::time::SystemTime::now()
                );
                f.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (stop, ok, failed, t)
}

fn setup(http: &str, b: &Backend) -> u16 {
    let up = free_port();
    put(
        http,
        "/v1/agent/service/register",
        &json!({"Name": "b", "Port": b.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    put(
        http,
        "/v1/agent/service/register",
        &json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "b", "LocalBindPort": up}]}}}}),
    );
    up
}

#[test]
fn control_plane_down_for_10s_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let (hp, gp) = (free_port(), free_port());
    let (http_addr, grpc_addr) = (format!("127.0.0.1:{hp}"), format!("127.0.0.1:{gp}"));
    let args = [
        "server",
        "-data-dir",
        &data,
        "-http-addr",
        &http_addr,
        "-grpc-addr",
        &grpc_addr,
    ];
    let mut server = Proc::start_exact(&args);
    let b = Backend::start("hello from b");
    let up = setup(&http_addr, &b);
    let _eb = Envoy::start(&http_addr, &grpc_addr, &["-sidecar-for", "b"]);
    let ea = Envoy::start(&http_addr, &grpc_addr, &["-sidecar-for", "a"]);
    let url = format!("http://127.0.0.1:{up}/");
    wait_until(30, "traffic flows", || get(&url).0 == 200);

    let (stop, ok, failed, t) = steady_traffic(url.clone());
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "killing the control plane at {:?}",
        std::time::SystemTime::now()
    );
    server.kill9();
    std::thread::sleep(Duration::from_secs(10));
    eprintln!(
        "restarting the control plane at {:?}",
        std::time::SystemTime::now()
    );
    let server = Proc::start_exact(&args);
    // Envoys reconnect (delta xDS) and converge: a new intention reaches them.
    wait_until(
        60,
        "Envoy reconnected to the restarted control plane",
        || ea.stat("control_plane.connected_state") == 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 500, "too little traffic to prove anything: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed while the control plane was down",
        ok + failed
    );
    put(
        &server.http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "b", "Protocol": "http"}),
    );
    put(
        &server.http,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &json!({"Action": "deny"}),
    );
    wait_until(30, "new config applied after the restart", || {
        get(&url).0 == 403
    });
}

#[test]
fn root_rotation_under_traffic_loses_no_request() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let b = Backend::start("hello from b");
    let up = setup(&http, &b);
    let _eb = Envoy::start(&http, &server.grpc, &["-sidecar-for", "b"]);
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "a"]);
    let url = format!("http://127.0.0.1:{up}/");
    wait_until(30, "traffic flows", || get(&url).0 == 200);
    let old_root = get_json(&http, "/v1/agent/connect/ca/roots")["ActiveRootID"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_serial = get_json(&http, "/v1/agent/connect/ca/leaf/b")["SerialNumber"].clone();

    let (stop, ok, failed, t) = steady_traffic(url.clone());
    std::thread::sleep(Duration::from_millis(500));
    // A new private key rotates the root, as in Consul.
    let key = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap();
    put(
        &http,
        "/v1/connect/ca/configuration",
        &json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h", "PrivateKey": key}}),
    );
    wait_until(30, "a new active root", || {
        get_json(&http, "/v1/agent/connect/ca/roots")["ActiveRootID"].as_str()
            != Some(old_root.as_str())
    });
    wait_until(60, "leaves reissued by the new root", || {
        get_json(&http, "/v1/agent/connect/ca/leaf/b")["SerialNumber"] != old_serial
    });
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let roots = get_json(&http, "/v1/agent/connect/ca/roots");
    assert!(
        roots["Roots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ID"] == old_root.as_str()),
        "the old root stays trusted while its leaves live"
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "too little traffic: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the root rotation",
        ok + failed
    );
    assert_eq!(get(&url).0, 200);
}
