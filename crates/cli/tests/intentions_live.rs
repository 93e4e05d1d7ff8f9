//! Intention changes reach traffic that is already flowing, with real Envoy and keep-alive
//! clients (issue 14, part 1):
//! - http, sidecar → sidecar and sidecar → terminating gateway: a deny and then an allow each
//!   decide every request that starts once Envoy has accepted the update (and at the latest 1 s
//!   after the write), on the connections already open; the listener is not replaced, so nothing
//!   drains with the old decision.
//! - tcp: a deny refuses new connections at once and closes a connection opened before it
//!   within Envoy's drain time (bounded by the launcher), where Consul leaves it open.
//!
//! Nothing here times Envoy: the point after which every request must agree is found by
//! watching Envoy's own counters, so a loaded machine delays the check, never fails it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Proc;
use common::mesh::{Backend, Envoy, delete, free_port, get, get_json, put, wait_until};
use serde_json::json;

/// The spec's bound: every request that starts this long after the write is decided by it.
const APPLIED_WITHIN: Duration = Duration::from_secs(1);
/// How long traffic is checked after that point.
const OBSERVED_FOR: Duration = Duration::from_secs(3);

fn register(http: &str, body: serde_json::Value) {
    put(http, "/v1/agent/service/register", &body);
}

fn intention_path(source: &str, destination: &str) -> String {
    format!("/v1/connect/intentions/exact?source={source}&destination={destination}")
}

/// Requests in a loop through one keep-alive client, each recorded with when it started.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Instant, u16)>>,
}

impl Traffic {
    fn start(url: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, url) = (stop.clone(), url.to_owned());
        let thread = std::thread::spawn(move || {
            // One agent: its connection is reused, and so is the caller sidecar's connection
            // to the destination (Envoy's upstream pool), which is what must not keep the old
            // decision.
            let agent = ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build(),
            );
            let mut log = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let t = Instant::now();
                let status = match agent.get(&url).call() {
                    Ok(mut r) => {
                        let _ = r.body_mut().read_to_string();
                        r.status().as_u16()
                    }
                    Err(_) => 0,
                };
                log.push((t, status));
                std::thread::sleep(Duration::from_millis(10));
            }
            log
        });
        Traffic { stop, thread }
    }

    fn finish(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// One intention change during traffic: when it was written and when Envoy had accepted it.
struct Change {
    what: &'static str,
    written: Instant,
    accepted: Instant,
    expect: u16,
}

impl Change {
    /// From here on every request must be decided by the change.
    fn cutoff(&self) -> Instant {
        self.accepted.max(self.written + APPLIED_WITHIN)
    }
}

/// Applies `write`, waits until `counter` of `envoy` moves (Envoy accepted the update), then
/// lets traffic run past the cutoff.
fn change(
    envoy: &Envoy,
    counter: &str,
    what: &'static str,
    expect: u16,
    write: impl FnOnce(),
) -> Change {
    let before = envoy.stat(counter);
    let written = Instant::now();
    write();
    wait_until(30, what, || envoy.stat(counter) > before);
    let c = Change {
        what,
        written,
        accepted: Instant::now(),
        expect,
    };
    std::thread::sleep(c.cutoff() + OBSERVED_FOR - Instant::now());
    c
}

/// Every request that started after a change's cutoff (and before the next change) answered
/// as the change says; enough of them were made to mean something.
fn check(log: &[(Instant, u16)], changes: &[Change]) {
    for (i, c) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map(|n| n.written);
        let window: Vec<u16> = log
            .iter()
            .filter(|(t, _)| *t >= c.cutoff() && end.is_none_or(|e| *t < e))
            .map(|(_, s)| *s)
            .collect();
        let before_end = |t: &Instant| end.is_none_or(|e| *t < e);
        // Informational: when the answers actually switched (the benchmark measures this).
        let switched = log
            .iter()
            .rev()
            .filter(|(t, _)| *t >= c.written && before_end(t))
            .take_while(|(_, s)| *s == c.expect)
            .last()
            .map(|(t, _)| t.duration_since(c.written));
        eprintln!(
            "{}: accepted by Envoy {:?} after the write; every answer {} from {:?} on; {} requests checked",
            c.what,
            c.accepted.duration_since(c.written),
            c.expect,
            switched,
            window.len()
        );
        assert!(
            window.len() >= 20,
            "{}: only {} requests after the cutoff",
            c.what,
            window.len()
        );
        let wrong: Vec<u16> = window.iter().copied().filter(|s| *s != c.expect).collect();
        assert!(
            wrong.is_empty(),
            "{}: {} of {} requests after the change was applied answered {:?}, not {}",
            c.what,
            wrong.len(),
            window.len(),
            wrong,
            c.expect
        );
    }
}

