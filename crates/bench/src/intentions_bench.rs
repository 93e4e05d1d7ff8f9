//! Intentions benchmark (issue 14): an intention write → applied to *every* request, with real
//! Envoy and a keep-alive client sending requests back to back, so the caller sidecar's
//! connections to the destination stay open across the change. Per change, the figure is the
//! time from the write to the start of the first request of the final run of answers the change
//! asks for (403 after a deny, 200 after an allow) — every request from there on agreed, up to
//! the next change. Paths: sidecar → sidecar (http) and sidecar → terminating gateway (http).
//! For tcp: deny → new connections refused, and deny → a connection opened before it closed.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Child, free_port, http_agent, percentile, start_server, wait_for};
use serde_json::json;

/// Changes per http path (alternating deny and allow).
const CHANGES: usize = 40;
/// Time given to each change before the next one (far more than it needs).
const SETTLE: Duration = Duration::from_millis(1500);
/// tcp samples (each waits out Envoy's drain time).
const TCP_SAMPLES: usize = 5;

fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(30))
}

fn put(http: &str, path: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    bench::put(&agent(), http, path, body)
}

fn delete(http: &str, path: &str) -> anyhow::Result<()> {
    let r = agent().delete(&format!("http://{http}{path}")).call()?;
    if r.status() != 200 {
        bail!("DELETE {path}: {}", r.status());
    }
    Ok(())
}

/// A keep-alive HTTP/1.1 service answering 200 "ok" to everything, one thread per connection.
fn backend() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(port)
}

fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut write) = stream.try_clone() else {
        return;
    };
    let mut read = BufReader::new(stream);
    loop {
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        if write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn envoy(bin: &str, envoy: &str, http: &str, grpc: &str, args: &[&str]) -> anyhow::Result<Child> {
    Child::spawn(
        Command::new(bin)
            .args(["connect", "envoy"])
            .args(args)
            .args(["-http-addr", http, "-grpc-addr", grpc])
            .args(["-admin-bind", &format!("127.0.0.1:{}", free_port()?)])
            .args(["--", "-l", "error"])
            .env("ENVOY_BIN", envoy)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// Alternating deny/allow of `source → destination` under back-to-back keep-alive traffic to
/// `url`; the write → applied-to-every-request latency of each change, sorted.
fn http_changes(
    http: &str,
    source: &str,
    destination: &str,
    url: &str,
) -> anyhow::Result<Vec<Duration>> {
    let path = format!("/v1/connect/intentions/exact?source={source}&destination={destination}");
    put(http, &path, &json!({"Action": "allow"}))?;
    wait_for("traffic to flow", 60, || {
        bench::status_of(&agent(), url) == 200
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, url2) = (stop.clone(), url.to_owned());
    let traffic = std::thread::spawn(move || {
        let agent = http_agent(Duration::from_secs(5));
        let mut log = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            let t = Instant::now();
            log.push((t, bench::status_of(&agent, &url2)));
        }
        log
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut changes = Vec::new();
    for i in 0..CHANGES {
        let (action, expect) = if i % 2 == 0 {
            ("deny", 403)
        } else {
            ("allow", 200)
        };
        let t = Instant::now();
        put(http, &path, &json!({ "Action": action }))?;
        changes.push((t, expect));
        std::thread::sleep(SETTLE);
    }
    stop.store(true, Ordering::Relaxed);
    let log = traffic
        .join()
        .map_err(|_| anyhow::anyhow!("traffic thread panicked"))?;
    let mut lat = Vec::new();
    for (i, (written, expect)) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map(|(t, _)| *t);
        let window: Vec<&(Instant, u16)> = log
            .iter()
            .filter(|(t, _)| t >= written && end.is_none_or(|e| *t < e))
            .collect();
        // The start of the final run of expected answers.
        let applied = window
            .iter()
            .rev()
            .take_while(|(_, s)| s == expect)
            .last()
            .map(|(t, _)| *t);
        match applied {
            Some(t) if window.last().is_some_and(|(_, s)| s == expect) => {
                lat.push(t.duration_since(*written));
            }
            _ => bail!("change {i} ({expect}) was not applied to every request within {SETTLE:?}"),
        }
    }
    lat.sort();
    Ok(lat)
}

/// One request on a raw connection; `None` once it is closed or refused.
fn request_on(conn: &mut BufReader<TcpStream>) -> Option<()> {
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nhost: b\r\n\r\n")
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
    conn.read_exact(&mut body).ok()
}

fn open(port: u16) -> anyhow::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(BufReader::new(s))
}

/// tcp: per deny, (write → a new connection is refused, write → the open connection closed).
fn tcp_changes(http: &str, up: u16) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let path = "/v1/connect/intentions/exact?source=a&destination=t";
    let mut out = Vec::new();
    for _ in 0..TCP_SAMPLES {
        delete(http, path)?;
        wait_for("tcp traffic to flow", 60, || {
            open(up).is_ok_and(|mut c| request_on(&mut c).is_some())
        })?;
        let mut old = open(up)?;
        request_on(&mut old).context("the open connection failed before the deny")?;
        let t = Instant::now();
        put(http, path, &json!({"Action": "deny"}))?;
        let mut refused = None;
        let mut closed = None;
        while refused.is_none() || closed.is_none() {
            if t.elapsed() > Duration::from_secs(120) {
                bail!("tcp deny not applied within 120 s");
            }
            if refused.is_none() && open(up).is_ok_and(|mut c| request_on(&mut c).is_none()) {
                refused = Some(t.elapsed());
            }
            if closed.is_none() && request_on(&mut old).is_none() {
                closed = Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let (Some(r), Some(c)) = (refused, closed) {
            out.push((r, c));
        }
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(what: &str, lat: &[Duration]) {
    let p = |q| percentile(lat, q).map_or(f64::NAN, ms);
    println!(
        "{what}: write -> applied to every request, {} changes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        p(0.5),
        p(0.99),
        lat.last().copied().map_or(f64::NAN, ms)
    );
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let usage = "usage: intentions-bench <lambdamesh binary> <envoy binary>";
    let bin = std::env::args().nth(1).context(usage)?;
    let envoy_bin = std::env::args().nth(2).context(usage)?;
    let server = start_server(&bin, &["agent", "-dev"])?;
    let (http, grpc) = (server.http.as_str(), server.grpc.as_str());
    let b_port = backend()?;
    let (a_to_b, a_to_ext, a_to_t) = (free_port()?, free_port()?, free_port()?);
    for (name, protocol) in [("b", "http"), ("ext", "http"), ("t", "tcp")] {
        put(
            http,
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": name, "Protocol": protocol}),
        )?;
    }
    for name in ["b", "t"] {
        put(
            http,
            "/v1/agent/service/register",
            &json!({"Name": name, "Port": b_port, "Connect": {"SidecarService": {"Port": free_port()?}}}),
        )?;
    }
    put(
        http,
        "/v1/catalog/register",
        &json!({"Node": "ext-node", "Address": "127.0.0.1", "Service": {"Service": "ext", "Port": b_port}}),
    )?;
    put(
        http,
        "/v1/config",
        &json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "ext"}]}),
    )?;
    put(
        http,
        "/v1/agent/service/register",
        &json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port()?, "Proxy": {"Upstreams": [
            {"DestinationName": "b", "LocalBindPort": a_to_b},
            {"DestinationName": "ext", "LocalBindPort": a_to_ext},
            {"DestinationName": "t", "LocalBindPort": a_to_t}]}}}}),
    )?;
    let gw_addr = format!("127.0.0.1:{}", free_port()?);
    let _envoys = [
        envoy(&bin, &envoy_bin, http, grpc, &["-sidecar-for", "a"])?,
        envoy(&bin, &envoy_bin, http, grpc, &["-sidecar-for", "b"])?,
        envoy(&bin, &envoy_bin, http, grpc, &["-sidecar-for", "t"])?,
        envoy(
            &bin,
            &envoy_bin,
            http,
            grpc,
            &[
                "-gateway",
                "terminating",
                "-register",
                "-service",
                "tgw",
                "-address",
                &gw_addr,
            ],
        )?,
    ];
    let sidecar = http_changes(http, "a", "b", &format!("http://127.0.0.1:{a_to_b}/"))?;
    report("http, sidecar -> sidecar", &sidecar);
    let gateway = http_changes(http, "a", "ext", &format!("http://127.0.0.1:{a_to_ext}/"))?;
    report("http, sidecar -> terminating gateway", &gateway);
    let tcp = tcp_changes(http, a_to_t)?;
    let mut refused: Vec<Duration> = tcp.iter().map(|(r, _)| *r).collect();
    let mut closed: Vec<Duration> = tcp.iter().map(|(_, c)| *c).collect();
    refused.sort();
    closed.sort();
    let p = |v: &[Duration], q| percentile(v, q).map_or(f64::NAN, ms);
    println!(
        "tcp, sidecar -> sidecar, {} denies: new connections refused p50 {:.0} ms, max {:.0} ms; a connection opened before closed p50 {:.0} ms, max {:.0} ms",
        tcp.len(),
        p(&refused, 0.5),
        p(&refused, 1.0),
        p(&closed, 0.5),
        p(&closed, 1.0)
    );
    Ok(())
}
