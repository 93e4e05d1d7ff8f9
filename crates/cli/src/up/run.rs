//! One run of a topology: start the parts in dependency order, each once what it needs is
//! ready; report a failing part with its last log lines and stop everything started; stop in
//! reverse order on Ctrl-C, SIGTERM or `down`; watch the parts while running.

use std::{
    ffi::OsString,
    net::TcpStream,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::anyhow;
use serde_json::{Value, json};
use topology::{Datacenter, Part, PartKind, Topology};

use super::{
    calls::{Aws, Consul},
    child::{self, Proc},
    progress::{Progress, Status},
    state::StateDir,
};

/// Why a part did not become ready.
pub enum PartError {
    /// Ctrl-C, SIGTERM or `down` while starting.
    Interrupted,
    /// The part failed; its log (if it has one) is shown.
    Failed {
        message: String,
        log: Option<PathBuf>,
    },
}

impl From<anyhow::Error> for PartError {
    fn from(e: anyhow::Error) -> Self {
        PartError::Failed {
            message: format!("{e:#}"),
            log: None,
        }
    }
}

/// A running topology.
pub struct Run {
    pub t: Topology,
    pub state: StateDir,
    pub stop: Arc<AtomicBool>,
    pub progress: Progress,
    /// Each datacenter's Consul API and platform, by datacenter index.
    pub consuls: Vec<Consul>,
    pub awss: Vec<Aws>,
    /// The `lambdamesh` binary (this one).
    pub bin: PathBuf,
    pub python: PathBuf,
    /// Processes in start order, with their part's name.
    pub procs: Vec<(String, Proc)>,
    pub record: Value,
    /// Sidecar public ports, by datacenter and service index (picked free when the file gives
    /// none).
    pub sidecar_ports: Vec<Vec<Option<u16>>>,
}

impl Run {
    pub fn new(
        t: Topology,
        state: StateDir,
        stop: Arc<AtomicBool>,
        python: PathBuf,
    ) -> anyhow::Result<Run> {
        let parts = t.parts();
        let progress = Progress::new(parts.iter().map(|p| p.name.clone()).collect());
        let consuls = t
            .datacenters
            .iter()
            .map(|d| Consul::new(&d.server.http.to_string()))
            .collect();
        let awss = t
            .datacenters
            .iter()
            .map(|d| Aws::new(&format!("http://{}", d.platform.addr), &d.platform.region))
            .collect::<anyhow::Result<_>>()?;
        let record = super::state::record(&t.file);
        let sidecar_ports = t
            .datacenters
            .iter()
            .map(|d| {
                d.services
                    .iter()
                    .map(|s| s.sidecar.as_ref().and_then(|sc| sc.port))
                    .collect()
            })
            .collect();
        Ok(Run {
            bin: std::env::current_exe()?,
            t,
            state,
            stop,
            progress,
            consuls,
            awss,
            python,
            procs: Vec::new(),
            record,
            sidecar_ports,
        })
    }

    /// Starts every part in order. On a failure: the part and its log lines are reported and
    /// everything started is stopped.
    pub fn start_all(&mut self) -> Result<(), PartError> {
        self.state
            .write_record(&self.record)
            .map_err(PartError::from)?;
        for part in self.t.parts() {
            if self.stopping() {
                return Err(PartError::Interrupted);
            }
            self.progress.set(&part.name, Status::Starting);
            let started = Instant::now();
            match self.start_part(&part) {
                Ok(note) => {
                    self.progress.set(
                        &part.name,
                        Status::Ready {
                            ms: started.elapsed().as_millis(),
                            note,
                        },
                    );
                    self.save_record();
                }
                Err(e) => {
                    self.progress.set(&part.name, Status::Failed);
                    if let PartError::Failed { message, log } = &e {
                        self.progress
                            .line(&format!("up: {} failed: {message}", part.name));
                        if let Some(log) = log {
                            let lines = child::tail(log, 20);
                            self.progress.line(&format!(
                                "up: last {} lines of {}:",
                                lines.len(),
                                log.display()
                            ));
                            for l in lines {
                                self.progress.line(&format!("    {l}"));
                            }
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.record["ready"] = json!(true);
        self.save_record();
        Ok(())
    }

    fn start_part(&mut self, part: &Part) -> Result<String, PartError> {
        let dc = part.dc;
        match part.kind {
            PartKind::Server => self.start_server(dc),
            PartKind::Platform => self.start_platform(dc),
            PartKind::Registrator => self.start_registrator(dc),
            PartKind::Service(i) => self.start_service(dc, i),
            PartKind::Sidecar(i) => self.start_sidecar(dc, i),
            PartKind::Gateway(i) => self.start_gateway(dc, i),
            PartKind::Function(i) => self.start_function(dc, i),
            PartKind::ConfigEntries => self.write_config_entries(dc),
            PartKind::Intentions => self.write_intentions(dc),
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Starts a process for `part` (its log: `logs/<part>.log`).
    pub fn spawn(
        &mut self,
        part: &str,
        argv: Vec<OsString>,
        env: &[(String, String)],
    ) -> Result<usize, PartError> {
        let log = self.state.log(part);
        let p = child::spawn(&self.state.root, &argv, &self.t.base, env, &log)?;
        if let Some(a) = self.record["parts"].as_array_mut() {
            a.push(json!({"name": part, "pid": p.pid(), "log": log.display().to_string()}));
        }
        self.procs.push((part.to_owned(), p));
        self.save_record();
        Ok(self.procs.len() - 1)
    }

    /// Waits until `ready()` holds, the process `proc` exited, `timeout` passed, or a stop
    /// was asked for.
    pub fn wait(
        &mut self,
        proc: Option<usize>,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut(&Run) -> bool,
    ) -> Result<(), PartError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stopping() {
                return Err(PartError::Interrupted);
            }
            if let Some(i) = proc
                && let Some(how) = self.procs[i].1.exited()
            {
                return Err(PartError::Failed {
                    message: format!("exited ({how}) before {what}"),
                    log: Some(self.procs[i].1.log.clone()),
                });
            }
            if ready(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PartError::Failed {
                    message: format!("not ready after {} s: {what}", timeout.as_secs()),
                    log: proc.map(|i| self.procs[i].1.log.clone()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs until a stop is asked for or a part's process exits (then reports it).
    pub fn watch(&mut self) -> Option<String> {
        loop {
            if self.stopping() {
                return None;
            }
            for (name, p) in &mut self.procs {
                if let Some(how) = p.exited() {
                    let lines = child::tail(&p.log, 20);
                    let mut msg = format!(
                        "up: {name} exited ({how}); last lines of {}:",
                        p.log.display()
                    );
                    for l in lines {
                        msg.push_str("\n    ");
                        msg.push_str(&l);
                    }
                    return Some(msg);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops every process in reverse start order, then anything left with the run's marker.
    pub fn stop_all(&mut self) {
        while let Some((name, mut p)) = self.procs.pop() {
            self.progress.set(&name, Status::Stopping);
            // Envoy and Python stop at once; the server drains; the platform stops its
            // sandboxes (up to AWS's 2 s SHUTDOWN deadline for extensions).
            p.stop(Duration::from_secs(10));
            self.progress.set(&name, Status::Stopped);
        }
        self.state.clean_leftovers();
        self.state.clear_record();
    }

    pub fn save_record(&mut self) {
        if let Err(e) = self.state.write_record(&self.record) {
            tracing::warn!(error = %e, "cannot write the run record");
        }
    }

    /// Entry points, for the banner, `status` and the record (`dc2/<key>` in a federated
    /// file).
    pub fn set_endpoint(&mut self, dc: usize, key: &str, value: String) {
        let key = self.t.scoped(dc, key);
        self.record["endpoints"][key] = json!(value);
    }

    /// Datacenter `dc` of the topology.
    pub fn dc(&self, dc: usize) -> &Datacenter {
        &self.t.datacenters[dc]
    }

    /// Its Consul API.
    pub fn consul(&self, dc: usize) -> &Consul {
        &self.consuls[dc]
    }

    /// Its platform.
    pub fn aws(&self, dc: usize) -> &Aws {
        &self.awss[dc]
    }

    /// Where datacenter `dc` keeps its state (the server's data, the platform's): the state
    /// directory itself, or `<state>/<dc>` in a federated file.
    pub fn dc_root(&self, dc: usize) -> PathBuf {
        if self.t.federated {
            self.state.root.join(&self.t.datacenters[dc].name)
        } else {
            self.state.root.clone()
        }
    }
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A free loopback port for a part, below the kernel's ephemeral range (`test_support::free_port`):
/// a port from `bind(0)` could be taken as the source port of any outgoing connection on the
/// machine before the part binds it (the likely cause of a benchmark run, next to other tests,
/// in which every answer through the container greeter failed while the Lambda side answered).
pub fn free_port() -> Result<u16, PartError> {
    match test_support::free_port() {
        0 => Err(anyhow!("no free loopback port").into()),
        port => Ok(port),
    }
}
