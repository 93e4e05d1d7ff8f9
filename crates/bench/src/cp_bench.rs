//! Control-plane benchmark: starts `lambdamesh server` on a fresh data dir and measures, from
//! outside over HTTP, (1) durable catalog registrations per second with 16 concurrent clients next
//! to the raw fsync rate of the same disk, (2) blocking-query wake-up latency with 1,000 watchers,
//! (3) the server's RSS holding 10,000 services. Prints one line per figure.

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Server, http_agent, percentile, rss_kib, start_server};

fn start(bin: &str, data: &std::path::Path) -> anyhow::Result<Server> {
    start_server(
        bin,
        &[
            "server",
            "-data-dir",
            data.to_str().context("data dir path")?,
        ],
    )
}

/// Well above the 30 s the watchers' blocking queries may park for.
fn agent() -> ureq::Agent {
    http_agent(Duration::from_secs(120))
}

fn register(a: &ureq::Agent, http: &str, node: &str, id: &str, name: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"Node": node, "Address": "127.0.0.1", "Service": {"ID": id, "Service": name, "Port": 8080, "Tags": ["bench"]}});
    let resp = a
        .put(&format!("http://{http}/v1/catalog/register"))
        .send(body.to_string())?;
    if resp.status() != 200 {
        bail!("register answered {}", resp.status());
    }
    Ok(())
}

/// p50 and p99 of sorted latencies; NaN when there are none.
fn p50_p99(sorted: &[f64]) -> (f64, f64) {
    let p = |q| percentile(sorted, q).unwrap_or(f64::NAN);
    (p(0.5), p(0.99))
}

/// fsync rate of the disk holding `dir`: 4 KiB append + fdatasync, for `secs`.
fn fsync_rate(dir: &std::path::Path, secs: f64) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buf = vec![7u8; 4096];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        f.write_all(&buf)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn registrations(http: &str, clients: usize, secs: f64) -> anyhow::Result<(f64, f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for c in 0..clients {
        let (http, stop, count) = (http.to_owned(), stop.clone(), count.clone());
        threads.push(std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
            let a = agent();
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t = Instant::now();
                register(
                    &a,
                    &http,
                    &format!("reg-node-{c}"),
                    &format!("r-{c}-{i}"),
                    &format!("reg-{c}"),
                )?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(lat)
        }));
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for th in threads {
        lat.extend(
            th.join()
                .map_err(|_| anyhow::anyhow!("writer panicked"))??,
        );
    }
    let rate = count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = p50_p99(&lat);
    Ok((rate, p50, p99))
}

fn wakeups(http: &str, watchers: usize, changes: usize) -> anyhow::Result<(f64, f64)> {
    let a = agent();
    for w in 0..watchers {
        register(
            &a,
            http,
            "watch-node",
            &format!("w-{w}"),
            &format!("watched-{w}"),
        )?;
    }
    // t0 (ns since `epoch`) of the latest change to each watched service.
    let epoch = Instant::now();
    let t0: Arc<Vec<AtomicU64>> = Arc::new((0..watchers).map(|_| AtomicU64::new(0)).collect());
    let (tx, rx) = mpsc::channel::<f64>();
    let ready = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for w in 0..watchers {
        let (http, t0, tx, ready, stop) = (
            http.to_owned(),
            t0.clone(),
            tx.clone(),
            ready.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let a = agent();
                let url = format!("http://{http}/v1/health/service/watched-{w}");
                let Ok(mut idx) = bench::index_of(&a, &url) else {
                    return;
                };
                ready.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    let Ok(new) = bench::index_of(&a, &format!("{url}?index={idx}&wait=30s"))
                    else {
                        return;
                    };
                    if new > idx {
                        let now = epoch.elapsed().as_nanos() as u64;
                        let start = t0[w].load(Ordering::Relaxed);
                        if start > 0 {
                            let _ = tx.send((now.saturating_sub(start)) as f64 / 1e6);
                        }
                        idx = new;
                    }
                }
            })?;
    }
    while ready.load(Ordering::Relaxed) < watchers as u64 {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // let every watcher park on its query
    let mut rng = rand::rng();
    let mut lat = Vec::with_capacity(changes);
    for i in 0..changes {
        let w = rand::Rng::random_range(&mut rng, 0..watchers);
        t0[w].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        register(
            &a,
            http,
            "watch-node",
            &format!("w-{w}-extra-{i}"),
            &format!("watched-{w}"),
        )?;
        lat.push(
            rx.recv_timeout(Duration::from_secs(10))
                .context("a watcher never woke")?,
        );
        // Exactly one watcher must wake per change.
        std::thread::sleep(Duration::from_millis(5));
        if rx.try_recv().is_ok() {
            bail!("more than one watcher woke for a single change");
        }
    }
    stop.store(true, Ordering::Relaxed);
    lat.sort_by(f64::total_cmp);
    Ok(p50_p99(&lat))
}

fn fill(http: &str, n: usize, clients: usize) -> anyhow::Result<()> {
    let per = n / clients;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let http = http.to_owned();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let a = agent();
                for i in 0..per {
                    register(
                        &a,
                        &http,
                        &format!("fill-node-{}", i % 100),
                        &format!("svc-{c}-{i}"),
                        &format!("svc-{c}-{i}"),
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("filler panicked"))??;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    bench::clean_up_on_signal()?;
    let bin = std::env::args()
        .nth(1)
        .context("usage: cp-bench <lambdamesh binary> [data parent dir]")?;
    let parent = std::env::args()
        .nth(2)
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let dir =
        std::path::Path::new(&parent).join(format!("lambdamesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let fsync = fsync_rate(&dir, 3.0)?;
    println!(
        "disk fsync rate (4 KiB append + fdatasync, same disk):  {fsync:.0} fsyncs/s  (peer: one fsync per write would cap writes here)"
    );

    let server = start(&bin, &dir.join("reg"))?;
    let (rate, p50, p99) = registrations(&server.http, 16, 5.0)?;
    println!(
        "durable catalog registrations, 16 clients:             {rate:.0} registrations/s  (latency p50 {p50:.2} ms, p99 {p99:.2} ms; {:.1} writes per fsync-equivalent)",
        rate / fsync
    );
    drop(server);

    let server = start(&bin, &dir.join("watch"))?;
    let (w50, w99) = wakeups(&server.http, 1000, 200)?;
    println!(
        "blocking-query wake-up, 1,000 watchers, 200 changes:   p50 {w50:.2} ms, p99 {w99:.2} ms  (from sending the write to the watcher's answer)"
    );
    drop(server);

    let server = start(&bin, &dir.join("rss"))?;
    let base = rss_kib(server.child.id())?;
    fill(&server.http, 10_000, 16)?;
    let full = rss_kib(server.child.id())?;
    println!(
        "server RSS: {:.1} MB idle, {:.1} MB with 10,000 services",
        base as f64 / 1024.0,
        full as f64 / 1024.0
    );
    drop(server);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
