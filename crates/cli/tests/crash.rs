//! Crash test: 16 concurrent writers against a real server process, `kill -9` at a random
//! moment, restart on the same data dir. Every acknowledged write must be there, every write
//! must be whole (service and its check together), and the index must never go backwards.
//! And a leaf certificate survives a `kill -9` of the server: none is reissued.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::Proc;
use parking_lot::Mutex;
use rand::Rng;

const WRITERS: usize = 16;

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    )
}

fn index_of(http: &str) -> u64 {
    let resp = agent()
        .get(&format!("http://{http}/v1/catalog/services"))
        .call()
        .unwrap();
    resp.headers()
        .get("X-Consul-Index")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn kill_dash_nine_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let acked: Arc<Mutex<BTreeSet<(usize, u64)>>> = Arc::default();
    let mut max_index_seen = 0u64;
    let mut rng = rand::rng();

    for round in 0..3u64 {
        let mut server = Proc::start(&["server", "-data-dir", &data]);
        let start_index = index_of(&server.http);
        assert!(
            start_index >= max_index_seen,
            "round {round}: index went backwards: {start_index} < {max_index_seen}"
        );
        // Everything acknowledged in earlier rounds is here, whole.
        verify(&server.http, &acked.lock());

        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(start_index));
        let mut threads = Vec::new();
        for w in 0..WRITERS {
            let (http, stop, acked, seen) = (
                server.http.clone(),
                stop.clone(),
                acked.clone(),
                seen.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let a = agent();
                let mut i = round * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let body = serde_json::json!({
                        "Node": format!("crash-node-{w}"), "Address": "127.0.0.1",
                        "Service": {"ID": format!("s-{i}"), "Service": format!("crash-{w}"), "Port": 1},
                        "Check": {"CheckID": format!("c-{i}"), "Name": "c", "ServiceID": format!("s-{i}"), "Status": "passing"}
                    });
                    match a.put(&format!("http://{http}/v1/catalog/register")).send(body.to_string()) {
                        Ok(resp) if resp.status() == 200 => {
                            acked.lock().insert((w, i));
                        }
                        _ => break, // the server is gone
                    }
                    if i % 16 == 0
                        && let Ok(resp) = a.get(&format!("http://{http}/v1/catalog/services")).call()
                            && let Some(ix) = resp.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
                                seen.fetch_max(ix, Ordering::Relaxed);
                            }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        max_index_seen = max_index_seen.max(seen.load(Ordering::Relaxed));
    }
    let server = Proc::start(&["server", "-data-dir", &data]);
    assert!(index_of(&server.http) >= max_index_seen);
    let n = verify(&server.http, &acked.lock());
    assert!(n > 100, "too few writes happened to prove anything: {n}");
}

/// Checks every acked write is present and every present service has its check. Returns the count.
fn verify(http: &str, acked: &BTreeSet<(usize, u64)>) -> usize {
    let a = agent();
    let mut total = 0;
    for w in 0..WRITERS {
        let mut resp = a
            .get(&format!("http://{http}/v1/health/service/crash-{w}"))
            .call()
            .unwrap();
        let rows: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        let mut present = BTreeSet::new();
        for r in rows.as_array().unwrap() {
            let id = r["Service"]["ID"].as_str().unwrap().to_owned();
            let check = format!("c-{}", id.trim_start_matches("s-"));
            assert!(
                r["Checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["CheckID"] == check.as_str()),
                "service {id} is present without its check: half-applied write"
            );
            present.insert(id);
        }
        for (_, i) in acked.iter().filter(|(ww, _)| *ww == w) {
            assert!(
                present.contains(&format!("s-{i}")),
                "acknowledged write s-{i} of writer {w} was lost"
            );
        }
        total += present.len();
    }
    total
}

/// A leaf certificate handed out before a `kill -9` is the one handed out after the restart:
/// same serial, certificate and key (nothing for proxies or functions to reload).
#[test]
fn kill_dash_nine_reissues_no_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let leaf = |http: &str, svc: &str| -> serde_json::Value {
        let mut resp = agent()
            .get(&format!("http://{http}/v1/agent/connect/ca/leaf/{svc}"))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200);
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    };
    let mut server = Proc::start(&["server", "-data-dir", &data]);
    let before: Vec<_> = ["web", "api"]
        .iter()
        .map(|s| leaf(&server.http, s))
        .collect();
    server.kill9();
    let server = Proc::start(&["server", "-data-dir", &data]);
    let after: Vec<_> = ["web", "api"]
        .iter()
        .map(|s| leaf(&server.http, s))
        .collect();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a["SerialNumber"], b["SerialNumber"]);
        assert_eq!(a["CertPEM"], b["CertPEM"]);
        assert_eq!(a["PrivateKeyPEM"], b["PrivateKeyPEM"]);
        assert_eq!(a["ModifyIndex"], b["ModifyIndex"]);
    }
    let leaves = std::path::Path::new(&data).join("leaves");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&leaves).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "only the server's user may list the leaves");
        for f in std::fs::read_dir(&leaves).unwrap() {
            let mode = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "only the server's user may read a leaf's key");
        }
    }
}
