//! Local Lambda platform against its real peers (issue 13): the same function, the same client,
//! the same run. Three servers each run the one `lambda_runtime` echo binary
//! (`crates/bench/src/echo_fn.rs`, built once) and answer warm invokes:
//!
//! - ours: `lambdamesh lambda serve`, the function created as a `provided.al2023` zip whose
//!   `bootstrap` is that binary, every request SigV4-signed and verified;
//! - AWS's Runtime Interface Emulator (the static binary shipped in the `aws-sam-cli` wheel),
//!   running the binary as its bootstrap;
//! - `cargo lambda watch` (cargo-lambda's emulator), pointed at the `bench` crate's
//!   `bench-echo-fn` target, so its `cargo run` starts the very same file.
//!
//! Each peer serves one invoke at a time, so at concurrency N the driver starts N instances of
//! each peer and client k always talks to instance k; ours runs one platform with N sandboxes of
//! one function. Every phase starts all servers fresh with exactly N function processes each.
//!
//! The load client is this process (the servers are all children): keep-alive ureq agents, one
//! thread per concurrent client, the same JSON event to every server, signed with SigV4 for every
//! server before the clock starts (the peers ignore the signature; ours verifies it). The servers
//! are measured in interleaved rounds so that they share the machine's noise. Before measuring,
//! the driver checks that every function process runs the same executable, byte for byte.
//! Above concurrency 1 a second, paced measurement offers every server the same load, so that a
//! server whose clients sit in stalls is not measured under a lighter load than the others.
//!
//! It depends only on the `bench` crate's scaffolding and on `lambda_platform::sigv4` (signing);
//! the servers are driven over HTTP like any client would.
//!
//! Usage: `lambda-peers-bench <lambdamesh> <bench-echo-fn> <aws-lambda-rie> <cargo-lambda>
//! <bench crate's Cargo.toml> [requests=4000] [concurrency=1,4]`

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Child, free_port, http_agent, percentile, wait_for};
use serde_json::json;

/// Interleaved rounds per concurrency: each round measures every server once.
const ROUNDS: usize = 10;
/// The function's name on our platform, the same as the one RIE serves (RIE answers only
/// `/2015-03-31/functions/function/invocations`).
const FUNCTION: &str = "function";
/// cargo-lambda names a function after its binary target.
const CARGO_LAMBDA_FUNCTION: &str = "bench-echo-fn";
/// A first cargo-lambda invoke may wait for `cargo run` to check (or finish) the build.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// One server under test: where its instances listen and which processes to account.
struct Server {
    name: &'static str,
    /// The invoke URL of each instance: client k uses instance `k % len`.
    urls: Vec<String>,
    /// The server processes (their own threads; the function processes are their children).
    children: Vec<Child>,
}

impl Server {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// CPU time (ns) of the server processes and of their children (the function processes).
    fn cpu_ns(&self) -> (u64, u64) {
        let mut own = 0;
        let mut functions = 0;
        for pid in self.pids() {
            own += bench::process_cpu_ns(pid, |_| true);
            functions += bench::children_of(pid)
                .into_iter()
                .map(|c| bench::process_cpu_ns(c, |_| true))
                .sum::<u64>();
        }
        (own, functions)
    }

    /// The function processes: the server processes' children.
    fn function_pids(&self) -> Vec<u32> {
        self.pids()
            .into_iter()
            .flat_map(bench::children_of)
            .collect()
    }
}

struct Figures {
    p50: Duration,
    p99: Duration,
    mean: Duration,
    rps: f64,
    /// Invokes that took longer than [`STALL`].
    stalls: usize,
    /// How many invokes were in progress and not stalled, on average over the wall time: the
    /// load the p50 was really measured under (a closed loop whose clients sit in stalls offers
    /// the server less than its nominal concurrency).
    active: f64,
    /// CPU µs per request: client, server, function.
    cpu: [f64; 3],
}

