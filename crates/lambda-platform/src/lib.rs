//! A local, AWS-compatible Lambda platform: the Lambda REST API (functions, versions, aliases,
//! layers, tags, Invoke), the Resource Groups Tagging API, Parameter Store (SSM JSON protocol) and
//! EventBridge-style rules, all behind SigV4 verification, plus function sandboxes run as local
//! processes, each with its own Runtime API and Extensions API endpoint on loopback.
//!
//! It must behave like AWS on the wire so that AWS's own clients (boto3, the AWS CLI, Envoy's
//! `aws_lambda` filter) and runtimes (`awslambdaric`, `lambda_runtime`) work against it unchanged.
//! It must not depend on the rest of lambdamesh (no mesh-model, store or server crates), on any AWS
//! SDK, or on Docker: a function sandbox is a plain child process.
//!
//! ```text
//!   client --SigV4--> api: routing, typed requests decoded once, typed answers encoded, errors (wire)
//!                      |                          |                          |
//!                      v                          v                          v
//!                  functions                 ssm | tagging | sqs        events: rules, PutEvents,
//!   (lifecycle, versions, aliases, qualifier          |                  schedules, matching
//!    resolution with weights, invokes) <------------- deliveries to function targets -+
//!          | Event invokes, deliveries            |  (sqs: journal, fsync before answering)
//!          v                                      v
//!     async_invoke: journal (fsync before the 202), attempts, maximum age,
//!                   destinations and dead-letter queues --> sqs | functions | events
//!                      |  \--> state --(fsync+rename)--> data dir                     |
//!                      |   \-> CloudTrail-shaped events ------------------------------+
//!                      v
//!                  pool (per function version): cold start / warm reuse / idle stop
//!                      v
//!                  sandbox: runtime + extensions processes <--> Runtime/Extensions API (own port)
//! ```

mod api;
pub mod arn;
mod async_invoke;
pub mod client;
pub mod code;
mod decode;
pub mod events;
pub mod functions;
mod httpd;
pub mod journal;
mod metrics;
mod pool;
mod sandbox;
pub mod sigv4;
mod sqs;
pub mod ssm;
mod state;
mod tagging;
pub mod wire;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

pub use pool::{InvokeRequest, InvokeResult};

/// Accepted credentials for SigV4 verification (and what the platform's client signs with).
pub use aws_wire::Credentials;

/// Typed, validated configuration of one platform instance.
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    /// Where functions, code, layers, parameters, rules and logs are kept.
    pub data_dir: PathBuf,
    /// The only credentials accepted by SigV4 verification.
    pub credentials: Credentials,
    /// Region in ARNs and the SigV4 credential scope.
    pub region: String,
    /// Twelve-digit account id in ARNs.
    pub account: String,
    /// Python interpreter with `awslambdaric` installed, used for `python3.x` runtimes.
    pub python: PathBuf,
    /// A warm sandbox idle this long is stopped (SHUTDOWN to extensions, then killed).
    pub idle_timeout: Duration,
    /// Upper bound of live sandboxes across all functions (the account concurrency limit).
    pub max_sandboxes: usize,
    /// Length of one "minute" for `rate()` schedules and async retry back-off; tests shrink it.
    pub minute: Duration,
    /// Stop a sandbox's processes between invokes (SIGSTOP/SIGCONT), as Lambda freezes them.
    pub freeze: bool,
}

impl PlatformConfig {
    /// Defaults matching `lambdamesh lambda serve` without flags.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            credentials: Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
            },
            region: "us-east-1".into(),
            account: "123456789012".into(),
            python: PathBuf::from("python3"),
            idle_timeout: Duration::from_secs(300),
            max_sandboxes: 64,
            minute: Duration::from_secs(60),
            freeze: true,
        }
    }
}

/// Errors that stop the platform from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The data dir could not be created or read.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A persisted state file could not be decoded.
    #[error("corrupt state file {path}: {message}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration is invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// The listener failed.
    #[error("listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The platform's own async runtime could not be started ([`Background`]).
    #[error("cannot start the platform's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The platform's thread panicked ([`Background`]).
    #[error("the platform's thread panicked")]
    Panicked,
}

