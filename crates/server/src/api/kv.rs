//! `/v1/kv/<key>`: Consul's key/value store. GET one key (JSON, or `?raw`), a prefix
//! (`?recurse`), or the key names under a prefix (`?keys`, `?separator`), as blocking queries;
//! PUT with `?flags` and `?cas`; DELETE one key (`?cas`) or a prefix (`?recurse`). Values are
//! base64 in JSON answers, as Consul writes them. Sessions (`?acquire`, `?release`) are refused.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use store::state::kv::{KvEntry, KvOp};
use store::{Op, WatchKey};

use crate::AppState;
use crate::api::{Ctx, body};
use crate::authz::mark_filtered;
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, blocking, json, json_with_index};

fn entry_json(e: &KvEntry) -> Value {
    json!({
        "LockIndex": 0,
        "Key": e.key,
        "Flags": e.flags,
        "Value": if e.value.is_empty() {
            Value::Null
        } else {
            Value::from(base64::engine::general_purpose::STANDARD.encode(&e.value))
        },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    })
}

fn parse_u64(q: &Query, name: &str) -> ApiResult<Option<u64>> {
    q.get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid {name} value {v:?}: must be a non-negative integer"
                ))
            })
        })
        .transpose()
}

fn refuse_sessions(q: &Query) -> ApiResult<()> {
    for option in ["acquire", "release"] {
        if q.has(option) {
            return Err(ApiError::bad_request(format!(
                "?{option} needs sessions, which this server does not support"
            )));
        }
    }
    Ok(())
}

/// Consul answers a missing key (or an empty prefix) with a bare 404 that still carries the
/// index, so a blocking client can wait for it to appear.
fn missing(index: u64) -> Response {
    let mut resp = StatusCode::NOT_FOUND.into_response();
    resp.headers_mut()
        .insert("X-Consul-Index", HeaderValue::from(index));
    resp
}

/// The key names under `prefix`, cut after the first `separator` past it (Consul's `?keys`).
fn key_names<'a>(
    entries: impl Iterator<Item = &'a KvEntry>,
    prefix: &str,
    sep: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        let name = if sep.is_empty() {
            e.key.clone()
        } else {
            match e.key[prefix.len()..].find(sep) {
                Some(i) => e.key[..prefix.len() + i + sep.len()].to_owned(),
                None => e.key.clone(),
            }
        };
        if out.last() != Some(&name) {
            out.push(name);
        }
    }
    out
}

pub async fn get_root(app: State<AppState>, ctx: Ctx) -> ApiResult<Response> {
    get(app, Path(String::new()), ctx).await
}

pub async fn get(
    State(app): State<AppState>,
    Path(key): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    if q.has("keys") {
        let sep = q.get("separator").unwrap_or("").to_owned();
        let keys = [WatchKey::KvTree];
        let ((names, filtered), index) = blocking(&app, &q, &keys, |s| {
            let all: Vec<&KvEntry> = s.kv_list(&key).collect();
            let readable: Vec<&KvEntry> = all
                .iter()
                .copied()
                .filter(|e| caller.authorizer.key_read(&e.key))
                .collect();
            let filtered = readable.len() != all.len();
            (key_names(readable.into_iter(), &key, &sep), filtered)
        })
        .await;
        if names.is_empty() {
            return Ok(missing(index));
        }
        return Ok(mark_filtered(json_with_index(&names, index), filtered));
    }
    if q.has("recurse") {
        let keys = [WatchKey::KvTree];
        let ((rows, filtered), index) = blocking(&app, &q, &keys, |s| {
            let mut filtered = false;
            let rows: Vec<Value> = s
                .kv_list(&key)
                .filter(|e| {
                    let ok = caller.authorizer.key_read(&e.key);
                    filtered |= !ok;
                    ok
                })
                .map(entry_json)
                .collect();
            (rows, filtered)
        })
        .await;
        if rows.is_empty() {
            return Ok(missing(index));
        }
        return Ok(mark_filtered(json_with_index(&rows, index), filtered));
    }
    caller.require(caller.authorizer.key_read(&key), "key:read", &key)?;
    let keys = [WatchKey::KvKey(key.clone())];
    let (found, index) = blocking(&app, &q, &keys, |s| s.kv_get(&key).cloned()).await;
    let Some(entry) = found else {
        return Ok(missing(index));
    };
    if q.has("raw") {
        let mut resp = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            entry.value,
        )
            .into_response();
        resp.headers_mut()
            .insert("X-Consul-Index", HeaderValue::from(index));
        return Ok(resp);
    }
    Ok(json_with_index(&[entry_json(&entry)], index))
}

pub async fn put(
    State(app): State<AppState>,
    Path(key): Path<String>,
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    refuse_sessions(&q)?;
    let flags = parse_u64(&q, "flags")?.unwrap_or(0);
    let cas = parse_u64(&q, "cas")?;
    caller.require(caller.authorizer.key_write(&key), "key:write", &key)?;
    let value = body(b)?.to_vec();
    let op = Op::Kv(KvOp::Set {
        key,
        value,
        flags,
        cas,
    });
    let committed = app.store.write(op).await?;
    Ok(json(&committed.applied))
}

pub async fn put_root(_: Ctx) -> ApiResult<Response> {
    Err(ApiError::bad_request("Missing key name"))
}

pub async fn delete_root(app: State<AppState>, ctx: Ctx) -> ApiResult<Response> {
    if !ctx.query.has("recurse") {
        return Err(ApiError::bad_request("Missing key name"));
    }
    delete(app, Path(String::new()), ctx).await
}

pub async fn delete(
    State(app): State<AppState>,
    Path(key): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let cas = parse_u64(&q, "cas")?;
    let op = if q.has("recurse") {
        caller.require(caller.authorizer.key_write_prefix(&key), "key:write", &key)?;
        Op::Kv(KvOp::DeleteTree { prefix: key })
    } else {
        caller.require(caller.authorizer.key_write(&key), "key:write", &key)?;
        Op::Kv(KvOp::Delete { key, cas })
    };
    let committed = app.store.write(op).await?;
    // Consul answers `true`, or the check-and-set outcome.
    Ok(json(&(cas.is_none() || committed.applied)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str) -> KvEntry {
        KvEntry {
            key: key.into(),
            flags: 0,
            value: Vec::new(),
            create_index: 1,
            modify_index: 1,
        }
    }

    #[test]
    fn key_names_stop_at_the_separator_past_the_prefix() {
        let all = [e("a/b/c"), e("a/b/d"), e("a/e"), e("a/f/")];
        assert_eq!(key_names(all.iter(), "a/", "/"), ["a/b/", "a/e", "a/f/"]);
        assert_eq!(key_names(all.iter(), "a/", "").len(), 4);
    }
}
