//! The Runtime API (2018-06-01) and Extensions API (2020-01-01) of one sandbox.
//!
//! Every reply carries `Content-Type: application/json`: awslambdaric segfaults on a `/next`
//! reply without it, error replies included (components §3). Errors use the Runtime API's
//! `{"errorMessage":...,"errorType":...}` shape, built only in [`error`].

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Ext, Outcome, Shared};
use crate::httpd::{Handler, ResponseFuture};

/// Largest response a function may return (AWS: 6 MB).
const MAX_RESPONSE: usize = 6 * 1024 * 1024;

pub(super) fn handler(shared: Arc<Shared>) -> Handler {
    Arc::new(
        move |req: Request<Incoming>, _peer: SocketAddr| -> ResponseFuture {
            let shared = shared.clone();
            Box::pin(async move { route(shared, req).await })
        },
    )
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["2018-06-01", "runtime", "invocation", "next"]) => {
            next_invocation(&shared).await
        }
        (
            Method::POST,
            [
                "2018-06-01",
                "runtime",
                "invocation",
                id,
                kind @ ("response" | "error"),
            ],
        ) => {
            let (id, kind) = ((*id).to_owned(), *kind == "response");
            let error_type = header("lambda-runtime-function-error-type");
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(()) => {
                    complete(&shared, &id, Outcome::TooLarge);
                    return error(
                        413,
                        "RequestEntityTooLarge",
                        "Exceeded maximum allowed payload size (6291556 bytes).",
                    );
                }
            };
            let outcome = if kind {
                Outcome::Response(body)
            } else {
                Outcome::Error(error_body(body, error_type))
            };
            if complete(&shared, &id, outcome) {
                // Let the woken invoke answer its caller before the runtime hears 202: the
                // caller is waiting, while the runtime would only come back for its next event.
                tokio::task::yield_now().await;
                accepted()
            } else {
                error(400, "InvalidRequestID", "Invalid request ID")
            }
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            let error_type = header("lambda-runtime-function-error-type");
            let body = read_body(req).await.unwrap_or_default();
            post_init_error(&shared, error_body(body, error_type))
        }
        (Method::POST, ["2020-01-01", "extension", "register"]) => {
            let name = header("lambda-extension-name").unwrap_or_default();
            let body = read_body(req).await.unwrap_or_default();
            register(&shared, name, &body)
        }
        (Method::GET, ["2020-01-01", "extension", "event", "next"]) => {
            let id = header("lambda-extension-identifier").unwrap_or_default();
            next_event(&shared, &id).await
        }
        (Method::POST, ["2020-01-01", "extension", kind @ ("init" | "exit"), "error"]) => {
            let id = header("lambda-extension-identifier").unwrap_or_default();
            let error_type = header("lambda-extension-function-error-type");
            let init = *kind == "init";
            let body = read_body(req).await.unwrap_or_default();
            if !shared.st.lock().extensions.iter().any(|e| e.id == id) {
                return error(
                    403,
                    "Extension.UnknownExtensionIdentifier",
                    "Unknown extension identifier",
                );
            }
            if init {
                post_init_error(&shared, error_body(body, error_type))
            } else {
                tracing::warn!(function = %shared.spec.name, error_type = ?error_type, "extension reported exit error");
                accepted()
            }
        }
        _ => error(404, "InvalidRequest", "Unknown Runtime API path"),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ()> {
    Limited::new(req.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| ())
}

