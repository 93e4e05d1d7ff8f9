//! High availability with the real binaries: a real 3-member etcd cluster on loopback and 3
//! `lambdamesh server` replicas on it (`docs/ha.md`). Every replica serves the whole API; writes
//! through one are read and wake blocking queries on the others; check-and-set config writes
//! through different replicas have one winner per index; the CA is shared; a missing or
//! unreachable etcd is a clear start-up error; etcd down answers writes 503 and marks reads stale,
//! then everything resumes; and writers lose nothing when a replica and the etcd leader are
//! SIGKILLed under load.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{BIN, Proc};
use parking_lot::Mutex;
use test_support::EtcdCluster;

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    )
}

/// The etcd cluster, a key file and the replicas' data dirs.
struct Ha {
    etcd: EtcdCluster,
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
}

impl Ha {
    fn new() -> Ha {
        let etcd = EtcdCluster::start(3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("etcd.key");
        // 32 random-enough bytes for a test, as hex (the product takes any 64 hex digits).
        let hex: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        std::fs::write(&key, hex).unwrap();
        Ha { etcd, dir, key }
    }

    fn replica(&self, name: &str) -> Proc {
        let data = self.dir.path().join(name);
        Proc::start(&[
            "server",
            "-node",
            name,
            "-data-dir",
            data.to_str().unwrap(),
            "-etcd-endpoints",
            &self.etcd.endpoint_list(),
            "-etcd-encryption-key-file",
            self.key.to_str().unwrap(),
        ])
    }
}

fn get(http: &str, path: &str) -> (u16, serde_json::Value, ureq::http::HeaderMap) {
    let mut resp = agent().get(&format!("http://{http}{path}")).call().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        headers,
    )
}

