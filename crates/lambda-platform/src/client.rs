//! A small SigV4-signing client for this platform's API (or AWS's), used by the CLI, the
//! benchmarks and tests. It speaks plain HTTP only: the platform listens on loopback.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

use crate::{Credentials, sigv4};

/// Errors of [`Client`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not `http://host:port`.
    #[error("invalid endpoint {0}")]
    Endpoint(String),
    /// Connection or protocol failure.
    #[error("http: {0}")]
    Http(String),
    /// The service answered with an AWS error.
    #[error("{code} ({status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// AWS exception name.
        code: String,
        /// Message.
        message: String,
    },
}

/// A raw response.
#[derive(Debug)]
pub struct ClientResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl ClientResponse {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Signing HTTP client.
#[derive(Clone)]
pub struct Client {
    authority: String,
    creds: Credentials,
    region: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `endpoint` (`http://127.0.0.1:9001`).
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] for anything but `http://host:port`.
    pub fn new(endpoint: &str, creds: Credentials, region: &str) -> Result<Self, ClientError> {
        let authority = endpoint
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/').to_owned())
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| ClientError::Endpoint(endpoint.to_owned()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            authority,
            creds,
            region: region.to_owned(),
            http,
        })
    }

    /// Sends a signed request; `path_and_query` must already be percent-encoded.
    ///
    /// # Errors
    /// Transport errors only; any HTTP status is returned.
    pub async fn send(
        &self,
        service: &str,
        method: &str,
        path_and_query: &str,
        extra_headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<ClientResponse, ClientError> {
        let mut headers = HeaderMap::new();
        let hv = |v: &str| HeaderValue::from_str(v).map_err(|e| ClientError::Http(e.to_string()));
        headers.insert("host", hv(&self.authority)?);
        for (k, v) in extra_headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| ClientError::Http(e.to_string()))?,
                hv(v)?,
            );
        }
        let now = time::OffsetDateTime::now_utc();
        sigv4::sign(
            method,
            path_and_query,
            &mut headers,
            &body,
            &sigv4::Scope {
                creds: &self.creds,
                region: &self.region,
                service,
            },
            now,
        )
        .map_err(|e| ClientError::Http(e.to_string()))?;
        let method =
            Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Http(e.to_string()))?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path_and_query}", self.authority))
            .body(Full::new(body))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        *req.headers_mut() = headers;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok(ClientResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// A Lambda REST call returning its JSON body (`null` when empty).
    ///
    /// # Errors
    /// [`ClientError::Api`] for any status ≥ 300.
    pub async fn lambda(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let resp = self
            .send(
                "lambda",
                method,
                path_and_query,
                &[("content-type", "application/json")],
                bytes,
            )
            .await?;
        decode(resp, |v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    }

    /// A JSON-protocol call (`X-Amz-Target`).
    ///
    /// # Errors
    /// [`ClientError::Api`] for any status ≥ 300.
    pub async fn target(
        &self,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let resp = self
            .send(
                service,
                "POST",
                "/",
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", target),
                ],
                Bytes::from(body.to_string()),
            )
            .await?;
        decode(resp, |v| {
            v.get("message").and_then(Value::as_str).map(str::to_owned)
        })
    }

    /// Invokes a function synchronously; returns the raw response.
    ///
    /// # Errors
    /// Transport errors only.
    pub async fn invoke(
        &self,
        function: &str,
        payload: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<ClientResponse, ClientError> {
        let path = format!(
            "/2015-03-31/functions/{}/invocations",
            sigv4::uri_encode(function, true)
        );
        self.send("lambda", "POST", &path, headers, payload).await
    }
}

fn decode(
    resp: ClientResponse,
    message: impl Fn(&Value) -> Option<String>,
) -> Result<Value, ClientError> {
    let v: Value = if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
    };
    if resp.status >= 300 {
        let code = resp
            .header("x-amzn-errortype")
            .map(|c| c.split(':').next().unwrap_or(c).to_owned())
            .or_else(|| v.get("__type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "Unknown".into());
        return Err(ClientError::Api {
            status: resp.status,
            code,
            message: message(&v).unwrap_or_default(),
        });
    }
    Ok(v)
}
