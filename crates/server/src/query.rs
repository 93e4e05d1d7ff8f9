//! Query-string options shared by every endpoint (`?index`, `?wait`, `?ns`, `?partition`, `?dc`,
//! `?token`, `?filter`, ...), blocking queries, and the Consul response headers.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use mesh_model::EntMeta;
use mesh_model::catalog::definition::parse_go_duration;
use mesh_model::config_entry::bexpr;
use store::{State, WatchKey};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Consul's default and maximum blocking wait.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Parsed query string. Repeated keys are kept (`?tag=a&tag=b`).
#[derive(Debug, Default, Clone)]
pub struct Query {
    params: BTreeMap<String, Vec<String>>,
    pub index: Option<u64>,
    pub wait: Duration,
    pub meta: EntMeta,
}

impl Query {
    /// Parses a raw query string; bad `index`/`wait`/`ns`/`partition` values are 400s.
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid query parameter name {k:?}"))
            })?;
            let v = percent_decode(v).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid value for query parameter {k:?}"))
            })?;
            params.entry(k).or_default().push(v);
        }
        let mut q = Query {
            params,
            ..Query::default()
        };
        if let Some(i) = q.get("index") {
            let i: u64 = i.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid index {i:?}: must be a non-negative integer"
                ))
            })?;
            q.index = Some(i);
        }
        q.wait = match q.get("wait") {
            None => DEFAULT_WAIT,
            Some(w) => {
                let d = parse_go_duration(w)
                    .map_err(|e| ApiError::bad_request(format!("Invalid wait time: {e}")))?;
                d.min(MAX_WAIT)
            }
        };
        q.meta = EntMeta::new(q.get("partition"), q.get("ns"));
        q.meta
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(q)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.params.get(key).map_or(&[], Vec::as_slice)
    }

    /// A flag such as `?passing` (present without a value, or `=true`/`=1`).
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => v.is_empty() || v == "true" || v == "1",
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.params.contains_key(key)
    }
}

/// `?filter=` (go-bexpr over the JSON of each result row), parsed once per request.
pub struct Filter(Option<bexpr::Expr>);

impl Filter {
    /// The request's filter; none when `?filter` is absent or empty.
    ///
    /// # Errors
    /// 400 with Consul's text when the expression does not parse.
    pub fn parse(q: &Query) -> ApiResult<Self> {
        match q.get("filter") {
            None | Some("") => Ok(Self(None)),
            Some(f) => bexpr::parse(f).map(|e| Self(Some(e))).map_err(|e| {
                ApiError::bad_request(format!(
                    "Failed to create boolean expression evaluator: {e}"
                ))
            }),
        }
    }

    /// Whether a result row (in its API JSON) passes the filter.
    pub fn matches(&self, row: &serde_json::Value) -> bool {
        self.0.as_ref().is_none_or(|e| bexpr::eval(e, row))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Runs a read as a blocking query: when `?index` is given, waits (up to `?wait` plus Consul's
/// jitter of wait/16) until one of `keys` moves past it, then evaluates `read` once.
pub async fn blocking<T>(
    app: &AppState,
    q: &Query,
    keys: &[WatchKey],
    read: impl Fn(&State) -> T,
) -> (T, u64) {
    if let Some(min) = q.index.filter(|i| *i > 0) {
        let jitter_cap = q.wait.as_millis() as u64 / 16;
        let jitter = if jitter_cap > 0 {
            rand::random::<u64>() % jitter_cap
        } else {
            0
        };
        app.store
            .wait_for_change(keys, min, q.wait + Duration::from_millis(jitter))
            .await;
    }
    app.store.read(|s| {
        let index = s.index_of(keys);
        (read(s), index)
    })
}

/// Reads answer from this replica's copy of the state; while its store (etcd) does not answer,
/// they say so as Consul's stale reads do: `X-Consul-KnownLeader: false` and
/// `X-Consul-LastContact` in milliseconds since the store last answered.
pub(crate) async fn contact_headers(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    mut resp: Response,
) -> Response {
    if !resp.headers().contains_key("X-Consul-KnownLeader") {
        return resp;
    }
    let contact = app.store.contact();
    if !contact.known_leader {
        let h = resp.headers_mut();
        h.insert("X-Consul-KnownLeader", HeaderValue::from_static("false"));
        let ms = u64::try_from(contact.last_contact.as_millis()).unwrap_or(u64::MAX);
        h.insert("X-Consul-LastContact", HeaderValue::from(ms));
        h.insert(
            "X-Consul-Effective-Consistency",
            HeaderValue::from_static("stale"),
        );
    }
    resp
}

/// A JSON response with Consul's query headers.
pub fn json_with_index<T: Serialize + ?Sized>(value: &T, index: u64) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert("X-Consul-Index", HeaderValue::from(index));
            headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
            headers.insert("X-Consul-LastContact", HeaderValue::from_static("0"));
            headers.insert(
                "X-Consul-Effective-Consistency",
                HeaderValue::from_static("leader"),
            );
            (StatusCode::OK, headers, body).into_response()
        }
        Err(e) => ApiError::internal(format!("cannot encode response: {e}")).into_response(),
    }
}

/// A JSON response without query headers (writes and agent endpoints).
pub fn json<T: Serialize + ?Sized>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("cannot encode response: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consul_query_options() {
        let q = Query::parse(Some("index=42&wait=10s&tag=a&tag=b%20c&passing&ns=team-1")).unwrap();
        assert_eq!(q.index, Some(42));
        assert_eq!(q.wait, Duration::from_secs(10));
        assert_eq!(q.all("tag"), ["a", "b c"]);
        assert!(q.flag("passing"));
        assert_eq!(q.meta.namespace, "team-1");
        assert_eq!(q.meta.partition, "default");
        assert_eq!(Query::parse(Some("wait=1h")).unwrap().wait, MAX_WAIT);
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            Query::parse(Some("index=abc"))
                .unwrap_err()
                .message
                .contains("Invalid index")
        );
        assert!(
            Query::parse(Some("index=-1"))
                .unwrap_err()
                .message
                .contains("Invalid index")
        );
        assert!(
            Query::parse(Some("wait=soon"))
                .unwrap_err()
                .message
                .contains("Invalid wait time")
        );
        assert!(
            Query::parse(Some("ns=bad_ns"))
                .unwrap_err()
                .message
                .contains("namespace")
        );
        assert!(Query::parse(Some("x=%zz")).is_err());
    }
}
