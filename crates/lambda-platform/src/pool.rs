//! Sandbox pools: per function version, warm sandboxes are reused, cold ones started on demand,
//! idle ones stopped after `idle_timeout`. Reserved concurrency and the platform-wide sandbox
//! limit turn excess invokes into `TooManyRequestsException` before any process is started.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tracing::{info, warn};

use crate::{
    Platform, PlatformConfig,
    metrics::{FunctionMetrics, LambdaMetrics},
    sandbox::{FunctionSpec, InitFailure, Invocation, Outcome, Sandbox, SandboxEnv, epoch_ms},
    wire::ApiError,
};

/// One invoke request, after API validation.
#[derive(Clone, Debug)]
pub struct InvokeRequest {
    /// The event.
    pub payload: Bytes,
    /// The ARN the caller used (qualified when a qualifier was given).
    pub invoked_arn: String,
    /// Base64 client context, passed to the runtime.
    pub client_context: Option<String>,
    /// Whether the caller wants the log tail (`LogType: Tail`).
    pub log_tail: bool,
    /// The request id to run it under (an asynchronous event keeps its id across attempts);
    /// a fresh one when `None`.
    pub request_id: Option<String>,
}

/// The result of a synchronous invoke, as Invoke's response carries it.
#[derive(Clone, Debug)]
pub struct InvokeResult {
    /// Response or error document.
    pub payload: Bytes,
    /// `Unhandled` when the function failed.
    pub function_error: Option<&'static str>,
    /// The invoke's log output (START .. REPORT).
    pub log_tail: Vec<u8>,
    /// Request id given to the runtime.
    pub request_id: String,
}

#[derive(Default)]
struct PoolsInner {
    idle: HashMap<(String, String), Vec<Arc<Sandbox>>>,
    inflight: HashMap<String, u32>,
    live: usize,
}

/// The right to use a one-sandbox function version's sandbox.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// Every function's sandboxes.
pub(crate) struct Pools {
    env: SandboxEnv,
    max_sandboxes: usize,
    idle_timeout: Duration,
    inner: Mutex<PoolsInner>,
    // Every sandbox ever started (weakly), so shutdown also stops the busy ones.
    started: Mutex<Vec<std::sync::Weak<Sandbox>>>,
    /// Woken whenever an invoke ends, so throttled asynchronous events retry as soon as a
    /// slot frees instead of sleeping through their back-off.
    pub(crate) freed: tokio::sync::Notify,
    /// Per function version with external extensions: the turn to use its one sandbox.
    turns: Mutex<HashMap<(String, String), Turn>>,
    /// Invocations, errors, throttles, durations, cold starts (served at `/metrics`).
    pub(crate) metrics: LambdaMetrics,
}

struct Slot<'a> {
    pools: &'a Pools,
    function: String,
    holds_live: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut inner = self.pools.inner.lock();
        if let Some(n) = inner.inflight.get_mut(&self.function) {
            *n = n.saturating_sub(1);
        }
        if self.holds_live {
            inner.live = inner.live.saturating_sub(1);
        }
        drop(inner);
        self.pools.freed.notify_waiters();
    }
}

// === impl Pools ===

impl Pools {
    pub(crate) fn new(config: &PlatformConfig, endpoint: &str) -> Self {
        Self {
            env: SandboxEnv {
                python: Arc::new(crate::sandbox::PythonInterpreter::new(
                    config.python.clone(),
                )),
                freeze: config.freeze,
                region: config.region.clone(),
                credentials: config.credentials.clone(),
                endpoint: endpoint.to_owned(),
                data_dir: config.data_dir.clone(),
            },
            max_sandboxes: config.max_sandboxes,
            idle_timeout: config.idle_timeout,
            inner: Mutex::new(PoolsInner::default()),
            started: Mutex::new(Vec::new()),
            freed: tokio::sync::Notify::new(),
            turns: Mutex::new(HashMap::new()),
            metrics: LambdaMetrics::default(),
        }
    }

    /// Invokes `spec` synchronously, counting it in the function's metrics.
    ///
    /// # Errors
    /// `TooManyRequestsException` when reserved concurrency or the sandbox limit is reached.
    pub(crate) async fn invoke(
        &self,
        spec: Arc<FunctionSpec>,
        reserved: Option<u32>,
        req: InvokeRequest,
    ) -> Result<InvokeResult, ApiError> {
        let m = self.metrics.function(&spec.name, &req.invoked_arn);
        let result = self.run(spec, reserved, req, &m).await;
        match &result {
            Ok(r) => {
                m.invocations.inc();
                if r.function_error.is_some() {
                    m.errors.inc();
                }
            }
            Err(e) if e.status == 429 => m.throttles.inc(),
            Err(_) => {}
        }
        result
    }

