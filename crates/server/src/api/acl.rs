//! `/v1/acl/*`: bootstrap, tokens and policies. IDs, secrets and times are generated here (with
//! `crate::acl`'s helpers) and travel inside the op, so the store's replay stays deterministic.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::Value;

use mesh_model::acl::{AclPolicy, AclToken, PolicyRequest, TokenRequest};
use mesh_model::catalog::definition::parse_go_duration;
use store::Op;
use store::state::acl::AclOp;

use crate::AppState;
use crate::acl::{new_id, now_rfc3339};
use crate::api::{Ctx, body};
use crate::error::{ApiError, ApiResult};
use crate::query::{blocking, json, json_with_index};

fn acl_enabled(app: &AppState) -> ApiResult<()> {
    if app.config.acl.enabled {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "ACL support disabled".into(),
        })
    }
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(e.to_string())
}

pub async fn bootstrap(State(app): State<AppState>) -> ApiResult<Response> {
    acl_enabled(&app)?;
    let token = AclToken {
        accessor_id: new_id(),
        secret_id: new_id(),
        description: "Bootstrap Token (Global Management)".into(),
        create_time: now_rfc3339(),
        ..AclToken::default()
    };
    let accessor = token.accessor_id.clone();
    app.store.write(Op::Acl(AclOp::Bootstrap { token })).await?;
    let t = app.store.read(|s| s.acl().tokens.get(&accessor).cloned());
    Ok(json(&t))
}

fn token_json(t: &AclToken, show_secret: bool) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        if !show_secret {
            o.insert("SecretID".into(), Value::from("<hidden>"));
        }
        o.entry("Policies").or_insert_with(|| Value::Array(vec![]));
    }
    v
}

fn build_token(req: TokenRequest, accessor: String) -> ApiResult<AclToken> {
    req.validate().map_err(bad)?;
    let expiration_time = if !req.expiration_ttl.is_empty() {
        let ttl = parse_go_duration(&req.expiration_ttl)
            .map_err(|e| bad(format!("ExpirationTTL: {e}")))?;
        let at = time::OffsetDateTime::now_utc() + ttl;
        at.format(&time::format_description::well_known::Rfc3339)
            .map_err(bad)?
    } else {
        req.expiration_time.clone()
    };
    Ok(AclToken {
        accessor_id: accessor,
        secret_id: if req.secret_id.is_empty() {
            new_id()
        } else {
            req.secret_id
        },
        description: req.description,
        policies: req.policies,
        service_identities: req.service_identities,
        node_identities: req.node_identities,
        local: req.local,
        expiration_time,
        create_time: now_rfc3339(),
        hash: String::new(),
        create_index: 0,
        modify_index: 0,
    })
}

/// The caller of an ACL endpoint: with ACLs off the answer is 401 before the query or token is
/// looked at, as Consul's.
pub struct AclCtx(Ctx);

impl FromRequestParts<AppState> for AclCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        acl_enabled(app)?;
        Ctx::from_request_parts(parts, app).await.map(Self)
    }
}

pub async fn token_create(
    State(app): State<AppState>,
    AclCtx(Ctx { caller, .. }): AclCtx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_write(), "acl:write", "")?;
    let req = TokenRequest::decode_json(&body(b)?).map_err(bad)?;
    let accessor = if req.accessor_id.is_empty() {
        new_id()
    } else {
        req.accessor_id.clone()
    };
    let token = build_token(req, accessor.clone())?;
    app.store
        .write(Op::Acl(AclOp::TokenSet {
            token,
            create: true,
        }))
        .await?;
    let t = app.store.read(|s| s.acl().tokens.get(&accessor).cloned());
    Ok(json(&t.map(|t| token_json(&t, true))))
}

pub async fn token_update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_write(), "acl:write", "")?;
    let req = TokenRequest::decode_json(&body(b)?).map_err(bad)?;
    if !req.accessor_id.is_empty() && req.accessor_id != id {
        return Err(ApiError::bad_request(
            "AccessorID in the body does not match the URL",
        ));
    }
    let token = build_token(req, id.clone())?;
    app.store
        .write(Op::Acl(AclOp::TokenSet {
            token,
            create: false,
        }))
        .await?;
    let t = app.store.read(|s| s.acl().tokens.get(&id).cloned());
    Ok(json(&t.map(|t| token_json(&t, true))))
}

