//! The platform's public endpoint: SigV4 verification, then dispatch to the Lambda REST API or
//! to a JSON-protocol service chosen by `X-Amz-Target` (SSM, Resource Groups Tagging,
//! EventBridge, SQS). `GET /metrics` (Prometheus' text format, `metrics.rs`) needs no signature,
//! as a scrape target. Every response carries `x-amzn-RequestId`; errors are rendered by
//! `wire.rs` in the protocol of the service called.
//!
//! This module and its children only route, decode requests into the services' typed requests
//! and encode their typed answers: the services (`functions`, `ssm`, `events`, `sqs`,
//! `tagging`) must not depend on it.

mod json_services;
mod lambda;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::{
    Platform,
    httpd::{Handler, ResponseFuture},
    sigv4,
    wire::{ApiError, Protocol},
};

use self::json_services::JsonService;

/// Largest request body: a 50 MB zip, base64-encoded, inside JSON.
const MAX_BODY: usize = 70 * 1024 * 1024;

/// A request after the body has been read.
pub(crate) struct Req {
    pub method: Method,
    /// Path segments, percent-decoded.
    pub segs: Vec<String>,
    /// Query pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
    pub peer: SocketAddr,
}

impl Req {
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn header(&self, key: &str) -> Option<&str> {
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }
    /// The body as a JSON object (`{}` when empty).
    pub(crate) fn json(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(not_json()),
        }
    }
}

/// The Lambda API's answer to a body that is not a JSON object.
fn not_json() -> ApiError {
    ApiError::new(
        400,
        "SerializationException",
        "Could not parse request body into json",
    )
}

pub(crate) fn handler(platform: Platform) -> Handler {
    Arc::new(
        move |req: Request<Incoming>, peer: SocketAddr| -> ResponseFuture {
            let platform = platform.clone();
            Box::pin(async move { handle(platform, req, peer).await })
        },
    )
}

enum Service {
    Lambda,
    Json {
        service: JsonService,
        target: String,
    },
}

async fn handle(
    platform: Platform,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let request_id = crate::new_uuid().to_string();
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        return metrics_response(&platform);
    }
    if let Some(path) = code_download(&platform, &req) {
        return tokio::task::spawn_blocking(move || zip_response(&path))
            .await
            .unwrap_or_else(|_| crate::wire::empty_response(500));
    }
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let service = match target {
        Some(t) => match JsonService::of_target(&t) {
            Some(service) => Service::Json { service, target: t },
            None => {
                return ApiError::new(400, "UnknownOperationException", "")
                    .into_response(Protocol::AwsJson, &request_id);
            }
        },
        None => Service::Lambda,
    };
    let protocol = match service {
        Service::Lambda => Protocol::RestJson,
        Service::Json { .. } => Protocol::AwsJson,
    };
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return ApiError::new(
                413,
                "RequestTooLargeException",
                "Request must be smaller than 73400320 bytes",
            )
            .into_response(protocol, &request_id);
        }
    };
    let raw_path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let signing_service = match &service {
        Service::Lambda => "lambda",
        Service::Json { service, .. } => service.signing_name(),
    };
    let view = sigv4::RequestView {
        method: parts.method.as_str(),
        path: raw_path,
        query: raw_query,
        headers: &parts.headers,
        body: &body,
    };
    let cfg = platform.config();
    if let Err(e) = sigv4::verify(
        &view,
        &cfg.credentials,
        &cfg.region,
        signing_service,
        time::OffsetDateTime::now_utc(),
    ) {
        tracing::info!(peer = %peer, code = e.code, "request rejected by SigV4 verification");
        return e.into_response(protocol, &request_id);
    }
    let req = Req {
        method: parts.method.clone(),
        segs: raw_path
            .trim_start_matches('/')
            .split('/')
            .map(sigv4::percent_decode)
            .collect(),
        query: raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (
                    sigv4::percent_decode(&k.replace('+', " ")),
                    sigv4::percent_decode(&v.replace('+', " ")),
                )
            })
            .collect(),
        headers: parts.headers,
        body,
        request_id: request_id.clone(),
        peer,
    };
    let result = match service {
        Service::Lambda => lambda::dispatch(&platform, req).await,
        Service::Json { service, target } => {
            json_services::dispatch(&platform, service, &target, &req).await
        }
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(code = e.code, message = %e.message, "request failed");
            }
            e.into_response(protocol, &request_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// `GET /code/<sha256>`: the `Code.Location` / `Content.Location` URL of GetFunction and
/// GetLayerVersion. Like AWS's presigned S3 URL it needs no signature; the content-addressed name
/// is only known to callers who could already read the function.
fn code_download(platform: &Platform, req: &Request<Incoming>) -> Option<std::path::PathBuf> {
    let key = req.uri().path().strip_prefix("/code/")?;
    if req.method() != Method::GET || key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    Some(crate::code::zip_file(&platform.config().data_dir, key))
}

/// The function metrics, for a Prometheus scraper.
fn metrics_response(platform: &Platform) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        platform.inner.pools.metrics.render(),
    )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(telemetry::text::CONTENT_TYPE),
    );
    resp
}

/// The zip at `path`, or 404.
fn zip_response(path: &std::path::Path) -> Response<Full<Bytes>> {
    let mut resp = match std::fs::read(path) {
        Ok(bytes) => Response::new(Full::new(Bytes::from(bytes))),
        Err(_) => crate::wire::empty_response(404),
    };
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    resp
}
