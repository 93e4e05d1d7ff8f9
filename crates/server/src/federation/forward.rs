//! `?dc=<other>` on HTTP API reads: the request is sent over the inter-server protocol
//! (`Forward`) to a server of that datacenter, through its mesh gateways, which answers it with
//! its own API (blocking included: `index` and `wait` travel in the query) and sends back status,
//! `X-Consul-*` headers and body. A datacenter with no known gateway answers as Consul does: 500
//! "No path to datacenter".

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest};
use tower::ServiceExt as _;

use super::tls::Peer;
use super::wire::{Answer, ErrorCode, HttpAnswer, Request, VERSION};
use crate::AppState;

/// Consul's `structs.ErrNoDCPath`.
pub const NO_PATH: &str = "No path to datacenter";

/// How much longer than the query's own `wait` a forwarded read may take.
const SLACK: Duration = Duration::from_secs(15);

/// Why a forwarded read has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No gateway of that datacenter is known.
    #[error("{NO_PATH}")]
    NoPath,
    /// Every gateway failed; the last failure.
    #[error("cannot reach datacenter {datacenter}: {reason}")]
    Unreachable { datacenter: String, reason: String },
}

/// The `wait` of a query string (Consul's default 5 min, capped at 10 min), for the call's own
/// timeout.
fn wait_of(query: &str) -> Duration {
    let mut blocking = false;
    let mut wait = Duration::from_secs(300);
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("wait=") {
            if let Ok(d) = mesh_model::catalog::definition::parse_go_duration(v) {
                wait = d.min(Duration::from_secs(600));
            }
        } else if pair.starts_with("index=") {
            blocking = true;
        }
    }
    if blocking { wait } else { Duration::ZERO }
}

/// The writes a secondary sends to its primary, as Consul forwards `ConfigEntry.Apply` and
/// `Intention.Apply`: config entries and intentions, which the primary replicates back.
pub fn is_replicated_write_path(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or("");
    path == "/v1/config"
        || path.starts_with("/v1/config/")
        || path == "/v1/connect/intentions"
        || path.starts_with("/v1/connect/intentions/")
}

/// Sends a read of `path_and_query` (no `dc`) to `dc` and returns its answer.
///
/// # Errors
/// [`ForwardError::NoPath`] when no gateway of `dc` is known, else the last gateway's failure.
pub async fn forward(
    app: &AppState,
    dc: &str,
    path_and_query: &str,
    token: Option<String>,
) -> Result<HttpAnswer, ForwardError> {
    forward_request(app, dc, "GET", path_and_query, None, token).await
}

/// Sends a request (a read, or a config-entry or intention write to the primary) to `dc`.
///
/// # Errors
/// As [`forward`].
pub async fn forward_request(
    app: &AppState,
    dc: &str,
    method: &str,
    path_and_query: &str,
    body: Option<String>,
    token: Option<String>,
) -> Result<HttpAnswer, ForwardError> {
    let gateways = super::route(app, dc);
    if gateways.is_empty() {
        return Err(ForwardError::NoPath);
    }
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let timeout = wait_of(query) + SLACK;
    let req = Request::Forward {
        version: VERSION,
        method: method.to_owned(),
        body,
        datacenter: dc.to_owned(),
        path_and_query: path_and_query.to_owned(),
        token,
    };
    let mut reason = String::new();
    for gw in &gateways {
        match super::dial(app, dc, gw, &[], &req, timeout).await {
            Ok(Answer::Http(a)) => return Ok(a),
            Ok(Answer::Error(e)) => reason = format!("{:?}: {}", e.code, e.message),
            Ok(other) => reason = format!("unexpected answer {other:?}"),
            Err(e) => {
                tracing::warn!(datacenter = %dc, gateway = %gw, error = %e, "cannot forward a read through this gateway");
                reason = format!("{gw}: {e}");
            }
        }
    }
    Err(ForwardError::Unreachable {
        datacenter: dc.to_owned(),
        reason,
    })
}

