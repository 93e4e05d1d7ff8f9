//! The lambdamesh control-plane server: Consul's HTTP API (catalog, agent, health, config
//! entries, intentions, ACL, status) over the durable [`store`], plus the runtime duties of a
//! single-node server: the Connect CA ([`connect`]), ACL start-up (`acl`), the agent's own node
//! and TTL check expiry (`agent`, `ttl`).
//!
//! Request flow: axum route → the `api::Ctx` extractor parses the [`query::Query`] once and
//! resolves the token to an authorizer (`authz`) → a pure decode/validate in `mesh-model` →
//! one [`store::Op`] written or a runtime service called, or a read through
//! [`query::blocking`] → JSON in Consul's shape (catalog and health rows: `rows`). Errors
//! become responses only in [`error`]. Envoy configuration is compiled by the `xds` crate;
//! [`xds_source`] only feeds it values from the store and serves the result over ADS. This
//! crate must not know about AWS.

mod acl;
mod agent;
pub mod api;
mod authz;
mod background;
pub mod config;
pub mod connect;
pub mod error;
pub mod federation;
mod intentions;
pub mod metrics;
pub mod query;
mod rows;
mod ttl;
mod ui;
pub mod xds_source;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use background::Background;
pub use config::{AclConfig, ServerConfig};
use store::Store;

/// Shared state of the HTTP handlers: one `Arc`, because axum clones the state for every
/// request several times over (router, middleware, extractors). Cloning the fields one by one
/// cost about 15 atomic reference counts per clone, contended between cores: 20 % of a busy
/// replica's CPU in a profile of the HA write benchmark (`docs/benchmarks.md`).
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct App {
    pub(crate) store: Store,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) ttl: Arc<ttl::TtlTimers>,
    pub(crate) leaves: Arc<connect::LeafCache>,
    /// What proxies rejected and acknowledged (served at `/v1/internal/xds/status`).
    pub(crate) xds_nacks: Arc<xds::ads::NackLog>,
    pub(crate) xds_acks: Arc<xds::ads::AckLog>,
    /// What `/v1/agent/metrics` reports (`metrics.rs`).
    pub(crate) metrics: Arc<metrics::ServerMetrics>,
    /// The inter-server protocol's state (`federation.rs`).
    pub(crate) federation: Arc<federation::Federation>,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("http server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error("cannot register the agent's own node: {0}")]
    SelfRegistration(String),
    /// The thread or runtime of a [`Background`] server could not run.
    #[error("cannot run the server's thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl AppState {
    /// Opens the store in the configured data dir and prepares the agent's state.
    ///
    /// # Errors
    /// The store cannot be opened.
    pub async fn open(config: ServerConfig) -> Result<Self, ServerError> {
        let store = match &config.store {
            config::StoreChoice::Embedded => {
                Store::open(&config.data_dir, store::StoreOptions::default())?
            }
            config::StoreChoice::Etcd(opts) => Store::open_etcd((**opts).clone()).await?,
        };
        let leaves = Arc::new(connect::LeafCache::open(&config.data_dir));
        let app = Self(Arc::new(App {
            store,
            config: Arc::new(config),
            ttl: Arc::new(ttl::TtlTimers::default()),
            leaves,
            xds_nacks: Arc::default(),
            xds_acks: Arc::default(),
            metrics: Arc::default(),
            federation: Arc::default(),
        }));
        // The start-up failures keep the text the HTTP API would give them.
        let failed = |e: error::ApiError| ServerError::SelfRegistration(e.message);
        // A secondary's CA is an intermediate of the primary's root: it has no root of its own
        // and gets its trust domain when it joins (`federation/secondary.rs`).
        let cfg = &app.config;
        if !cfg.federation.is_secondary(&cfg.datacenter) {
            connect::init(&app).await.map_err(|e| failed(e.into()))?;
        }
        acl::init(&app).await.map_err(|e| failed(e.into()))?;
        agent::register_self(&app)
            .await
            .map_err(|e| failed(e.into()))?;
        Ok(app)
    }
}

/// Serves the HTTP API, and ADS on `grpc` when given, until `shutdown` resolves.
///
/// # Errors
/// A listener fails.
pub async fn serve_all(
    app: AppState,
    http: TcpListener,
    grpc: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_federated(app, http, grpc, None, shutdown).await
}

/// [`serve_all`], and the inter-server protocol on `server` when given (`federation.rs`),
/// with a secondary's task that joins and follows the primary.
///
/// # Errors
/// A listener fails.
pub async fn serve_federated(
    app: AppState,
    http: TcpListener,
    grpc: Option<TcpListener>,
    server: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ttl_task = tokio::spawn(ttl::run(app.clone()));
    let ca_task = tokio::spawn(connect::run(app.clone()));
    let grpc_task = grpc.map(|l| {
        let source = Arc::new(xds_source::StoreSource::new(app.clone()));
        let ads = xds::ads::Ads::new(source, app.xds_nacks.clone(), app.xds_acks.clone())
            .with_metrics(app.metrics.ads.clone());
        tokio::spawn(xds::ads::serve(l, ads, stopped(stop_rx.clone())))
    });
    let server_task =
        server.map(|l| tokio::spawn(federation::serve(app.clone(), l, stop_rx.clone())));
    let secondary_tasks = federation::start_secondary(&app);
    let router = api::router(app);
    let http_rx = stop_rx.clone();
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // A make-service that clones the finished router (one `Arc`) per connection: given the
    // `Router` itself, axum rebuilds every route's state per connection (`Router::with_state`
    // over ~100 routes), which was most of the cost of a request on a new connection.
    let result = axum::serve(http, router.into_make_service())
        .with_graceful_shutdown(stopped(http_rx))
        .await
        .map_err(ServerError::Http);
    if let Some(t) = grpc_task {
        match t.await {
            Ok(Err(e)) => tracing::error!(error = %e, "xDS server failed"),
            Err(e) => tracing::error!(error = %e, "xDS server task failed"),
            Ok(Ok(())) => {}
        }
    }
    signal.abort();
    if let Some(t) = server_task {
        t.abort();
    }
    for t in secondary_tasks {
        t.abort();
    }
    ttl_task.abort();
    ca_task.abort();
    result
}
