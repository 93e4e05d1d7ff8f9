//! Several datacenters (issue 19, `docs/multi-dc.md`): two `lambdamesh server`s on loopback,
//! dc1 the primary and dc2 a secondary joined through dc1's mesh gateway, each with its own
//! mesh gateway (real Envoys through `lambdamesh connect envoy`). One run measures:
//!
//! 1. **Latency**, same client, same request count, concurrency 1 and 4, paths interleaved in
//!    rounds so they share the machine's noise. A keep-alive echo service runs in both
//!    datacenters behind its own sidecar (each copy says which datacenter it is, and every answer
//!    is checked: 200, the right datacenter, the request's own path echoed):
//!    - same datacenter: caller → sidecar → echo's sidecar (dc1);
//!    - across, mode `local` (proxy-defaults): caller → sidecar → dc1's mesh gateway → dc2's mesh
//!      gateway → echo's sidecar (dc2);
//!    - across, mode `remote` (a second caller whose proxy sets it): caller → sidecar → dc2's mesh
//!      gateway → echo's sidecar (dc2), one gateway hop;
//!    - (no mesh) the dc1 echo service called directly.
//! 2. **Config-entry replication lag**: `service-defaults` entries written in dc1 one by one; for
//!    each, the time from the start of its `PUT` in dc1 until dc2's HTTP API serves it, seen by a
//!    blocking query on dc2 (`GET /v1/config/service-defaults?index=`) that the replicated write
//!    wakes. Twice: each write as soon as the previous one is seen in dc2, and each write after
//!    a pause (the secondary's next request to the primary is parked again by then).
//!
//! Usage: `multi-dc-bench <lambdamesh> <envoy> [requests=4000] [concurrency=1,4] [entries=200]`

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Child, Server, free_port, http_agent, percentile, start_server, wait_for};
use serde_json::{Value, json};

/// Rounds each path's requests are split into, the paths alternating within each round.
const ROUNDS: usize = 10;
/// The pause before each write of the second replication pass.
const PAUSE: Duration = Duration::from_millis(100);

fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(10))
}

fn put(http: &str, path: &str, body: &Value) -> anyhow::Result<()> {
    bench::put(&agent(), http, path, body)
}

fn get_json(http: &str, path: &str) -> anyhow::Result<Value> {
    let mut r = agent().get(&format!("http://{http}{path}")).call()?;
    if r.status() != 200 {
        bail!("GET {path}: {}", r.status());
    }
    Ok(serde_json::from_str(&r.body_mut().read_to_string()?)?)
}

/// An Envoy started by `lambdamesh connect envoy <args>`, with its admin port.
struct Envoy {
    child: Child,
    admin: u16,
}

