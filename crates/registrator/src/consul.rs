//! Consul access behind the small [`Consul`] trait (so tests can wrap it with faults), and its
//! HTTP implementation over the workspace's one Consul client (`consul-client`: blocking ureq,
//! HTTPS with `CONSUL_CACERT`, tokens). This module only moves those calls off the async
//! runtime, turns the client's answers into what the engine needs, and classifies errors for
//! retries (transient: no answer, 429 or 5xx; failed: anything else, including a certificate
//! the client does not trust, which is configuration and names `CONSUL_CACERT`).

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
};

use consul_client::{Client, ClientError, Options};
use serde_json::Value;

use crate::{
    plan::Ca,
    tags::{MANAGED_TAG, Scope},
};

/// Why a Consul call failed, classified for retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsulError {
    /// Transport error, 5xx or 429: retry.
    #[error("transient: {0}")]
    Transient(String),
    /// Any other answer.
    #[error("{0}")]
    Failed(String),
}

impl ConsulError {
    /// Whether a retry may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, ConsulError::Transient(_))
    }
}

/// A leaf certificate with its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The services on the registrator's node in one scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeServices {
    /// Carrying [`MANAGED_TAG`].
    pub owned: BTreeSet<String>,
    /// Anything else.
    pub foreign: BTreeSet<String>,
}

/// What the registrator needs from Consul.
pub trait Consul: Send + Sync + 'static {
    /// The datacenter of the agent we talk to.
    fn local_datacenter(&self) -> impl Future<Output = Result<String, ConsulError>> + Send;
    /// Services on `node` in `scope`.
    fn node_services(
        &self,
        scope: Scope,
        node: String,
    ) -> impl Future<Output = Result<NodeServices, ConsulError>> + Send;
    /// All `service-defaults` entries in `scope`, by name.
    fn service_defaults(
        &self,
        scope: Scope,
    ) -> impl Future<Output = Result<BTreeMap<String, Value>, ConsulError>> + Send;
    /// One `service-defaults` entry (`None` when absent).
    fn service_default(
        &self,
        scope: Scope,
        name: String,
    ) -> impl Future<Output = Result<Option<Value>, ConsulError>> + Send;
    /// Namespaces of a partition (Enterprise).
    fn namespaces(
        &self,
        partition: String,
    ) -> impl Future<Output = Result<Vec<String>, ConsulError>> + Send;
    /// `PUT /v1/config`.
    fn put_config(
        &self,
        scope: Scope,
        entry: Value,
    ) -> impl Future<Output = Result<(), ConsulError>> + Send;
    /// `DELETE /v1/config/service-defaults/<name>`.
    fn delete_config(
        &self,
        scope: Scope,
        name: String,
    ) -> impl Future<Output = Result<(), ConsulError>> + Send;
    /// `PUT /v1/catalog/register`.
    fn register(
        &self,
        scope: Scope,
        body: Value,
    ) -> impl Future<Output = Result<(), ConsulError>> + Send;
    /// `PUT /v1/catalog/deregister`.
    fn deregister(
        &self,
        scope: Scope,
        node: String,
        service_id: String,
    ) -> impl Future<Output = Result<(), ConsulError>> + Send;
    /// The active root and trust domain.
    fn ca(&self) -> impl Future<Output = Result<Ca, ConsulError>> + Send;
    /// A leaf for `service` from the agent (agent partition, as the reference since PR #119).
    fn leaf(&self, service: String) -> impl Future<Output = Result<Leaf, ConsulError>> + Send;
}

/// Errors building the HTTP client.
pub type ConsulSetupError = consul_client::SetupError;

/// Consul's HTTP API.
#[derive(Clone)]
pub struct HttpConsul {
    client: Client,
}

/// The entry kind the registrator reads and writes.
const SERVICE_DEFAULTS: &str = "service-defaults";

impl From<ClientError> for ConsulError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Transport { url, message } => {
                ConsulError::Transient(format!("{url}: {message}"))
            }
            // A certificate problem is configuration: no retry, the message names CONSUL_CACERT.
            ClientError::Tls { url, message } => ConsulError::Failed(format!("{url}: {message}")),
            ClientError::Http {
                method,
                path,
                status,
                message,
            } => {
                let text = format!("{method} {path}: {status} {message}");
                if status == 429 || status >= 500 {
                    ConsulError::Transient(text)
                } else {
                    ConsulError::Failed(text)
                }
            }
            ClientError::Decode {
                method,
                path,
                message,
                ..
            } => ConsulError::Failed(format!("{method} {path}: bad JSON: {message}")),
        }
    }
}

impl HttpConsul {
    /// A client for `base` (`http[s]://host:port`) with an optional token and CA file.
    ///
    /// # Errors
    /// The CA file cannot be read or holds no certificate.
    pub fn new(
        base: &str,
        token: Option<String>,
        cacert: Option<&str>,
    ) -> Result<Self, ConsulSetupError> {
        let options = Options {
            timeout: std::time::Duration::from_secs(30),
            max_idle_per_host: 64,
            ca_file: cacert.map(str::to_owned),
        };
        Ok(Self {
            client: Client::with_options(base, token, &options)?,
        })
    }

