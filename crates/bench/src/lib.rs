//! Scaffolding shared by the benchmark drivers of this crate (`cp-bench`, `xds-bench`,
//! `registrator-bench`, `mesh-lambda-bench`, `multi-dc-bench` and the others run by
//! `bench/*.sh`): child processes killed when the driver is done with them, starting
//! `lambdamesh` on ephemeral ports and learning its addresses, free ports, HTTP agents, an echo
//! service, polling and percentiles. It exists only so the drivers do not each carry their own
//! copy; nothing outside `crates/bench` uses it, and it makes no promise of stability.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The children alive right now, for [`clean_up_on_signal`].
static LIVE: parking_lot::Mutex<Vec<u32>> = parking_lot::Mutex::new(Vec::new());

/// The scratch dirs made by [`scratch_dir`], removed by [`clean_up_on_signal`] too.
static SCRATCH: parking_lot::Mutex<Vec<std::path::PathBuf>> = parking_lot::Mutex::new(Vec::new());

/// A temporary dir named `<prefix>XXXXXX`, removed when dropped and also when the driver is
/// stopped by a signal (see [`clean_up_on_signal`]).
pub fn scratch_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    SCRATCH.lock().push(dir.path().to_owned());
    Ok(dir)
}

/// A child process that is killed and reaped when dropped, so a driver that returns early (an
/// error, a failed check) leaves no Envoy or `lambdamesh` server running. A driver killed by a
/// signal runs no destructors; [`clean_up_on_signal`] covers SIGINT, SIGTERM and SIGHUP.
pub struct Child(std::process::Child);

impl Child {
    /// Spawns `cmd` as an owned child.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", cmd.get_program().display()))?;
        LIVE.lock().push(child.id());
        Ok(Child(child))
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        LIVE.lock().retain(|&pid| pid != self.0.id());
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP kill every live [`Child`] and remove every [`scratch_dir`]
/// before the driver exits (status 130), so a driver stopped with `kill` or `pkill` leaves no
/// Envoy, server or platform behind to skew the next measurement, and no data in /tmp. Call it
/// first in `main`.
pub fn clean_up_on_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Everything happens on its own thread with its own runtime: a driver may call this from
    // inside its own async runtime, where starting another one on the same thread would panic.
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        rt.block_on(async {
            let streams = (|| {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ))
            })();
            let (mut int, mut term, mut hup) = match streams {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            let pids: Vec<String> = LIVE.lock().iter().map(u32::to_string).collect();
            if !pids.is_empty() {
                // The `kill` command keeps the crate free of unsafe code.
                let _ = Command::new("kill").arg("-KILL").args(&pids).status();
            }
            // The children are gone, so nothing writes into these any more.
            for dir in SCRATCH.lock().iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        });
    });
    // Registered before returning, so no signal is missed once the driver goes on.
    ready_rx
        .recv()
        .context("the signal thread stopped")?
        .context("cannot watch signals")
}

/// A running `lambdamesh server` or `agent` started by [`start_server`].
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub http: String,
    /// `127.0.0.1:PORT` of the xDS (gRPC) listener.
    pub grpc: String,
    /// The data dir of a `-dev` server, owned here (dropped after the child is killed): a killed
    /// server cannot remove the temporary dir it would make itself.
    _dev_dir: Option<tempfile::TempDir>,
}

/// Starts `bin <args> -http-addr 127.0.0.1:0 -grpc-addr 127.0.0.1:0` (e.g. `["server",
/// "-data-dir", dir]` or `["agent", "-dev"]`) and waits up to 30 s for the `HTTP API at
/// http://…` line on its stderr, which is the only place the kernel-chosen ports are told.
pub fn start_server(bin: &str, args: &[&str]) -> anyhow::Result<Server> {
    let dev_dir = match args.contains(&"-dev") && !args.contains(&"-data-dir") {
        true => Some(scratch_dir("lambdamesh-bench-dev-")?),
        false => None,
    };
    let mut child = Child::spawn(
        Command::new(bin)
            .args(args)
            .args(
                dev_dir
                    .iter()
                    .flat_map(|d| ["-data-dir".as_ref(), d.path().as_os_str()]),
            )
            .args(["-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0"])
            .env("LAMBDAMESH_LOG", "warn,lambdamesh=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let stderr = child.0.stderr.take().context("no stderr")?;
    let (tx, rx) = mpsc::channel();
    // Reads to the end, not just to the ready line: an undrained pipe would block the server
    // once it fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addresses) = test_support::server_addresses(&line) {
                let _ = tx.send(addresses);
            }
        }
    });
    let (http, grpc) = rx
        .recv_timeout(Duration::from_secs(30))
        .context("server did not start")?;
    Ok(Server {
        child,
        http,
        grpc,
        _dev_dir: dev_dir,
    })
}

/// A port free on 127.0.0.1 right now, for a child that must be told its address up front.
/// (See the `test-support` crate for why not a kernel-chosen port.)
pub fn free_port() -> anyhow::Result<u16> {
    match test_support::free_port() {
        0 => bail!("no free port"),
        port => Ok(port),
    }
}