/// An invoke this slow waited on something other than work (tens of ms on an idle machine).
const STALL: Duration = Duration::from_millis(20);

/// The event every server gets: the request JSON the mesh's `aws_lambda` filter sends, which the
/// echo function answers (as in `bench/mesh-lambda.sh`).
fn event(i: usize) -> String {
    json!({"raw_path": "/bench?x=1", "method": "POST",
        "headers": {"content-type": "application/json"},
        "query_string_parameters": {"x": "1"}, "body": format!("{{\"i\":{i}}}"),
        "is_base64_encoded": false})
    .to_string()
}

/// A SigV4-signed `Invoke` of `url` (`http://HOST:PORT/2015-03-31/functions/NAME/invocations`):
/// the headers to send with `body`.
fn signed_headers(url: &str, body: &str) -> anyhow::Result<Vec<(String, String)>> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (authority, path) = rest.split_at(rest.find('/').context("URL path")?);
    let mut headers = http::HeaderMap::new();
    headers.insert("host", http::HeaderValue::from_str(authority)?);
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    let creds = lambda_platform::Credentials {
        access_key: "test".into(),
        secret_key: "test".into(),
    };
    let scope = lambda_platform::sigv4::Scope {
        creds: &creds,
        region: "us-east-1",
        service: "lambda",
    };
    lambda_platform::sigv4::sign(
        "POST",
        path,
        &mut headers,
        body.as_bytes(),
        &scope,
        time::OffsetDateTime::now_utc(),
    )?;
    headers
        .iter()
        // ureq sets Host from the URL itself.
        .filter(|(k, _)| *k != http::header::HOST)
        .map(|(k, v)| Ok((k.to_string(), v.to_str()?.to_owned())))
        .collect()
}

/// One timed invoke: signed first, then timed from sending to the end of the answer.
fn invoke(agent: &ureq::Agent, url: &str, i: usize) -> anyhow::Result<Duration> {
    let body = event(i);
    let headers = signed_headers(url, &body)?;
    let mut req = agent.post(url);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let t = Instant::now();
    let mut r = req.send(&body)?;
    let answer = r.body_mut().read_to_string()?;
    let elapsed = t.elapsed();
    if r.status() != 200 || !answer.contains("echo") {
        bail!("{url}: {} {answer}", r.status());
    }
    Ok(elapsed)
}

