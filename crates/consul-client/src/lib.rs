//! A small blocking client for the Consul HTTP API: it speaks to lambdamesh or to a real Consul
//! the same way (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN` and the `X-Consul-Token` header, HTTPS
//! with a `CONSUL_CACERT` file). It is the one Consul client of the workspace: the CLI and the
//! registrator both call it. Each endpoint they use has a typed call ([`catalog`], [`agent`],
//! [`config_entries`], [`connect`], [`acl`], [`kv`]) with the query options of [`Tenancy`]; an error
//! answer becomes [`ClientError::Http`] carrying the server's own message, so a caller can show
//! exactly what the server said or classify it by status.
//!
//! It must not depend on the server crates (it speaks only the public wire format).

pub mod acl;
pub mod agent;
pub mod catalog;
pub mod config_entries;
pub mod connect;
pub mod kv;
mod tenancy;
mod tls;

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

pub use tenancy::{Tenancy, encode};
pub use tls::SetupError;

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; `message` is its body.
    #[error("Unexpected response code: {status} ({message})")]
    Http {
        method: &'static str,
        /// The request's path and query.
        path: String,
        status: u16,
        message: String,
    },
    /// No answer (connection, timeout) or an unreadable one.
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    /// The TLS handshake failed on a certificate: the server's is not trusted (wrong or missing
    /// `CONSUL_CACERT`, wrong name, expired) or the server refused ours. A configuration error:
    /// retrying cannot help. `message` names the CA setting to fix.
    #[error("TLS with {url} failed: {message}")]
    Tls { url: String, message: String },
    /// The answer is not the JSON the endpoint documents.
    #[error("cannot decode the answer of {url}: {message}")]
    Decode {
        method: &'static str,
        /// The request's path and query.
        path: String,
        url: String,
        message: String,
    },
}

/// A response with Consul's index header.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Value,
    pub index: Option<u64>,
}

/// How a client connects, beyond its address and token.
#[derive(Debug, Clone)]
pub struct Options {
    /// Upper bound of one request (a blocking query waits up to 10 minutes on the server).
    pub timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub max_idle_per_host: usize,
    /// A PEM file of CA certificates to trust for HTTPS instead of the built-in roots.
    pub ca_file: Option<String>,
}

impl Default for Options {
    /// What the CLI uses: long enough for a blocking query, ureq's pool size.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(660),
            max_idle_per_host: 3,
            ca_file: None,
        }
    }
}

/// A client bound to one server address and token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    /// The `CONSUL_CACERT` file trusted instead of the built-in roots, named in TLS errors.
    ca_file: Option<String>,
}

impl Client {
    /// `addr` is `host:port` or a URL (`http[s]://host:port`), as `CONSUL_HTTP_ADDR` allows.
    pub fn new(addr: &str, token: Option<String>) -> Self {
        Self {
            agent: agent(&Options::default(), None),
            base: base_url(addr),
            token: token.filter(|t| !t.is_empty()),
            ca_file: None,
        }
    }

    /// A client with explicit [`Options`].
    ///
    /// # Errors
    /// The CA file cannot be read or holds no certificate.
    pub fn with_options(
        addr: &str,
        token: Option<String>,
        options: &Options,
    ) -> Result<Self, SetupError> {
        let tls = options.ca_file.as_deref().map(tls::config).transpose()?;
        Ok(Self {
            agent: agent(options, tls),
            base: base_url(addr),
            token: token.filter(|t| !t.is_empty()),
            ca_file: options.ca_file.clone(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET path` (path includes the query string).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.call("GET", path, None)
    }

    /// `PUT path` with an optional JSON body.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn put(&self, path: &str, body: Option<&Value>) -> Result<Answer, ClientError> {
        let body = body.map(Value::to_string);
        self.call("PUT", path, body)
    }

    /// `DELETE path`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.call("DELETE", path, None)
    }

    /// `GET path`, decoded into `T`.
    pub(crate) fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let answer = self.get(path)?;
        self.decode("GET", path, answer.body)
    }

    /// `PUT path` with `body` serialized as JSON.
    pub(crate) fn put_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Answer, ClientError> {
        let text = serde_json::to_string(body).map_err(|e| ClientError::Decode {
            method: "PUT",
            path: path.to_owned(),
            url: format!("{}{path}", self.base),
            message: e.to_string(),
        })?;
        self.call("PUT", path, Some(text))
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Value,
    ) -> Result<T, ClientError> {
        serde_json::from_value(body).map_err(|e| ClientError::Decode {
            method,
            path: path.to_owned(),
            url: format!("{}{path}", self.base),
            message: e.to_string(),
        })
    }

    pub(crate) fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let token = self.token.as_deref();
        let resp = match method {
            "GET" => with_token(self.agent.get(&url), token).call(),
            "DELETE" => with_token(self.agent.delete(&url), token).call(),
            _ => {
                let req = with_token(self.agent.put(&url), token);
                match body {
                    Some(b) => req.header("Content-Type", "application/json").send(b),
                    None => req.send_empty(),
                }
            }
        };
        let transport = |e: ureq::Error| match tls::certificate_problem(&e, self.ca_file.as_deref())
        {
            Some(message) => ClientError::Tls {
                url: url.clone(),
                message,
            },
            None => ClientError::Transport {
                url: url.clone(),
                message: e.to_string(),
            },
        };
        let mut resp = resp.map_err(transport)?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = resp.body_mut().read_to_string().map_err(transport)?;
        if status >= 400 {
            return Err(ClientError::Http {
                method,
                path: path.to_owned(),
                status,
                message: text.trim().to_owned(),
            });
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| ClientError::Decode {
                method,
                path: path.to_owned(),
                url: url.clone(),
                message: e.to_string(),
            })?
        };
        Ok(Answer { body, index })
    }
}

fn with_token<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => req.header("X-Consul-Token", t),
        None => req,
    }
}

fn base_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("http://{addr}")
    }
}

fn agent(options: &Options, tls: Option<ureq::tls::TlsConfig>) -> ureq::Agent {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(options.timeout))
        .max_idle_connections_per_host(options.max_idle_per_host);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    ureq::Agent::new_with_config(builder.build())
}

/// Deserializes `null` as the type's default (Consul writes `null` for an empty list or map).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize as _;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
