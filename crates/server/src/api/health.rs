//! `/v1/health/*`: instances with their checks, mesh endpoints, checks by service, node, state.

use axum::extract::{Path, State};
use axum::response::Response;

use mesh_model::catalog::{CRITICAL, PASSING, WARNING};
use mesh_model::names::ServiceName;
use store::WatchKey;

use crate::AppState;
use crate::api::Ctx;
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{Filter, blocking, json_with_index};
use crate::rows;

/// Health rows of a service's instances (`connect`: of the proxies and gateways that serve it).
async fn instances(app: AppState, name: String, ctx: Ctx, connect: bool) -> ApiResult<Response> {
    let Ctx { query: q, caller } = ctx;
    let filter = Filter::parse(&q)?;
    let passing = q.flag("passing");
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = &app.config.datacenter;
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
            .map(|i| rows::health_entry(&i, dc))
            .filter(|v| filter.matches(v))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        caller.authorizer.service_read(&name),
    ))
}

pub async fn service(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    instances(app, name, ctx, false).await
}

pub async fn connect(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ctx: Ctx,
) -> ApiResult<Response> {
    instances(app, name, ctx, true).await
}

pub async fn checks(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let filter = Filter::parse(&q)?;
    let svc = ServiceName::new(&name, q.meta.clone());
    let (rows, index) = blocking(&app, &q, &[WatchKey::Service(svc.clone())], |s| {
        s.service_checks(&svc)
            .into_iter()
            .map(rows::check)
            .filter(|v| filter.matches(v))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        caller.authorizer.service_read(&name),
    ))
}

pub async fn node(
    State(app): State<AppState>,
    Path(node): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let key = [WatchKey::Node {
        partition: q.meta.partition.clone(),
        node: node.clone(),
    }];
    let (rows, index) = blocking(&app, &q, &key, |s| {
        s.node_checks(&q.meta.partition, &node)
            .map(rows::check)
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        caller.authorizer.node_read(&node),
    ))
}

pub async fn state(
    State(app): State<AppState>,
    Path(state): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    if !["any", PASSING, WARNING, CRITICAL].contains(&state.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid check state {state:?}: must be any, passing, warning or critical"
        )));
    }
    let (rows, index) = blocking(&app, &q, &[WatchKey::Nodes], |s| {
        s.nodes(&q.meta.partition)
            .flat_map(|n| s.node_checks(&q.meta.partition, &n.node))
            .filter(|c| state == "any" || c.status == state)
            .filter(|c| caller.authorizer.node_read(&c.node))
            .map(rows::check)
            .collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}
