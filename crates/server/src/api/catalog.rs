//! `/v1/catalog/*`: register, deregister and the catalog reads.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use mesh_model::catalog::{DeregisterRequest, HealthCheck, Node, NodeService, RegisterRequest};
use mesh_model::names::ServiceName;
use store::state::Registration;
use store::{Op, WatchKey};

use crate::AppState;
use crate::api::body;
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, blocking, json, json_with_index};

pub(crate) fn node_json(n: &Node, dc: &str) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": dc,
        "TaggedAddresses": n.tagged_addresses, "Meta": n.meta, "Partition": n.partition,
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    })
}

pub(crate) fn service_json(s: &NodeService, dc: &str) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("Datacenter".into(), Value::from(dc));
    }
    v
}

pub(crate) fn check_json(c: &HealthCheck) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

fn catalog_service_json(n: &Node, s: &NodeService, dc: &str) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": dc,
        "TaggedAddresses": n.tagged_addresses, "NodeMeta": n.meta,
        "ServiceKind": s.kind, "ServiceID": s.id, "ServiceName": s.service, "ServiceTags": s.tags,
        "ServiceAddress": s.address, "ServiceTaggedAddresses": s.tagged_addresses,
        "ServiceWeights": s.weights, "ServiceMeta": s.meta, "ServicePort": s.port,
        "ServiceSocketPath": "", "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": s.proxy, "ServiceConnect": s.connect, "ServiceLocality": s.locality,
        "Namespace": s.namespace, "Partition": s.partition,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

pub async fn register(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
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
        authz::require(
            &ident,
            ident.authorizer.service_write(&def.name),
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
        authz::require(
            &ident,
            ident.authorizer.node_write(&req.node),
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
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
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
            authz::require(
                &ident,
                ident.authorizer.service_write(&name),
                "service:write",
                &name,
            )?;
        }
        Op::DeregisterService {
            partition: meta.partition,
            node: req.node,
            namespace: meta.namespace,
            service_id: req.service_id,
        }
    } else if !req.check_id.is_empty() {
        authz::require(
            &ident,
            ident.authorizer.node_write(&req.node),
            "node:write",
            &req.node,
        )?;
        Op::DeregisterCheck {
            partition: meta.partition,
            node: req.node,
            namespace: meta.namespace,
            check_id: req.check_id,
        }
    } else {
        authz::require(
            &ident,
            ident.authorizer.node_write(&req.node),
            "node:write",
            &req.node,
        )?;
        Op::DeregisterNode {
            partition: meta.partition,
            node: req.node,
        }
    };
    app.store.write(op).await?;
    Ok(json(&true))
}

pub async fn services(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let keys = [WatchKey::Services(q.meta.clone())];
    let (map, index) = blocking(&app, &q, &keys, |s| s.service_tags(&q.meta)).await;
    let mut filtered = false;
    let out: serde_json::Map<String, Value> = map
        .into_iter()
        .filter(|(name, _)| {
            let ok = ident.authorizer.service_read(name);
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
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let filter = crate::api::health::Filter::parse(&q)?;
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = app.config.datacenter.clone();
    let keys = [WatchKey::Service(svc.clone())];
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        s.instances(&svc)
            .into_iter()
            .filter(|i| tag_filter(&q, i.service))
            .map(|i| catalog_service_json(i.node, i.service, &dc))
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

pub async fn connect(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = app.config.datacenter.clone();
    let keys = [WatchKey::Connect(svc.clone())];
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        s.connect_instances(&svc)
            .into_iter()
            .map(|i| catalog_service_json(i.node, i.service, &dc))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(authz::rows_if_allowed(
        rows,
        index,
        ident.authorizer.service_read(&name),
    ))
}

pub async fn nodes(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let dc = app.config.datacenter.clone();
    let (rows, index) = blocking(&app, &q, &[WatchKey::Nodes], |s| {
        s.nodes(&q.meta.partition).cloned().collect::<Vec<_>>()
    })
    .await;
    let mut filtered = false;
    let out: Vec<Value> = rows
        .iter()
        .filter(|n| {
            let ok = ident.authorizer.node_read(&n.node);
            filtered |= !ok;
            ok
        })
        .map(|n| node_json(n, &dc))
        .collect();
    Ok(authz::mark_filtered(json_with_index(&out, index), filtered))
}

pub async fn node(
    State(app): State<AppState>,
    Path(node): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let dc = app.config.datacenter.clone();
    let key = [WatchKey::Node {
        partition: q.meta.partition.clone(),
        node: node.clone(),
    }];
    let (v, index) = blocking(&app, &q, &key, |s| {
        s.node(&q.meta.partition, &node).map(|n| {
            let services: serde_json::Map<String, Value> = s
                .node_services(&q.meta.partition, &node)
                .filter(|svc| ident.authorizer.service_read(&svc.service))
                .map(|svc| (svc.id.clone(), service_json(svc, &dc)))
                .collect();
            json!({ "Node": node_json(n, &dc), "Services": services })
        })
    })
    .await;
    if !ident.authorizer.node_read(&node) {
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
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let dc = app.config.datacenter.clone();
    let key = [WatchKey::Node {
        partition: q.meta.partition.clone(),
        node: node.clone(),
    }];
    let (v, index) = blocking(&app, &q, &key, |s| {
        s.node(&q.meta.partition, &node).map(|n| {
            let services: Vec<Value> = s
                .node_services(&q.meta.partition, &node)
                .filter(|svc| ident.authorizer.service_read(&svc.service))
                .map(|svc| service_json(svc, &dc))
                .collect();
            json!({ "Node": node_json(n, &dc), "Services": services })
        })
    })
    .await;
    Ok(json_with_index(&v.unwrap_or(Value::Null), index))
}

pub async fn datacenters(State(app): State<AppState>) -> Response {
    json(std::slice::from_ref(&app.config.datacenter))
}
