//! `/v1/internal/ui/*` and `/v1/internal/acl/authorize`: the reads the web UI needs beyond the
//! public API, each one blocking query so a page stays live with one loop.
//!
//! - `GET /v1/internal/ui/services`: Consul's summary rows (name, kind, tags, nodes, instance
//!   and check counts, mesh links) plus lambdamesh's `Lambda` (the service's Lambda marking as
//!   `mesh-model` reads it: ARN, region, invocation mode, passthrough).
//! - `GET /v1/internal/ui/service/{name}`: one service's mesh view: its Lambda marking, the
//!   router/splitter/resolver entries and the compiled routes with live weights (the `xds`
//!   compiler's own chain, so the page shows what Envoy is sent), upstreams and downstreams from
//!   the proxies' registrations, the terminating gateways that front it, and whether the Lambda
//!   registrator manages it. It blocks on exactly the entries the chain read.
//! - `GET /v1/internal/ui/config`: every config entry the caller may read, all kinds in one
//!   blocking query (a browser holds at most six connections to a host over HTTP/1.1: one
//!   blocking query per kind would starve the rest of the page).
//! - `POST /v1/internal/ui/config/decode`: a config entry written as HCL (or JSON), decoded as
//!   `lambdamesh config write` decodes a file, answered as Consul's JSON, so the editor can take
//!   HCL and still save through `PUT /v1/config` (whose validation messages it then shows).
//! - `POST /v1/internal/acl/authorize`: Consul's shape; which of a list of accesses the caller
//!   holds (the UI disables what the token may not do; the API still refuses it).

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use mesh_model::EntMeta;
use mesh_model::catalog::{CheckStatus, ServiceKind};
use mesh_model::config_entry::{ConfigEntry, EntryKey, Kind, LambdaTarget};
use mesh_model::names::ServiceName;
use store::{State as StoreState, WatchKey};
use xds::compile::chain::{Dest, compile_chain_reading};

use crate::AppState;
use crate::api::{Ctx, body};
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{blocking, json, json_with_index};

/// The registrator's marker in a service's `Meta`.
const REGISTRATOR_META: &str = "managed-by-lambda-registrator";

fn lambda_json(t: &LambdaTarget) -> Value {
    json!({
        "ARN": t.arn,
        "Region": t.region,
        "InvocationMode": if t.asynchronous { "asynchronous" } else { "synchronous" },
        "PayloadPassthrough": t.payload_passthrough,
    })
}

fn entry_key(kind: Kind, svc: &ServiceName) -> EntryKey {
    EntryKey {
        kind,
        meta: svc.meta.clone(),
        name: svc.name.clone(),
    }
}

fn lambda_of(s: &StoreState, svc: &ServiceName) -> Option<LambdaTarget> {
    match s
        .config_entries()
        .get(&entry_key(Kind::ServiceDefaults, svc))
    {
        Some(ConfigEntry::ServiceDefaults(d)) => d.lambda_target(),
        _ => None,
    }
}

/// What the summary gathers per service name.
#[derive(Default)]
struct Summary {
    kind: Option<ServiceKind>,
    tags: BTreeSet<String>,
    nodes: BTreeSet<String>,
    instances: usize,
    /// passing, warning, critical
    counts: [u64; 3],
    external: BTreeSet<String>,
}

fn status_slot(status: CheckStatus) -> usize {
    match status {
        CheckStatus::Passing => 0,
        CheckStatus::Warning => 1,
        CheckStatus::Critical => 2,
    }
}

