//! `/v1/agent/*`: the local agent of this single-node server. Services registered here live on
//! the agent's own node in the catalog; a `Connect.SidecarService` is expanded into its own
//! `connect-proxy` registration in the same atomic write, as Consul's agent does. The writes and
//! TTL bookkeeping are `crate::agent`'s.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use mesh_model::catalog::definition::parse_go_duration;
use mesh_model::catalog::{
    CRITICAL, CheckDefinition, HealthCheck, PASSING, ServiceDefinition, WARNING,
};

use crate::AppState;
use crate::agent;
use crate::api::{Ctx, body};
use crate::authz::Identity;
use crate::error::{ApiError, ApiResult};
use crate::query::{Filter, Query, json};
use crate::rows;

/// Version reported to clients that feature-detect on it.
pub const CONSUL_COMPAT_VERSION: &str = "1.17.0";

pub async fn self_info(
    State(app): State<AppState>,
    Ctx { caller, .. }: Ctx,
) -> ApiResult<Response> {
    caller.require(
        caller.authorizer.agent_read(&app.config.node_name),
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

pub async fn services(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let filter = Filter::parse(&q)?;
    let dc = &app.config.datacenter;
    let node = &app.config.node_name;
    let out: serde_json::Map<String, Value> = app.store.read(|s| {
        s.node_services("default", node)
            .filter(|svc| {
                svc.namespace == q.meta.namespace && caller.authorizer.service_read(&svc.service)
            })
            .map(|svc| (svc.id.clone(), rows::agent_service(svc, dc)))
            .filter(|(_, v)| filter.matches(v))
            .collect()
    });
    Ok(json(&out))
}

pub async fn service(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let found = app.store.read(|s| {
        s.service_by_id("default", &app.config.node_name, &q.meta.namespace, &id)
            .cloned()
    });
    let svc = found.ok_or_else(|| ApiError::not_found(format!("unknown service ID: {id}")))?;
    caller.require(
        caller.authorizer.service_read(&svc.service),
        "service:read",
        &svc.service,
    )?;
    Ok(json(&rows::agent_service(&svc, &app.config.datacenter)))
}

pub async fn register(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let mut def = ServiceDefinition::decode_json(&body(b)?)?;
    if def.namespace.is_empty() {
        def.namespace = q.meta.namespace.clone();
    }
    if def.partition.is_empty() {
        def.partition = q.meta.partition.clone();
    }
    caller.require(
        caller.authorizer.service_write(&def.name),
        "service:write",
        &def.name,
    )?;
    let node = &app.config.node_name;
    let dc = &app.config.datacenter;
    let used = app.store.read(|s| {
        let mut used = s.used_ports("default", node);
        // Re-registering keeps the sidecar's port: don't count the port it already holds.
        let sidecar_id = format!("{}-sidecar-proxy", def.effective_id());
        if let Some(existing) = s.service_by_id("default", node, &def.namespace, &sidecar_id) {
            used.remove(&existing.port);
        }
        used
    });
    let mut services = vec![def.to_node_service(dc)?];
    let mut checks = def.health_checks(node)?;
    let mut replace = Vec::new();
    if let Some(sidecar) = def.sidecar(&used)? {
        caller.require(
            caller.authorizer.service_write(&sidecar.name),
            "service:write",
            &sidecar.name,
        )?;
        services.push(sidecar.to_node_service(dc)?);
        checks.extend(sidecar.health_checks(node)?);
        replace.push(sidecar.effective_id().to_owned());
    }
    if q.flag("replace-existing-checks") {
        replace.push(def.effective_id().to_owned());
    }
    agent::register_local(&app, services, checks, replace).await?;
    Ok(json(&Value::Null))
}

pub async fn deregister(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let node = &app.config.node_name;
    let (svc, sidecar) = app.store.read(|s| {
        let svc = s
            .service_by_id("default", node, &q.meta.namespace, &id)
            .cloned();
        let sidecar_id = format!("{id}-sidecar-proxy");
        let sidecar = s
            .service_by_id("default", node, &q.meta.namespace, &sidecar_id)
            .filter(|p| p.is_connect_proxy() && p.proxy.destination_service_id == id)
            .map(|p| p.id.clone());
        (svc, sidecar)
    });
    let svc = svc.ok_or_else(|| {
        ApiError::not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        ))
    })?;
    caller.require(
        caller.authorizer.service_write(&svc.service),
        "service:write",
        &svc.service,
    )?;
    agent::deregister_local(&app, &q.meta.namespace, id, sidecar).await?;
    Ok(json(&Value::Null))
}

