//! `/v1/health/*`: instances with their checks, mesh endpoints, checks by service, node, state.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use mesh_model::catalog::{CRITICAL, PASSING, WARNING};
use mesh_model::config_entry::bexpr;
use mesh_model::names::ServiceName;
use store::WatchKey;
use store::state::catalog::Instance;

use crate::AppState;
use crate::api::catalog::{check_json, node_json, service_json};
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, blocking, json_with_index};

/// `?filter=` (go-bexpr over the JSON of each result row), parsed once per request.
pub struct Filter(Option<bexpr::Expr>);

impl Filter {
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

    pub fn matches(&self, row: &Value) -> bool {
        self.0.as_ref().is_none_or(|e| bexpr::eval(e, row))
    }
}

/// One health row: `{Node, Service, Checks}`.
pub(crate) fn entry_json(i: &Instance<'_>, dc: &str) -> Value {
    json!({
        "Node": node_json(i.node, dc),
        "Service": service_json(i.service, dc),
        "Checks": i.checks.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
    })
}

async fn instances(
    app: AppState,
    name: String,
    headers: HeaderMap,
    raw: Option<String>,
    connect: bool,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let filter = Filter::parse(&q)?;
    let passing = q.flag("passing");
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = app.config.datacenter.clone();
    let keys = if connect {
        [WatchKey::Connect(svc.clone())]
    } else {
        [WatchKey::Service(svc.clone())]
    };
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        let list = if connect {
            s.connect_instances(&svc)
        } else {
            s.instances(&svc)
        };
        list.into_iter()
            .filter(|i| !passing || i.status() == PASSING)
            .filter(|i| q.all("tag").iter().all(|t| i.service.tags.contains(t)))
            .map(|i| entry_json(&i, &dc))
            .filter(|v| filter.matches(v))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        ident.authorizer.service_read(&name),
    ))
}

pub async fn service(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    instances(app, name, headers, raw, false).await
}

pub async fn connect(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    instances(app, name, headers, raw, true).await
}

pub async fn checks(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let filter = Filter::parse(&q)?;
    let svc = ServiceName::new(&name, q.meta.clone());
    let (rows, index) = blocking(&app, &q, &[WatchKey::Service(svc.clone())], |s| {
        s.service_checks(&svc)
            .into_iter()
            .map(check_json)
            .filter(|v| filter.matches(v))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        ident.authorizer.service_read(&name),
    ))
}

pub async fn node(
    State(app): State<AppState>,
    Path(node): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let key = [WatchKey::Node {
        partition: q.meta.partition.clone(),
        node: node.clone(),
    }];
    let (rows, index) = blocking(&app, &q, &key, |s| {
        s.node_checks(&q.meta.partition, &node)
            .map(check_json)
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        ident.authorizer.node_read(&node),
    ))
}

pub async fn state(
    State(app): State<AppState>,
    Path(state): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    if !["any", PASSING, WARNING, CRITICAL].contains(&state.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid check state {state:?}: must be any, passing, warning or critical"
        )));
    }
    let (rows, index) = blocking(&app, &q, &[WatchKey::Nodes], |s| {
        s.nodes(&q.meta.partition)
            .flat_map(|n| s.node_checks(&q.meta.partition, &n.node))
            .filter(|c| state == "any" || c.status == state)
            .filter(|c| ident.authorizer.node_read(&c.node))
            .map(check_json)
            .collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}