/// The summary rows of every service in a tenancy (sidecar proxies are folded into the
/// service they serve, as in Consul's UI). One pass per node over its services and checks, so
/// 1,000 services cost one walk, not one per service.
fn summaries(s: &StoreState, meta: &EntMeta, dc: &str) -> Vec<(String, Value)> {
    let mut by_name: std::collections::BTreeMap<String, Summary> = Default::default();
    let mut proxied: BTreeSet<String> = BTreeSet::new();
    for node in s.nodes(&meta.partition) {
        let checks: Vec<_> = s.node_checks(&meta.partition, &node.node).collect();
        for svc in s.node_services(&meta.partition, &node.node) {
            if svc.namespace != meta.namespace {
                continue;
            }
            if svc.kind == ServiceKind::ConnectProxy {
                proxied.insert(svc.proxy.destination_service_name.clone());
                continue;
            }
            let sum = by_name.entry(svc.service.clone()).or_default();
            sum.kind.get_or_insert(svc.kind);
            sum.tags.extend(svc.tags.iter().cloned());
            sum.nodes.insert(node.node.clone());
            sum.instances += 1;
            if let Some(src) = svc.meta.get("external-source") {
                sum.external.insert(src.clone());
            }
            if svc.meta.contains_key(REGISTRATOR_META) {
                sum.external.insert("lambda-registrator".to_owned());
            }
            for c in &checks {
                if c.service_id.is_empty()
                    || (c.service_id == svc.id && c.namespace == svc.namespace)
                {
                    sum.counts[status_slot(c.status)] += 1;
                }
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, sum)| {
            let svc = ServiceName::new(&name, meta.clone());
            let mut row = json!({
                "Name": name,
                "Namespace": meta.namespace,
                "Partition": meta.partition,
                "Datacenter": dc,
                "Kind": sum.kind.unwrap_or(ServiceKind::Typical).as_str(),
                "Tags": sum.tags,
                "Nodes": sum.nodes,
                "InstanceCount": sum.instances,
                "ChecksPassing": sum.counts[0],
                "ChecksWarning": sum.counts[1],
                "ChecksCritical": sum.counts[2],
                "ExternalSources": sum.external,
                "ConnectedWithProxy": proxied.contains(&name),
                "ConnectedWithGateway": !s.gateways_for(&svc).is_empty(),
            });
            if let (Some(o), Some(l)) = (row.as_object_mut(), lambda_of(s, &svc)) {
                o.insert("Lambda".into(), lambda_json(&l));
            }
            (name, row)
        })
        .collect()
}

pub async fn services(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let keys = [
        WatchKey::Services(q.meta.clone()),
        WatchKey::ConfigKind(Kind::ServiceDefaults),
        WatchKey::ConfigKind(Kind::TerminatingGateway),
    ];
    let dc = &app.config.datacenter;
    let (rows, index) = blocking(&app, &q, &keys, |s| summaries(s, &q.meta, dc)).await;
    let mut filtered = false;
    let out: Vec<Value> = rows
        .into_iter()
        .filter(|(name, _)| {
            let ok = caller.authorizer.service_read(name);
            filtered |= !ok;
            ok
        })
        .map(|(_, row)| row)
        .collect();
    Ok(authz::mark_filtered(json_with_index(&out, index), filtered))
}

/// Upstreams of `svc` (from its proxies' registrations) and its downstreams: the services whose
/// proxies list it, or list an upstream whose discovery chain can send to it (a splitter's
/// target is called by whoever calls the split service), by name.
fn neighbours(
    s: &StoreState,
    svc: &ServiceName,
    dc: &str,
    td: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut up = BTreeSet::new();
    let mut down = BTreeSet::new();
    let mut reaches: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
    for name in s.service_tags(&svc.meta).keys() {
        for i in s.instances(&ServiceName::new(name, svc.meta.clone())) {
            let p = &i.service.proxy;
            if i.service.kind != ServiceKind::ConnectProxy {
                continue;
            }
            if p.destination_service_name == svc.name {
                up.extend(p.upstreams.iter().map(|u| u.destination_name.clone()));
            }
            let calls = p.upstreams.iter().any(|u| {
                u.destination_name == svc.name
                    || *reaches
                        .entry(u.destination_name.clone())
                        .or_insert_with(|| {
                            let chain = xds::compile::chain::compile_chain(
                                s.config_entries(),
                                &ServiceName::new(&u.destination_name, svc.meta.clone()),
                                dc,
                                td,
                            );
                            chain.targets.values().any(|t| t.service == *svc)
                        })
            });
            if calls && p.destination_service_name != svc.name {
                down.insert(p.destination_service_name.clone());
            }
        }
    }
    (up, down)
}

/// One service's mesh view and the keys it was read from.
fn service_view(s: &StoreState, svc: &ServiceName, dc: &str) -> (Value, Vec<WatchKey>) {
    let td = crate::connect::trust_domain(s);
    let entries = s.config_entries();
    let (chain, read) = compile_chain_reading(entries, svc, dc, &td);
    let entry = |kind| {
        entries
            .get(&entry_key(kind, svc))
            .map(|e| {
                let mut v = e.to_json();
                if let (Some(o), Some((_, m))) =
                    (v.as_object_mut(), s.entry_indexes(&entry_key(kind, svc)))
                {
                    o.insert("ModifyIndex".into(), Value::from(m));
                }
                v
            })
            .unwrap_or(Value::Null)
    };
    let target = |sni: &str| {
        chain.targets.get(sni).map_or_else(
            || json!({"Service": sni, "Subset": ""}),
            |t| json!({"Service": t.service.name, "Subset": t.subset}),
        )
    };
    let routes: Vec<Value> = chain
        .routes
        .iter()
        .map(|r| {
            let dests: Vec<Value> = match &r.dest {
                Dest::Cluster(c) => {
                    let mut t = target(c);
                    t["Weight"] = json!(100.0);
                    vec![t]
                }
                Dest::Weighted(ws) => ws
                    .iter()
                    .map(|(c, w)| {
                        let mut t = target(c);
                        t["Weight"] = json!(f64::from(*w) / 100.0);
                        t
                    })
                    .collect(),
            };
            json!({
                "Match": r.http_match.as_ref().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)),
                "PrefixRewrite": r.prefix_rewrite,
                "Destinations": dests,
            })
        })
        .collect();
    let (up, down) = neighbours(s, svc, dc, &td);
    let instances = s.instances(svc);
    let kind = instances
        .first()
        .map_or(ServiceKind::Typical, |i| i.service.kind);
    let registrator: Vec<Value> = instances
        .iter()
        .filter(|i| i.service.meta.contains_key(REGISTRATOR_META))
        .map(|i| {
            json!({
                "Node": i.node.node,
                "ServiceID": i.service.id,
                "ModifyIndex": i.service.modify_index,
            })
        })
        .collect();
    let gateways: Vec<String> = s.gateways_for(svc).into_iter().map(|g| g.name).collect();
    let view = json!({
        "Name": svc.name,
        "Namespace": svc.meta.namespace,
        "Partition": svc.meta.partition,
        "Kind": kind.as_str(),
        "Exists": !instances.is_empty() || entries.get(&entry_key(Kind::ServiceDefaults, svc)).is_some(),
        "Lambda": lambda_of(s, svc).as_ref().map(lambda_json),
        "Protocol": chain.protocol,
        "Defaults": entry(Kind::ServiceDefaults),
        "Router": entry(Kind::ServiceRouter),
        "Splitter": entry(Kind::ServiceSplitter),
        "Resolver": entry(Kind::ServiceResolver),
        "Routes": routes,
        "Upstreams": up,
        "Downstreams": down,
        "TerminatingGateways": gateways,
        "Registrator": registrator,
    });
    let mut keys: Vec<WatchKey> = read.into_iter().map(WatchKey::ConfigEntry).collect();
    for kind in [
        Kind::ServiceDefaults,
        Kind::ServiceRouter,
        Kind::ServiceSplitter,
        Kind::ServiceResolver,
    ] {
        keys.push(WatchKey::ConfigEntry(entry_key(kind, svc)));
    }
    keys.push(WatchKey::Services(svc.meta.clone()));
    // Downstreams depend on other services' chains too.
    for kind in [
        Kind::TerminatingGateway,
        Kind::ServiceRouter,
        Kind::ServiceSplitter,
        Kind::ServiceResolver,
    ] {
        keys.push(WatchKey::ConfigKind(kind));
    }
    (view, keys)
}

