//! One execution environment: the runtime process (and external extensions from the layers'
//! `extensions/` directory) with their own Runtime/Extensions API endpoint on a loopback port,
//! a private temp dir and AWS's environment variables.
//!
//! Lifecycle (as AWS documents it): extensions start and register, then the runtime starts; INIT
//! completes when the runtime and every registered extension have called `next`. Each invoke is
//! handed to the runtime's pending `next`; the sandbox answers with the runtime's response or
//! error, or with `Sandbox.Timedout` / `Runtime.ExitError` when the deadline passes or the process
//! dies. A sandbox that timed out or died is never reused.

mod freeze;
mod log;
mod python;
mod runtime_api;

pub(crate) use python::PythonInterpreter;

use log::LogSink;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
    sync::{mpsc, oneshot, watch},
};
use tracing::{debug, info, warn};

use crate::{Credentials, httpd};

/// AWS's limit for the INIT phase of on-demand functions.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time external extensions get to handle SHUTDOWN (AWS: 2,000 ms with external extensions).
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(2000);
/// Bytes of log kept for `LogType: Tail` (AWS returns the last 4 KB).
pub(crate) const LOG_TAIL: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a sandbox runs: a snapshot of one function version's configuration.
#[derive(Clone, Debug)]
pub(crate) struct FunctionSpec {
    pub name: String,
    /// The version has external extensions: its invokes share one sandbox, queued.
    pub one_sandbox: bool,
    pub version: String,
    pub runtime: String,
    pub handler: String,
    pub code_dir: PathBuf,
    pub opt_dir: Option<PathBuf>,
    pub environment: BTreeMap<String, String>,
    pub timeout: Duration,
    pub memory_size: u32,
    pub revision: String,
}

/// Platform-wide settings every sandbox needs.
#[derive(Clone, Debug)]
pub(crate) struct SandboxEnv {
    /// The interpreter of `python3.x` runtimes, checked before the first one starts.
    pub python: Arc<PythonInterpreter>,
    /// Stop the sandbox's processes between invokes ([`freeze`]).
    pub freeze: bool,
    pub region: String,
    pub credentials: Credentials,
    pub endpoint: String,
    pub data_dir: PathBuf,
}

/// One invoke as handed to the runtime.
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub invoked_arn: String,
    pub deadline_ms: u64,
    pub trace_id: String,
    pub client_context: Option<String>,
}

/// How an invoke ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The runtime posted a response.
    Response(Bytes),
    /// The runtime posted an error (AWS: `X-Amz-Function-Error: Unhandled`).
    Error(Bytes),
    /// The function timeout passed.
    Timeout,
    /// The runtime process exited; the text says how (`exit status 1`, `signal: 9`).
    Exit(String),
    /// The runtime answered with a body over 6 MB.
    TooLarge,
}

/// Why INIT failed.
#[derive(Debug)]
pub(crate) enum InitFailure {
    /// The runtime or an extension posted `init/error`.
    Error { body: Bytes },
    /// A process could not be started or exited during INIT.
    Exit {
        error_type: &'static str,
        message: String,
    },
    /// INIT did not complete within the limit.
    Timeout,
}

#[derive(Default)]
struct RtState {
    /// The runtime is in `next`, waiting for an invocation.
    runtime_waiting: bool,
    init_done: bool,
    shutting_down: bool,
    init_error: Option<Bytes>,
    current: Option<(String, oneshot::Sender<Outcome>)>,
    extensions: Vec<Ext>,
    extension_exits: usize,
}

struct Ext {
    id: String,
    name: String,
    invoke: bool,
    shutdown: bool,
    ready: bool,
    /// In `event/next`, waiting for an event.
    waiting: bool,
    tx: mpsc::UnboundedSender<Value>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>>,
}

/// State shared with the Runtime API handlers.
struct Shared {
    spec: Arc<FunctionSpec>,
    st: Mutex<RtState>,
    changed: watch::Sender<u64>,
    inv_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    log: LogSink,
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|c| *c = c.wrapping_add(1));
    }
}

/// A started execution environment.
pub(crate) struct Sandbox {
    pub id: u64,
    pub spec: Arc<FunctionSpec>,
    shared: Arc<Shared>,
    inv_tx: mpsc::Sender<Invocation>,
    exit_rx: watch::Receiver<Option<String>>,
    kill_tx: watch::Sender<bool>,
    server_stop: Mutex<Option<oneshot::Sender<()>>>,
    tmp_dir: PathBuf,
    pub last_used: Mutex<Instant>,
    freezer: Arc<freeze::Freezer>,
    /// Whether to freeze between invokes.
    freeze: bool,
}