pub async fn token_read(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_read(), "acl:read", "")?;
    let show = caller.authorizer.acl_write();
    match app.store.read(|s| s.acl().tokens.get(&id).cloned()) {
        Some(t) => Ok(json(&token_json(&t, show))),
        None => Err(ApiError::forbidden("ACL not found")),
    }
}

pub async fn token_self(
    State(app): State<AppState>,
    AclCtx(Ctx { caller, .. }): AclCtx,
) -> ApiResult<Response> {
    let secret = caller
        .secret
        .clone()
        .ok_or_else(|| ApiError::forbidden("ACL not found"))?;
    match app
        .store
        .read(|s| s.acl().token_by_secret(&secret).cloned())
    {
        Some(t) => Ok(json(&token_json(&t, true))),
        None => Err(ApiError::forbidden("ACL not found")),
    }
}

pub async fn token_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_write(), "acl:write", "")?;
    app.store
        .write(Op::Acl(AclOp::TokenDelete { accessor_id: id }))
        .await?;
    Ok(json(&true))
}

pub async fn token_list(
    State(app): State<AppState>,
    AclCtx(Ctx { query: q, caller }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_read(), "acl:read", "")?;
    let show = caller.authorizer.acl_write();
    let (rows, index) = blocking(&app, &q, &[store::WatchKey::Acl], |s| {
        s.acl()
            .tokens
            .values()
            .map(|t| token_json(t, show))
            .collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}

fn build_policy(req: PolicyRequest, id: String) -> ApiResult<AclPolicy> {
    req.validate().map_err(bad)?;
    Ok(req.into_policy(id, 0, 0))
}

pub async fn policy_create(
    State(app): State<AppState>,
    AclCtx(Ctx { caller, .. }): AclCtx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_write(), "acl:write", "")?;
    let req = PolicyRequest::decode_json(&body(b)?).map_err(bad)?;
    let id = if req.id.is_empty() {
        new_id()
    } else {
        req.id.clone()
    };
    let policy = build_policy(req, id.clone())?;
    app.store
        .write(Op::Acl(AclOp::PolicySet {
            policy,
            create: true,
        }))
        .await?;
    Ok(json(
        &app.store.read(|s| s.acl().policies.get(&id).cloned()),
    ))
}

pub async fn policy_update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_write(), "acl:write", "")?;
    let req = PolicyRequest::decode_json(&body(b)?).map_err(bad)?;
    if !req.id.is_empty() && req.id != id {
        return Err(ApiError::bad_request(
            "ID in the body does not match the URL",
        ));
    }
    let policy = build_policy(req, id.clone())?;
    app.store
        .write(Op::Acl(AclOp::PolicySet {
            policy,
            create: false,
        }))
        .await?;
    Ok(json(
        &app.store.read(|s| s.acl().policies.get(&id).cloned()),
    ))
}

pub async fn policy_read(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_read(), "acl:read", "")?;
    app.store
        .read(|s| s.acl().policies.get(&id).cloned())
        .map(|p| json(&p))
        .ok_or_else(|| ApiError::forbidden("ACL not found"))
}

pub async fn policy_read_by_name(
    State(app): State<AppState>,
    Path(name): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_read(), "acl:read", "")?;
    app.store
        .read(|s| s.acl().policy_by_name(&name).cloned())
        .map(|p| json(&p))
        .ok_or_else(|| ApiError::forbidden("ACL not found"))
}

pub async fn policy_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    AclCtx(Ctx { caller, .. }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_write(), "acl:write", "")?;
    app.store.write(Op::Acl(AclOp::PolicyDelete { id })).await?;
    Ok(json(&true))
}

pub async fn policy_list(
    State(app): State<AppState>,
    AclCtx(Ctx { query: q, caller }): AclCtx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.acl_read(), "acl:read", "")?;
    let (rows, index) = blocking(&app, &q, &[store::WatchKey::Acl], |s| {
        s.acl().policies.values().cloned().collect::<Vec<_>>()
    })
    .await;
    Ok(json_with_index(&rows, index))
}