pub async fn service(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.service_read(&name), "service:read", &name)?;
    let svc = ServiceName::new(&name, q.meta.clone());
    let dc = &app.config.datacenter;
    // The keys depend on what the chain reads, which a write can change: read them first, wait
    // on them, then read the view again (a change to the key set itself moves one of the keys
    // read before, since an entry that starts being read is named by one that was).
    let keys = app.store.read(|s| service_view(s, &svc, dc).1);
    let (view, index) = blocking(&app, &q, &keys, |s| service_view(s, &svc, dc).0).await;
    Ok(json_with_index(&view, index))
}

/// One access asked about in `POST /v1/internal/acl/authorize`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AccessRequest {
    resource: String,
    #[serde(default)]
    segment: String,
    access: String,
}

/// The body of `POST /v1/internal/acl/authorize`: at most 64 accesses.
///
/// # Errors
/// The message of a 400: not the shape, or too many.
pub fn decode_access_requests(bytes: &[u8]) -> Result<Vec<AccessRequest>, String> {
    let reqs: Vec<AccessRequest> =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid authorization request: {e}"))?;
    if reqs.len() > 64 {
        return Err("Refusing to authorize more than 64 access requests".to_owned());
    }
    Ok(reqs)
}

/// `POST /v1/internal/acl/authorize` (Consul's shape): each requested access with `Allow`.
pub async fn authorize(
    State(_app): State<AppState>,
    Ctx { query: _, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let reqs = decode_access_requests(&body(b)?).map_err(ApiError::bad_request)?;
    let a = &caller.authorizer;
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        let write = match r.access.as_str() {
            "read" => false,
            "write" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "Invalid access level {other:?}: must be \"read\" or \"write\""
                )));
            }
        };
        let seg = r.segment.as_str();
        let allow = match (r.resource.as_str(), write) {
            ("service", false) => a.service_read(seg),
            ("service", true) => a.service_write(seg),
            ("intention", false) => a.intention_read(seg),
            ("intention", true) => a.intention_write(seg),
            ("node", false) => a.node_read(seg),
            ("node", true) => a.node_write(seg),
            ("agent", false) => a.agent_read(seg),
            ("operator" | "mesh", false) => a.operator_read(),
            ("operator" | "mesh", true) => a.operator_write(),
            ("key", false) => a.key_read(seg),
            ("key", true) => a.key_write(seg),
            ("acl", false) => a.acl_read(),
            ("acl", true) => a.acl_write(),
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid resource {other:?}: must be one of service, intention, node, agent (read), key, operator, mesh, acl"
                )));
            }
        };
        out.push(json!({
            "Resource": r.resource, "Segment": r.segment, "Access": r.access, "Allow": allow,
        }));
    }
    Ok(json(&out))
}

