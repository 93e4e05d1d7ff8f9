//! What every handler starts from, extracted once at the edge: [`Ctx`] (the parsed query options
//! and the caller's identity), [`Query`] alone for the few reads that need no token, and the
//! request body with its size limit ([`body`]).
//!
//! Parsing and token resolution happen in the same order, with the same 400 and 403 answers, as
//! `Query::parse` followed by `authz::resolve`: a bad query option is a 400 before any token is
//! looked at. Handlers that must check something else first wrap or defer it: the ACL endpoints
//! answer 401 when ACLs are off before anything else (`api/acl.rs`'s `AclCtx`), and
//! `/v1/agent/check/update` decodes its body before it resolves the token ([`Ctx::resolve`]).
//!
//! This module must not depend on any handler module.

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::AppState;
use crate::authz::{self, Identity};
use crate::error::{ApiError, ApiResult};
use crate::query::Query;

/// Largest request body accepted (Consul's own limit for most endpoints is 512 KiB).
pub const MAX_BODY: usize = 512 * 1024;

/// A request's query options and who makes it, resolved once per request.
pub struct Ctx {
    /// `?index`, `?wait`, `?ns`, `?partition` and the endpoint's own options.
    pub query: Query,
    /// The caller's token turned into an authorizer.
    pub caller: Identity,
}

impl Ctx {
    /// Resolves the caller of an already parsed query.
    ///
    /// # Errors
    /// 403 `ACL not found` for a token that matches no (unexpired) token.
    pub fn resolve(app: &AppState, headers: &HeaderMap, query: Query) -> ApiResult<Self> {
        let caller = authz::resolve(app, headers, &query)?;
        Ok(Self { query, caller })
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        let query = Query::parse(parts.uri.query())?;
        Self::resolve(app, &parts.headers, query)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        Query::parse(parts.uri.query())
    }
}

/// The request body, or a 413 naming the limit when it is too large.
///
/// Handlers take the body as `Result<Bytes, BytesRejection>` and call this where they read it,
/// so a bad query or token is still reported before a bad body, as before.
pub fn body(b: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    b.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY)
        } else {
            ApiError::bad_request(format!("cannot read request body: {e}"))
        }
    })
}