/// What `invoke` returns.
pub(crate) struct Invoked {
    pub outcome: Outcome,
    pub log_tail: Vec<u8>,
    /// How long the invoke ran (the `REPORT` line's `Duration`).
    pub duration: Duration,
}

// === impl Sandbox ===

impl Sandbox {
    /// Starts processes and waits for INIT. On failure everything started is stopped.
    pub(crate) async fn start(
        spec: Arc<FunctionSpec>,
        env: &SandboxEnv,
    ) -> Result<Arc<Sandbox>, InitFailure> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| InitFailure::Exit {
                error_type: "Runtime.Unknown",
                message: e.to_string(),
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let (inv_tx, inv_rx) = mpsc::channel(1);
        let (changed, _) = watch::channel(0);
        let log_path = env.data_dir.join("logs").join(format!("{}.log", spec.name));
        let file = std::fs::create_dir_all(env.data_dir.join("logs"))
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
            })
            .map_err(|e| warn!(error = %e, path = %log_path.display(), "cannot open function log"))
            .ok();
        let shared = Arc::new(Shared {
            spec: spec.clone(),
            st: Mutex::new(RtState::default()),
            changed,
            inv_rx: tokio::sync::Mutex::new(inv_rx),
            log: LogSink::new(file),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(httpd::serve(
            listener,
            runtime_api::handler(shared.clone()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let tmp_dir = env.data_dir.join("sandboxes").join(id.to_string());
        let _ = std::fs::create_dir_all(tmp_dir.join("tmp"));
        let (exit_tx, exit_rx) = watch::channel(None);
        let (kill_tx, _) = watch::channel(false);
        let sandbox = Arc::new(Sandbox {
            id,
            spec: spec.clone(),
            shared,
            inv_tx,
            exit_rx,
            kill_tx,
            server_stop: Mutex::new(Some(stop_tx)),
            tmp_dir: tmp_dir.clone(),
            last_used: Mutex::new(Instant::now()),
            freezer: Arc::default(),
            freeze: env.freeze,
        });
        let vars = environment(&spec, env, port, &tmp_dir);
        let init_started = Instant::now();
        sandbox
            .shared
            .log
            .write(format!("INIT_START Runtime Version: {}\n", spec.runtime).as_bytes());
        match sandbox.init(env, vars, exit_tx).await {
            Ok(()) => {
                info!(function = %spec.name, version = %spec.version, sandbox = id, "sandbox ready");
                Ok(sandbox)
            }
            Err(e) => {
                let error_type = match &e {
                    InitFailure::Error { body } => serde_json::from_slice::<Value>(body)
                        .ok()
                        .and_then(|v| {
                            v.get("errorType")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| "Runtime.Unknown".into()),
                    InitFailure::Exit { error_type, .. } => (*error_type).to_owned(),
                    InitFailure::Timeout => "Sandbox.Timedout".into(),
                };
                sandbox.shared.log.write(
                    format!(
                        "INIT_REPORT Init Duration: {:.2} ms\tPhase: init\tStatus: error\tError Type: {error_type}\n",
                        init_started.elapsed().as_secs_f64() * 1000.0
                    )
                    .as_bytes(),
                );
                sandbox.kill().await;
                Err(e)
            }
        }
    }

    async fn init(
        &self,
        env: &SandboxEnv,
        vars: Vec<(String, String)>,
        exit_tx: watch::Sender<Option<String>>,
    ) -> Result<(), InitFailure> {
        if self.spec.runtime.starts_with("python") {
            env.python
                .check()
                .await
                .map_err(|message| InitFailure::Exit {
                    error_type: "Runtime.Unavailable",
                    message,
                })?;
        }
        let deadline = tokio::time::Instant::now() + INIT_TIMEOUT;
        let mut changed = self.shared.changed.subscribe();
        // 1. External extensions start first and must all register before the runtime starts.
        let extensions = self
            .spec
            .opt_dir
            .as_ref()
            .map(|d| list_extensions(&d.join("extensions")))
            .unwrap_or_default();
        for path in &extensions {
            let cmd = Command::new(path);
            self.spawn(cmd, &vars, None)
                .map_err(|e| InitFailure::Exit {
                    error_type: "Extension.LaunchError",
                    message: e,
                })?;
        }
        loop {
            {
                let st = self.shared.st.lock();
                if st.init_error.is_some() {
                    break;
                }
                if st.extensions.len() >= extensions.len() {
                    break;
                }
                if st.extension_exits > 0 {
                    return Err(InitFailure::Exit {
                        error_type: "Extension.Crash",
                        message: "an extension exited before registering".into(),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Err(InitFailure::Timeout);
            }
        }
        // 2. The runtime.
        if self.shared.st.lock().init_error.is_none() {
            let cmd = self.runtime_command(env)?;
            self.spawn(cmd, &vars, Some(exit_tx))
                .map_err(|e| InitFailure::Exit {
                    error_type: "Runtime.InvalidEntrypoint",
                    message: e,
                })?;
        }
        // 3. Wait until the runtime and every extension are waiting on `next`.
        let mut exit_rx = self.exit_rx.clone();
        loop {
            {
                let mut st = self.shared.st.lock();
                if let Some(body) = st.init_error.take() {
                    return Err(InitFailure::Error { body });
                }
                if st.extension_exits > 0 {
                    return Err(InitFailure::Exit {
                        error_type: "Extension.Crash",
                        message: "an extension exited during INIT".into(),
                    });
                }
                if st.runtime_waiting && st.extensions.iter().all(|e| e.ready) {
                    st.init_done = true;
                    return Ok(());
                }
            }
            let exited = exit_rx.borrow().clone();
            if let Some(how) = exited {
                // Give a racing init/error post a moment to land: AWS reports the posted error.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(body) = self.shared.st.lock().init_error.take() {
                    return Err(InitFailure::Error { body });
                }
                return Err(InitFailure::Exit {
                    error_type: "Runtime.ExitError",
                    message: how,
                });
            }
            tokio::select! {
                r = tokio::time::timeout_at(deadline, changed.changed()) => if r.is_err() { return Err(InitFailure::Timeout) },
                _ = exit_rx.changed() => {}
            }
        }
    }

    fn runtime_command(&self, env: &SandboxEnv) -> Result<Command, InitFailure> {
        let spec = &self.spec;
        if spec.runtime.starts_with("python") {
            let mut cmd = Command::new(env.python.path());
            cmd.arg("-m").arg("awslambdaric").arg(&spec.handler);
            return Ok(cmd);
        }
        let candidates: Vec<PathBuf> = std::iter::once(spec.code_dir.join("bootstrap"))
            .chain(spec.opt_dir.iter().map(|d| d.join("bootstrap")))
            .collect();
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => Ok(Command::new(p)),
            None => Err(InitFailure::Exit {
                error_type: "Runtime.InvalidEntrypoint",
                message: format!(
                    "Couldn't find valid bootstrap(s): [{}]",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            }),
        }
    }

    /// Spawns a process of this sandbox; `exit_tx` marks it as the runtime.
    fn spawn(
        &self,
        mut cmd: Command,
        vars: &[(String, String)],
        exit_tx: Option<watch::Sender<Option<String>>>,
    ) -> Result<(), String> {
        cmd.env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.spec.code_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start process: {e}"))?;
        if let Some(pid) = child.id() {
            self.freezer.add(pid);
        }
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let shared = self.shared.clone();
            tokio::spawn(pump(out, shared));
        }
        let shared = self.shared.clone();
        let kill_rx = self.kill_tx.subscribe();
        let is_runtime = exit_tx.is_some();
        tokio::spawn(async move {
            let how = wait_child(child, kill_rx).await;
            debug!(function = %shared.spec.name, runtime = is_runtime, exit = %how, "sandbox process exited");
            match exit_tx {
                Some(tx) => {
                    let _ = tx.send(Some(how));
                }
                None => {
                    shared.st.lock().extension_exits += 1;
                }
            }
            shared.bump();
        });
        Ok(())
    }

    /// Runs one invoke. The caller must not reuse the sandbox unless [`Outcome::reusable`].
    pub(crate) async fn invoke(&self, inv: Invocation, want_tail: bool) -> Invoked {
        let started = Instant::now();
        // A frozen sandbox is continued for the event; a freeze still pending is void.
        let generation = self.freezer.thaw();
        let (tx, rx) = oneshot::channel();
        let request_id = inv.request_id.clone();
        *self.shared.log.capture.lock() = Some(Vec::new());
        self.shared.log.hold(
            format!(
                "START RequestId: {request_id} Version: {}\n",
                self.spec.version
            )
            .as_bytes(),
        );
        {
            let mut st = self.shared.st.lock();
            st.current = Some((request_id.clone(), tx));
            if st.extensions.iter().any(|e| e.invoke) {
                let event = json!({
                    "eventType": "INVOKE",
                    "deadlineMs": inv.deadline_ms,
                    "requestId": request_id,
                    "invokedFunctionArn": inv.invoked_arn,
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": inv.trace_id},
                });
                for ext in st.extensions.iter_mut().filter(|e| e.invoke) {
                    // Busy with this event until it calls `next` again.
                    ext.waiting = false;
                    let _ = ext.tx.send(event.clone());
                }
            }
        }
        let mut exit_rx = self.exit_rx.clone();
        let timeout = self.spec.timeout;
        let outcome = if self.inv_tx.try_send(inv).is_err() {
            Outcome::Exit("runtime is not accepting invokes".into())
        } else {
            tokio::select! {
                r = rx => r.unwrap_or_else(|_| Outcome::Exit("runtime went away".into())),
                () = tokio::time::sleep(timeout) => Outcome::Timeout,
                how = wait_exit(&mut exit_rx) => {
                    Outcome::Exit(how)
                }
            }
        };
        self.shared.st.lock().current = None;
        let duration = started.elapsed();
        if matches!(outcome, Outcome::Timeout) {
            self.shared.log.hold(
                format!(
                    "{} {request_id} Task timed out after {:.2} seconds\n",
                    crate::functions::iso_now(),
                    timeout.as_secs_f64()
                )
                .as_bytes(),
            );
        }
        let ms = duration.as_secs_f64() * 1000.0;
        self.shared.log.hold(
            format!(
                "END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\n",
                ms.ceil() as u64,
                self.spec.memory_size,
                self.spec.memory_size.min(64),
            )
            .as_bytes(),
        );
        // Output written just before the response may still be in the pipe. When the caller wants
        // the tail, wait until the pump has been quiet for a few milliseconds (bounded), so the
        // tail includes it; other invokes pay nothing.
        if want_tail {
            let (mut last, mut stable) = (usize::MAX, 0);
            for _ in 0..25 {
                let len = self.shared.log.capture.lock().as_ref().map_or(0, Vec::len);
                stable = if len == last { stable + 1 } else { 0 };
                if stable == 2 {
                    break;
                }
                last = len;
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        }
        let log_tail = self.shared.log.capture.lock().take().unwrap_or_default();
        *self.last_used.lock() = Instant::now();
        // Runs once the caller's task yields: after the answer has been written.
        let shared = self.shared.clone();
        let freezer = (self.freeze && outcome.reusable()).then(|| self.freezer.clone());
        tokio::spawn(async move {
            shared.log.write_held();
            if let Some(freezer) = freezer {
                freeze_when_idle(&shared, &freezer, generation).await;
            }
        });
        Invoked {
            outcome,
            log_tail,
            duration,
        }
    }

    /// Whether the runtime process has exited.
    pub(crate) fn exited(&self) -> bool {
        self.exit_rx.borrow().is_some()
    }

    /// Stops the sandbox as AWS does: SHUTDOWN to subscribed extensions with a deadline, then
    /// every process is killed.
    pub(crate) async fn stop(&self, reason: &str) {
        // Extensions must run to handle SHUTDOWN.
        self.freezer.thaw_for_good();
        let waiting: Vec<usize> = {
            let mut st = self.shared.st.lock();
            st.shutting_down = true;
            let deadline_ms = epoch_ms() + SHUTDOWN_DEADLINE.as_millis() as u64;
            let event = json!({"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms});
            st.extensions
                .iter()
                .enumerate()
                .filter(|(_, e)| e.shutdown)
                .map(|(i, e)| {
                    let _ = e.tx.send(event.clone());
                    i
                })
                .collect()
        };
        if !waiting.is_empty() {
            // Extensions exit when done; the deadline is a hard limit.
            let mut changed = self.shared.changed.subscribe();
            let total = self.shared.st.lock().extensions.len();
            let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
                while self.shared.st.lock().extension_exits < total {
                    if changed.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        self.kill().await;
    }

    async fn kill(&self) {
        let _ = self.kill_tx.send(true);
        if let Some(stop) = self.server_stop.lock().take() {
            let _ = stop.send(());
        }
        let _ = tokio::fs::remove_dir_all(&self.tmp_dir).await;
    }
}

impl Outcome {
    /// Whether the sandbox can serve another invoke after this outcome.
    pub(crate) fn reusable(&self) -> bool {
        matches!(
            self,
            Outcome::Response(_) | Outcome::Error(_) | Outcome::TooLarge
        )
    }
}

/// Freezes the sandbox once the invoke phase is over, i.e. when the runtime and every extension
/// are back waiting for their next event (as Lambda does), unless another event came first.
async fn freeze_when_idle(shared: &Shared, freezer: &freeze::Freezer, generation: u64) {
    let mut changed = shared.changed.subscribe();
    loop {
        {
            let st = shared.st.lock();
            if st.shutting_down || st.current.is_some() {
                return;
            }
            if st.runtime_waiting && st.extensions.iter().all(|e| e.waiting) {
                if freezer.freeze(generation) {
                    debug!(function = %shared.spec.name, "sandbox frozen");
                }
                return;
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

async fn wait_exit(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        let current = rx.borrow().clone();
        if let Some(how) = current {
            return how;
        }
        if rx.changed().await.is_err() {
            return "sandbox stopped".into();
        }
    }
}

async fn wait_child(mut child: Child, mut kill_rx: watch::Receiver<bool>) -> String {
    let pid = child.id();
    let killed = tokio::select! {
        s = child.wait() => Some(s),
        r = kill_rx.wait_for(|k| *k) => { drop(r); None }
    };
    let status = match killed {
        Some(s) => s,
        None => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    // Children the function forked (e.g. a shell `bootstrap`) share its process group.
    if let Some(pid) = pid {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pid}"))
            .stderr(Stdio::null())
            .status()
            .await;
    }
    match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("signal: {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

async fn pump(mut out: Box<dyn tokio::io::AsyncRead + Send + Unpin>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => shared.log.write(&buf[..n]),
        }
    }
}

fn list_extensions(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The environment AWS gives a function, plus `AWS_ENDPOINT_URL` so AWS SDKs inside the function
/// reach this platform instead of AWS.
fn environment(
    spec: &FunctionSpec,
    env: &SandboxEnv,
    port: u16,
    tmp: &std::path::Path,
) -> Vec<(String, String)> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let task_root = spec.code_dir.display().to_string();
    let opt = spec.opt_dir.as_ref().map(|d| d.display().to_string());
    let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let path = match &opt {
        Some(o) => format!("{o}/bin:{task_root}:{host_path}"),
        None => format!("{task_root}:{host_path}"),
    };
    let pythonpath = match &opt {
        Some(o) => format!("{task_root}:{o}/python"),
        None => task_root.clone(),
    };
    let ld_path = match &opt {
        Some(o) => format!("{task_root}/lib:{o}/lib"),
        None => format!("{task_root}/lib"),
    };
    // User variables first, so the reserved ones below win, as on AWS.
    for (k, v) in &spec.environment {
        vars.insert(k.clone(), v.clone());
    }
    let fixed = [
        ("PATH", path),
        ("PYTHONPATH", pythonpath),
        ("LD_LIBRARY_PATH", ld_path),
        ("LANG", "en_US.UTF-8".into()),
        // A pipe would make Python block-buffer prints, so logs would lag the invoke they belong to.
        ("PYTHONUNBUFFERED", "1".into()),
        ("TZ", ":UTC".into()),
        ("HOME", tmp.display().to_string()),
        ("TMPDIR", tmp.join("tmp").display().to_string()),
        ("_HANDLER", spec.handler.clone()),
        ("LAMBDA_TASK_ROOT", task_root.clone()),
        ("LAMBDA_RUNTIME_DIR", task_root),
        ("LAMBDA_OPT_DIR", opt.unwrap_or_default()),
        ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_size.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.name),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("local/[{}]{}", spec.version, crate::new_uuid().simple()),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", spec.runtime)),
        ("AWS_REGION", env.region.clone()),
        ("AWS_DEFAULT_REGION", env.region.clone()),
        ("AWS_ACCESS_KEY_ID", env.credentials.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", env.credentials.secret_key.clone()),
        ("AWS_ENDPOINT_URL", env.endpoint.clone()),
    ];
    for (k, v) in fixed {
        vars.insert(k.to_owned(), v);
    }
    vars.into_iter().collect()
}

/// Milliseconds since the epoch.
pub(crate) fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