fn put(http: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    let mut resp = agent()
        .put(&format!("http://{http}{path}"))
        .send(body.to_string())
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

fn header(h: &ureq::http::HeaderMap, name: &str) -> String {
    h.get(name).unwrap().to_str().unwrap().to_owned()
}

fn register(http: &str, node: &str, id: &str, service: &str) -> (u16, String) {
    put(
        http,
        "/v1/catalog/register",
        &serde_json::json!({
            "Node": node, "Address": "127.0.0.1",
            "Service": {"ID": id, "Service": service, "Port": 80},
            "Check": {"CheckID": format!("c-{id}"), "Name": "c", "ServiceID": id, "Status": "passing"}
        }),
    )
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn replicas_serve_one_mesh() {
    let ha = Ha::new();
    let r: Vec<Proc> = ["r0", "r1", "r2"].iter().map(|n| ha.replica(n)).collect();

    // A write through r0 is on r1 and r2, at the same index.
    assert_eq!(register(&r[0].http, "n1", "web-1", "web").0, 200);
    wait_until(10, "the write on every replica", || {
        r.iter().all(|p| {
            get(&p.http, "/v1/catalog/service/web")
                .1
                .as_array()
                .is_some_and(|a| a.len() == 1)
        })
    });
    let indexes: BTreeSet<String> = r
        .iter()
        .map(|p| header(&get(&p.http, "/v1/catalog/service/web").2, "X-Consul-Index"))
        .collect();
    assert_eq!(indexes.len(), 1, "replicas disagree: {indexes:?}");
    let index: u64 = indexes.first().unwrap().parse().unwrap();

    // A blocking query on r1 wakes for a write through r2.
    let http1 = r[1].http.clone();
    let waiter = std::thread::spawn(move || {
        get(
            &http1,
            &format!("/v1/catalog/service/web?index={index}&wait=30s"),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(register(&r[2].http, "n2", "web-2", "web").0, 200);
    let (status, body, headers) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert!(header(&headers, "X-Consul-Index").parse::<u64>().unwrap() > index);
    assert_eq!(header(&headers, "X-Consul-KnownLeader"), "true");

    // `?consistent` on r1 right after a write through r2 is acknowledged: always there.
    for i in 0..20 {
        let id = format!("web-c{i}");
        assert_eq!(register(&r[2].http, "n2", &id, "web").0, 200);
        let (status, body, headers) = get(&r[1].http, "/v1/catalog/service/web?consistent");
        assert_eq!(status, 200);
        assert!(
            body.as_array()
                .unwrap()
                .iter()
                .any(|s| s["ServiceID"] == id.as_str()),
            "{id} missing from a consistent read"
        );
        assert_eq!(
            header(&headers, "X-Consul-Effective-Consistency"),
            "consistent"
        );
    }

    // One CA for the cluster: every replica shows the same active root and signs leaves with it.
    let roots: BTreeSet<String> = r
        .iter()
        .map(|p| {
            get(&p.http, "/v1/connect/ca/roots").1["ActiveRootID"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(roots.len(), 1, "replicas have different CAs: {roots:?}");
    for p in &r {
        let (status, leaf, _) = get(&p.http, "/v1/agent/connect/ca/leaf/web");
        assert_eq!(status, 200);
        assert!(
            leaf["CertPEM"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
    }

    // Check-and-set through different replicas at once: exactly one wins each round.
    let entry = |w: &str| serde_json::json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http", "Meta": {"w": w}});
    assert_eq!(put(&r[0].http, "/v1/config", &entry("first")).1, "true");
    for round in 0..5 {
        wait_until(10, "the entry on every replica", || {
            let m: BTreeSet<u64> = r
                .iter()
                .map(|p| {
                    get(&p.http, "/v1/config/service-defaults/web").1["ModifyIndex"]
                        .as_u64()
                        .unwrap_or(0)
                })
                .collect();
            m.len() == 1
        });
        let modify = get(&r[0].http, "/v1/config/service-defaults/web").1["ModifyIndex"]
            .as_u64()
            .unwrap();
        let threads: Vec<_> = (0..6)
            .map(|w| {
                let http = r[w % 3].http.clone();
                let body = entry(&format!("round {round} writer {w}"));
                std::thread::spawn(move || put(&http, &format!("/v1/config?cas={modify}"), &body))
            })
            .collect();
        let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        let wins = answers.iter().filter(|(_, b)| b == "true").count();
        assert_eq!(wins, 1, "round {round}: {answers:?}");
    }
}

#[test]
fn start_without_a_usable_etcd_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let endpoint = format!("http://127.0.0.1:{}", test_support::free_port());
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["server", "-data-dir", dir.path().to_str().unwrap()])
            .args(["-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("LAMBDAMESH_ETCD_ENCRYPTION_KEY")
            .output()
            .unwrap()
    };
    let out = run(&[
        "-etcd-endpoints",
        &endpoint,
        "-etcd-encryption-key-file",
        key.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains(&endpoint), "{err}");
    // No key: refused before anything is stored in clear.
    let out = run(&["-etcd-endpoints", &endpoint]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("encryption key"), "{err}");
    // A malformed endpoint and a bad -store value are named.
    let out = run(&["-store", "zookeeper"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-store"));
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn etcd_down_answers_writes_503_and_marks_reads_stale_then_resumes() {
    let mut ha = Ha::new();
    let r0 = ha.replica("r0");
    let r1 = ha.replica("r1");
    assert_eq!(register(&r0.http, "n1", "web-1", "web").0, 200);
    wait_until(10, "the write on r1", || {
        get(&r1.http, "/v1/catalog/service/web")
            .1
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });

    ha.etcd.kill_all();
    let (status, message) = register(&r1.http, "n1", "web-2", "web");
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("etcd"), "{message}");
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body, headers) = get(&r1.http, "/v1/catalog/service/web");
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "reads keep serving");
    assert_eq!(header(&headers, "X-Consul-KnownLeader"), "false");
    assert!(
        header(&headers, "X-Consul-LastContact")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // A consistent read cannot be confirmed: 503 naming etcd, not a stale answer.
    let (status, body, _) = get(&r1.http, "/v1/catalog/service/web?consistent");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.as_str().unwrap_or("").contains("consistent read"),
        "{body}"
    );

    ha.etcd.restart_all().unwrap();
    wait_until(30, "writes to succeed again", || {
        register(&r1.http, "n1", "web-3", "web").0 == 200
    });
    wait_until(10, "the write on r0", || {
        get(&r0.http, "/v1/catalog/service/web")
            .1
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    wait_until(10, "reads to be fresh again", || {
        header(
            &get(&r0.http, "/v1/catalog/services").2,
            "X-Consul-KnownLeader",
        ) == "true"
    });
}

/// 16 writers spread over 3 replicas; `kill -9` of one replica, then of the etcd leader, under
/// load. Writers whose replica died stop there; the others retry only a call that failed.
/// Every acknowledged write is present and whole on the surviving replicas.
#[test]
fn kill_dash_nine_of_a_replica_and_the_etcd_leader_loses_no_acknowledged_write() {
    const WRITERS: usize = 16;
    let mut ha = Ha::new();
    let mut r: Vec<Proc> = ["r0", "r1", "r2"].iter().map(|n| ha.replica(n)).collect();
    let acked: Arc<Mutex<BTreeSet<(usize, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let retried = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let http = r[w % 3].http.clone();
            let (acked, stop, retried) = (acked.clone(), stop.clone(), retried.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                let mut failures_in_a_row = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    loop {
                        match agent()
                            .put(&format!("http://{http}/v1/catalog/register"))
                            .send(
                                serde_json::json!({
                                    "Node": format!("node-{w}"), "Address": "127.0.0.1",
                                    "Service": {"ID": format!("s-{i}"), "Service": format!("svc-{w}"), "Port": 1},
                                    "Check": {"CheckID": format!("c-{i}"), "Name": "c", "ServiceID": format!("s-{i}"), "Status": "passing"}
                                })
                                .to_string(),
                            ) {
                            Ok(resp) if resp.status() == 200 => {
                                acked.lock().insert((w, i));
                                failures_in_a_row = 0;
                                break;
                            }
                            other => {
                                // The in-flight call failed: retry the same write (it is
                                // idempotent), unless this writer's replica is gone for good.
                                failures_in_a_row += 1;
                                let why = match other {
                                    Ok(mut resp) => format!(
                                        "status: {} {}",
                                        resp.status().as_u16(),
                                        resp.body_mut().read_to_string().unwrap_or_default()
                                    ),
                                    Err(e) => e.to_string(),
                                };
                                retried.lock().push((w, i, why.chars().take(400).collect::<String>()));
                                if failures_in_a_row > 100 || stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    r[0].kill9();
    std::thread::sleep(Duration::from_secs(2));
    let leader = ha.etcd.leader().expect("etcd has a leader");
    ha.etcd.kill(leader);
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() > 100,
        "too few writes to prove anything: {}",
        acked.len()
    );
    // Writers on the surviving replicas (r1, r2) failed at most a few in-flight calls in a row,
    // around the etcd leader's death; every one was retried and acknowledged.
    let retried = retried.lock().clone();
    for w in (0..WRITERS).filter(|w| w % 3 != 0) {
        assert!(
            acked.iter().any(|(ww, i)| *ww == w && *i > 1),
            "writer {w} on a surviving replica stopped; retries: {:?}",
            retried
                .iter()
                .filter(|(rw, _, _)| *rw == w)
                .collect::<Vec<_>>()
        );
    }
    // Every acknowledged write is on both surviving replicas, whole.
    let max = acked.len();
    wait_until(20, "the survivors to agree", || {
        header(&get(&r[1].http, "/v1/catalog/services").2, "X-Consul-Index")
            == header(&get(&r[2].http, "/v1/catalog/services").2, "X-Consul-Index")
    });
    for p in &r[1..] {
        let mut present = 0;
        for w in 0..WRITERS {
            let (_, rows, _) = get(&p.http, &format!("/v1/health/service/svc-{w}"));
            let mut ids = BTreeSet::new();
            for row in rows.as_array().unwrap() {
                let id = row["Service"]["ID"].as_str().unwrap().to_owned();
                let check = format!("c-{}", id.trim_start_matches("s-"));
                assert!(
                    row["Checks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["CheckID"] == check.as_str()),
                    "{id} without its check: half-applied"
                );
                ids.insert(id);
            }
            for (_, i) in acked.iter().filter(|(ww, _)| *ww == w) {
                assert!(
                    ids.contains(&format!("s-{i}")),
                    "acknowledged s-{i} of writer {w} lost"
                );
            }
            present += ids.len();
        }
        assert!(present >= max);
    }
    let survivors_retried: Vec<_> = retried.iter().filter(|(w, _, _)| w % 3 != 0).collect();
    // Each surviving writer failed at most one write (the one in flight when etcd lost its
    // leader; retried until etcd had a new one), and only with a 503, never a broken connection.
    for w in (0..WRITERS).filter(|w| w % 3 != 0) {
        let writes: BTreeSet<u64> = survivors_retried
            .iter()
            .filter(|(rw, _, _)| *rw == w)
            .map(|(_, i, _)| *i)
            .collect();
        assert!(
            writes.len() <= 1,
            "writer {w} failed writes {writes:?}: {:?}",
            survivors_retried
                .iter()
                .filter(|(rw, _, _)| *rw == w)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        survivors_retried
            .iter()
            .all(|(_, _, e)| e.contains("status: 503")),
        "{survivors_retried:?}"
    );
    eprintln!(
        "acknowledged {} writes; {} in-flight calls retried, {} of them by writers on surviving replicas: {survivors_retried:?}",
        acked.len(),
        retried.len(),
        survivors_retried.len()
    );
}

/// The ADS connection of an Envoy: which of `grpc` addresses it is connected to now.
fn ads_replica(admin: u16, grpc: &[String]) -> Option<usize> {
    let mut r = agent()
        .get(&format!("http://127.0.0.1:{admin}/clusters"))
        .call()
        .ok()?;
    let body = r.body_mut().read_to_string().ok()?;
    grpc.iter().position(|g| {
        body.lines().any(|l| {
            l.starts_with(&format!("local_agent::{g}::cx_active::")) && !l.ends_with("::0")
        })
    })
}

/// An Envoy whose xDS replica is SIGKILLed under steady traffic loses no request, reconnects to
/// another replica of its bootstrap's list, and takes a change made through a third.
#[test]
fn envoy_fails_over_to_another_replica_under_traffic() {
    use common::mesh::{Backend, Envoy, free_port, get as get_url};
    let ha = Ha::new();
    let mut r: Vec<Proc> = ["r0", "r1", "r2"].iter().map(|n| ha.replica(n)).collect();
    let http = r[1].http.clone();
    let b = Backend::start("hello from b");
    let up = free_port();
    put(
        &http,
        "/v1/agent/service/register",
        &serde_json::json!({"Name": "b", "Port": b.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    put(
        &http,
        "/v1/agent/service/register",
        &serde_json::json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "b", "LocalBindPort": up}]}}}}),
    );
    put(
        &http,
        "/v1/config",
        &serde_json::json!({"Kind": "service-defaults", "Name": "b", "Protocol": "http"}),
    );
    // The Envoys know replicas r0 and r2; r1 is where their services are registered.
    let grpc = vec![r[0].grpc.clone(), r[2].grpc.clone()];
    let list = grpc.join(",");
    let _eb = Envoy::start(&http, &list, &["-sidecar-for", "b"]);
    let ea = Envoy::start(&http, &list, &["-sidecar-for", "a"]);
    let url = format!("http://127.0.0.1:{up}/");
    wait_until(60, "traffic flows", || get_url(&url).0 == 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(Mutex::new(0u64)), Arc::new(Mutex::new(0u64)));
    let traffic = {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = get_url(&url);
                if status == 200 && body.starts_with("hello from b") {
                    *ok.lock() += 1;
                } else {
                    eprintln!("request failed: {status} {body}");
                    *failed.lock() += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut victim = None;
    wait_until(10, "a's Envoy to show its ADS connection", || {
        victim = ads_replica(ea.admin, &grpc);
        victim.is_some()
    });
    let victim = victim.unwrap();
    let index = if victim == 0 { 0 } else { 2 };
    eprintln!("killing replica r{index}, a's xDS server");
    let ok_before_kill = *ok.lock();
    r[index].kill9();
    let other = &grpc[1 - victim];
    wait_until(60, "a's Envoy reconnected to the other replica", || {
        ads_replica(ea.admin, &grpc) == Some(1 - victim)
            && ea.stat("control_plane.connected_state") == 1
    });
    eprintln!("reconnected to {other}");
    // Enough requests across the kill and after the reconnection to prove something, counted
    // rather than timed: a loaded machine sends fewer per second.
    wait_until(120, "200 requests answered since the kill", || {
        *ok.lock() >= ok_before_kill + 200 || *failed.lock() > 0
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let (ok, failed) = (*ok.lock(), *failed.lock());
    assert!(
        ok >= ok_before_kill + 200,
        "too little traffic to prove anything: {ok}"
    );
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    // A change through r1 (neither Envoy's xDS replica) reaches them through the survivor.
    put(
        &r[1].http,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &serde_json::json!({"Action": "deny"}),
    );
    wait_until(30, "the deny intention applied", || get_url(&url).0 == 403);
}

/// HAProxy in front of the replicas, as `docs/ha.md` tells operators to put one: health checks on
/// `/v1/status/leader`, a failed connection retried on another replica. Killed on drop.
struct LoadBalancer {
    child: std::process::Child,
    addr: String,
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LoadBalancer {
    fn start(dir: &std::path::Path, replicas: &[&str]) -> LoadBalancer {
        let port = test_support::free_port();
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("  server r{i} {r} check\n"))
            .collect();
        let config = format!(
            "defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  \
             retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response\n\
             frontend api\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /v1/status/leader\n  \
             default-server inter 200ms fall 1 rise 2\n{servers}"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (scripts/setup.sh installs it)");
        let lb = LoadBalancer {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        wait_until(20, "haproxy to answer", || {
            agent()
                .get(&format!("http://{}/v1/status/leader", lb.addr))
                .call()
                .is_ok_and(|r| r.status() == 200)
        });
        lb
    }
}

/// The CLI (and any Consul client) pointed at one load-balanced address keeps working when a
/// replica is SIGKILLed: every command before, during and after succeeds.
#[test]
fn clients_through_a_load_balancer_survive_a_replica_kill() {
    let ha = Ha::new();
    let mut r: Vec<Proc> = ["r0", "r1", "r2"].iter().map(|n| ha.replica(n)).collect();
    let https: Vec<&str> = r.iter().map(|p| p.http.as_str()).collect();
    let lb = LoadBalancer::start(ha.dir.path(), &https);
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["-http-addr", &lb.addr])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let entry = |i: usize| {
        let path = ha.dir.path().join(format!("defaults-{i}.json"));
        std::fs::write(
            &path,
            serde_json::json!({"Kind": "service-defaults", "Name": format!("svc-{i}"), "Protocol": "http"})
                .to_string(),
        )
        .unwrap();
        path
    };
    for i in 0..60 {
        if i == 20 {
            r[1].kill9();
        }
        cli(&["config", "write", entry(i).to_str().unwrap()]);
        // Read back through the balancer: whichever replica answers has the write (it was
        // acknowledged after etcd committed it; a replica applies the log within milliseconds,
        // so a read on another one may need a moment).
        wait_until(10, "the entry on the replica that answers", || {
            cli(&["config", "list", "-kind", "service-defaults"]).contains(&format!("svc-{i}\n"))
        });
    }
    let listed = cli(&["config", "list", "-kind", "service-defaults"]);
    assert_eq!(listed.lines().count(), 60, "{listed}");
}
