//! The lambdamesh control-plane server: Consul's HTTP API (catalog, agent, health, config
//! entries, intentions, ACL, status) over the durable [`store`], plus the agent duties of a
//! single-node server (its own node registration, TTL check expiry).
//!
//! Request flow: axum route → [`query::Query`] parsed once → token resolved to an authorizer
//! ([`authz`]) → a pure decode/validate in `mesh-model` → one [`store::Op`] written, or a read
//! through [`query::blocking`] → JSON in Consul's shape. Errors become responses only in
//! [`error`]. This crate must not know about Envoy, xDS or AWS.

pub mod api;
pub mod authz;
pub mod config;
pub mod error;
pub mod query;
mod ttl;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{AclConfig, ServerConfig};
use store::Store;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub ttl: Arc<ttl::TtlTimers>,
    pub leaves: Arc<api::connect_ca::LeafCache>,
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
}

impl AppState {
    /// Opens the store in the configured data dir and prepares the agent's state.
    ///
    /// # Errors
    /// The store cannot be opened.
    pub async fn open(config: ServerConfig) -> Result<Self, ServerError> {
        let store = Store::open(&config.data_dir, store::StoreOptions::default())?;
        let app = Self {
            store,
            config: Arc::new(config),
            ttl: Arc::new(ttl::TtlTimers::default()),
            leaves: Arc::default(),
        };
        api::connect_ca::init(&app)
            .await
            .map_err(|e| ServerError::SelfRegistration(e.message))?;
        api::acl::init(&app)
            .await
            .map_err(|e| ServerError::SelfRegistration(e.message))?;
        api::agent::register_self(&app)
            .await
            .map_err(|e| ServerError::SelfRegistration(e.message))?;
        Ok(app)
    }
}

/// Serves the HTTP API on `listener` until `shutdown` resolves, then drains in-flight requests.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    app: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let ttl_task = tokio::spawn(ttl::run(app.clone()));
    let ca_task = tokio::spawn(api::connect_ca::run(app.clone()));
    let router = api::router(app);
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Http);
    ttl_task.abort();
    ca_task.abort();
    result
}
