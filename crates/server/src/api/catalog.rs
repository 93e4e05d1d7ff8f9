//! `/v1/catalog/*`: register, deregister and the catalog reads.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use mesh_model::catalog::{DeregisterRequest, Node, NodeService, RegisterRequest};
use mesh_model::names::ServiceName;
use store::state::{CheckKey, NodeKey, Registration, ServiceKey};
use store::{Op, WatchKey};

use crate::AppState;
use crate::api::{Ctx, body};
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{Filter, Query, blocking, json, json_with_index};
use crate::rows;

pub async fn register(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let req = RegisterRequest::decode_json(&body(b)?)?;
    let dc = &app.config.datacenter;
    if !req.datacenter.is_empty() && &req.datacenter != dc {
        return Err(ApiError::bad_request(format!(
            "unknown datacenter {:?}: this server serves {dc:?}",
            req.datacenter
        )));
    }
    let meta = if req.namespace.is_empty() && req.partition.is_empty() {
        q.meta.clone()
    } else {
        mesh_model::EntMeta::new(Some(&req.partition), Some(&req.namespace))
    };
    let mut services = Vec::new();
    let mut checks = Vec::new();
    if let Some(def) = &req.service {
        let mut def = def.clone();
        if def.namespace.is_empty() {
            def.namespace = meta.namespace.clone();
        }
        if def.partition.is_empty() {
            def.partition = meta.partition.clone();
        }
        caller.require(
            caller.authorizer.service_write(&def.name),
            "service:write",
            &def.name,
        )?;
        services.push(def.to_node_service(dc)?);
        checks.extend(def.health_checks(&req.node)?);
    }
    let node_exists = app
        .store
        .read(|s| s.node(&meta.partition, &req.node).is_some());
    if !(req.skip_node_update && node_exists) {
        caller.require(
            caller.authorizer.node_write(&req.node),
            "node:write",
            &req.node,
        )?;
    }
    for c in req.check.iter().chain(&req.checks) {
        let mut hc = c.to_health_check(&req.node, &meta)?;
        if hc.check_id.is_empty() {
            return Err(ApiError::bad_request("check: CheckID or Name must be set"));
        }
        if hc.name.is_empty() {
            hc.name = hc.check_id.clone();
        }
        checks.push(hc);
    }
    let node = Node {
        id: req.id.clone(),
        node: req.node.clone(),
        address: req.address.clone(),
        datacenter: dc.clone(),
        tagged_addresses: req.tagged_addresses.clone(),
        meta: req.node_meta.clone(),
        partition: meta.partition.clone(),
        create_index: 0,
        modify_index: 0,
    };
    let op = Op::Register(Registration {
        node,
        skip_node_update: req.skip_node_update,
        services,
        checks,
        replace_checks_of: vec![],
    });
    app.store.write(op).await?;
    Ok(json(&true))
}

pub async fn deregister(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let req = DeregisterRequest::decode_json(&body(b)?)?;
    let meta = if req.namespace.is_empty() && req.partition.is_empty() {
        q.meta.clone()
    } else {
        mesh_model::EntMeta::new(Some(&req.partition), Some(&req.namespace))
    };
    let op = if !req.service_id.is_empty() {
        let name = app.store.read(|s| {
            s.service_by_id(&meta.partition, &req.node, &meta.namespace, &req.service_id)
                .map(|s| s.service.clone())
        });
        if let Some(name) = name {
            caller.require(
                caller.authorizer.service_write(&name),
                "service:write",
                &name,
            )?;
        }
        Op::DeregisterService(ServiceKey::new(
            &meta.partition,
            &req.node,
            &meta.namespace,
            &req.service_id,
        ))
    } else if !req.check_id.is_empty() {
        caller.require(
            caller.authorizer.node_write(&req.node),
            "node:write",
            &req.node,
        )?;
        Op::DeregisterCheck(CheckKey::new(
            &meta.partition,
            &req.node,
            &meta.namespace,
            &req.check_id,
        ))
    } else {
        caller.require(
            caller.authorizer.node_write(&req.node),
            "node:write",
            &req.node,
        )?;
        Op::DeregisterNode(NodeKey::new(&meta.partition, &req.node))
    };
    app.store.write(op).await?;
    Ok(json(&true))
}

