//! `/v1/agent/*`: the local agent of this single-node server. Services registered here live on
//! the agent's own node in the catalog; a `Connect.SidecarService` is expanded into its own
//! `connect-proxy` registration in the same atomic write, as Consul's agent does.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use mesh_model::catalog::definition::parse_go_duration;
use mesh_model::catalog::{
    CRITICAL, CheckDefinition, HealthCheck, Node, NodeService, PASSING, ServiceDefinition, WARNING,
};
use store::Op;
use store::state::Registration;

use crate::AppState;
use crate::api::body;
use crate::api::catalog::{check_json, service_json};
use crate::api::health::Filter;
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, json};

/// Version reported to clients that feature-detect on it.
pub const CONSUL_COMPAT_VERSION: &str = "1.17.0";

fn agent_node(app: &AppState) -> Node {
    Node {
        id: app.config.node_id.clone(),
        node: app.config.node_name.clone(),
        address: app.config.http_addr.ip().to_string(),
        datacenter: app.config.datacenter.clone(),
        tagged_addresses: BTreeMap::from([
            ("lan".to_owned(), app.config.http_addr.ip().to_string()),
            ("wan".to_owned(), app.config.http_addr.ip().to_string()),
        ]),
        meta: BTreeMap::from([("consul-network-segment".to_owned(), String::new())]),
        partition: "default".into(),
        create_index: 0,
        modify_index: 0,
    }
}