pub async fn checks(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let filter = Filter::parse(&q)?;
    let node = &app.config.node_name;
    let out: serde_json::Map<String, Value> = app.store.read(|s| {
        s.node_checks("default", node)
            .filter(|c| {
                if c.service_name.is_empty() {
                    caller.authorizer.node_read(node)
                } else {
                    caller.authorizer.service_read(&c.service_name)
                }
            })
            .map(|c| (c.check_id.clone(), rows::check(c)))
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

fn require_check_write(app: &AppState, caller: &Identity, c: &HealthCheck) -> ApiResult<()> {
    if c.service_name.is_empty() {
        caller.require(
            caller.authorizer.node_write(&app.config.node_name),
            "node:write",
            &app.config.node_name,
        )
    } else {
        caller.require(
            caller.authorizer.service_write(&c.service_name),
            "service:write",
            &c.service_name,
        )
    }
}

pub async fn check_register(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let def: CheckDefinition = mesh_model::decode::from_json_slice(&body(b)?)?;
    let node = &app.config.node_name;
    let mut hc = def.to_health_check(node, &q.meta).map_err(ApiError::from)?;
    if hc.name.is_empty() {
        return Err(ApiError::bad_request("Missing check name"));
    }
    if hc.check_id.is_empty() {
        hc.check_id = hc.name.clone();
    }
    if !hc.service_id.is_empty() {
        let svc = app.store.read(|s| {
            s.service_by_id("default", node, &q.meta.namespace, &hc.service_id)
                .map(|svc| svc.service.clone())
        });
        hc.service_name = svc.ok_or_else(|| {
            ApiError::bad_request(format!("ServiceID {:?} does not exist", hc.service_id))
        })?;
    }
    require_check_write(&app, &caller, &hc)?;
    agent::register_local(&app, vec![], vec![hc], vec![]).await?;
    Ok(json(&Value::Null))
}

pub async fn check_deregister(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Ctx { caller, .. }: Ctx,
) -> ApiResult<Response> {
    let c = find_check(&app, &id)?;
    require_check_write(&app, &caller, &c)?;
    agent::deregister_check(&app, &c.namespace, &id).await?;
    Ok(json(&Value::Null))
}

/// Sets a TTL check's status (`/v1/agent/check/{pass,warn,fail,update}/:id`).
async fn update_ttl(
    app: &AppState,
    id: &str,
    caller: &Identity,
    status: &str,
    output: String,
) -> ApiResult<Response> {
    let c = find_check(app, id)?;
    require_check_write(app, caller, &c)?;
    let ttl = parse_go_duration(&c.definition.ttl).map_err(|_| {
        ApiError::bad_request(format!("CheckID {id:?} does not have associated TTL"))
    })?;
    agent::update_ttl_check(app, id, ttl, status, output).await?;
    Ok(json(&Value::Null))
}

pub async fn check_pass(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let note = q.get("note").unwrap_or("").to_owned();
    update_ttl(&app, &id, &caller, PASSING, note).await
}

pub async fn check_warn(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let note = q.get("note").unwrap_or("").to_owned();
    update_ttl(&app, &id, &caller, WARNING, note).await
}

pub async fn check_fail(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let note = q.get("note").unwrap_or("").to_owned();
    update_ttl(&app, &id, &caller, CRITICAL, note).await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CheckUpdate {
    status: String,
    #[serde(default)]
    output: String,
}

/// `PUT /v1/agent/check/update/:id`. As Consul does, the body is decoded and its status checked
/// before the token is looked at, so this handler resolves its caller itself.
pub async fn check_update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
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
    let Ctx { caller, .. } = Ctx::resolve(&app, &headers, q)?;
    update_ttl(&app, &id, &caller, status, upd.output).await
}