/// An HTTP agent that returns 4xx/5xx answers as responses (the drivers check statuses
/// themselves) and gives up on each phase of a request (connect, send, wait for the answer,
/// read it) after `timeout`.
///
/// Per-phase rather than one overall timeout: with an overall timeout, ureq resolves every
/// request's host on a new thread so that it can abandon a hanging DNS lookup. The drivers
/// only call IP literals, and that thread cost about 0.1 ms and a wake-up inside every timed
/// request (seen with `perf sched`), the same for every path, which hid part of the mesh's
/// and the Lambda path's own cost.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build(),
    )
}

/// PUTs `body` as JSON to `http://{http}{path}`; anything but a 200 is an error with its body.
pub fn put(
    agent: &ureq::Agent,
    http: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let mut r = agent
        .put(&format!("http://{http}{path}"))
        .send(body.to_string())?;
    if r.status() != 200 {
        bail!(
            "PUT {path}: {} {}",
            r.status(),
            r.body_mut().read_to_string().unwrap_or_default()
        );
    }
    Ok(())
}

/// The `X-Consul-Index` of a GET (a blocking query when `url` carries `?index=`).
pub fn index_of(agent: &ureq::Agent, url: &str) -> anyhow::Result<u64> {
    let resp = agent.get(url).call()?;
    Ok(resp
        .headers()
        .get("X-Consul-Index")
        .context("no X-Consul-Index header")?
        .to_str()?
        .parse()?)
}

/// The status of a GET with its body read (0 when the request failed).
pub fn status_of(agent: &ureq::Agent, url: &str) -> u16 {
    match agent.get(url).call() {
        Ok(mut r) => {
            let _ = r.body_mut().read_to_string();
            r.status().as_u16()
        }
        Err(_) => 0,
    }
}

/// One counter or gauge from an Envoy's admin `/stats` (0 when absent or unreachable).
pub fn envoy_stat(admin: u16, name: &str) -> u64 {
    let Ok(mut r) = http_agent(Duration::from_secs(5))
        .get(&format!("http://127.0.0.1:{admin}/stats?filter={name}"))
        .call()
    else {
        return 0;
    };
    let body = r.body_mut().read_to_string().unwrap_or_default();
    body.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A plain HTTP/1.1 keep-alive echo service on 127.0.0.1 (its port returned): answers every
/// request with `{"echo": {method, raw_path, body}}` (the JSON shape `bench-echo-fn` returns),
/// plus `"from": from` when given, so a driver can tell which of several copies answered. One
/// thread per connection, named `thread_name`, so their CPU time can be told apart.
pub fn echo_service(thread_name: &'static str, from: Option<&'static str>) -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in l.incoming().map_while(Result::ok) {
            let _ = std::thread::Builder::new()
                .name(thread_name.into())
                .spawn(move || serve_echo(stream, from));
        }
    });
    Ok(port)
}

fn serve_echo(stream: TcpStream, from: Option<&'static str>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut write) = stream.try_clone() else {
        return;
    };
    let mut read = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if read.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if read.read_exact(&mut body).is_err() {
            return;
        }
        let mut echo = serde_json::json!({"method": method, "raw_path": path,
            "body": String::from_utf8_lossy(&body)});
        if let Some(from) = from {
            echo["from"] = from.into();
        }
        let out = serde_json::json!({ "echo": echo }).to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}",
            out.len()
        );
        if write.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Polls `f` every 100 ms until it is true; an error naming `what` after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out waiting for {what}")
}

/// The `[requests=4000] [concurrency=1,4]` arguments the latency drivers take after their own.
///
/// # Errors
/// Either is not a number (a list of numbers for concurrency).
pub fn requests_and_concurrency(rest: &[String]) -> anyhow::Result<(usize, Vec<usize>)> {
    let requests: usize = match rest.first() {
        Some(n) => n.parse().context("requests must be a number")?,
        None => 4000,
    };
    let concurrency: Vec<usize> = match rest.get(1) {
        Some(list) => list
            .split(',')
            .map(|c| c.parse().context("concurrency must be numbers, e.g. 1,4"))
            .collect::<anyhow::Result<_>>()?,
        None => vec![1, 4],
    };
    Ok((requests, concurrency))
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank; `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let idx = (sorted.len().saturating_sub(1) as f64 * p).round() as usize;
    sorted.get(idx).copied()
}

/// Resident set size of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

/// CPU time (user + system) the scheduler has charged to one task, in nanoseconds: the first
/// field of `/proc/<pid>/task/<tid>/schedstat` (or `/proc/thread-self/schedstat`). Unlike the
/// tick counts in `stat`, it is exact enough to split a few milliseconds between processes.
fn schedstat_ns(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread so far, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat"))
}

/// CPU time, in nanoseconds, of the live threads of process `pid` whose name satisfies `keep`
/// (threads that have exited are not counted: measure long-lived ones).
pub fn process_cpu_ns(pid: u32, keep: impl Fn(&str) -> bool) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .map_while(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| keep(c.trim_end()))
        })
        .map(|t| schedstat_ns(&t.path().join("schedstat")))
        .sum()
}

/// The ids of the live processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .map_while(Result::ok)
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // `stat` is "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(51.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[7u32], 0.99), Some(7));
        assert_eq!(percentile::<f64>(&[], 0.5), None);
    }

    #[test]
    fn wait_for_names_what_timed_out() {
        let e = wait_for("nothing", 0, || false).unwrap_err();
        assert_eq!(e.to_string(), "timed out waiting for nothing");
        assert!(wait_for("now", 1, || true).is_ok());
    }
}