/// The ECDS counter of the intentions (RBAC) resource of the service with SNI `sni`.
fn rbac_reloads(sni: &str) -> String {
    format!("extension_config_discovery.http_filter.lambdamesh.intentions.{sni}.config_reload")
}

fn service_sni(http: &str, service: &str) -> String {
    let roots = get_json(http, "/v1/agent/connect/ca/roots");
    let td = roots["TrustDomain"].as_str().unwrap();
    format!("{service}.default.dc1.internal.{td}")
}

#[test]
fn http_sidecar_intention_change_applies_to_every_request() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let b = Backend::start("hello from b");
    let a_upstream = free_port();
    register(
        &http,
        json!({"Name": "b", "Port": b.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    register(
        &http,
        json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "b", "LocalBindPort": a_upstream}]}}}}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "b", "Protocol": "http"}),
    );
    let path = intention_path("a", "b");
    put(&http, &path, &json!({"Action": "allow"}));
    let eb = Envoy::start(&http, &server.grpc, &["-sidecar-for", "b"]);
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "a"]);
    let url = format!("http://127.0.0.1:{a_upstream}/hello");
    wait_until(30, "a → b through both sidecars", || get(&url).0 == 200);

    let counter = rbac_reloads(&service_sni(&http, "b"));
    let listeners = eb.stat("listener_manager.lds.update_success");
    let traffic = Traffic::start(&url);
    std::thread::sleep(Duration::from_millis(500));
    let deny = change(&eb, &counter, "deny a → b", 403, || {
        put(&http, &path, &json!({"Action": "deny"}));
    });
    let allow = change(&eb, &counter, "allow a → b again", 200, || {
        put(&http, &path, &json!({"Action": "allow"}));
    });
    let log = traffic.finish();
    check(&log, &[deny, allow]);
    // Nothing was replaced, so nothing drained with the old decision.
    assert_eq!(
        eb.stat("listener_manager.lds.update_success"),
        listeners,
        "an intention change must not replace b's listener"
    );
}

#[test]
fn terminating_gateway_intention_change_applies_to_every_request() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let ext = Backend::start("external");
    put(
        &http,
        "/v1/catalog/register",
        &json!({"Node": "ext-node", "Address": "127.0.0.1", "Service": {"Service": "ext", "Port": ext.port}}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "ext", "Protocol": "http"}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "ext"}]}),
    );
    let path = intention_path("a", "ext");
    put(&http, &path, &json!({"Action": "allow"}));
    let up = free_port();
    register(
        &http,
        json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "ext", "LocalBindPort": up}]}}}}),
    );
    // State-of-the-world xDS here (the sidecar test runs delta): ECDS is served on both.
    let gw = Envoy::start(
        &http,
        &server.grpc,
        &[
            "-sotw",
            "-gateway",
            "terminating",
            "-register",
            "-service",
            "tgw",
            "-address",
            &format!("127.0.0.1:{}", free_port()),
        ],
    );
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "a"]);
    let url = format!("http://127.0.0.1:{up}/x");
    wait_until(30, "a → gateway → external service", || {
        get(&url).1 == "external /x"
    });

    let counter = rbac_reloads(&service_sni(&http, "ext"));
    let listeners = gw.stat("listener_manager.lds.update_success");
    let traffic = Traffic::start(&url);
    std::thread::sleep(Duration::from_millis(500));
    let deny = change(&gw, &counter, "deny a → ext at the gateway", 403, || {
        put(&http, &path, &json!({"Action": "deny"}));
    });
    let allow = change(&gw, &counter, "allow a → ext again", 200, || {
        put(&http, &path, &json!({"Action": "allow"}));
    });
    let log = traffic.finish();
    check(&log, &[deny, allow]);
    assert!(
        gw.stat("http.terminating_gateway.ext.rbac.denied") >= 1,
        "the gateway, not the caller, must have denied"
    );
    assert_eq!(
        gw.stat("listener_manager.lds.update_success"),
        listeners,
        "an intention change must not replace the gateway's listener"
    );
}