/// `n` invokes spread over the clients (client k → instance k): latencies, wall time, the
/// clients' CPU time (ns). Unpaced, each client sends its next invoke as soon as it has the
/// answer (closed loop); paced at `rate` invokes/s in all, each client sends on a fixed
/// schedule (at once when it is behind), so every server gets the same offered load.
fn load(
    agents: &[ureq::Agent],
    server: &Server,
    n: usize,
    rate: Option<f64>,
) -> anyhow::Result<(Vec<Duration>, Duration, u64)> {
    let clients = agents.len();
    let start = Instant::now();
    let handles: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let a = a.clone();
            let url = server.urls[k % server.urls.len()].clone();
            // Client k's schedule is shifted by k/clients of an interval, spreading the sends.
            let schedule = rate.map(|r| {
                let interval = Duration::from_secs_f64(clients as f64 / r);
                (
                    interval,
                    start + interval.mul_f64(k as f64 / clients as f64),
                )
            });
            std::thread::spawn(move || -> anyhow::Result<(Vec<Duration>, u64)> {
                let cpu = bench::thread_cpu_ns();
                let mut lat = Vec::with_capacity(n / clients);
                for i in 0..n / clients {
                    if let Some((interval, first)) = schedule {
                        let at = first + interval * i as u32;
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    lat.push(invoke(&a, &url, i)?);
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

/// `requests` invokes per server in [`ROUNDS`] interleaved rounds (every server once per round,
/// so they share the machine's noise), with the CPU time each part spent on them.
fn measure(
    servers: &[Server],
    agents: &[ureq::Agent],
    requests: usize,
    rate: Option<f64>,
) -> anyhow::Result<Vec<Figures>> {
    let mut lat = vec![Vec::new(); servers.len()];
    let mut wall = vec![Duration::ZERO; servers.len()];
    let mut cpu = vec![[0u64; 3]; servers.len()];
    for _ in 0..ROUNDS {
        for (k, s) in servers.iter().enumerate() {
            let before = s.cpu_ns();
            let (l, w, client) = load(agents, s, requests / ROUNDS, rate)?;
            let after = s.cpu_ns();
            lat[k].extend(l);
            wall[k] += w;
            cpu[k][0] += client;
            cpu[k][1] += after.0.saturating_sub(before.0);
            cpu[k][2] += after.1.saturating_sub(before.1);
        }
    }
    Ok(lat
        .into_iter()
        .zip(wall)
        .zip(cpu)
        .map(|((mut l, w), cpu)| {
            l.sort();
            let n = l.len().max(1) as f64;
            Figures {
                p50: percentile(&l, 0.5).unwrap_or_default(),
                p99: percentile(&l, 0.99).unwrap_or_default(),
                mean: l.iter().sum::<Duration>().div_f64(n),
                rps: l.len() as f64 / w.as_secs_f64(),
                stalls: l.iter().filter(|d| **d > STALL).count(),
                active: l
                    .iter()
                    .filter(|d| **d <= STALL)
                    .sum::<Duration>()
                    .as_secs_f64()
                    / w.as_secs_f64(),
                cpu: cpu.map(|ns| ns as f64 / 1e3 / n),
            }
        })
        .collect())
}

/// The table of one measurement, then ours against the peer with the lower p50.
fn print_table(servers: &[Server], figs: &[Figures]) -> anyhow::Result<()> {
    println!(
        "  {:<34} {:>7} {:>7} {:>7} {:>5} {:>6} {:>9}   CPU µs per invoke: {:>6} {:>6} {:>8}",
        "",
        "p50 ms",
        "p99 ms",
        "mean ms",
        ">20ms",
        "active",
        "invokes/s",
        "client",
        "server",
        "function"
    );
    for (s, f) in servers.iter().zip(figs) {
        println!(
            "  {:<34} {:>7.3} {:>7.3} {:>7.3} {:>5} {:>6.2} {:>9.0}   {:>24.1} {:>6.1} {:>8.1}",
            s.name,
            ms(f.p50),
            ms(f.p99),
            ms(f.mean),
            f.stalls,
            f.active,
            f.rps,
            f.cpu[0],
            f.cpu[1],
            f.cpu[2]
        );
    }
    let (ours, peers) = figs.split_first().context("no servers")?;
    let (faster, name) = peers
        .iter()
        .zip(&servers[1..])
        .min_by_key(|(f, _)| f.p50)
        .map(|(f, s)| (f, s.name))
        .context("no peers")?;
    println!(
        "  ours / faster peer ({name}): p50 {:.2}×, p99 {:.2}× (target: ≤ 0.80×)",
        ours.p50.as_secs_f64() / faster.p50.as_secs_f64(),
        ours.p99.as_secs_f64() / faster.p99.as_secs_f64(),
    );
    Ok(())
}

/// Waits until `url` answers an invoke (cold start, and for cargo-lambda its `cargo run`).
fn wait_warm(url: &str) -> anyhow::Result<()> {
    let agent = http_agent(START_TIMEOUT);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match invoke(&agent, url, 0) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.context("never became warm")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn wait_listening(port: u16) -> anyhow::Result<()> {
    wait_for(&format!("127.0.0.1:{port}"), 60, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(name))?)
}

/// Our platform (`lambdamesh lambda serve`) with `FUNCTION` created from the echo binary.
fn start_ours(lambdamesh: &str, echo_fn: &Path, dir: &Path) -> anyhow::Result<Server> {
    let code = dir.join("fn");
    std::fs::create_dir_all(&code)?;
    std::fs::copy(echo_fn, code.join("bootstrap"))?;
    let port = free_port()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let child = Child::spawn(
        Command::new(lambdamesh)
            .args(["lambda", "serve", "-addr", &format!("127.0.0.1:{port}")])
            .arg("-data-dir")
            .arg(dir.join("data"))
            // It writes nothing per invoke at `info` either; `warn` matches RIE's level below.
            .env("LAMBDAMESH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(dir, "platform.log")?),
    )?;
    wait_listening(port)?;
    let o = Command::new(lambdamesh)
        .args(["lambda", "create", FUNCTION, "--dir"])
        .arg(&code)
        .args(["--runtime", "provided.al2023", "--handler", "bootstrap"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .output()?;
    if !o.status.success() {
        bail!("lambda create: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(Server {
        name: "ours (lambdamesh lambda serve)",
        urls: vec![format!(
            "{endpoint}/2015-03-31/functions/{FUNCTION}/invocations"
        )],
        children: vec![child],
    })
}

/// `n` Runtime Interface Emulators, each running the echo binary as its bootstrap, with both of
/// its addresses on loopback (it binds 0.0.0.0:8080 unless told otherwise). Their output (the
/// invoke's `START`/`END`/`REPORT` lines and the function's output) goes to a file, as our
/// platform's does.
fn start_rie(rie: &str, echo_fn: &Path, dir: &Path, n: usize) -> anyhow::Result<Server> {
    let mut server = Server {
        name: "AWS Runtime Interface Emulator",
        urls: Vec::new(),
        children: Vec::new(),
    };
    for k in 0..n {
        let (port, api) = (free_port()?, free_port()?);
        let log = log_file(dir, &format!("rie-{k}.log"))?;
        server.children.push(Child::spawn(
            Command::new(rie)
                .args([
                    "--runtime-interface-emulator-address",
                    &format!("127.0.0.1:{port}"),
                    "--runtime-api-address",
                    &format!("127.0.0.1:{api}"),
                    // Its own diagnostics at the level ours runs at: at `info` it adds two lines
                    // per invoke (INVOKE START, RTDONE) that ours does not write.
                    "--log-level",
                    "warn",
                ])
                .arg(echo_fn)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
                .current_dir(dir)
                .stdout(log.try_clone()?)
                .stderr(log),
        )?);
        wait_listening(port)?;
        server.urls.push(format!(
            "http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        ));
    }
    Ok(server)
}

/// `n` `cargo lambda watch` emulators on the `bench` crate's echo target, release profile, no
/// reloading. The driver's script has built that target the way `cargo run` here builds it, so
/// `cargo run` finds it fresh and runs the same file (checked before measuring).
fn start_cargo_lambda(
    cargo_lambda: &str,
    manifest: &Path,
    dir: &Path,
    n: usize,
) -> anyhow::Result<Server> {
    let crate_dir = manifest.parent().context("manifest dir")?;
    let mut server = Server {
        name: "cargo-lambda (cargo lambda watch)",
        urls: Vec::new(),
        children: Vec::new(),
    };
    for k in 0..n {
        let port = free_port()?;
        let log = log_file(dir, &format!("cargo-lambda-{k}.log"))?;
        server.children.push(Child::spawn(
            Command::new(cargo_lambda)
                .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
                .args(["--invoke-port", &port.to_string()])
                .args(["--ignore-changes", "--quiet", "--release"])
                .arg("--manifest-path")
                .arg(manifest)
                .args(["--bin", CARGO_LAMBDA_FUNCTION])
                // Its watcher watches the working dir (changes are ignored anyway).
                .current_dir(crate_dir)
                .stdout(log.try_clone()?)
                .stderr(log),
        )?);
        wait_listening(port)?;
        server.urls.push(format!(
            "http://127.0.0.1:{port}/2015-03-31/functions/{CARGO_LAMBDA_FUNCTION}/invocations"
        ));
    }
    Ok(server)
}

/// Checks that every function process of every server runs `echo_fn`'s bytes, and that each
/// server has exactly `per_server` of them.
fn check_same_function(
    servers: &[Server],
    echo_fn: &Path,
    per_server: usize,
) -> anyhow::Result<()> {
    let want = std::fs::read(echo_fn)?;
    for s in servers {
        let pids = s.function_pids();
        if pids.len() != per_server {
            bail!(
                "{}: {} function processes, expected {per_server}",
                s.name,
                pids.len()
            );
        }
        for pid in pids {
            let exe = PathBuf::from(format!("/proc/{pid}/exe"));
            let got = std::fs::read(&exe).with_context(|| format!("{}", exe.display()))?;
            if got != want {
                bail!(
                    "{}: function process {pid} runs {}, not the echo binary",
                    s.name,
                    std::fs::read_link(&exe).unwrap_or_default().display()
                );
            }
        }
    }
    println!(
        "  function: every server runs {} function process(es) of the same executable ({} bytes, compared byte for byte)",
        per_server,
        want.len()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    let [
        _,
        lambdamesh,
        echo_fn,
        rie,
        cargo_lambda,
        manifest,
        rest @ ..,
    ] = args.as_slice()
    else {
        bail!(
            "usage: lambda-peers-bench <lambdamesh> <bench-echo-fn> <aws-lambda-rie> <cargo-lambda> <bench Cargo.toml> [requests=4000] [concurrency=1,4]"
        );
    };
    let (requests, concurrency) = bench::requests_and_concurrency(rest)?;
    let echo_fn = std::fs::canonicalize(echo_fn)?;
    let manifest = std::fs::canonicalize(manifest)?;
    println!(
        "{requests} warm invokes per server and concurrency, in {ROUNDS} interleaved rounds, after a warm-up; same SigV4-signed request to all"
    );
    for &c in &concurrency {
        let c = c.max(1);
        let scratch = bench::scratch_dir("lambdamesh-peers-bench-")?;
        let dir = scratch.path();
        let sub = |name: &str| -> anyhow::Result<PathBuf> {
            let d = dir.join(name);
            std::fs::create_dir_all(&d)?;
            Ok(d)
        };
        // Ours first: the ratio below is ours against the others.
        let servers = [
            start_ours(lambdamesh, &echo_fn, &sub("ours")?)?,
            start_rie(rie, &echo_fn, &sub("rie")?, c)?,
            start_cargo_lambda(cargo_lambda, &manifest, &sub("cargo-lambda")?, c)?,
        ];
        for s in &servers {
            for url in &s.urls {
                wait_warm(url)?;
            }
        }
        let agents: Vec<ureq::Agent> = (0..c)
            .map(|_| http_agent(Duration::from_secs(10)))
            .collect();
        // Warm-up: c concurrent clients give our platform c sandboxes, and every connection.
        for s in &servers {
            load(&agents, s, (requests / 4).max(c * 20), None)?;
        }
        check_same_function(&servers, &echo_fn, c)?;
        let figs = measure(&servers, &agents, requests, None)?;
        println!("concurrency {c} ({c} function process(es) per server), closed loop:");
        print_table(&servers, &figs)?;
        if c > 1 {
            // Diagnostic: the same offered load for all, below what the slowest sustained, so
            // that no server's latency is measured under a lighter load than another's.
            let slowest = figs.iter().map(|f| f.rps).fold(f64::INFINITY, f64::min);
            let rate = (slowest * 0.8).floor().max(1.0);
            let figs = measure(&servers, &agents, requests / 2, Some(rate))?;
            println!(
                "concurrency {c}, paced: {rate:.0} invokes/s offered to each server (0.8 × the slowest's throughput above):"
            );
            print_table(&servers, &figs)?;
        }
        // Servers stop (children killed) before the next phase starts its own.
        drop(servers);
    }
    Ok(())
}
