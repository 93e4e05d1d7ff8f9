//! Consul access behind the small [`Consul`] trait (so tests can wrap it with faults), and its
//! HTTP implementation over ureq (HTTPS with `CONSUL_CACERT` supported). It speaks to our server
//! or a real Consul the same way; the Consul JSON it reads is mapped here only.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

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
#[derive(Debug, thiserror::Error)]
pub enum ConsulSetupError {
    #[error("cannot read CONSUL_CACERT {path}: {source}")]
    CaCert {
        path: String,
        source: std::io::Error,
    },
    #[error("CONSUL_CACERT {0} holds no PEM certificate")]
    NoCert(String),
}

struct Inner {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// Consul's HTTP API.
#[derive(Clone)]
pub struct HttpConsul {
    inner: Arc<Inner>,
}

fn pem_certs(pem: &str) -> Vec<ureq::tls::Certificate<'static>> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let tail = &rest[start..];
        let Some(end) = tail.find("-----END CERTIFICATE-----") else {
            break;
        };
        let block = &tail[..end + "-----END CERTIFICATE-----".len()];
        if let Ok(c) = ureq::tls::Certificate::from_pem(block.as_bytes()) {
            out.push(c.to_owned());
        }
        rest = &tail[block.len()..];
    }
    out
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
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_idle_connections_per_host(64);
        if let Some(path) = cacert {
            let pem = std::fs::read_to_string(path).map_err(|source| ConsulSetupError::CaCert {
                path: path.to_owned(),
                source,
            })?;
            let certs = pem_certs(&pem);
            if certs.is_empty() {
                return Err(ConsulSetupError::NoCert(path.to_owned()));
            }
            builder = builder.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                agent: ureq::Agent::new_with_config(builder.build()),
                base: base.trim_end_matches('/').to_owned(),
                token: token.filter(|t| !t.is_empty()),
            }),
        })
    }

    async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<Value>,
    ) -> Result<Value, ConsulError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.call(method, &path, body))
            .await
            .map_err(|e| ConsulError::Transient(format!("worker: {e}")))?
    }
}

impl Inner {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, ConsulError> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("Content-Type", "application/json");
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let req = req
            .body(bytes)
            .map_err(|e| ConsulError::Failed(format!("request: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| ConsulError::Transient(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ConsulError::Transient(format!("{url}: {e}")))?;
        if status == 429 || status >= 500 {
            return Err(ConsulError::Transient(format!(
                "{method} {path}: {status} {}",
                text.trim()
            )));
        }
        if status >= 400 {
            return Err(ConsulError::Failed(format!(
                "{method} {path}: {status} {}",
                text.trim()
            )));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| ConsulError::Failed(format!("{method} {path}: bad JSON: {e}")))
    }
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn with_query(path: &str, scope: &Scope) -> String {
    format!("{path}{}", scope.query())
}

impl Consul for HttpConsul {
    async fn local_datacenter(&self) -> Result<String, ConsulError> {
        let v = self.call("GET", "/v1/agent/self".into(), None).await?;
        let dc = v
            .get("Config")
            .map(|c| str_field(c, "Datacenter"))
            .unwrap_or_default();
        if dc.is_empty() {
            return Err(ConsulError::Failed(
                "/v1/agent/self has no Config.Datacenter".into(),
            ));
        }
        Ok(dc.to_owned())
    }

    async fn node_services(&self, scope: Scope, node: String) -> Result<NodeServices, ConsulError> {
        let path = with_query(
            &format!("/v1/catalog/node/{}", consul_client::encode(&node)),
            &scope,
        );
        let v = self.call("GET", path, None).await?;
        let mut out = NodeServices::default();
        // A missing node answers `null`: nothing registered yet.
        let services = v.get("Services").and_then(Value::as_object);
        for s in services.into_iter().flat_map(|m| m.values()) {
            let id = str_field(s, "ID").to_owned();
            let owned = s
                .get("Tags")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(MANAGED_TAG)));
            if owned {
                out.owned.insert(id);
            } else {
                out.foreign.insert(id);
            }
        }
        Ok(out)
    }

    async fn service_defaults(&self, scope: Scope) -> Result<BTreeMap<String, Value>, ConsulError> {
        let v = self
            .call(
                "GET",
                with_query("/v1/config/service-defaults", &scope),
                None,
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|e| (str_field(e, "Name").to_owned(), e.clone()))
            .collect())
    }

    async fn service_default(
        &self,
        scope: Scope,
        name: String,
    ) -> Result<Option<Value>, ConsulError> {
        let path = with_query(
            &format!(
                "/v1/config/service-defaults/{}",
                consul_client::encode(&name)
            ),
            &scope,
        );
        match self.call("GET", path, None).await {
            Ok(v) => Ok(Some(v)),
            Err(ConsulError::Failed(m)) if m.contains(": 404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn namespaces(&self, partition: String) -> Result<Vec<String>, ConsulError> {
        let v = self
            .call(
                "GET",
                format!(
                    "/v1/namespaces?partition={}",
                    consul_client::encode(&partition)
                ),
                None,
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|n| str_field(n, "Name").to_owned())
            .filter(|n| !n.is_empty())
            .collect())
    }

    async fn put_config(&self, scope: Scope, entry: Value) -> Result<(), ConsulError> {
        self.call("PUT", with_query("/v1/config", &scope), Some(entry))
            .await
            .map(drop)
    }

    async fn delete_config(&self, scope: Scope, name: String) -> Result<(), ConsulError> {
        let path = with_query(
            &format!(
                "/v1/config/service-defaults/{}",
                consul_client::encode(&name)
            ),
            &scope,
        );
        self.call("DELETE", path, None).await.map(drop)
    }

    async fn register(&self, scope: Scope, body: Value) -> Result<(), ConsulError> {
        self.call(
            "PUT",
            with_query("/v1/catalog/register", &scope),
            Some(body),
        )
        .await
        .map(drop)
    }

    async fn deregister(
        &self,
        scope: Scope,
        node: String,
        service_id: String,
    ) -> Result<(), ConsulError> {
        let body = serde_json::json!({"Node": node, "ServiceID": service_id});
        self.call(
            "PUT",
            with_query("/v1/catalog/deregister", &scope),
            Some(body),
        )
        .await
        .map(drop)
    }

    async fn ca(&self) -> Result<Ca, ConsulError> {
        let v = self
            .call("GET", "/v1/agent/connect/ca/roots".into(), None)
            .await?;
        let active = str_field(&v, "ActiveRootID");
        let root = v
            .get("Roots")
            .and_then(Value::as_array)
            .and_then(|r| {
                r.iter()
                    .find(|r| str_field(r, "ID") == active && !active.is_empty())
            })
            .ok_or_else(|| ConsulError::Failed("no active CA root".into()))?;
        Ok(Ca {
            root_pem: str_field(root, "RootCert").to_owned(),
            trust_domain: str_field(&v, "TrustDomain").to_owned(),
        })
    }

    async fn leaf(&self, service: String) -> Result<Leaf, ConsulError> {
        let v = self
            .call(
                "GET",
                format!(
                    "/v1/agent/connect/ca/leaf/{}",
                    consul_client::encode(&service)
                ),
                None,
            )
            .await?;
        let leaf = Leaf {
            cert_pem: str_field(&v, "CertPEM").to_owned(),
            key_pem: str_field(&v, "PrivateKeyPEM").to_owned(),
        };
        if leaf.cert_pem.is_empty() || leaf.key_pem.is_empty() {
            return Err(ConsulError::Failed(format!(
                "leaf of {service} is incomplete"
            )));
        }
        Ok(leaf)
    }
}
