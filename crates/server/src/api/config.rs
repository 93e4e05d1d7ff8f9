//! `/v1/config`: config entries. Decoding and validation are the model's, once, here; the store
//! receives the typed entry, and the graph check against every other entry runs in its
//! committer, so two concurrent writes can never together produce a graph that each alone would
//! have been refused for.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use mesh_model::config_entry::{self, ConfigEntry, EntryKey, Kind};
use store::{Op, WatchKey};

use crate::AppState;
use crate::api::{Ctx, body};
use crate::authz::Identity;
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, blocking, json, json_with_index};

fn parse_kind(kind: &str) -> ApiResult<Kind> {
    Kind::parse(kind).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_cas(q: &Query) -> ApiResult<Option<u64>> {
    q.get("cas")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid cas index {c:?}: must be a non-negative integer"
                ))
            })
        })
        .transpose()
}

/// Consul's per-kind write rule.
fn require_write(caller: &Identity, kind: Kind, name: &str) -> ApiResult<()> {
    match kind {
        Kind::ServiceDefaults
        | Kind::ServiceRouter
        | Kind::ServiceSplitter
        | Kind::ServiceResolver => {
            caller.require(caller.authorizer.service_write(name), "service:write", name)
        }
        Kind::ServiceIntentions => caller.require(
            caller.authorizer.intention_write(name),
            "intention:write",
            name,
        ),
        Kind::ProxyDefaults | Kind::Mesh | Kind::TerminatingGateway => {
            caller.require(caller.authorizer.operator_write(), "operator:write", "")
        }
    }
}

pub(super) fn can_read(caller: &Identity, kind: Kind, name: &str) -> bool {
    match kind {
        Kind::ServiceDefaults
        | Kind::ServiceRouter
        | Kind::ServiceSplitter
        | Kind::ServiceResolver
        | Kind::TerminatingGateway => caller.authorizer.service_read(name),
        Kind::ServiceIntentions => caller.authorizer.intention_read(name),
        // Consul lets any token read proxy-defaults and mesh: proxies need them to start.
        Kind::ProxyDefaults | Kind::Mesh => true,
    }
}

fn entry_json(e: &ConfigEntry, indexes: Option<(u64, u64)>) -> Value {
    let mut v = e.to_json();
    if let (Some(o), Some((c, m))) = (v.as_object_mut(), indexes) {
        o.insert("CreateIndex".into(), Value::from(c));
        o.insert("ModifyIndex".into(), Value::from(m));
    }
    v
}

pub async fn apply(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let cas = parse_cas(&q)?;
    let mut entry =
        config_entry::decode_json(&body(b)?).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let given = entry.ent_meta();
    if given == mesh_model::EntMeta::default() && q.meta != given {
        entry.set_ent_meta(&q.meta);
    }
    entry
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    require_write(&caller, entry.kind(), entry.name())?;
    let committed = app.store.write(Op::ConfigSet { entry, cas }).await?;
    Ok(json(&committed.applied))
}

pub async fn list(
    State(app): State<AppState>,
    Path(kind): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let kind = parse_kind(&kind)?;
    let keys = [WatchKey::ConfigKind(kind)];
    let all_tenancies = q.get("ns") == Some("*");
    let (rows, index) = blocking(&app, &q, &keys, |s| {
        let set = s.config_entries();
        set.list(kind)
            .into_iter()
            .filter(|e| all_tenancies || e.ent_meta() == q.meta)
            .filter(|e| can_read(&caller, kind, e.name()))
            .map(|e| entry_json(e, s.entry_indexes(&e.key())))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}

pub async fn get(
    State(app): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let kind = parse_kind(&kind)?;
    let key = EntryKey {
        kind,
        meta: q.meta.clone(),
        name: name.clone(),
    };
    let keys = [WatchKey::ConfigEntry(key.clone())];
    caller.require(
        can_read(&caller, kind, &name),
        if kind == Kind::ServiceIntentions {
            "intention:read"
        } else {
            "service:read"
        },
        &name,
    )?;
    let (found, index) = blocking(&app, &q, &keys, |s| {
        s.config_entries()
            .get(&key)
            .map(|e| entry_json(e, s.entry_indexes(&key)))
    })
    .await;
    match found {
        Some(v) => Ok(json_with_index(&v, index)),
        None => Err(ApiError::not_found(format!(
            "Config entry not found for {:?} / {name:?}",
            kind.as_str()
        ))),
    }
}

pub async fn delete(
    State(app): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let kind = parse_kind(&kind)?;
    let cas = parse_cas(&q)?;
    require_write(&caller, kind, &name)?;
    let op = Op::ConfigDelete {
        key: EntryKey {
            kind,
            meta: q.meta.clone(),
            name,
        },
        cas,
    };
    let committed = app.store.write(op).await?;
    // Consul answers a plain delete with an empty object and a check-and-set one with a bool.
    if cas.is_some() {
        Ok(json(&committed.applied))
    } else {
        Ok(json(&serde_json::json!({})))
    }
}