    async fn run(
        &self,
        spec: Arc<FunctionSpec>,
        reserved: Option<u32>,
        req: InvokeRequest,
        m: &FunctionMetrics,
    ) -> Result<InvokeResult, ApiError> {
        let request_id = req
            .request_id
            .clone()
            .unwrap_or_else(|| crate::new_uuid().to_string());
        // A version whose extensions may listen on the shared loopback runs one sandbox at a
        // time: a second sandbox's extension could not bind its ports (and its calls would
        // reach the first, frozen sandbox's listeners). Concurrent invokes queue for the turn,
        // in arrival order (tokio's mutex is fair), for at most the function's timeout.
        let _turn = if spec.one_sandbox {
            let turn = self
                .turns
                .lock()
                .entry((spec.name.clone(), spec.version.clone()))
                .or_default()
                .clone();
            match tokio::time::timeout(spec.timeout, turn.lock_owned()).await {
                Ok(guard) => Some(guard),
                Err(_) => {
                    return Err(ApiError::throttled(
                        "ReservedFunctionConcurrentInvocationLimitExceeded",
                    ));
                }
            }
        } else {
            None
        };
        let (warm, stale, mut slot) = {
            let mut inner = self.inner.lock();
            let inflight = inner.inflight.get(&spec.name).copied().unwrap_or(0);
            if reserved.is_some_and(|r| inflight >= r) {
                return Err(ApiError::throttled(
                    "ReservedFunctionConcurrentInvocationLimitExceeded",
                ));
            }
            let mut stale = Vec::new();
            let mut warm = None;
            if let Some(idle) = inner
                .idle
                .get_mut(&(spec.name.clone(), spec.version.clone()))
            {
                while let Some(s) = idle.pop() {
                    if s.spec.revision == spec.revision && !s.exited() {
                        warm = Some(s);
                        break;
                    }
                    stale.push(s);
                }
            }
            inner.live = inner.live.saturating_sub(stale.len());
            if warm.is_none() && inner.live >= self.max_sandboxes {
                // At the limit: give the slot of the least recently used idle sandbox (of any
                // function) to this invoke rather than throttle it.
                let victim = inner
                    .idle
                    .iter()
                    .flat_map(|(k, list)| {
                        list.iter()
                            .enumerate()
                            .map(move |(i, s)| (k.clone(), i, *s.last_used.lock()))
                    })
                    .min_by_key(|(_, _, used)| *used)
                    .map(|(k, i, _)| (k, i));
                match victim.and_then(|(k, i)| inner.idle.get_mut(&k).map(|list| list.remove(i))) {
                    Some(s) => {
                        inner.live -= 1;
                        stale.push(s);
                    }
                    None => return Err(ApiError::throttled("ConcurrentInvocationLimitExceeded")),
                }
            }
            if warm.is_none() {
                inner.live += 1;
            }
            *inner.inflight.entry(spec.name.clone()).or_default() += 1;
            // A warm sandbox already counts in `live`; the slot takes that count over.
            (
                warm,
                stale,
                Slot {
                    pools: self,
                    function: spec.name.clone(),
                    holds_live: true,
                },
            )
        };
        for s in stale {
            tokio::spawn(async move { s.stop("spindown").await });
        }
        let _running = m.concurrent.track();
        let sandbox = match warm {
            Some(s) => s,
            None => {
                m.cold_starts.inc();
                let init = Instant::now();
                let started = Sandbox::start(spec.clone(), &self.env).await;
                m.init_duration.observe_ms(init.elapsed());
                match started {
                    Ok(s) => {
                        let mut started = self.started.lock();
                        started.retain(|w| w.strong_count() > 0);
                        started.push(Arc::downgrade(&s));
                        s
                    }
                    Err(failure) => {
                        warn!(function = %spec.name, ?failure, "sandbox init failed");
                        return Ok(init_failure_result(failure, request_id));
                    }
                }
            }
        };
        let req_log_tail = req.log_tail;
        // The deadline starts with the invoke, after any cold start, as on AWS.
        let deadline_ms = epoch_ms() + spec.timeout.as_millis() as u64;
        let inv = Invocation {
            request_id: request_id.clone(),
            payload: req.payload,
            invoked_arn: req.invoked_arn,
            deadline_ms,
            trace_id: trace_id(),
            client_context: req.client_context,
        };
        let invoked = sandbox.invoke(inv, req_log_tail).await;
        m.duration.observe_ms(invoked.duration);
        let reusable = invoked.outcome.reusable() && !sandbox.exited();
        if reusable {
            slot.holds_live = false;
            let mut inner = self.inner.lock();
            inner
                .idle
                .entry((spec.name.clone(), spec.version.clone()))
                .or_default()
                .push(sandbox);
        } else {
            let reason = if matches!(invoked.outcome, Outcome::Timeout) {
                "timeout"
            } else {
                "failure"
            };
            tokio::spawn(async move { sandbox.stop(reason).await });
        }
        drop(slot);
        let (payload, function_error) = outcome_payload(invoked.outcome, &request_id, spec.timeout);
        Ok(InvokeResult {
            payload,
            function_error,
            log_tail: invoked.log_tail,
            request_id,
        })
    }