fn envoy(bin: &str, envoy_bin: &str, server: &Server, args: &[&str]) -> anyhow::Result<Envoy> {
    let admin = free_port()?;
    let child = Child::spawn(
        Command::new(bin)
            .args(["connect", "envoy"])
            .args(args)
            .args(["-http-addr", &server.http, "-grpc-addr", &server.grpc])
            .args([
                "-admin-bind",
                &format!("127.0.0.1:{admin}"),
                "--",
                "-l",
                "error",
            ])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ENVOY_BIN", envoy_bin)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    Ok(Envoy { child, admin })
}

/// A mesh gateway of `server`'s datacenter on `127.0.0.1:port`, exposing its server (the
/// secondary reaches the primary's only through it).
fn mesh_gateway(bin: &str, envoy_bin: &str, server: &Server, port: u16) -> anyhow::Result<Envoy> {
    envoy(
        bin,
        envoy_bin,
        server,
        &[
            "-gateway",
            "mesh",
            "-register",
            "-expose-servers",
            "-service",
            "mgw",
            "-address",
            &format!("127.0.0.1:{port}"),
        ],
    )
}

/// `lambdamesh server` for `dc` with the federation settings of `docs/multi-dc.md`; a secondary
/// is given dc1's gateway and dc1's roots (`ca_file`).
fn start_dc(
    bin: &str,
    dir: &Path,
    dc: &str,
    secondary_of: Option<(u16, &Path)>,
) -> anyhow::Result<Server> {
    let mut cfg = format!(
        "datacenter = \"{dc}\"\nconnect {{\n  enabled = true\n  enable_mesh_gateway_wan_federation = true\n}}\n"
    );
    if let Some((gw_port, ca_file)) = secondary_of {
        cfg += &format!(
            "primary_datacenter = \"dc1\"\nprimary_gateways = [\"127.0.0.1:{gw_port}\"]\n\
             primary_gateways_interval = \"1s\"\ntls {{ defaults {{ ca_file = {:?} }} }}\n",
            ca_file.to_str().context("path")?
        );
    }
    let cfg_path = dir.join(format!("{dc}.hcl"));
    std::fs::write(&cfg_path, cfg)?;
    start_server(
        bin,
        &[
            "server",
            "-data-dir",
            dir.join(dc).to_str().context("path")?,
            "-config-file",
            cfg_path.to_str().context("path")?,
            "-server-port",
            &free_port()?.to_string(),
        ],
    )
}

/// Registers `name` in `server`'s datacenter with a sidecar whose upstreams are `(datacenter,
/// local port)` of `echo` (an empty datacenter: the caller's own), and `proxy` merged into its
/// proxy config; starts that sidecar.
fn caller(
    bin: &str,
    envoy_bin: &str,
    server: &Server,
    name: &str,
    upstreams: &[(&str, u16)],
    proxy: Value,
) -> anyhow::Result<Envoy> {
    let ups: Vec<Value> = upstreams
        .iter()
        .map(|(dc, port)| json!({"DestinationName": "echo", "Datacenter": dc, "LocalBindPort": port}))
        .collect();
    let mut p = json!({"Upstreams": ups});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), proxy.as_object()) {
        p.extend(extra.clone());
    }
    put(
        &server.http,
        "/v1/agent/service/register",
        &json!({"Name": name, "Port": 1, "Connect": {"SidecarService": {
            "Port": free_port()?, "Proxy": p}}}),
    )?;
    envoy(bin, envoy_bin, server, &["-sidecar-for", name])
}

/// Registers `echo` on `port` in `server`'s datacenter with a sidecar, and starts that sidecar.
fn echo_with_sidecar(
    bin: &str,
    envoy_bin: &str,
    server: &Server,
    port: u16,
) -> anyhow::Result<Envoy> {
    put(
        &server.http,
        "/v1/agent/service/register",
        &json!({"Name": "echo", "Port": port, "Connect": {"SidecarService": {"Port": free_port()?}}}),
    )?;
    envoy(bin, envoy_bin, server, &["-sidecar-for", "echo"])
}

/// One path: its URL (`…/bench?i=`, the request number appended) and the datacenter whose echo
/// must answer.
#[derive(Clone)]
struct Target {
    url: String,
    from: &'static str,
}

impl Target {
    /// One request; an error describes a wrong answer.
    fn send(&self, agent: &ureq::Agent, i: usize) -> anyhow::Result<()> {
        let mut r = agent
            .post(&format!("{}{i}", self.url))
            .header("content-type", "application/json")
            .send(format!("{{\"i\":{i}}}"))?;
        let body = r.body_mut().read_to_string()?;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let echo = &v["echo"];
        if r.status() != 200
            || echo["from"] != self.from
            || echo["raw_path"] != format!("/bench?i={i}")
        {
            bail!("{}: {} {body}", self.url, r.status());
        }
        Ok(())
    }
}

/// What `load` saw: latencies of the good answers, wall time, the clients' CPU time (ns), the
/// number of failed requests and the first failure.
struct Load {
    lat: Vec<Duration>,
    wall: Duration,
    cpu: u64,
    failed: usize,
    first_failure: Option<String>,
}