/// Answers a `Forward` from a server of another datacenter with this server's own API.
pub(crate) async fn answer(
    app: &AppState,
    peer: &Peer,
    dc: &str,
    method: &str,
    path_and_query: &str,
    body: Option<String>,
    token: Option<String>,
) -> Answer {
    if !matches!(peer, Peer::Server { .. }) {
        return Answer::error(
            ErrorCode::PermissionDenied,
            "Forward needs a server certificate of this trust domain",
        );
    }
    if dc != app.config.datacenter {
        return Answer::error(
            ErrorCode::Unavailable,
            format!(
                "this server is in {}, not {dc}: the gateway routed the request wrongly",
                app.config.datacenter
            ),
        );
    }
    if !path_and_query.starts_with("/v1/") {
        return Answer::error(ErrorCode::BadRequest, "Forward carries /v1/ API paths only");
    }
    // A forwarded read is answered here, never forwarded on (no loops between datacenters).
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    if query.split('&').any(|p| p.starts_with("dc=")) {
        return Answer::error(
            ErrorCode::BadRequest,
            "a forwarded read carries no dc parameter",
        );
    }
    let method = match method {
        "GET" => Method::GET,
        "PUT" | "POST" | "DELETE" if is_replicated_write_path(path_and_query) => {
            let fed = &app.config.federation;
            if fed.is_secondary(&app.config.datacenter) {
                return Answer::error(
                    ErrorCode::Unavailable,
                    format!(
                        "config entries and intentions are written in the primary ({}), not here",
                        fed.primary_datacenter
                    ),
                );
            }
            Method::from_bytes(method.as_bytes()).unwrap_or(Method::PUT)
        }
        other => {
            return Answer::error(
                ErrorCode::BadRequest,
                format!(
                    "Forward carries reads, and writes of config entries and intentions only, not {other} {path_and_query}"
                ),
            );
        }
    };
    let mut builder = HttpRequest::builder().method(method).uri(path_and_query);
    if let Some(t) = &token {
        builder = builder.header("X-Consul-Token", t);
    }
    let req = match builder.body(body.map_or_else(Body::empty, Body::from)) {
        Ok(r) => r,
        Err(e) => return Answer::error(ErrorCode::BadRequest, format!("bad request line: {e}")),
    };
    let resp = match crate::api::router(app.clone()).oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("x-consul-") || k == "content-type"
        })
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    match axum::body::to_bytes(resp.into_body(), super::wire::MAX_ANSWER - 4096).await {
        Ok(b) => Answer::Http(HttpAnswer {
            status,
            headers,
            body: String::from_utf8_lossy(&b).into_owned(),
        }),
        Err(e) => Answer::error(ErrorCode::Internal, format!("cannot read the answer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writes_a_secondary_sends_to_its_primary() {
        for yes in [
            "/v1/config",
            "/v1/config?cas=3",
            "/v1/config/service-defaults/web",
            "/v1/connect/intentions/exact?source=a&destination=b",
            "/v1/connect/intentions",
        ] {
            assert!(is_replicated_write_path(yes), "{yes}");
        }
        for no in [
            "/v1/kv/x",
            "/v1/catalog/register",
            "/v1/configs",
            "/v1/connect/ca/configuration",
        ] {
            assert!(!is_replicated_write_path(no), "{no}");
        }
    }

    #[test]
    fn a_blocking_query_waits_as_long_as_it_asks() {
        assert_eq!(wait_of(""), Duration::ZERO);
        assert_eq!(wait_of("wait=5s"), Duration::ZERO, "wait without index");
        assert_eq!(wait_of("index=3&wait=5s"), Duration::from_secs(5));
        assert_eq!(wait_of("index=3"), Duration::from_secs(300));
        assert_eq!(wait_of("index=3&wait=1h"), Duration::from_secs(600));
    }
}