/// Registers the agent's node, its `serfHealth` check and the `consul` service, as a Consul
/// server does at start.
pub(crate) async fn register_self(app: &AppState) -> ApiResult<()> {
    let node = agent_node(app);
    let consul = NodeService {
        id: "consul".into(),
        service: "consul".into(),
        port: 8300,
        namespace: "default".into(),
        partition: "default".into(),
        datacenter: app.config.datacenter.clone(),
        proxy: mesh_model::catalog::ProxyConfig {
            expose: json!({}),
            ..Default::default()
        },
        ..NodeService::default()
    };
    let serf = HealthCheck {
        node: node.node.clone(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: PASSING.into(),
        output: "Agent alive and reachable".into(),
        namespace: "default".into(),
        partition: "default".into(),
        ..HealthCheck::default()
    };
    let op = Op::Register(Registration {
        node,
        skip_node_update: false,
        services: vec![consul],
        checks: vec![serf],
        replace_checks_of: vec![],
    });
    app.store.write(op).await?;
    Ok(())
}

pub async fn self_info(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    authz::require(
        &ident,
        ident.authorizer.agent_read(&app.config.node_name),
        "agent:read",
        &app.config.node_name,
    )?;
    let c = &app.config;
    let ip = c.http_addr.ip().to_string();
    Ok(json(&json!({
        "Config": {
            "Datacenter": c.datacenter, "PrimaryDatacenter": c.datacenter, "NodeName": c.node_name,
            "NodeID": c.node_id, "Server": true, "Revision": "lambdamesh", "Version": CONSUL_COMPAT_VERSION,
            "BuildDate": "", "Partition": "",
        },
        "DebugConfig": { "ACLsEnabled": c.acl.enabled, "ACLDefaultPolicy": if c.acl.default_allow { "allow" } else { "deny" } },
        "Member": member_json(&app),
        "Meta": { "consul-network-segment": "" },
        "Stats": {},
        "xDS": { "SupportedProxies": { "envoy": ["1.40.0"] }, "Port": c.grpc_addr.port(), "Ports": { "Plaintext": c.grpc_addr.port(), "TLS": -1 } },
        "Coord": null,
        "HTTPAddr": ip,
    })))
}

fn member_json(app: &AppState) -> Value {
    let c = &app.config;
    json!({
        "Name": c.node_name, "Addr": c.http_addr.ip().to_string(), "Port": 8301,
        "Tags": { "role": "consul", "dc": c.datacenter, "id": c.node_id, "port": "8300", "build": CONSUL_COMPAT_VERSION, "bootstrap": "1", "vsn": "2" },
        "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2, "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

pub async fn members(State(app): State<AppState>) -> Response {
    json(&[member_json(&app)])
}

fn agent_service_json(s: &NodeService, dc: &str) -> Value {
    let mut v = service_json(s, dc);
    if let Some(o) = v.as_object_mut() {
        o.remove("CreateIndex");
        o.remove("ModifyIndex");
    }
    v
}

pub async fn services(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let filter = Filter::parse(&q)?;
    let dc = app.config.datacenter.clone();
    let node = app.config.node_name.clone();
    let out: serde_json::Map<String, Value> = app.store.read(|s| {
        s.node_services("default", &node)
            .filter(|svc| {
                svc.namespace == q.meta.namespace && ident.authorizer.service_read(&svc.service)
            })
            .map(|svc| (svc.id.clone(), agent_service_json(svc, &dc)))
            .filter(|(_, v)| filter.matches(v))
            .collect()
    });
    Ok(json(&out))
}

pub async fn service(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let dc = app.config.datacenter.clone();
    let found = app.store.read(|s| {
        s.service_by_id("default", &app.config.node_name, &q.meta.namespace, &id)
            .cloned()
    });
    let svc = found.ok_or_else(|| ApiError::not_found(format!("unknown service ID: {id}")))?;
    authz::require(
        &ident,
        ident.authorizer.service_read(&svc.service),
        "service:read",
        &svc.service,
    )?;
    Ok(json(&agent_service_json(&svc, &dc)))
}

pub async fn register(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let mut def = ServiceDefinition::decode_json(&body(b)?)?;
    if def.namespace.is_empty() {
        def.namespace = q.meta.namespace.clone();
    }
    if def.partition.is_empty() {
        def.partition = q.meta.partition.clone();
    }
    authz::require(
        &ident,
        ident.authorizer.service_write(&def.name),
        "service:write",
        &def.name,
    )?;
    let node = app.config.node_name.clone();
    let dc = app.config.datacenter.clone();
    let used = app.store.read(|s| {
        let mut used = s.used_ports("default", &node);
        // Re-registering keeps the sidecar's port: don't count the port it already holds.
        let sidecar_id = format!("{}-sidecar-proxy", def.effective_id());
        if let Some(existing) = s.service_by_id("default", &node, &def.namespace, &sidecar_id) {
            used.remove(&existing.port);
        }
        used
    });
    let mut services = vec![def.to_node_service(&dc)?];
    let mut checks = def.health_checks(&node)?;
    let mut replace = Vec::new();
    if let Some(sidecar) = def.sidecar(&used)? {
        authz::require(
            &ident,
            ident.authorizer.service_write(&sidecar.name),
            "service:write",
            &sidecar.name,
        )?;
        services.push(sidecar.to_node_service(&dc)?);
        checks.extend(sidecar.health_checks(&node)?);
        replace.push(sidecar.effective_id().to_owned());
    }
    if q.flag("replace-existing-checks") {
        replace.push(def.effective_id().to_owned());
    }
    let ttls: Vec<(String, String)> = checks
        .iter()
        .filter(|c| !c.definition.ttl.is_empty())
        .map(|c| (c.check_id.clone(), c.definition.ttl.clone()))
        .collect();
    let op = Op::Register(Registration {
        node: agent_node(&app),
        skip_node_update: true,
        services,
        checks,
        replace_checks_of: replace,
    });
    app.store.write(op).await?;
    for (id, ttl) in ttls {
        if let Ok(d) = parse_go_duration(&ttl) {
            app.ttl.touch(&id, d);
        }
    }
    Ok(json(&Value::Null))
}

pub async fn deregister(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let node = app.config.node_name.clone();
    let (svc, sidecar) = app.store.read(|s| {
        let svc = s
            .service_by_id("default", &node, &q.meta.namespace, &id)
            .cloned();
        let sidecar_id = format!("{id}-sidecar-proxy");
        let sidecar = s
            .service_by_id("default", &node, &q.meta.namespace, &sidecar_id)
            .filter(|p| p.is_connect_proxy() && p.proxy.destination_service_id == id)
            .cloned();
        (svc, sidecar)
    });
    let svc = svc.ok_or_else(|| {
        ApiError::not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        ))
    })?;
    authz::require(
        &ident,
        ident.authorizer.service_write(&svc.service),
        "service:write",
        &svc.service,
    )?;
    // The sidecar goes first: a crash in between leaves a service without its proxy, never a
    // proxy pointing at nothing.
    if let Some(p) = sidecar {
        app.store
            .write(Op::DeregisterService {
                partition: "default".into(),
                node: node.clone(),
                namespace: q.meta.namespace.clone(),
                service_id: p.id,
            })
            .await?;
    }
    app.store
        .write(Op::DeregisterService {
            partition: "default".into(),
            node,
            namespace: q.meta.namespace.clone(),
            service_id: id,
        })
        .await?;
    Ok(json(&Value::Null))
}

pub async fn checks(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let filter = Filter::parse(&q)?;
    let node = app.config.node_name.clone();
    let out: serde_json::Map<String, Value> = app.store.read(|s| {
        s.node_checks("default", &node)
            .filter(|c| {
                if c.service_name.is_empty() {
                    ident.authorizer.node_read(&node)
                } else {
                    ident.authorizer.service_read(&c.service_name)
                }
            })
            .map(|c| (c.check_id.clone(), check_json(c)))
            .filter(|(_, v)| filter.matches(v))
            .collect()
    });
    Ok(json(&out))
}

fn find_check(app: &AppState, id: &str) -> ApiResult<HealthCheck> {
    app.store
        .read(|s| {
            s.node_checks("default", &app.config.node_name)
                .find(|c| c.check_id == id)
                .cloned()
        })
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            ))
        })
}