pub async fn services(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let keys = [WatchKey::Services(q.meta.clone())];
    let (map, index) = blocking(&app, &q, &keys, |s| s.service_tags(&q.meta)).await;
    let mut filtered = false;
    let out: serde_json::Map<String, Value> = map
        .into_iter()
        .filter(|(name, _)| {
            let ok = caller.authorizer.service_read(name);
            filtered |= !ok;
            ok
        })
        .map(|(name, tags)| (name, Value::from(tags.into_iter().collect::<Vec<_>>())))
        .collect();
    Ok(authz::mark_filtered(json_with_index(&out, index), filtered))
}

fn tag_filter(q: &Query, s: &NodeService) -> bool {
    q.all("tag").iter().all(|t| s.tags.contains(t))
}

pub async fn service(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let filter = Filter::parse(&q)?;
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = &app.config.datacenter;
    let keys = [WatchKey::Service(svc.clone())];
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        s.instances(&svc)
            .into_iter()
            .filter(|i| tag_filter(&q, i.service))
            .map(|i| rows::catalog_service(i.node, i.service, dc))
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

pub async fn connect(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = &app.config.datacenter;
    let keys = [WatchKey::Connect(svc.clone())];
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        s.connect_instances(&svc)
            .into_iter()
            .map(|i| rows::catalog_service(i.node, i.service, dc))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        caller.authorizer.service_read(&name),
    ))
}

pub async fn nodes(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let filter = Filter::parse(&q)?;
    let (nodes, index) = blocking(&app, &q, &[WatchKey::Nodes], |s| {
        s.nodes(&q.meta.partition).cloned().collect::<Vec<_>>()
    })
    .await;
    let mut filtered = false;
    let out: Vec<Value> = nodes
        .iter()
        .filter(|n| {
            let ok = caller.authorizer.node_read(&n.node);
            filtered |= !ok;
            ok
        })
        .map(|n| rows::node(n, &app.config.datacenter))
        .filter(|row| filter.matches(row))
        .collect();
    Ok(authz::mark_filtered(json_with_index(&out, index), filtered))
}

pub async fn node(
    State(app): State<AppState>,
    Path(node): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let dc = &app.config.datacenter;
    let key = [WatchKey::Node(NodeKey::new(&q.meta.partition, &node))];
    let (v, index) = blocking(&app, &q, &key, |s| {
        s.node(&q.meta.partition, &node).map(|n| {
            let services: serde_json::Map<String, Value> = s
                .node_services(&q.meta.partition, &node)
                .filter(|svc| caller.authorizer.service_read(&svc.service))
                .map(|svc| (svc.id.clone(), rows::service(svc, dc)))
                .collect();
            rows::node_with_services(n, dc, Value::Object(services))
        })
    })
    .await;
    if !caller.authorizer.node_read(&node) {
        return Ok(authz::mark_filtered(
            json_with_index(&Value::Null, index),
            true,
        ));
    }
    Ok(json_with_index(&v.unwrap_or(Value::Null), index))
}

pub async fn node_services(
    State(app): State<AppState>,
    Path(node): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let dc = &app.config.datacenter;
    let key = [WatchKey::Node(NodeKey::new(&q.meta.partition, &node))];
    let (v, index) = blocking(&app, &q, &key, |s| {
        s.node(&q.meta.partition, &node).map(|n| {
            let services: Vec<Value> = s
                .node_services(&q.meta.partition, &node)
                .filter(|svc| caller.authorizer.service_read(&svc.service))
                .map(|svc| rows::service(svc, dc))
                .collect();
            rows::node_with_services(n, dc, Value::Array(services))
        })
    })
    .await;
    Ok(json_with_index(&v.unwrap_or(Value::Null), index))
}

/// Every datacenter this server knows, its own first (`federation::Federation::datacenters`).
pub async fn datacenters(State(app): State<AppState>) -> Response {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json(&app.federation.datacenters(&app.config.datacenter, now))
}
