//! `lambdamesh up` and the children around it, shared by the tests that run a whole topology
//! (`up.rs`, `migrate.rs`, `ui_greeter.rs`): a child whose output is collected as it comes, `up`
//! on free ports with its own state directory (`down` on drop), and a steady load client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use super::BIN;
use super::mesh::{envoy_path, python};

/// The binary with the venv's Python and the pinned Envoy.
pub fn lambdamesh(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("LAMBDAMESH_PYTHON", python())
        .env("ENVOY_BIN", envoy_path())
        .env("LAMBDAMESH_LOG", "info");
    c
}

/// A child whose output lines (stdout and stderr) are collected as they come; killed on drop.
pub struct Running {
    pub child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().push(line);
                }
            });
        }
        Running { child, output }
    }

    pub fn output(&self) -> String {
        self.output.lock().join("\n")
    }

    pub fn wait_for_line(&mut self, secs: u64, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.output().contains(needle) {
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("exited ({st}) before {needle:?}:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {secs} s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the exit; (code, output).
    pub fn finish(&mut self, secs: u64) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(200));
                return (st.code().unwrap_or(-1), self.output());
            }
            assert!(
                Instant::now() < deadline,
                "still running after {secs} s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lambdamesh up --free-ports` of a topology with a state directory of the test's own; stopped
/// with `down` on drop.
pub struct Up {
    pub run: Running,
    pub state: PathBuf,
}

impl Up {
    pub fn start(topology: &Path, state: &Path) -> Up {
        let mut cmd = lambdamesh(&["up", "--free-ports", "--state-dir"]);
        cmd.arg(state).arg(topology);
        Up {
            run: Running::spawn(cmd),
            state: state.to_owned(),
        }
    }

    pub fn output(&self) -> String {
        self.run.output()
    }

    /// Waits until `status` says ready; the run record.
    pub fn ready(&mut self, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(st)) = self.run.child.try_wait() {
                panic!("up exited ({st}) before ready:\n{}", self.output());
            }
            let o = lambdamesh(&["status", "--json", "--state-dir"])
                .arg(&self.state)
                .output()
                .unwrap();
            if o.status.success() {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                if v["ready"] == Value::Bool(true) {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "not ready after {secs} s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `down`, which must succeed, and `up` must then exit 0.
    pub fn down(&mut self) {
        let o = lambdamesh(&["down", "--state-dir"])
            .arg(&self.state)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "down: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let st = self.run.child.wait().unwrap();
        assert!(st.success(), "up exited with {st}:\n{}", self.output());
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // Before `run` is dropped (which kills `up` itself), so the parts stop in order.
        let _ = lambdamesh(&["down", "--state-dir"])
            .arg(&self.state)
            .output();
    }
}

/// Calls a URL from 4 threads, each every 200 ms (about 20 req/s), until dropped; counts the
/// answers.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    /// The first few failures, as "status after elapsed: body", for the assertion's message.
    pub failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        // A request counts as lost when it fails, not when it is slow: a cold start on a loaded
        // CI machine can take several seconds, so the client waits as long as Envoy's route does.
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let threads = (0..4)
            .map(|_| {
                let (stop, ok, failed, failures, url, agent) = (
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    failures.clone(),
                    url.to_owned(),
                    agent.clone(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let outcome = match agent.get(&url).call() {
                            Ok(r) if r.status() == 200 => Ok(()),
                            Ok(mut r) => Err(format!(
                                "HTTP {}: {}",
                                r.status().as_u16(),
                                r.body_mut().read_to_string().unwrap_or_default()
                            )),
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(why) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let mut first = failures.lock();
                                if first.len() < 5 {
                                    first.push(format!("{why} after {:?}", started.elapsed()));
                                }
                            }
                        }
                        if let Some(rest) =
                            Duration::from_millis(200).checked_sub(started.elapsed())
                        {
                            std::thread::sleep(rest);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            failures,
            threads,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The live processes of a run: its marker in their environment, or their working directory
/// inside the state directory.
pub fn run_processes(state: &Path) -> Vec<u32> {
    let state = state.canonicalize().unwrap_or(state.to_owned());
    let marker = format!("LAMBDAMESH_UP_STATE={}", state.display());
    let inside = format!("{}/", state.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            let marked = env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes());
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|c| format!("{}/", c.display()).starts_with(&inside));
            !zombie && (marked || cwd)
        })
        .collect()
}

pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Every port the run's endpoints name.
pub fn endpoint_ports(record: &Value) -> Vec<u16> {
    record["endpoints"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| {
            v.as_str()?
                .rsplit(':')
                .next()?
                .trim_end_matches('/')
                .parse()
                .ok()
        })
        .collect()
}
