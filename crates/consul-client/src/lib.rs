//! A small blocking client for the Consul HTTP API: it speaks to lambdamesh or to a real Consul
//! the same way (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN` and the `X-Consul-Token` header). It maps
//! an error answer to [`ClientError::Http`] carrying the server's own message, so a CLI can show
//! exactly what the server said. It must not depend on the server crates.

use std::time::Duration;

use serde_json::Value;

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; `message` is its body.
    #[error("Unexpected response code: {status} ({message})")]
    Http { status: u16, message: String },
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    #[error("cannot decode the answer of {url}: {message}")]
    Decode { url: String, message: String },
}

/// A response with Consul's index header.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Value,
    pub index: Option<u64>,
}

/// A client bound to one server address and token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `addr` is `host:port` or a URL (`http://host:port`), as `CONSUL_HTTP_ADDR` allows.
    pub fn new(addr: &str, token: Option<String>) -> Self {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(660)))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base,
            token: token.filter(|t| !t.is_empty()),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn finish(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, ClientError> {
        let mut resp = resp.map_err(|e| ClientError::Transport {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Transport {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        if status >= 400 {
            return Err(ClientError::Http {
                status,
                message: text.trim().to_owned(),
            });
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| ClientError::Decode {
                url: url.to_owned(),
                message: e.to_string(),
            })?
        };
        Ok(Answer { body, index })
    }

    /// `GET path` (path includes the query string).
    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        self.finish(&url, req.call())
    }

    /// `PUT path` with an optional JSON body.
    pub fn put(&self, path: &str, body: Option<&Value>) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.put(&url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let resp = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            None => req.send_empty(),
        };
        self.finish(&url, resp)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.delete(&url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        self.finish(&url, req.call())
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