    /// Stops idle sandboxes of `function` (every version when `version` is `None`).
    pub(crate) fn flush(&self, function: &str, version: Option<&str>) {
        let drained: Vec<Arc<Sandbox>> = {
            let mut inner = self.inner.lock();
            let keys: Vec<_> = inner
                .idle
                .keys()
                .filter(|(f, v)| f == function && version.is_none_or(|want| v == want))
                .cloned()
                .collect();
            let mut out = Vec::new();
            for k in keys {
                out.extend(inner.idle.remove(&k).unwrap_or_default());
            }
            inner.live = inner.live.saturating_sub(out.len());
            out
        };
        for s in drained {
            tokio::spawn(async move { s.stop("spindown").await });
        }
    }

    fn reap(&self) {
        let now = Instant::now();
        let expired: Vec<Arc<Sandbox>> = {
            let mut inner = self.inner.lock();
            let mut out = Vec::new();
            for list in inner.idle.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|s| {
                    s.exited() || now.duration_since(*s.last_used.lock()) >= self.idle_timeout
                });
                *list = keep;
                out.extend(old);
            }
            inner.idle.retain(|_, v| !v.is_empty());
            inner.live = inner.live.saturating_sub(out.len());
            out
        };
        for s in expired {
            info!(function = %s.spec.name, sandbox = s.id, "stopping idle sandbox");
            tokio::spawn(async move { s.stop("spindown").await });
        }
    }

    /// Stops every sandbox, waiting for their SHUTDOWN deadlines.
    pub(crate) async fn stop_all(&self) {
        let all: Vec<Arc<Sandbox>> = {
            let mut inner = self.inner.lock();
            let mut all: Vec<Arc<Sandbox>> = inner.idle.drain().flat_map(|(_, v)| v).collect();
            inner.live = inner.live.saturating_sub(all.len());
            // Idle and busy alike: a busy one's invoke ends with Runtime.ExitError.
            for s in self.started.lock().drain(..).filter_map(|w| w.upgrade()) {
                if !all.iter().any(|x| x.id == s.id) {
                    all.push(s);
                }
            }
            all
        };
        let mut set = tokio::task::JoinSet::new();
        for s in all {
            set.spawn(async move { s.stop("spindown").await });
        }
        while set.join_next().await.is_some() {}
    }
}

/// Periodically stops idle sandboxes.
pub(crate) fn start_reaper(platform: Platform) {
    let weak = Arc::downgrade(&platform.inner);
    let period = (platform.config().idle_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    drop(platform);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(inner) = weak.upgrade() else { break };
            inner.pools.reap();
        }
    });
}

fn trace_id() -> String {
    let id = crate::new_uuid().simple().to_string();
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        epoch_ms() / 1000,
        &id[..24],
        &id[16..32]
    )
}

fn error_doc(error_type: &str, message: String) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({"errorType": error_type, "errorMessage": message}))
            .unwrap_or_default(),
    )
}

/// The single mapping from a sandbox outcome to Invoke's payload and `X-Amz-Function-Error`.
fn outcome_payload(
    outcome: Outcome,
    request_id: &str,
    timeout: Duration,
) -> (Bytes, Option<&'static str>) {
    match outcome {
        Outcome::Response(b) => (b, None),
        Outcome::Error(b) => (b, Some("Unhandled")),
        Outcome::Timeout => (
            error_doc(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                ),
            ),
            Some("Unhandled"),
        ),
        Outcome::Exit(how) => (
            error_doc(
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited with error: {how}"),
            ),
            Some("Unhandled"),
        ),
        Outcome::TooLarge => (
            error_doc(
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
                    .into(),
            ),
            Some("Unhandled"),
        ),
    }
}

fn init_failure_result(failure: InitFailure, request_id: String) -> InvokeResult {
    let payload = match failure {
        InitFailure::Error { body } => body,
        InitFailure::Exit {
            error_type,
            message,
        } => {
            let message = if error_type == "Runtime.ExitError" {
                format!("RequestId: {request_id} Error: Runtime exited with error: {message}")
            } else {
                format!("RequestId: {request_id} Error: {message}")
            };
            error_doc(error_type, message)
        }
        InitFailure::Timeout => error_doc(
            "Sandbox.Timedout",
            format!("RequestId: {request_id} Error: INIT did not complete within 10 seconds"),
        ),
    };
    InvokeResult {
        payload,
        function_error: Some("Unhandled"),
        log_tail: Vec::new(),
        request_id,
    }
}
