//! HA benchmark driver (`bench/ha.sh`, `docs/ha.md`): a real 3-member etcd cluster and 3
//! `lambdamesh server` replicas on loopback, all started and stopped here. In one run:
//!
//! 1. etcd's own put rate: `HA_BENCH_CLIENTS` threads doing raw puts through etcd's JSON gateway
//!    (`/v3/kv/put`), the same HTTP/1.1 client as the writers below (the peer figure);
//! 2. durable writes/s with the same clients spread over the 3 replicas, and against one server on
//!    the embedded store; 1 and 2 alternate `HA_BENCH_ROUNDS` times with every process running,
//!    so the machine's changing load shows as spread instead of favouring one side
//!    (`HA_BENCH_WRITES_ONLY=1` stops there; `HA_BENCH_APPENDS_IN_FLIGHT` sets the store's);
//! 3. cross-replica wake-up: 1,000 watchers on replicas B and C, each blocking on its own
//!    service; writes through replica A; change → wake latency of the one watcher concerned;
//! 4. fan-out: 1,000 watchers over the 3 replicas on one service, one write, every wake-up;
//! 5. failover of writers: the clients writing through the replicas while the etcd leader is
//!    `kill -9`ed, then a replica (its clients move to the next replica after their first
//!    error, as behind a load balancer): the longest time any writer went without a success;
//! 6. failover of Envoy: an Envoy whose ADS replica is `kill -9`ed under traffic: time until
//!    it is connected to another replica, failed requests, and time until a change made through
//!    a surviving replica is applied.
//!
//! Prints one JSON object. Rust threads on purpose: a Python driver's 1,000 threads measured the
//! GIL rather than the servers.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use bench::{Child, Server, free_port, http_agent, percentile, start_server};
use serde_json::json;
use test_support::EtcdCluster;

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

struct Config {
    secs: u64,
    clients: usize,
    watchers: usize,
    changes: usize,
    /// Alternations of etcd's raw rate and ours.
    rounds: u64,
    /// Stop after the write rates (to compare store settings quickly).
    writes_only: bool,
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let bin = std::env::var("LAMBDAMESH_BIN").context("LAMBDAMESH_BIN not set")?;
    let cfg = Config {
        secs: env_num("HA_BENCH_SECS", 10)?,
        clients: usize::try_from(env_num("HA_BENCH_CLIENTS", 16)?)?,
        watchers: usize::try_from(env_num("HA_BENCH_WATCHERS", 1000)?)?,
        changes: usize::try_from(env_num("HA_BENCH_CHANGES", 200)?)?,
        rounds: env_num("HA_BENCH_ROUNDS", 1)?.max(1),
        writes_only: env_num("HA_BENCH_WRITES_ONLY", 0)? != 0,
    };
    let scratch = bench::scratch_dir("lambdamesh-ha-bench-")?;
    let mut out = serde_json::Map::new();

    let mut etcd = EtcdCluster::start(3).map_err(anyhow::Error::msg)?;
    let members: Vec<String> = etcd
        .endpoints()
        .iter()
        .map(|u| u.trim_start_matches("http://").to_owned())
        .collect();
    let key = scratch.path().join("etcd.key");
    std::fs::write(&key, store_key())?;
    // A store setting to compare (`store { etcd { appends_in_flight = N } }`); the server's
    // default when unset.
    let settings = scratch.path().join("store.hcl");
    let in_flight = env_num("HA_BENCH_APPENDS_IN_FLIGHT", 0)?;
    if in_flight > 0 {
        out.insert("appends_in_flight".into(), json!(in_flight));
        std::fs::write(
            &settings,
            format!("store {{\n  etcd {{\n    appends_in_flight = {in_flight}\n  }}\n}}\n"),
        )?;
    } else {
        std::fs::write(&settings, "")?;
    }
    let mut replicas = Vec::new();
    for i in 0..3 {
        let dir = scratch.path().join(format!("r{i}"));
        replicas.push(Some(start_server(
            &bin,
            &[
                "server",
                "-node",
                &format!("r{i}"),
                "-data-dir",
                &dir.to_string_lossy(),
                "-config-file",
                &settings.to_string_lossy(),
                "-etcd-endpoints",
                &etcd.endpoint_list(),
                "-etcd-encryption-key-file",
                &key.to_string_lossy(),
            ],
        )?));
    }
    let https: Vec<String> = replicas.iter().flatten().map(|s| s.http.clone()).collect();
    let replica_pids: Vec<u32> = replicas.iter().flatten().map(|s| s.child.id()).collect();