/// Serves the platform on `listener` until `shutdown` resolves, then drains connections and stops
/// every sandbox (delivering SHUTDOWN to extensions with its deadline).
///
/// # Errors
/// Fails when the data dir cannot be opened or its state is corrupt.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: PlatformConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PlatformError> {
    let addr = listener.local_addr().map_err(PlatformError::Listener)?;
    let platform = Platform::open(config, addr).await?;
    // Sandboxes are stopped as soon as shutdown begins, concurrently with the connection drain,
    // so an invoke in flight ends (Runtime.ExitError) instead of holding the drain open.
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let stopper = platform.clone();
    let shutdown = async move {
        shutdown.await;
        tokio::spawn(async move {
            stopper.stop().await;
            let _ = stopped_tx.send(());
        });
    };
    let result = httpd::serve(listener, api::handler(platform.clone()), shutdown).await;
    if stopped_rx.await.is_err() {
        platform.stop().await;
    }
    result.map_err(PlatformError::Listener)
}

/// The platform serving on a thread of its own with a single-threaded runtime, as `lambdamesh
/// lambda serve` runs it (an invoke's hand-offs then never cross threads), for programs and tests
/// that embed it. Dropping it stops it and waits, as [`Background::stop`] does.
pub struct Background {
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), PlatformError>>>,
}

impl Background {
    /// Starts serving on `listener`.
    ///
    /// # Errors
    /// The listener cannot be used. Failures of the platform itself (its data dir, its state)
    /// come from [`Background::stop`].
    pub fn start(
        listener: std::net::TcpListener,
        config: PlatformConfig,
    ) -> Result<Background, PlatformError> {
        listener
            .set_nonblocking(true)
            .map_err(PlatformError::Listener)?;
        let endpoint = format!(
            "http://{}",
            listener.local_addr().map_err(PlatformError::Listener)?
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(PlatformError::Runtime)?;
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(PlatformError::Listener)?;
                serve(listener, config, async move {
                    let _ = stopped.await;
                })
                .await
            })
        });
        Ok(Background {
            endpoint,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Stops the platform (SHUTDOWN to extensions, sandboxes stopped, connections drained) and
    /// waits for its thread.
    ///
    /// # Errors
    /// What made the platform fail, if it did.
    pub fn stop(mut self) -> Result<(), PlatformError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), PlatformError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| PlatformError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            tracing::warn!(error = %e, "the local platform ended with an error");
        }
    }
}

/// A random (version 4) UUID from the thread-local generator. Request ids are made on every
/// call (three per invoke), and `Uuid::new_v4` asks the kernel each time.
pub(crate) fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// The running platform: shared state, sandbox pools and the event bus.
#[derive(Clone)]
pub(crate) struct Platform {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: PlatformConfig,
    pub(crate) endpoint: String,
    pub(crate) state: state::Store,
    pub(crate) pools: Arc<pool::Pools>,
    pub(crate) ssm: ssm::ParameterStore,
    pub(crate) bus: events::Bus,
    pub(crate) sqs: sqs::Queues,
    pub(crate) async_queue: async_invoke::AsyncQueue,
}

impl Platform {
    async fn open(config: PlatformConfig, addr: SocketAddr) -> Result<Self, PlatformError> {
        if config.account.len() != 12 || !config.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PlatformError::Config(format!(
                "account {:?} is not 12 digits",
                config.account
            )));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| PlatformError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let state = state::Store::open(&config.data_dir)?;
        let ssm = ssm::ParameterStore::open(&config.data_dir, &config.region, &config.account)?;
        let bus = events::Bus::open(&config.data_dir)?;
        let sqs = sqs::Queues::open(&config.data_dir, &config.region, &config.account).await?;
        let (async_queue, replayed) = async_invoke::AsyncQueue::open(&config.data_dir).await?;
        let endpoint = format!("http://{addr}");
        let pools = Arc::new(pool::Pools::new(&config, &endpoint));
        let platform = Platform {
            inner: Arc::new(Inner {
                config,
                endpoint,
                state,
                pools,
                ssm,
                bus,
                sqs,
                async_queue,
            }),
        };
        events::start(platform.clone());
        async_invoke::AsyncQueue::resume(&platform, replayed);
        pool::start_reaper(platform.clone());
        Ok(platform)
    }

    async fn stop(&self) {
        self.inner.bus.close();
        // Queued events stay in the journal and run after the next start.
        self.inner.async_queue.close().await;
        self.inner.pools.stop_all().await;
    }

    pub(crate) fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }
}