fn require_check_write(app: &AppState, ident: &authz::Identity, c: &HealthCheck) -> ApiResult<()> {
    if c.service_name.is_empty() {
        authz::require(
            ident,
            ident.authorizer.node_write(&app.config.node_name),
            "node:write",
            &app.config.node_name,
        )
    } else {
        authz::require(
            ident,
            ident.authorizer.service_write(&c.service_name),
            "service:write",
            &c.service_name,
        )
    }
}

pub async fn check_register(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let def: CheckDefinition = mesh_model::decode::from_json_slice(&body(b)?)?;
    let node = app.config.node_name.clone();
    let mut hc = def
        .to_health_check(&node, &q.meta)
        .map_err(ApiError::from)?;
    if hc.name.is_empty() {
        return Err(ApiError::bad_request("Missing check name"));
    }
    if hc.check_id.is_empty() {
        hc.check_id = hc.name.clone();
    }
    if !hc.service_id.is_empty() {
        let svc = app.store.read(|s| {
            s.service_by_id("default", &node, &q.meta.namespace, &hc.service_id)
                .cloned()
        });
        let svc = svc.ok_or_else(|| {
            ApiError::bad_request(format!("ServiceID {:?} does not exist", hc.service_id))
        })?;
        hc.service_name = svc.service;
    }
    require_check_write(&app, &ident, &hc)?;
    let ttl = hc.definition.ttl.clone();
    let id = hc.check_id.clone();
    app.store
        .write(Op::Register(Registration {
            node: agent_node(&app),
            skip_node_update: true,
            services: vec![],
            checks: vec![hc],
            replace_checks_of: vec![],
        }))
        .await?;
    if let Ok(d) = parse_go_duration(&ttl) {
        app.ttl.touch(&id, d);
    }
    Ok(json(&Value::Null))
}

pub async fn check_deregister(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let c = find_check(&app, &id)?;
    require_check_write(&app, &ident, &c)?;
    app.store
        .write(Op::DeregisterCheck {
            partition: "default".into(),
            node: app.config.node_name.clone(),
            namespace: c.namespace.clone(),
            check_id: id.clone(),
        })
        .await?;
    app.ttl.forget(&id);
    Ok(json(&Value::Null))
}

async fn update_ttl(
    app: AppState,
    id: String,
    headers: HeaderMap,
    q: Query,
    status: &str,
    output: String,
) -> ApiResult<Response> {
    let ident = authz::resolve(&app, &headers, &q)?;
    let c = find_check(&app, &id)?;
    require_check_write(&app, &ident, &c)?;
    let ttl = parse_go_duration(&c.definition.ttl).map_err(|_| {
        ApiError::bad_request(format!("CheckID {id:?} does not have associated TTL"))
    })?;
    app.store
        .write(Op::UpdateCheck {
            partition: "default".into(),
            node: app.config.node_name.clone(),
            check_id: id.clone(),
            status: status.into(),
            output,
        })
        .await?;
    app.ttl.touch(&id, ttl);
    Ok(json(&Value::Null))
}

pub async fn check_pass(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let note = q.get("note").unwrap_or("").to_owned();
    update_ttl(app, id, headers, q, PASSING, note).await
}

pub async fn check_warn(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let note = q.get("note").unwrap_or("").to_owned();
    update_ttl(app, id, headers, q, WARNING, note).await
}

pub async fn check_fail(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let note = q.get("note").unwrap_or("").to_owned();
    update_ttl(app, id, headers, q, CRITICAL, note).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CheckUpdate {
    status: String,
    #[serde(default)]
    output: String,
}

pub async fn check_update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let upd: CheckUpdate = mesh_model::decode::from_json_slice(&body(b)?)?;
    let status = match upd.status.as_str() {
        "passing" => PASSING,
        "warning" => WARNING,
        "critical" => CRITICAL,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid check status: {other:?}"
            )));
        }
    };
    update_ttl(app, id, headers, q, status, upd.output).await
}
