//! A small SigV4-signing client for this platform's API (or AWS's), used by the CLI, the
//! benchmarks and tests. It speaks plain HTTP only: the platform listens on loopback. Requests
//! are built and signed by `aws-wire` (the one request builder, shared with the registrator and
//! the extension); this module only sends them over hyper's pooled async client, which is why it
//! lives with the platform (already on tokio and hyper) rather than in that runtime-free crate.

use aws_wire::{Endpoint, ErrorAnswer, JsonProtocol, Signer};
use bytes::Bytes;
use http::HeaderMap;
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
    endpoint: Endpoint,
    signer: Signer,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `endpoint` (`http://127.0.0.1:9001`).
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] for anything but `http://host:port`.
    pub fn new(endpoint: &str, creds: Credentials, region: &str) -> Result<Self, ClientError> {
        let parsed = endpoint
            .starts_with("http://")
            .then(|| Endpoint::parse(endpoint).ok())
            .flatten()
            .ok_or_else(|| ClientError::Endpoint(endpoint.to_owned()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            endpoint: parsed,
            signer: Signer::new(creds, None, region),
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
        let req = self
            .signer
            .request(
                &self.endpoint,
                service,
                method,
                path_and_query,
                extra_headers,
                body,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| ClientError::Http(e.to_string()))?
            .map(Full::new);
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
        decode(resp)
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
                    ("content-type", JsonProtocol::V1_1.content_type()),
                    ("x-amz-target", target),
                ],
                Bytes::from(body.to_string()),
            )
            .await?;
        decode(resp)
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

fn decode(resp: ClientResponse) -> Result<Value, ClientError> {
    if resp.status >= 300 {
        let answer = ErrorAnswer::from_response(resp.status, &resp.headers, &resp.body);
        return Err(ClientError::Api {
            status: answer.status,
            code: answer.code,
            message: answer.message,
        });
    }
    Ok(if resp.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
    })
}