    /// Over HTTPS, one request to see that the server's certificate is trusted, so a wrong or
    /// missing `CONSUL_CACERT` stops the registrator at start-up with the setting named instead
    /// of failing every call later. Any other outcome (even no answer: Consul may start later)
    /// is left to the calls themselves.
    ///
    /// # Errors
    /// [`ConsulError::Failed`] naming the certificate problem and the CA setting.
    pub async fn check_trust(&self) -> Result<(), ConsulError> {
        if !self.client.base_url().starts_with("https://") {
            return Ok(());
        }
        let client = self.client.clone();
        match tokio::task::spawn_blocking(move || client.get("/v1/status/leader")).await {
            Ok(Err(e @ ClientError::Tls { .. })) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Runs one blocking client call on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, ConsulError>
    where
        T: Send + 'static,
        F: FnOnce(&Client) -> Result<T, ClientError> + Send + 'static,
    {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || f(&client).map_err(ConsulError::from))
            .await
            .map_err(|e| ConsulError::Transient(format!("worker: {e}")))?
    }
}

impl Consul for HttpConsul {
    async fn local_datacenter(&self) -> Result<String, ConsulError> {
        let agent = self.call(Client::agent_self).await?;
        agent
            .config
            .datacenter
            .filter(|dc| !dc.is_empty())
            .ok_or_else(|| ConsulError::Failed("/v1/agent/self has no Config.Datacenter".into()))
    }

    async fn node_services(&self, scope: Scope, node: String) -> Result<NodeServices, ConsulError> {
        let found = self
            .call(move |c| c.catalog_node(&node, &scope.tenancy()))
            .await?;
        let mut out = NodeServices::default();
        // A missing node answers `null`: nothing registered yet.
        for s in found.into_iter().flat_map(|n| n.services.into_values()) {
            if s.tags.iter().any(|t| t == MANAGED_TAG) {
                out.owned.insert(s.id);
            } else {
                out.foreign.insert(s.id);
            }
        }
        Ok(out)
    }

    async fn service_defaults(&self, scope: Scope) -> Result<BTreeMap<String, Value>, ConsulError> {
        let entries = self
            .call(move |c| c.config_entries(SERVICE_DEFAULTS, &scope.tenancy()))
            .await?;
        Ok(entries.into_iter().map(|e| (e.name, e.json)).collect())
    }

    async fn service_default(
        &self,
        scope: Scope,
        name: String,
    ) -> Result<Option<Value>, ConsulError> {
        self.call(
            move |c| match c.config_entry(SERVICE_DEFAULTS, &name, &scope.tenancy()) {
                Ok(e) => Ok(Some(e.json)),
                Err(ClientError::Http { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            },
        )
        .await
    }

    async fn namespaces(&self, partition: String) -> Result<Vec<String>, ConsulError> {
        let list = self.call(move |c| c.namespaces(&partition)).await?;
        Ok(list
            .into_iter()
            .map(|n| n.name)
            .filter(|n| !n.is_empty())
            .collect())
    }

    async fn put_config(&self, scope: Scope, entry: Value) -> Result<(), ConsulError> {
        self.call(move |c| c.put_config_entry(&entry, &scope.tenancy(), None))
            .await
            .map(drop)
    }

    async fn delete_config(&self, scope: Scope, name: String) -> Result<(), ConsulError> {
        self.call(move |c| c.delete_config_entry(SERVICE_DEFAULTS, &name, &scope.tenancy()))
            .await
    }

    async fn register(&self, scope: Scope, body: Value) -> Result<(), ConsulError> {
        self.call(move |c| c.catalog_register(&body, &scope.tenancy()))
            .await
    }

    async fn deregister(
        &self,
        scope: Scope,
        node: String,
        service_id: String,
    ) -> Result<(), ConsulError> {
        self.call(move |c| c.catalog_deregister(&node, &service_id, &scope.tenancy()))
            .await
    }

    async fn ca(&self) -> Result<Ca, ConsulError> {
        let roots = self.call(Client::ca_roots).await?;
        let root = roots
            .active()
            .ok_or_else(|| ConsulError::Failed("no active CA root".into()))?;
        Ok(Ca {
            root_pem: root.root_cert.clone(),
            trust_domain: roots.trust_domain.clone(),
        })
    }

    async fn leaf(&self, service: String) -> Result<Leaf, ConsulError> {
        let name = service.clone();
        let leaf = self.call(move |c| c.leaf_cert(&name)).await?;
        if leaf.cert_pem.is_empty() || leaf.private_key_pem.is_empty() {
            return Err(ConsulError::Failed(format!(
                "leaf of {service} is incomplete"
            )));
        }
        Ok(Leaf {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.private_key_pem,
        })
    }
}