/// One HTTP/1.1 request on a raw connection (through tcp_proxy); `None` once it is closed.
fn request_on(conn: &mut BufReader<TcpStream>, path: &str) -> Option<String> {
    conn.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: b\r\n\r\n").as_bytes())
        .ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

fn open(port: u16) -> BufReader<TcpStream> {
    try_open(port).unwrap()
}

fn try_open(port: u16) -> Option<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(BufReader::new(s))
}

/// A new connection through the caller's sidecar is served.
fn served(port: u16, path: &str) -> bool {
    try_open(port)
        .and_then(|mut c| request_on(&mut c, path))
        .is_some_and(|b| b == format!("hello from b {path}"))
}

#[test]
fn tcp_deny_refuses_new_connections_and_closes_open_ones_within_the_drain_time() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let b = Backend::start("hello from b");
    let a_upstream = free_port();
    register(
        &http,
        json!({"Name": "b", "Port": b.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    register(
        &http,
        json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "b", "LocalBindPort": a_upstream}]}}}}),
    );
    let path = intention_path("a", "b");
    put(&http, &path, &json!({"Action": "allow"}));
    let eb = Envoy::start(&http, &server.grpc, &["-sidecar-for", "b"]);
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "a"]);
    wait_until(30, "a → b over tcp", || served(a_upstream, "/x"));

    // A connection opened while allowed, kept busy.
    let mut old = open(a_upstream);
    assert_eq!(
        request_on(&mut old, "/1").as_deref(),
        Some("hello from b /1")
    );
    let counter = "listener_manager.lds.update_success";
    let before = eb.stat(counter);
    let written = Instant::now();
    put(&http, &path, &json!({"Action": "deny"}));
    wait_until(30, "b's sidecar takes the deny", || {
        eb.stat(counter) > before
    });
    let accepted = Instant::now();

    // New connections: refused from the moment Envoy has the rules.
    for i in 0..5 {
        assert!(
            !served(a_upstream, &format!("/new{i}")),
            "a new connection after the deny was served"
        );
    }
    // The open connection: closed when the old filter chain's drain ends.
    let drain = drain_time(&eb);
    assert_eq!(
        drain,
        Duration::from_secs(2),
        "`connect envoy` bounds Envoy's drain time by default"
    );
    let bound = drain + Duration::from_secs(10);
    let mut served_after = 0;
    let closed = loop {
        if request_on(&mut old, "/old").is_none() {
            break Instant::now();
        }
        served_after += 1;
        assert!(
            accepted.elapsed() < bound,
            "the denied connection was still open {:?} after the deny was accepted",
            accepted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "tcp deny: accepted {:?} after the write; open connection closed {:?} after that ({served_after} requests served on it meanwhile; drain time {drain:?})",
        accepted.duration_since(written),
        closed.duration_since(accepted)
    );

    // Allowed again: new connections work.
    delete(&http, &path);
    wait_until(30, "a → b over tcp again", || served(a_upstream, "/y"));
}

/// The drain time Envoy runs with (the launcher's default unless told otherwise).
fn drain_time(envoy: &Envoy) -> Duration {
    let info = get_json(&format!("127.0.0.1:{}", envoy.admin), "/server_info");
    let text = info["command_line_options"]["drain_time"].as_str().unwrap();
    let secs: f64 = text.trim_end_matches('s').parse().unwrap();
    Duration::from_secs_f64(secs)
}