    // The peer's rate and ours alternate, round after round, with the same processes running in
    // both (the replicas idle during raw puts), so a change in the shared machine's load between
    // phases shows as a spread across rounds instead of moving one side only.
    let (mut raw_ok, mut raw_secs, mut raw_errors) = (0, 0.0, 0);
    let (mut ha_ok, mut ha_secs, mut ha_errors) = (0, 0.0, 0);
    let mut rounds = Vec::new();
    for round in 0..cfg.rounds {
        let cpu = Cpu::start(&etcd.pids(), &[]);
        let (ok, errors, secs) = load(&members, &cfg, &stop_after(cfg.secs), etcd_put)?;
        let mut figures = serde_json::Map::new();
        cpu.report("etcd_raw", ok, &mut figures);
        let raw = rate(ok, secs);
        (raw_ok, raw_secs, raw_errors) = (raw_ok + ok, raw_secs + secs, raw_errors + errors);
        let cpu = Cpu::start(&etcd.pids(), &replica_pids);
        let (ok, errors, secs) = load(&https, &cfg, &stop_after(cfg.secs), register_call)?;
        cpu.report("ha", ok, &mut figures);
        let ha = rate(ok, secs);
        (ha_ok, ha_secs, ha_errors) = (ha_ok + ok, ha_secs + secs, ha_errors + errors);
        figures.insert("round".into(), json!(round + 1));
        figures.insert("etcd_raw_puts_per_s".into(), json!(raw));
        figures.insert("ha_writes_per_s".into(), json!(ha));
        figures.insert("ha_vs_etcd_raw".into(), json!(round2(ha / raw.max(1.0))));
        if round == 0 {
            // The first round's CPU figures stay at the top level, as earlier runs printed them.
            for (k, v) in &figures {
                if k.ends_with("_per_write") || k.ends_with("_machine_busy") {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        rounds.push(serde_json::Value::Object(figures));
    }
    let raw = rate(raw_ok, raw_secs);
    let ha_rate = rate(ha_ok, ha_secs);
    out.insert("etcd_raw_puts_per_s".into(), json!(raw));
    out.insert("etcd_raw_put_errors".into(), json!(raw_errors));
    out.insert("ha_writes_per_s".into(), json!(ha_rate));
    out.insert("ha_write_errors".into(), json!(ha_errors));
    out.insert(
        "ha_vs_etcd_raw".into(),
        json!(round2(ha_rate / raw.max(1.0))),
    );
    out.insert("rounds".into(), serde_json::Value::Array(rounds));
    if cfg.writes_only {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    let (p50, p99, max) = cross_replica_wakeups(&https, cfg.watchers, cfg.changes)?;
    out.insert("cross_replica_wake_changes".into(), json!(cfg.changes));
    out.insert("cross_replica_wake_ms_p50".into(), json!(round2(p50)));
    out.insert("cross_replica_wake_ms_p99".into(), json!(round2(p99)));
    out.insert("cross_replica_wake_ms_max".into(), json!(round2(max)));

    let (woken, p50, p99, max) = fan_out(&https, cfg.watchers)?;
    out.insert("fanout_watchers".into(), json!(cfg.watchers));
    out.insert("fanout_woken".into(), json!(woken));
    out.insert("fanout_ms_p50".into(), json!(round2(p50)));
    out.insert("fanout_ms_p99".into(), json!(round2(p99)));
    out.insert("fanout_ms_max".into(), json!(round2(max)));

    // Envoy first: it needs all three replicas to choose its ADS replica among.
    let envoy = envoy_failover(&bin, &mut replicas, &scratch)?;
    for (k, v) in envoy {
        out.insert(k, v);
    }
    let survivors: Vec<String> = replicas.iter().flatten().map(|s| s.http.clone()).collect();
    let writers = writer_failover(&cfg, &mut etcd, &mut replicas, &survivors)?;
    for (k, v) in writers {
        out.insert(k, v);
    }
    drop(replicas);
    drop(etcd);

    let embedded = start_server(
        &bin,
        &[
            "server",
            "-node",
            "embedded",
            "-data-dir",
            &scratch.path().join("embedded").to_string_lossy(),
        ],
    )?;
    let (ok, _, secs) = load(
        std::slice::from_ref(&embedded.http),
        &cfg,
        &stop_after(cfg.secs),
        register_call,
    )?;
    out.insert("embedded_writes_per_s".into(), json!(rate(ok, secs)));
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// CPU time of process groups over a phase, from `/proc/<pid>/stat` (threads that exited
/// included), and how busy the whole machine was (`/proc/stat`), to tell a CPU-bound phase.
struct Cpu {
    etcd: Vec<u32>,
    replicas: Vec<u32>,
    etcd_start: f64,
    replicas_start: f64,
    machine_start: (f64, f64),
}

fn proc_cpu_secs(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the ")" that ends the command name: state is field 3, utime and stime 14, 15.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: f64 =
                rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0) // USER_HZ is 100 on Linux
        })
        .sum()
}

/// (busy, total) seconds of every CPU since boot.
fn machine_cpu() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let Some(line) = stat.lines().next() else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / 100.0, total / 100.0)
}