/// AWS passes a JSON error document through; anything else is wrapped with the declared type.
fn error_body(body: Bytes, error_type: Option<String>) -> Bytes {
    if serde_json::from_slice::<Value>(&body)
        .map(|v| v.is_object())
        .unwrap_or(false)
    {
        return body;
    }
    let v = json!({
        "errorMessage": String::from_utf8_lossy(&body),
        "errorType": error_type.unwrap_or_else(|| "Runtime.Unknown".into()),
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn complete(shared: &Shared, id: &str, outcome: Outcome) -> bool {
    let mut st = shared.st.lock();
    match st.current.take() {
        Some((current, tx)) if current == id => {
            let _ = tx.send(outcome);
            true
        }
        other => {
            st.current = other;
            false
        }
    }
}

fn post_init_error(shared: &Shared, body: Bytes) -> Response<Full<Bytes>> {
    let mut st = shared.st.lock();
    if st.init_done {
        return error(
            403,
            "InvalidStateTransition",
            "init/error is only allowed during INIT",
        );
    }
    st.init_error = Some(body);
    drop(st);
    shared.bump();
    accepted()
}

async fn next_invocation(shared: &Shared) -> Response<Full<Bytes>> {
    shared.st.lock().runtime_waiting = true;
    shared.bump();
    let mut rx = shared.inv_rx.lock().await;
    let Some(inv) = rx.recv().await else {
        return error(500, "Runtime.Stopped", "sandbox is stopping");
    };
    shared.st.lock().runtime_waiting = false;
    let mut resp = Response::new(Full::new(inv.payload));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let pairs = [
        ("lambda-runtime-aws-request-id", inv.request_id),
        ("lambda-runtime-deadline-ms", inv.deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", inv.invoked_arn),
        ("lambda-runtime-trace-id", inv.trace_id),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Some(cc) = inv
        .client_context
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        h.insert("lambda-runtime-client-context", cc);
    }
    resp
}

fn register(shared: &Shared, name: String, body: &[u8]) -> Response<Full<Bytes>> {
    if name.is_empty() {
        return error(
            403,
            "Extension.InvalidExtensionName",
            "Lambda-Extension-Name header is required",
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(400, "InvalidRequest", "Invalid register request body");
    };
    let events: Vec<String> = crate::wire::str_list(&v, "events").unwrap_or_default();
    if let Some(bad) = events.iter().find(|e| *e != "INVOKE" && *e != "SHUTDOWN") {
        return error(
            400,
            "InvalidEventType",
            &format!("Unsupported event type {bad}"),
        );
    }
    let mut st = shared.st.lock();
    if st.init_done {
        return error(
            403,
            "Extension.RegistrationAfterInit",
            "Extensions must register during INIT",
        );
    }
    if st.extensions.iter().any(|e| e.name == name) {
        return error(
            409,
            "Extension.AlreadyRegistered",
            "Extension with this name is already registered",
        );
    }
    let id = crate::new_uuid().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    st.extensions.push(Ext {
        id: id.clone(),
        name,
        invoke: events.iter().any(|e| e == "INVOKE"),
        shutdown: events.iter().any(|e| e == "SHUTDOWN"),
        ready: false,
        waiting: false,
        tx,
        rx: Arc::new(tokio::sync::Mutex::new(rx)),
    });
    drop(st);
    shared.bump();
    let body = json!({
        "functionName": shared.spec.name,
        "functionVersion": shared.spec.version,
        "handler": shared.spec.handler,
    });
    let mut resp = json_reply(200, &body);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("lambda-extension-identifier", v);
    }
    resp
}

async fn next_event(shared: &Shared, id: &str) -> Response<Full<Bytes>> {
    let rx = {
        let mut st = shared.st.lock();
        let Some(ext) = st.extensions.iter_mut().find(|e| e.id == id) else {
            return error(
                403,
                "Extension.UnknownExtensionIdentifier",
                "Unknown extension identifier",
            );
        };
        ext.ready = true;
        ext.waiting = true;
        ext.rx.clone()
    };
    shared.bump();
    let mut rx = rx.lock().await;
    let Some(event) = rx.recv().await else {
        return error(500, "Runtime.Stopped", "sandbox is stopping");
    };
    if let Some(ext) = shared.st.lock().extensions.iter_mut().find(|e| e.id == id) {
        ext.waiting = false;
    }
    let mut resp = json_reply(200, &event);
    if let Ok(v) = HeaderValue::from_str(&crate::new_uuid().to_string()) {
        resp.headers_mut()
            .insert("lambda-extension-event-identifier", v);
    }
    resp
}

fn accepted() -> Response<Full<Bytes>> {
    json_reply(202, &json!({"status": "OK"}))
}

fn json_reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).unwrap_or_default(),
    )));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The one Runtime/Extensions API error shape.
fn error(status: u16, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    json_reply(
        status,
        &json!({"errorMessage": message, "errorType": error_type}),
    )
}
