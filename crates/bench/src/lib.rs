//! Scaffolding shared by the benchmark drivers of this crate (`cp-bench`, `xds-bench`,
//! `registrator-bench`, `mesh-lambda-bench`, run by `bench/*.sh`): child processes killed when
//! the driver is done with them, starting `lambdamesh` on ephemeral ports and learning its addresses, free
//! ports, HTTP agents, polling and percentiles. It exists only so the drivers do not each carry
//! their own copy; nothing outside `crates/bench` uses it, and it makes no promise of stability.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process that is killed and reaped when dropped, so a driver that returns early (an
/// error, a failed check) leaves no Envoy or `lambdamesh` server running. A driver killed by a
/// signal runs no destructors; stop it with Ctrl-C in a terminal, which reaches its whole process
/// group.
pub struct Child(std::process::Child);

impl Child {
    /// Spawns `cmd` as an owned child.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", cmd.get_program().display()))?;
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
    }
}

/// A running `lambdamesh server` or `agent` started by [`start_server`].
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub http: String,
    /// `127.0.0.1:PORT` of the xDS (gRPC) listener.
    pub grpc: String,
}

/// Starts `bin <args> -http-addr 127.0.0.1:0 -grpc-addr 127.0.0.1:0` (e.g. `["server",
/// "-data-dir", dir]` or `["agent", "-dev"]`) and waits up to 30 s for the `HTTP API at
/// http://…` line on its stderr, which is the only place the kernel-chosen ports are told.
pub fn start_server(bin: &str, args: &[&str]) -> anyhow::Result<Server> {
    let mut child = Child::spawn(
        Command::new(bin)
            .args(args)
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
            if let Some(rest) = line.split("HTTP API at http://").nth(1) {
                let http = rest.split('/').next().unwrap_or("").to_owned();
                let grpc = line
                    .split("xDS (gRPC) at ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .unwrap_or("")
                    .to_owned();
                let _ = tx.send((http, grpc));
            }
        }
    });
    let (http, grpc) = rx
        .recv_timeout(Duration::from_secs(30))
        .context("server did not start")?;
    Ok(Server { child, http, grpc })
}

/// A port free on 127.0.0.1 right now, for a child that must be told its address up front.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An HTTP agent that returns 4xx/5xx answers as responses (the drivers check statuses
/// themselves) and gives up on a request after `timeout`.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
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