impl Cpu {
    fn start(etcd: &[u32], replicas: &[u32]) -> Cpu {
        Cpu {
            etcd: etcd.to_vec(),
            replicas: replicas.to_vec(),
            etcd_start: proc_cpu_secs(etcd),
            replicas_start: proc_cpu_secs(replicas),
            machine_start: machine_cpu(),
        }
    }

    fn report(self, phase: &str, ops: u64, out: &mut serde_json::Map<String, serde_json::Value>) {
        let per_op_ms = |secs: f64| round2(secs * 1e3 / (ops.max(1) as f64));
        let etcd = proc_cpu_secs(&self.etcd) - self.etcd_start;
        out.insert(
            format!("{phase}_etcd_cpu_ms_per_write"),
            json!(per_op_ms(etcd)),
        );
        if !self.replicas.is_empty() {
            let replicas = proc_cpu_secs(&self.replicas) - self.replicas_start;
            out.insert(
                format!("{phase}_replicas_cpu_ms_per_write"),
                json!(per_op_ms(replicas)),
            );
        }
        let (busy, total) = machine_cpu();
        let busy_share = (busy - self.machine_start.0) / (total - self.machine_start.1).max(0.01);
        out.insert(format!("{phase}_machine_busy"), json!(round2(busy_share)));
    }
}

