//! Mesh → Lambda benchmark (issue 5): the same echo logic reached two ways in one run, with the
//! same client, concurrency (1 and 4 by default) and request count:
//!
//! - `caller → sidecar → terminating gateway → Lambda`: a `lambda_runtime` Rust function on the
//!   local platform, invoked by the gateway's `aws_lambda` filter (SigV4 verified);
//! - `caller → sidecar → sidecar → service`: a plain Rust HTTP echo service in the mesh.
//!
//! Everything is real: `lambdamesh agent -dev`, `lambdamesh lambda serve`, three Envoys started by
//! `lambdamesh connect envoy`. Prints p50/p99 latency and throughput for both and their ratio.
//!
//! Three diagnostic paths, in the same rounds: the same gateway fronting an ordinary service
//! (separates the gateway hop from the Lambda-specific part: the `aws_lambda` filter, the
//! platform, the runtime), and the service and the function called directly, without the mesh
//! (a SigV4-signed `Invoke` carrying the request JSON the filter would send), so the latency the
//! mesh adds to each can be told from the latency of the thing it reaches.
//!
//! Usage: `mesh-lambda-bench <lambdamesh> <envoy> <bench-echo-fn> [requests=4000] [concurrency=1,4]
//! [paths]` (paths: e.g. `1` to profile the Lambda path alone)

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Child, free_port, http_agent, percentile, wait_for};
use serde_json::{Value, json};

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:echo";

fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(10))
}

fn put(http: &str, path: &str, body: &Value) -> anyhow::Result<()> {
    bench::put(&agent(), http, path, body)
}

struct Figures {
    p50: Duration,
    p99: Duration,
    rps: f64,
}

/// One request of a path: what it sends and where; every answer must be a 200 carrying the echo.
#[derive(Clone)]
enum Target {
    /// A POST of a small JSON body to an HTTP URL (a mesh upstream or the service itself).
    Http(String),
    /// A SigV4-signed Lambda `Invoke` of `ARN` on the local platform, with the request JSON the
    /// gateway's `aws_lambda` filter would send: the function's work is the same as via the mesh.
    Invoke(String),
}

impl Target {
    fn send(&self, agent: &ureq::Agent, i: usize) -> anyhow::Result<()> {
        let body = format!("{{\"i\":{i}}}");
        let mut r = match self {
            Target::Http(url) => agent
                .post(url)
                .header("content-type", "application/json")
                .send(body)?,
            Target::Invoke(endpoint) => {
                let event = json!({"raw_path": "/bench?x=1", "method": "POST",
                    "headers": {"content-type": "application/json"},
                    "query_string_parameters": {"x": "1"}, "body": body,
                    "is_base64_encoded": false})
                .to_string();
                let path = "/2015-03-31/functions/echo/invocations";
                let authority = endpoint.trim_start_matches("http://");
                let mut headers = http::HeaderMap::new();
                headers.insert("host", http::HeaderValue::from_str(authority)?);
                let creds = lambda_platform::Credentials {
                    access_key: "test".into(),
                    secret_key: "test".into(),
                };
                let scope = lambda_platform::sigv4::Scope {
                    creds: &creds,
                    region: "us-east-1",
                    service: "lambda",
                };
                let now = time::OffsetDateTime::now_utc();
                lambda_platform::sigv4::sign(
                    "POST",
                    path,
                    &mut headers,
                    event.as_bytes(),
                    &scope,
                    now,
                )?;
                let mut req = agent.post(format!("{endpoint}{path}"));
                // ureq sets Host from the URL itself.
                for (k, v) in headers.iter().filter(|(k, _)| *k != http::header::HOST) {
                    req = req.header(k, v);
                }
                req.send(event)?
            }
        };
        let body = r.body_mut().read_to_string()?;
        if r.status() != 200 || !body.contains("echo") {
            bail!("{}: {} {body}", self.name(), r.status());
        }
        Ok(())
    }

    fn name(&self) -> &str {
        match self {
            Target::Http(url) | Target::Invoke(url) => url,
        }
    }
}