/// `n` requests to `target` spread over the given keep-alive clients; a failed request is
/// counted, not retried.
fn load(agents: &[ureq::Agent], target: &Target, n: usize) -> anyhow::Result<Load> {
    let clients = agents.len();
    let start = Instant::now();
    let handles: Vec<_> = agents
        .iter()
        .map(|a| {
            let (a, target) = (a.clone(), target.clone());
            std::thread::spawn(move || {
                let cpu = bench::thread_cpu_ns();
                let mut lat = Vec::with_capacity(n / clients);
                let (mut failed, mut first) = (0, None);
                for i in 0..n / clients {
                    let t = Instant::now();
                    match target.send(&a, i) {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(e) => {
                            failed += 1;
                            first.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (
                    lat,
                    bench::thread_cpu_ns().saturating_sub(cpu),
                    failed,
                    first,
                )
            })
        })
        .collect();
    let mut out = Load {
        lat: Vec::new(),
        wall: Duration::ZERO,
        cpu: 0,
        failed: 0,
        first_failure: None,
    };
    for h in handles {
        let (lat, cpu, failed, first) = h
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
        out.lat.extend(lat);
        out.cpu += cpu;
        out.failed += failed;
        if out.first_failure.is_none() {
            out.first_failure = first;
        }
    }
    out.wall = start.elapsed();
    Ok(out)
}

struct Figures {
    p50: Duration,
    p99: Duration,
    rps: f64,
}

fn figures(mut lat: Vec<Duration>, wall: Duration) -> Figures {
    lat.sort();
    Figures {
        p50: percentile(&lat, 0.5).unwrap_or_default(),
        p99: percentile(&lat, 0.99).unwrap_or_default(),
        rps: lat.len() as f64 / wall.as_secs_f64(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The signed difference `a - b` in milliseconds.
fn diff_ms(a: Duration, b: Duration) -> f64 {
    ms(a) - ms(b)
}

/// One replication pass: `n` service-defaults named `<prefix>-<k>` written in dc1, each after
/// `pause`; for each, the time from the start of its PUT until a blocking query on dc2 returns
/// with it, and the PUT's own time.
struct Lags {
    lag: Vec<Duration>,
    put: Vec<Duration>,
    /// Blocking queries that returned without the entry (woken by something else, or timed out).
    extra_wakes: usize,
    /// Entries not seen in dc2 within 45 s.
    missing: usize,
}

fn replicate(
    dc1: &str,
    dc2: &str,
    prefix: &str,
    n: usize,
    pause: Duration,
) -> anyhow::Result<Lags> {
    let a = http_agent(Duration::from_secs(45));
    let list = format!("http://{dc2}/v1/config/service-defaults");
    let mut index = bench::index_of(&a, &list)?;
    let mut out = Lags {
        lag: Vec::with_capacity(n),
        put: Vec::with_capacity(n),
        extra_wakes: 0,
        missing: 0,
    };
    for k in 0..n {
        std::thread::sleep(pause);
        let name = format!("{prefix}-{k}");
        let t0 = Instant::now();
        put(
            dc1,
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": name, "Protocol": "http"}),
        )?;
        out.put.push(t0.elapsed());
        // The index is the one seen before the write: if the entry is already in dc2, the query
        // returns at once; otherwise dc2's write of it wakes the query.
        let seen = loop {
            if t0.elapsed() > Duration::from_secs(45) {
                break false;
            }
            let mut r = a.get(&format!("{list}?index={index}&wait=30s")).call()?;
            let body = r.body_mut().read_to_string()?;
            if let Some(i) = r
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok()?.parse().ok())
            {
                index = i;
            }
            let entries: Value = serde_json::from_str(&body).unwrap_or_default();
            if entries
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e["Name"] == name.as_str()))
            {
                break true;
            }
            out.extra_wakes += 1;
        };
        if seen {
            out.lag.push(t0.elapsed());
        } else {
            out.missing += 1;
        }
    }
    Ok(out)
}

fn print_lags(what: &str, l: &Lags) {
    let mut lag = l.lag.clone();
    lag.sort();
    let mut put = l.put.clone();
    put.sort();
    let q = |v: &[Duration], p: f64| ms(percentile(v, p).unwrap_or_default());
    println!(
        "  {what}: {} seen, {} missing; lag p50={:.2} ms p99={:.2} ms max={:.2} ms; \
         the PUT in dc1 alone p50={:.2} ms p99={:.2} ms; {} wake-ups without it",
        lag.len(),
        l.missing,
        q(&lag, 0.5),
        q(&lag, 0.99),
        q(&lag, 1.0),
        q(&put, 0.5),
        q(&put, 0.99),
        l.extra_wakes,
    );
}

/// The `ConfigEntryReplication` part of dc2's federation status, and dc1's config-entry index.
fn print_status(dc1: &str, dc2: &str) -> anyhow::Result<()> {
    let st = get_json(dc2, "/v1/internal/federation/status")?;
    let r = &st["ConfigEntryReplication"];
    let primary = bench::index_of(
        &agent(),
        &format!("http://{dc1}/v1/config/service-defaults"),
    )?;
    println!(
        "  dc2's status: ReplicatedIndex {} (dc1's service-defaults index {primary}), LagSeconds {}, LastError {}",
        r["ReplicatedIndex"], r["LagSeconds"], r["LastError"]
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    let [_, bin, envoy_bin, rest @ ..] = args.as_slice() else {
        bail!(
            "usage: multi-dc-bench <lambdamesh> <envoy> [requests=4000] [concurrency=1,4] [entries=200]"
        );
    };
    let (requests, concurrency) = bench::requests_and_concurrency(rest)?;
    let entries: usize = match rest.get(2) {
        Some(n) => n.parse().context("entries must be a number")?,
        None => 200,
    };
    let scratch = bench::scratch_dir("lambdamesh-multi-dc-bench-")?;
    let dir = scratch.path();

    // dc1, its gateway, then dc2 joined through that gateway with dc1's roots as `ca_file`.
    let dc1 = start_dc(bin, dir, "dc1", None)?;
    let mut roots = Value::Null;
    wait_for("dc1's CA roots", 30, || {
        roots = get_json(&dc1.http, "/v1/agent/connect/ca/roots").unwrap_or_default();
        roots["Roots"].as_array().is_some_and(|r| !r.is_empty())
    })?;
    let td = roots["TrustDomain"]
        .as_str()
        .context("no TrustDomain")?
        .to_owned();
    let pems: String = roots["Roots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["RootCert"].as_str())
        .collect();
    let ca_file = dir.join("dc1-roots.pem");
    std::fs::write(&ca_file, pems)?;
    let (gw1_port, gw2_port) = (free_port()?, free_port()?);
    let gw1 = mesh_gateway(bin, envoy_bin, &dc1, gw1_port)?;
    let dc2 = start_dc(bin, dir, "dc2", Some((gw1_port, &ca_file)))?;
    let gw2 = mesh_gateway(bin, envoy_bin, &dc2, gw2_port)?;
    wait_for("dc2 to join dc1 through dc1's gateway", 60, || {
        get_json(&dc2.http, "/v1/internal/federation/status").is_ok_and(|s| {
            s["ConfigEntryReplication"]["LastSuccessUnix"].is_number()
                && s["ConfigEntryReplication"]["LastError"].is_null()
        })
    })?;

    // Written in dc1, replicated to dc2: gateway mode `local` for every proxy, echo speaks HTTP.
    put(
        &dc1.http,
        "/v1/config",
        &json!({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}}),
    )?;
    put(
        &dc1.http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "echo", "Protocol": "http"}),
    )?;
    let echo1_port = bench::echo_service("echo-dc1", Some("dc1"))?;
    let echo2_port = bench::echo_service("echo-dc2", Some("dc2"))?;
    let echo1 = echo_with_sidecar(bin, envoy_bin, &dc1, echo1_port)?;
    let echo2 = echo_with_sidecar(bin, envoy_bin, &dc2, echo2_port)?;
    let (up_same, up_cross, up_remote) = (free_port()?, free_port()?, free_port()?);
    let caller_local = caller(
        bin,
        envoy_bin,
        &dc1,
        "caller",
        &[("", up_same), ("dc2", up_cross)],
        json!({}),
    )?;
    let caller_remote = caller(
        bin,
        envoy_bin,
        &dc1,
        "caller-remote",
        &[("dc2", up_remote)],
        json!({"MeshGateway": {"Mode": "remote"}}),
    )?;
    let url = |port: u16| format!("http://127.0.0.1:{port}/bench?i=");
    let paths = [
        (
            "same dc: caller → sidecar → sidecar → echo",
            Target {
                url: url(up_same),
                from: "dc1",
            },
        ),
        (
            "dc2, mode local: sidecar → gw1 → gw2 → sidecar",
            Target {
                url: url(up_cross),
                from: "dc2",
            },
        ),
        (
            "dc2, mode remote: sidecar → gw2 → sidecar",
            Target {
                url: url(up_remote),
                from: "dc2",
            },
        ),
        (
            "(no mesh) caller → echo",
            Target {
                url: url(echo1_port),
                from: "dc1",
            },
        ),
    ];
    for (name, target) in &paths {
        wait_for(name, 90, || target.send(&agent(), 0).is_ok())?;
    }
    // Each path goes the way it says: the callers' clusters for dc2's echo point at gw1 and at
    // gw2, and both gateways carried connections for it.
    let sni = format!("echo.default.dc2.internal.{td}");
    for (sidecar, gw) in [(&caller_local, gw1_port), (&caller_remote, gw2_port)] {
        let mut r = agent()
            .get(&format!("http://127.0.0.1:{}/clusters", sidecar.admin))
            .call()?;
        let clusters = r.body_mut().read_to_string()?;
        if !clusters.contains(&format!("{sni}::127.0.0.1:{gw}::")) {
            bail!("a caller's cluster {sni} does not point at the gateway on port {gw}");
        }
    }
    if bench::envoy_stat(
        gw1.admin,
        &format!("cluster.dc2.internal.{td}.upstream_cx_total"),
    ) == 0
        || bench::envoy_stat(gw2.admin, &format!("cluster.{sni}.upstream_cx_total")) == 0
    {
        bail!("the mesh gateways carried no connection to dc2's echo");
    }

    type Reading = Box<dyn Fn() -> u64>;
    let whole = |pids: Vec<u32>| -> Reading {
        Box::new(move || {
            pids.iter()
                .map(|&p| bench::process_cpu_ns(p, |_| true))
                .sum()
        })
    };
    let components: Vec<(&str, Reading)> = vec![
        (
            "caller sc",
            whole(vec![caller_local.child.id(), caller_remote.child.id()]),
        ),
        ("gw1", whole(vec![gw1.child.id()])),
        ("gw2", whole(vec![gw2.child.id()])),
        ("echo sc", whole(vec![echo1.child.id(), echo2.child.id()])),
        (
            "echo",
            Box::new(|| {
                bench::process_cpu_ns(std::process::id(), |n| n == "echo-dc1" || n == "echo-dc2")
            }),
        ),
        ("servers", whole(vec![dc1.child.id(), dc2.child.id()])),
    ];
    let cpu_now = || -> Vec<u64> { components.iter().map(|(_, read)| read()).collect() };

    println!(
        "latency: {requests} POSTs per path and concurrency, in {ROUNDS} interleaved rounds, after a warm-up; \
         every answer checked (200, the right datacenter's echo, the request's path)"
    );
    for &c in &concurrency {
        let agents: Vec<ureq::Agent> = (0..c.max(1)).map(|_| agent()).collect();
        for (_, target) in &paths {
            load(&agents, target, requests / 4)?;
        }
        let mut lat = vec![Vec::new(); paths.len()];
        let mut wall = vec![Duration::ZERO; paths.len()];
        let mut failed = vec![0usize; paths.len()];
        let mut first_failure: Vec<Option<String>> = vec![None; paths.len()];
        let mut cpu = vec![vec![0u64; 1 + components.len()]; paths.len()];
        for _ in 0..ROUNDS {
            for (k, (_, target)) in paths.iter().enumerate() {
                let before = cpu_now();
                let l = load(&agents, target, requests / ROUNDS)?;
                let after = cpu_now();
                lat[k].extend(l.lat);
                wall[k] += l.wall;
                failed[k] += l.failed;
                if first_failure[k].is_none() {
                    first_failure[k] = l.first_failure;
                }
                cpu[k][0] += l.cpu;
                for (i, (a, b)) in after.iter().zip(&before).enumerate() {
                    cpu[k][1 + i] += a.saturating_sub(*b);
                }
            }
        }
        let sent = requests / ROUNDS / c.max(1) * c.max(1) * ROUNDS;
        println!("concurrency {c}:");
        let figs: Vec<Figures> = lat
            .into_iter()
            .zip(&wall)
            .map(|(l, w)| figures(l, *w))
            .collect();
        for (k, ((name, _), f)) in paths.iter().zip(&figs).enumerate() {
            println!(
                "  {name:<48} p50={:>7.3} ms  p99={:>7.3} ms  throughput={:>6.0} req/s  failed {}/{sent}",
                ms(f.p50),
                ms(f.p99),
                f.rps,
                failed[k],
            );
            if let Some(e) = &first_failure[k] {
                println!("    first failure: {e}");
            }
        }
        println!(
            "  CPU µs per request: {:<30}{}",
            "",
            std::iter::once("client")
                .chain(components.iter().map(|(name, _)| *name))
                .map(|n| format!("{n:>10}"))
                .collect::<String>()
        );
        for ((name, _), per) in paths.iter().zip(&cpu) {
            let total: u64 = per.iter().sum();
            println!(
                "  {:<48}{}  total {:>6.1}",
                name.chars().take(46).collect::<String>(),
                per.iter()
                    .map(|ns| format!("{:>10.1}", *ns as f64 / 1e3 / sent as f64))
                    .collect::<String>(),
                total as f64 / 1e3 / sent as f64
            );
        }
        let (same, cross, remote) = (&figs[0], &figs[1], &figs[2]);
        println!(
            "  added by the two gateway hops (local − same dc): p50 {:+.3} ms, p99 {:+.3} ms; \
             ratio p50 {:.2}×, throughput {:.2}×",
            diff_ms(cross.p50, same.p50),
            diff_ms(cross.p99, same.p99),
            cross.p50.as_secs_f64() / same.p50.as_secs_f64(),
            cross.rps / same.rps,
        );
        println!(
            "  by gw2 alone (remote − same dc): p50 {:+.3} ms; by gw1 (local − remote): p50 {:+.3} ms",
            diff_ms(remote.p50, same.p50),
            diff_ms(cross.p50, remote.p50),
        );
    }

    println!(
        "replication: {entries} service-defaults written in dc1 one by one per pass; lag = start of the PUT in dc1 \
         until a blocking GET /v1/config/service-defaults?index= on dc2 returns with the entry"
    );
    print_status(&dc1.http, &dc2.http)?;
    let back_to_back = replicate(&dc1.http, &dc2.http, "rep-a", entries, Duration::ZERO)?;
    print_lags("each write once the previous one is in dc2", &back_to_back);
    let paused = replicate(&dc1.http, &dc2.http, "rep-b", entries, PAUSE)?;
    print_lags(
        &format!(
            "each write {} ms after the previous one is in dc2",
            PAUSE.as_millis()
        ),
        &paused,
    );
    // Resolution of the observation: one non-blocking read of the (now longest) list on dc2.
    let a = agent();
    let mut reads: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let _ = bench::status_of(
                &a,
                &format!("http://{}/v1/config/service-defaults", dc2.http),
            );
            t.elapsed()
        })
        .collect();
    reads.sort();
    println!(
        "  observation cost: a GET of dc2's {} service-defaults p50={:.2} ms",
        2 * entries + 1,
        ms(percentile(&reads, 0.5).unwrap_or_default())
    );
    print_status(&dc1.http, &dc2.http)?;
    Ok(())
}