fn store_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rate(ok: u64, secs: f64) -> f64 {
    (ok as f64 / secs).round()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn stop_after(secs: u64) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// One call: (method, path, body).
type Call = fn(usize, u64) -> (&'static str, String, String);

fn etcd_put(client: usize, n: u64) -> (&'static str, String, String) {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let body = json!({"key": b64(format!("/bench/raw/{client}/{n}").as_bytes()), "value": b64(&[b'x'; 200])});
    ("POST", "/v3/kv/put".into(), body.to_string())
}

fn register_call(client: usize, n: u64) -> (&'static str, String, String) {
    let body = json!({"Node": format!("bench-{client}"), "Address": "127.0.0.1",
        "Service": {"ID": format!("s-{client}-{n}"), "Service": format!("svc-{client}"), "Port": 1}});
    ("PUT", "/v1/catalog/register".into(), body.to_string())
}

fn call(agent: &ureq::Agent, addr: &str, request: (&str, String, String)) -> bool {
    call_outcome(agent, addr, request).is_ok()
}

/// One call; a failure says what it was (for the failover phases' diagnostics).
fn call_outcome(
    agent: &ureq::Agent,
    addr: &str,
    (method, path, body): (&str, String, String),
) -> Result<(), String> {
    let url = format!("http://{addr}{path}");
    let resp = match method {
        "POST" => agent.post(&url).send(body),
        _ => agent.put(&url).send(body),
    };
    match resp {
        // Read to the end, as any client does: ureq returns a connection to its pool only then,
        // and a client that reconnects per request measures connection set-up on both sides.
        Ok(mut r) => {
            let answer = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
            if r.status() == 200 {
                Ok(())
            } else {
                Err(format!("{}: {}", r.status(), answer.trim()))
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `cfg.clients` threads, client i on `addrs[i % len]`, until `stop`: (successes, errors, secs).
fn load(
    addrs: &[String],
    cfg: &Config,
    stop: &Arc<AtomicBool>,
    make: Call,
) -> anyhow::Result<(u64, u64, f64)> {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..cfg.clients)
        .map(|i| {
            let (addr, ok, errors, stop) = (
                addrs[i % addrs.len()].clone(),
                ok.clone(),
                errors.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let agent = http_agent(Duration::from_secs(30));
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let counter = if call(&agent, &addr, make(i, n)) {
                        &ok
                    } else {
                        &errors
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    Ok((
        ok.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    ))
}

fn register(a: &ureq::Agent, http: &str, node: &str, id: &str, name: &str) -> anyhow::Result<()> {
    let body = json!({"Node": node, "Address": "127.0.0.1", "Service": {"ID": id, "Service": name, "Port": 8080}});
    bench::put(a, http, "/v1/catalog/register", &body)
}

fn latencies(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let p = |q| percentile(&v, q).unwrap_or(f64::NAN);
    (p(0.5), p(0.99), v.last().copied().unwrap_or(f64::NAN))
}

/// Watchers on replicas 1 and 2, each on its own service; `changes` writes through replica 0,
/// one at a time, each to a random watcher's service: the latency from sending the write to
/// that watcher's blocking query answering.
fn cross_replica_wakeups(
    https: &[String],
    watchers: usize,
    changes: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let a = http_agent(Duration::from_secs(30));
    for w in 0..watchers {
        register(
            &a,
            &https[0],
            "watch-node",
            &format!("w-{w}"),
            &format!("watched-{w}"),
        )?;
    }
    let epoch = Instant::now();
    let t0: Arc<Vec<AtomicU64>> = Arc::new((0..watchers).map(|_| AtomicU64::new(0)).collect());
    let (tx, rx) = mpsc::channel::<f64>();
    let ready = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for w in 0..watchers {
        // Replicas 1 and 2 only: every wake-up crosses from the writer's replica through etcd.
        let http = https[1 + w % 2].clone();
        let (t0, tx, ready, stop) = (t0.clone(), tx.clone(), ready.clone(), stop.clone());
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let a = http_agent(Duration::from_secs(60));
                let url = format!("http://{http}/v1/health/service/watched-{w}");
                // The service was registered through replica 0: wait until this one has it.
                let mut idx = 0;
                while idx == 0 {
                    match a.get(&url).call() {
                        Ok(mut r) if r.status() == 200 => {
                            let body = r.body_mut().read_to_string().unwrap_or_default();
                            if body.len() > 2 {
                                idx = r
                                    .headers()
                                    .get("X-Consul-Index")
                                    .and_then(|v| v.to_str().ok()?.parse().ok())
                                    .unwrap_or(0);
                            }
                        }
                        _ => return,
                    }
                    if idx == 0 {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                ready.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(new) = bench::index_of(&a, &format!("{url}?index={idx}&wait=30s"))
                    else {
                        return;
                    };
                    if new > idx {
                        let now = epoch.elapsed().as_nanos() as u64;
                        let start = t0[w].swap(0, Ordering::Relaxed);
                        if start > 0 {
                            let _ = tx.send(now.saturating_sub(start) as f64 / 1e6);
                        }
                        idx = new;
                    }
                }
            })?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < watchers as u64 {
        if Instant::now() > deadline {
            bail!("watchers never saw their services on replicas 1 and 2");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500)); // let every watcher park on its query
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let w = rand::random_range(0..watchers);
        t0[w].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        register(
            &a,
            &https[0],
            "watch-node",
            &format!("w-{w}-extra-{i}"),
            &format!("watched-{w}"),
        )?;
        lat.push(
            rx.recv_timeout(Duration::from_secs(10))
                .context("a watcher never woke")?,
        );
    }
    stop.store(true, Ordering::Relaxed);
    Ok(latencies(lat))
}

/// `watchers` blocking queries on one service spread over the replicas, one write through
/// replica 0: (woken, p50, p99, max) of the wake-ups, in ms from sending the write.
fn fan_out(https: &[String], watchers: usize) -> anyhow::Result<(usize, f64, f64, f64)> {
    let a = http_agent(Duration::from_secs(30));
    register(&a, &https[0], "fan", "fan-0", "fan")?;
    let epoch = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<f64>();
    for w in 0..watchers {
        let http = https[w % https.len()].clone();
        let (sent, ready, tx) = (sent.clone(), ready.clone(), tx.clone());
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let a = http_agent(Duration::from_secs(90));
                let url = format!("http://{http}/v1/catalog/service/fan");
                let mut idx = 0;
                while idx == 0 {
                    let Ok(mut r) = a.get(&url).call() else {
                        return;
                    };
                    if r.body_mut().read_to_string().unwrap_or_default().len() > 2 {
                        idx = r
                            .headers()
                            .get("X-Consul-Index")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(0);
                    } else {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                ready.fetch_add(1, Ordering::Relaxed);
                if let Ok(new) = bench::index_of(&a, &format!("{url}?index={idx}&wait=60s"))
                    && new > idx
                {
                    let now = epoch.elapsed().as_nanos() as u64;
                    let _ = tx.send(now.saturating_sub(sent.load(Ordering::Relaxed)) as f64 / 1e6);
                }
            })?;
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready.load(Ordering::Relaxed) < watchers as u64 {
        if Instant::now() > deadline {
            bail!("fan-out watchers never saw the service");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1)); // every query parked on its replica
    sent.store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    register(&a, &https[0], "fan", "fan-1", "fan")?;
    let mut lat = Vec::with_capacity(watchers);
    while let Ok(ms) = rx.recv_timeout(Duration::from_secs(70)) {
        lat.push(ms);
        if lat.len() == watchers {
            break;
        }
    }
    let woken = lat.len();
    let (p50, p99, max) = latencies(lat);
    Ok((woken, p50, p99, max))
}

/// Writers over the replicas while the etcd leader, then replica 0, is `kill -9`ed: per event,
/// the longest any writer went without a successful write, and the errors writers saw.
fn writer_failover(
    cfg: &Config,
    etcd: &mut EtcdCluster,
    replicas: &mut [Option<Server>],
    https: &[String],
) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Per writer: the time (ns since epoch) of its last success, the longest gap, errors.
    let last: Arc<Vec<AtomicU64>> = Arc::new((0..cfg.clients).map(|_| AtomicU64::new(0)).collect());
    let gap: Arc<Vec<AtomicU64>> = Arc::new((0..cfg.clients).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(AtomicU64::new(0));
    // Per writer, for the diagnostics of a writer that stalls: the replica it writes through
    // and its last failure.
    let replica_of: Arc<Vec<AtomicU64>> =
        Arc::new((0..cfg.clients).map(|_| AtomicU64::new(0)).collect());
    let last_error: Arc<Vec<parking_lot::Mutex<String>>> = Arc::new(
        (0..cfg.clients)
            .map(|_| parking_lot::Mutex::new(String::new()))
            .collect(),
    );
    let threads: Vec<_> = (0..cfg.clients)
        .map(|i| {
            let https = https.to_vec();
            let (stop, last, gap, errors) =
                (stop.clone(), last.clone(), gap.clone(), errors.clone());
            let (replica_of, last_error) = (replica_of.clone(), last_error.clone());
            std::thread::spawn(move || {
                let agent = http_agent(Duration::from_secs(30));
                let mut at = i % https.len();
                let mut n = 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    replica_of[i].store(at as u64, Ordering::Relaxed);
                    let outcome = call_outcome(&agent, &https[at], register_call(i, n));
                    if let Err(e) = &outcome {
                        *last_error[i].lock() =
                            format!("{:.1} s: {e}", epoch.elapsed().as_secs_f64());
                    }
                    if outcome.is_ok() {
                        let now = epoch.elapsed().as_nanos() as u64;
                        let before = last[i].swap(now, Ordering::Relaxed);
                        if before > 0 {
                            gap[i].fetch_max(now - before, Ordering::Relaxed);
                        }
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        // A dead replica: move on, as a load balancer's health check would.
                        if TcpStream::connect(&https[at]).is_err() {
                            at = (at + 1) % https.len();
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    // Warm up, then measure from a clean slate.
    std::thread::sleep(Duration::from_secs(2));
    for g in gap.iter() {
        g.store(0, Ordering::Relaxed);
    }
    errors.store(0, Ordering::Relaxed);
    let leader = etcd.leader().context("no etcd leader")?;
    etcd.kill(leader);
    std::thread::sleep(Duration::from_secs(8));
    let etcd_gap = gap
        .iter()
        .map(|g| g.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let etcd_errors = errors.swap(0, Ordering::Relaxed);
    for g in gap.iter() {
        g.store(0, Ordering::Relaxed);
    }
    if let Some(r) = replicas.iter_mut().find(|r| r.is_some()) {
        drop(r.take()); // kill -9 (Child's drop)
    }
    std::thread::sleep(Duration::from_secs(8));
    let replica_gap = gap
        .iter()
        .map(|g| g.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let replica_errors = errors.load(Ordering::Relaxed);
    // Neither stall may hide a writer that never came back.
    let now = epoch.elapsed();
    let stalled_writers: Vec<serde_json::Value> = last
        .iter()
        .enumerate()
        .filter(|(_, l)| now.as_nanos() as u64 - l.load(Ordering::Relaxed) > 5_000_000_000)
        .map(|(i, l)| {
            json!({
                "writer": i,
                "replica": https.get(replica_of[i].load(Ordering::Relaxed) as usize),
                "last_success_s": round2(l.load(Ordering::Relaxed) as f64 / 1e9),
                "now_s": round2(now.as_secs_f64()),
                "last_error": *last_error[i].lock(),
            })
        })
        .collect();
    let stalled = stalled_writers.len();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?;
    }
    Ok(vec![
        (
            "writers_longest_stall_after_etcd_leader_kill_ms".into(),
            json!(round2(etcd_gap as f64 / 1e6)),
        ),
        (
            "writer_errors_after_etcd_leader_kill".into(),
            json!(etcd_errors),
        ),
        (
            "writers_longest_stall_after_replica_kill_ms".into(),
            json!(round2(replica_gap as f64 / 1e6)),
        ),
        (
            "writer_errors_after_replica_kill".into(),
            json!(replica_errors),
        ),
        (
            "writers_without_a_success_in_the_last_5s".into(),
            json!(stalled),
        ),
        ("stalled_writers".into(), json!(stalled_writers)),
    ])
}

/// A tiny HTTP/1.1 backend answering `ok` to every request on kept-alive connections.
fn backend() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match conn.try_clone() {
                    Ok(c) => c,
                    Err(_) => return,
                });
                let mut conn = conn;
                loop {
                    // Request line and headers up to the blank line; requests have no body.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Which of `grpc` the Envoy's ADS connection goes to now.
fn ads_replica(admin: u16, grpc: &[String]) -> Option<usize> {
    let mut r = http_agent(Duration::from_secs(2))
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

/// An Envoy (sidecar of `a`, upstream `b`) whose bootstrap lists every replica; its ADS replica
/// is `kill -9`ed under traffic: time to reconnect elsewhere, failed requests, and time until a
/// deny intention written through a surviving replica answers 403.
fn envoy_failover(
    bin: &str,
    replicas: &mut [Option<Server>],
    scratch: &tempfile::TempDir,
) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let envoy_bin = test_support::envoy_path().map_err(anyhow::Error::msg)?;
    let live: Vec<&Server> = replicas.iter().flatten().collect();
    let http = live[0].http.clone();
    let grpc: Vec<String> = live.iter().map(|s| s.grpc.clone()).collect();
    let https: Vec<String> = live.iter().map(|s| s.http.clone()).collect();
    let a = http_agent(Duration::from_secs(10));
    let b_port = backend()?;
    let up = free_port()?;
    bench::put(
        &a,
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "b", "Protocol": "http"}),
    )?;
    bench::put(
        &a,
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "b", "Port": b_port, "Connect": {"SidecarService": {"Port": free_port()?}}}),
    )?;
    bench::put(
        &a,
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port()?,
            "Proxy": {"Upstreams": [{"DestinationName": "b", "LocalBindPort": up}]}}}}),
    )?;
    let list = grpc.join(",");
    let mut envoys = Vec::new();
    let mut admin_a = 0;
    for svc in ["b", "a"] {
        let admin = free_port()?;
        let log = scratch.path().join(format!("envoy-{svc}.log"));
        envoys.push(Child::spawn(
            Command::new(bin)
                .args(["connect", "envoy", "-sidecar-for", svc])
                .args(["-admin-bind", &format!("127.0.0.1:{admin}")])
                .args(["-grpc-addr", &list, "-http-addr", &http, "--"])
                .args(["-l", "warning", "--log-path", &log.to_string_lossy()])
                .env("ENVOY_BIN", &envoy_bin)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?);
        admin_a = admin;
    }
    let url = format!("http://127.0.0.1:{up}/");
    let client = http_agent(Duration::from_secs(5));
    bench::wait_for("traffic through the mesh", 60, || {
        bench::status_of(&client, &url) == 200
    })?;
    let victim = {
        let mut v = None;
        bench::wait_for("the Envoy's ADS connection", 20, || {
            v = ads_replica(admin_a, &grpc);
            v.is_some()
        })?;
        v.context("no ADS replica")?
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        std::thread::spawn(move || {
            let c = http_agent(Duration::from_secs(5));
            while !stop.load(Ordering::Relaxed) {
                let counter = if bench::status_of(&c, &url) == 200 {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // Replicas are in `replicas` in the order of `grpc`.
    let killed_at = Instant::now();
    drop(replicas.get_mut(victim).and_then(Option::take));
    let mut reconnected = None;
    while killed_at.elapsed() < Duration::from_secs(60) {
        if let Some(now) = ads_replica(admin_a, &grpc)
            && now != victim
            && bench::envoy_stat(admin_a, "control_plane.connected_state") == 1
        {
            reconnected = Some(killed_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let reconnected = reconnected.context("Envoy never reconnected to another replica")?;
    // A change through a survivor that is not the new ADS replica if possible.
    let writer = https
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, h)| h.clone())
        .next_back()
        .context("no surviving replica")?;
    let written = Instant::now();
    bench::put(
        &a,
        &writer,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &json!({"Action": "deny"}),
    )?;
    stop.store(true, Ordering::Relaxed);
    traffic
        .join()
        .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))?;
    let mut applied = None;
    while written.elapsed() < Duration::from_secs(30) {
        if bench::status_of(&client, &url) == 403 {
            applied = Some(written.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let applied = applied.context("the deny written after the failover never applied")?;
    drop(envoys);
    Ok(vec![
        (
            "envoy_reconnect_after_ads_replica_kill_ms".into(),
            json!(round2(reconnected.as_secs_f64() * 1e3)),
        ),
        (
            "envoy_requests_during_failover".into(),
            json!(ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)),
        ),
        (
            "envoy_failed_requests_during_failover".into(),
            json!(failed.load(Ordering::Relaxed)),
        ),
        (
            "envoy_change_after_failover_applied_ms".into(),
            json!(round2(applied.as_secs_f64() * 1e3)),
        ),
    ])
}
