//! `/v1/connect/intentions/*`: the legacy intention API over `service-intentions` config entries
//! (Consul 1.9+ stores intentions the same way). Precedence, matching and decisions are the
//! model's, the check-and-set writes `crate::intentions`'; this module maps names from the query
//! string and authorizes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use serde_json::{Value, json};

use mesh_model::EntMeta;
use mesh_model::intentions::{self, IntentionRequest, MatchBy};
use mesh_model::names::ServiceName;
use store::WatchKey;

use crate::AppState;
use crate::api::{Ctx, body};
use crate::error::{ApiError, ApiResult};
use crate::intentions::entry_key;
use crate::query::{Filter, Query, blocking, json, json_with_index};

fn keys() -> [WatchKey; 1] {
    [WatchKey::ConfigKind("service-intentions".into())]
}

/// `name`, `ns/name` or `partition/ns/name`, as Consul's intention endpoints accept.
fn parse_name(q: &Query, field: &str) -> ApiResult<ServiceName> {
    let raw = q.get(field).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad_request(format!("required query parameter '{field}' not set"))
    })?;
    name_from(raw, field, &q.meta)
}

/// A name as the intention endpoints write it; unqualified parts come from `meta`.
fn name_from(raw: &str, field: &str, meta: &EntMeta) -> ApiResult<ServiceName> {
    let parts: Vec<&str> = raw.split('/').collect();
    let name = match parts.as_slice() {
        [name] => ServiceName::new(*name, meta.clone()),
        [ns, name] => ServiceName::new(*name, EntMeta::new(Some(&meta.partition), Some(ns))),
        [ap, ns, name] => ServiceName::new(*name, EntMeta::new(Some(ap), Some(ns))),
        _ => {
            return Err(ApiError::bad_request(format!(
                "{field}: invalid name {raw:?}: expected NAME, NS/NAME or PARTITION/NS/NAME"
            )));
        }
    };
    if name.name != "*" {
        mesh_model::names::validate_service_name("service name", &name.name)
            .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))?;
    }
    Ok(name)
}

fn default_allow(app: &AppState) -> bool {
    !app.config.acl.enabled || app.config.acl.default_allow
}

fn intention_json(app_state: &store::State, i: &intentions::Intention) -> Value {
    let (c, m) = app_state
        .entry_indexes(&entry_key(&i.destination))
        .unwrap_or((0, 0));
    i.to_api_json(c, m)
}

pub async fn list(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let filter = Filter::parse(&q)?;
    let (rows, index) = blocking(&app, &q, &keys(), |s| {
        intentions::all(s.config_entries())
            .iter()
            .filter(|i| caller.authorizer.intention_read(&i.destination.name))
            .map(|i| intention_json(s, i))
            .filter(|v| filter.matches(v))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}

pub async fn exact_get(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let (src, dst) = (parse_name(&q, "source")?, parse_name(&q, "destination")?);
    caller.require(
        caller.authorizer.intention_read(&dst.name),
        "intention:read",
        &dst.name,
    )?;
    let (found, index) = blocking(&app, &q, &keys(), |s| {
        intentions::exact(s.config_entries(), &src, &dst).map(|i| intention_json(s, &i))
    })
    .await;
    match found {
        Some(v) => Ok(json_with_index(&v, index)),
        None => Err(ApiError::not_found(format!(
            "Intention not found: {} => {}",
            src.name, dst.name
        ))),
    }
}

pub async fn exact_put(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (src, dst) = (parse_name(&q, "source")?, parse_name(&q, "destination")?);
    caller.require(
        caller.authorizer.intention_write(&dst.name),
        "intention:write",
        &dst.name,
    )?;
    let req = IntentionRequest::decode_json(&body(b)?)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    crate::intentions::upsert_exact(&app, &src, &dst, &req).await?;
    Ok(json(&true))
}

pub async fn exact_delete(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let (src, dst) = (parse_name(&q, "source")?, parse_name(&q, "destination")?);
    caller.require(
        caller.authorizer.intention_write(&dst.name),
        "intention:write",
        &dst.name,
    )?;
    crate::intentions::delete_exact(&app, &src, &dst).await?;
    Ok(json(&true))
}

pub async fn match_(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let by = match q.get("by") {
        Some("source") => MatchBy::Source,
        Some("destination") => MatchBy::Destination,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "'by' must be 'source' or 'destination', got {other:?}"
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "required query parameter 'by' not set",
            ));
        }
    };
    if q.all("name").is_empty() {
        return Err(ApiError::bad_request(
            "required query parameter 'name' not set",
        ));
    }
    let mut names = Vec::new();
    for raw_name in q.all("name") {
        names.push((raw_name.clone(), name_from(raw_name, "name", &q.meta)?));
    }
    let (out, index) = blocking(&app, &q, &keys(), |s| {
        names
            .iter()
            .map(|(raw, n)| {
                let rows: Vec<Value> = intentions::match_by(s.config_entries(), by, n)
                    .iter()
                    .filter(|i| caller.authorizer.intention_read(&i.destination.name))
                    .map(|i| intention_json(s, i))
                    .collect();
                (raw.clone(), Value::from(rows))
            })
            .collect::<BTreeMap<_, _>>()
    })
    .await;
    Ok(json_with_index(&out, index))
}

pub async fn check(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let (src, dst) = (parse_name(&q, "source")?, parse_name(&q, "destination")?);
    caller.require(
        caller.authorizer.intention_read(&dst.name),
        "intention:read",
        &dst.name,
    )?;
    let allow = default_allow(&app);
    let decision = app
        .store
        .read(|s| intentions::check(s.config_entries(), &src, &dst, allow));
    Ok(json(&json!({ "Allowed": decision.allowed })))
}