/// `POST /v1/internal/ui/config/decode`: HCL or JSON text → the entry's JSON (not validated:
/// `PUT /v1/config` does that and says what is wrong).
pub async fn decode_entry(
    Ctx { .. }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body(b)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("config entry text is not UTF-8"))?;
    let entry = mesh_model::config_entry::decode_hcl_or_json(text)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(json(&entry.to_json()))
}

/// `GET /v1/internal/ui/config`: `[{Kind, Name, Namespace, Partition, ModifyIndex}]` of every
/// entry in the tenancy the caller may read, by kind then name.
pub async fn config_entries(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let keys: Vec<WatchKey> = Kind::ALL.into_iter().map(WatchKey::ConfigKind).collect();
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        let set = s.config_entries();
        Kind::ALL
            .into_iter()
            .flat_map(|kind| set.list(kind))
            .filter(|e| e.ent_meta() == q.meta)
            .filter(|e| super::config::can_read(&caller, e.kind(), e.name()))
            .map(|e| {
                json!({
                    "Kind": e.kind().as_str(),
                    "Name": e.name(),
                    "Namespace": q.meta.namespace,
                    "Partition": q.meta.partition,
                    "ModifyIndex": s.entry_indexes(&e.key()).map_or(0, |(_, m)| m),
                })
            })
            .collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}