/// Latencies, wall time and the clients' CPU time (ns) of `n` requests to `target` spread over
/// the given keep-alive clients.
fn load(
    agents: &[ureq::Agent],
    target: &Target,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, Duration, u64)> {
    let clients = agents.len();
    let start = Instant::now();
    let handles: Vec<_> = agents
        .iter()
        .map(|a| {
            let (a, target) = (a.clone(), target.clone());
            std::thread::spawn(move || -> anyhow::Result<(Vec<Duration>, u64)> {
                let cpu = bench::thread_cpu_ns();
                let mut lat = Vec::with_capacity(n / clients);
                for i in 0..n / clients {
                    let t = Instant::now();
                    target.send(&a, i)?;
                    lat.push(t.elapsed());
                }
                Ok((lat, bench::thread_cpu_ns().saturating_sub(cpu)))
            })
        })
        .collect();
    let (mut all, mut cpu) = (Vec::new(), 0);
    for h in handles {
        let (lat, c) = h
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        all.extend(lat);
        cpu += c;
    }
    Ok((all, start.elapsed(), cpu))
}

fn figures(mut lat: Vec<Duration>, wall: Duration) -> Figures {
    lat.sort();
    Figures {
        p50: percentile(&lat, 0.5).unwrap_or_default(),
        p99: percentile(&lat, 0.99).unwrap_or_default(),
        rps: lat.len() as f64 / wall.as_secs_f64(),
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<44} p50={:>7.3} ms  p99={:>7.3} ms  throughput={:>6.0} req/s",
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.rps
    );
}

fn envoy(
    bin: &str,
    envoy_bin: &str,
    http: &str,
    grpc: &str,
    args: &[&str],
) -> anyhow::Result<Child> {
    let admin = free_port()?;
    Child::spawn(
        Command::new(bin)
            .args(["connect", "envoy"])
            .args(args)
            .args(["-http-addr", http, "-grpc-addr", grpc])
            .args([
                "-admin-bind",
                &format!("127.0.0.1:{admin}"),
                "--",
                "-l",
                "error",
            ])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("ENVOY_BIN", envoy_bin)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    let [_, bin, envoy_bin, echo_fn, rest @ ..] = args.as_slice() else {
        bail!(
            "usage: mesh-lambda-bench <lambdamesh> <envoy> <bench-echo-fn> [requests=4000] [concurrency=1,4] [paths=all]"
        );
    };
    let (requests, concurrency) = bench::requests_and_concurrency(rest)?;
    // For profiling one path alone: its numbers in the order printed (0 = plain, 1 = Lambda, ...).
    let only: Option<Vec<usize>> = match rest.get(2) {
        Some(list) => Some(
            list.split(',')
                .map(|k| k.parse().context("paths must be numbers, e.g. 1"))
                .collect::<anyhow::Result<_>>()?,
        ),
        None => None,
    };
    let selected = |k: usize| only.as_ref().is_none_or(|o| o.contains(&k));
    let scratch = bench::scratch_dir("lambdamesh-mesh-lambda-bench-")?;
    let dir = scratch.path();
    std::fs::create_dir_all(dir.join("fn"))?;
    std::fs::copy(echo_fn, dir.join("fn/bootstrap"))?;

    let (lport, hport, gport) = (free_port()?, free_port()?, free_port()?);
    let endpoint = format!("http://127.0.0.1:{lport}");
    let platform = Child::spawn(
        Command::new(bin)
            .args(["lambda", "serve", "-addr", &format!("127.0.0.1:{lport}")])
            .args(["-data-dir", dir.join("lambda").to_str().context("path")?])
            .env("LAMBDAMESH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let http = format!("127.0.0.1:{hport}");
    let grpc = format!("127.0.0.1:{gport}");
    let server = Child::spawn(
        Command::new(bin)
            .args(["agent", "-dev", "-http-addr", &http, "-grpc-addr", &grpc])
            .args(["-data-dir", dir.join("agent").to_str().context("path")?])
            .args(["-lambda-endpoint", &endpoint])
            .env("LAMBDAMESH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    wait_for("the control plane", 30, || {
        agent()
            .get(&format!("http://{http}/v1/status/leader"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    })?;
    wait_for("the platform", 30, || {
        TcpStream::connect(("127.0.0.1", lport)).is_ok()
    })?;
    let o = Command::new(bin)
        .args([
            "lambda",
            "create",
            "echo",
            "--dir",
            dir.join("fn").to_str().context("path")?,
        ])
        .args(["--runtime", "provided.al2023", "--handler", "bootstrap"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .output()?;
    if !o.status.success() {
        bail!("lambda create: {}", String::from_utf8_lossy(&o.stderr));
    }

    // The function behind a terminating gateway, the service behind its sidecar.
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "echo-fn", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
    )?;
    put(
        &http,
        "/v1/catalog/register",
        &json!({"Node": "lambdas", "SkipNodeUpdate": true, "NodeMeta": {"external-node": "true"},
            "Service": {"ID": "echo-fn", "Service": "echo-fn"}}),
    )?;
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "echo-fn"}, {"Name": "echo-ext"}]}),
    )?;
    // Diagnostic third path: the same gateway fronting an ordinary service (no Lambda), so the
    // gateway hop and the Lambda-specific part can be told apart.
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "echo-ext", "Protocol": "http"}),
    )?;
    let ext_port = bench::echo_service("echo-ext", None)?;
    put(
        &http,
        "/v1/catalog/register",
        &json!({"Node": "ext", "Address": "127.0.0.1", "NodeMeta": {"external-node": "true"},
            "Service": {"ID": "echo-ext", "Service": "echo-ext", "Port": ext_port}}),
    )?;
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "echo-svc", "Protocol": "http"}),
    )?;
    let svc_port = bench::echo_service("echo-svc", None)?;
    put(
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "echo-svc", "Port": svc_port, "Connect": {"SidecarService": {"Port": free_port()?}}}),
    )?;
    let (up_fn, up_svc, up_ext) = (free_port()?, free_port()?, free_port()?);
    put(
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "caller", "Port": 1, "Connect": {"SidecarService": {"Port": free_port()?, "Proxy": {"Upstreams": [
            {"DestinationName": "echo-fn", "LocalBindPort": up_fn},
            {"DestinationName": "echo-svc", "LocalBindPort": up_svc},
            {"DestinationName": "echo-ext", "LocalBindPort": up_ext}]}}}}),
    )?;
    let gw_addr = format!("127.0.0.1:{}", free_port()?);
    let gw = envoy(
        bin,
        envoy_bin,
        &http,
        &grpc,
        &[
            "-gateway",
            "terminating",
            "-register",
            "-service",
            "tgw",
            "-address",
            &gw_addr,
        ],
    )?;
    let svc = envoy(bin, envoy_bin, &http, &grpc, &["-sidecar-for", "echo-svc"])?;
    let caller = envoy(bin, envoy_bin, &http, &grpc, &["-sidecar-for", "caller"])?;
    let fn_url = format!("http://127.0.0.1:{up_fn}/bench?x=1");
    let svc_url = format!("http://127.0.0.1:{up_svc}/bench?x=1");
    let ext_url = format!("http://127.0.0.1:{up_ext}/bench?x=1");
    for url in [&fn_url, &svc_url, &ext_url] {
        wait_for(url, 60, || {
            agent()
                .post(url.as_str())
                .send("{}")
                .is_ok_and(|r| r.status() == 200)
        })?;
    }

    // The processes (and thread groups) whose CPU time is split per path, each with how to read
    // its CPU time. The function sandboxes are the platform's children, looked up at each reading
    // (they outlive the warm-up); the two echo services are threads of this process.
    type Reading = Box<dyn Fn() -> u64>;
    let whole = |pid: u32| -> Reading { Box::new(move || bench::process_cpu_ns(pid, |_| true)) };
    let threads = |name: &'static str| -> Reading {
        Box::new(move || bench::process_cpu_ns(std::process::id(), |n| n == name))
    };
    let platform_pid = platform.id();
    let components: Vec<(&str, Reading)> = vec![
        ("c-sidecar", whole(caller.id())),
        ("s-sidecar", whole(svc.id())),
        ("gateway", whole(gw.id())),
        ("platform", whole(platform_pid)),
        (
            "function",
            Box::new(move || {
                bench::children_of(platform_pid)
                    .into_iter()
                    .map(|p| bench::process_cpu_ns(p, |_| true))
                    .sum()
            }),
        ),
        ("service", threads("echo-svc")),
        ("ext-svc", threads("echo-ext")),
        ("control", whole(server.id())),
    ];
    let cpu_now = || -> Vec<u64> { components.iter().map(|(_, read)| read()).collect() };

    const ROUNDS: usize = 10;
    println!(
        "{requests} POSTs per path and concurrency, in {ROUNDS} interleaved rounds (both paths share the machine's noise), after a warm-up"
    );
    // The paths, measured in this order in every round. The last two leave the mesh out: the
    // service and the function called directly, to tell the mesh's share from the function's.
    let paths = [
        (
            "  caller → sidecar → sidecar → service",
            Target::Http(svc_url),
        ),
        (
            "  caller → sidecar → gateway → Lambda",
            Target::Http(fn_url),
        ),
        (
            "  (diagnostic) caller → sidecar → gateway → service",
            Target::Http(ext_url),
        ),
        (
            "  (no mesh) caller → service",
            Target::Http(format!("http://127.0.0.1:{svc_port}/bench?x=1")),
        ),
        (
            "  (no mesh) caller → Lambda Invoke API",
            Target::Invoke(endpoint.clone()),
        ),
    ];
    for &c in &concurrency {
        let agents: Vec<ureq::Agent> = (0..c.max(1)).map(|_| agent()).collect();
        // Warm every path (a sandbox per concurrent client, Envoy connection pools).
        for (_, target) in paths
            .iter()
            .enumerate()
            .filter(|(k, _)| selected(*k))
            .map(|(_, p)| p)
        {
            load(&agents, target, requests / 4)?;
        }
        let mut lat = vec![Vec::new(); paths.len()];
        let mut wall = vec![Duration::ZERO; paths.len()];
        // CPU time (ns) each component spent on each path: [client, components...].
        let mut cpu = vec![vec![0u64; 1 + components.len()]; paths.len()];
        for _ in 0..ROUNDS {
            for (k, (_, target)) in paths.iter().enumerate().filter(|(k, _)| selected(*k)) {
                let before = cpu_now();
                let (l, w, client) = load(&agents, target, requests / ROUNDS)?;
                let after = cpu_now();
                lat[k].extend(l);
                wall[k] += w;
                cpu[k][0] += client;
                for (i, (a, b)) in after.iter().zip(&before).enumerate() {
                    cpu[k][1 + i] += a.saturating_sub(*b);
                }
            }
        }
        let figs: Vec<Figures> = lat
            .into_iter()
            .zip(wall)
            .map(|(l, w)| figures(l, w))
            .collect();
        println!("concurrency {c}:");
        for (_, ((name, _), f)) in paths
            .iter()
            .zip(&figs)
            .enumerate()
            .filter(|(k, _)| selected(*k))
        {
            print(name, f);
        }
        let sent = (requests / ROUNDS / c.max(1) * c.max(1) * ROUNDS) as f64;
        println!(
            "  CPU µs per request: {:<28} {}",
            "",
            std::iter::once("client")
                .chain(components.iter().map(|(name, _)| *name))
                .map(|n| format!("{n:>10}"))
                .collect::<String>()
        );
        for (_, ((name, _), per)) in paths
            .iter()
            .zip(&cpu)
            .enumerate()
            .filter(|(k, _)| selected(*k))
        {
            let total: u64 = per.iter().sum();
            println!(
                "{:<48}{}  total {:>6.1}",
                name.trim_start().chars().take(46).collect::<String>(),
                per.iter()
                    .map(|ns| format!("{:>10.1}", *ns as f64 / 1e3 / sent))
                    .collect::<String>(),
                total as f64 / 1e3 / sent
            );
        }
        if only.is_some() {
            continue;
        }
        let (plain, lambda, svc_direct, fn_direct) = (&figs[0], &figs[1], &figs[3], &figs[4]);
        println!(
            "  ratio Lambda / plain: p50 {:.2}×, p99 {:.2}×, throughput {:.2}× (target: latency ≤ 1.5×)",
            lambda.p50.as_secs_f64() / plain.p50.as_secs_f64(),
            lambda.p99.as_secs_f64() / plain.p99.as_secs_f64(),
            lambda.rps / plain.rps
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "  p50 added by the mesh: to the service {:.3} ms, to the function {:.3} ms",
            ms(plain.p50.saturating_sub(svc_direct.p50)),
            ms(lambda.p50.saturating_sub(fn_direct.p50)),
        );
    }
    Ok(())
}
