//! Token resolution and authorization checks. A request's token comes from `X-Consul-Token`,
//! `Authorization: Bearer`, or `?token=` (in that order, as Consul reads them) and resolves to an
//! authorizer once per request. Denials use Consul's exact 403 text.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use mesh_model::acl::{AclToken, Authorizer, GLOBAL_MANAGEMENT_ID, parse_rules};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::query::Query;

/// Accessor ID of Consul's anonymous token.
pub const ANONYMOUS_ACCESSOR: &str = mesh_model::acl::ANONYMOUS_TOKEN_ID;

/// Who is calling, and what they may do.
pub struct Identity {
    pub authorizer: Authz,
    pub accessor_id: String,
    /// The secret the request carried (for `/v1/acl/token/self`).
    pub secret: Option<String>,
}

/// Authorization decisions for one request.
// One per request, moved rarely: boxing the rules would only add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Authz {
    /// ACLs disabled, or a management token.
    Management,
    /// A token's merged policies over the configured default.
    Rules(Authorizer),
}

impl Authz {
    fn check(&self, f: impl FnOnce(&Authorizer) -> bool) -> bool {
        match self {
            Authz::Management => true,
            Authz::Rules(a) => f(a),
        }
    }
    pub fn service_read(&self, name: &str) -> bool {
        self.check(|a| a.service_read(name))
    }
    pub fn service_write(&self, name: &str) -> bool {
        self.check(|a| a.service_write(name))
    }
    pub fn intention_read(&self, dest: &str) -> bool {
        self.check(|a| a.intention_read(dest))
    }
    pub fn intention_write(&self, dest: &str) -> bool {
        self.check(|a| a.intention_write(dest))
    }
    pub fn node_read(&self, name: &str) -> bool {
        self.check(|a| a.node_read(name))
    }
    pub fn node_write(&self, name: &str) -> bool {
        self.check(|a| a.node_write(name))
    }
    pub fn agent_read(&self, node: &str) -> bool {
        self.check(|a| a.agent_read(node))
    }
    pub fn operator_read(&self) -> bool {
        self.check(Authorizer::operator_read)
    }
    pub fn operator_write(&self) -> bool {
        self.check(Authorizer::operator_write)
    }
    pub fn acl_read(&self) -> bool {
        self.check(Authorizer::acl_read)
    }
    pub fn acl_write(&self) -> bool {
        self.check(Authorizer::acl_write)
    }
    pub fn key_read(&self, key: &str) -> bool {
        self.check(|a| a.key_read(key))
    }
    pub fn key_write(&self, key: &str) -> bool {
        self.check(|a| a.key_write(key))
    }
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        self.check(|a| a.key_write_prefix(prefix))
    }
}

/// The secret a request carries, if any.
pub fn token_of(headers: &HeaderMap, q: &Query) -> Option<String> {
    if let Some(t) = headers
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_owned());
    }
    if let Some(auth) = headers.get("Authorization").and_then(|v| v.to_str().ok())
        && let Some(t) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
    {
        let t = t.trim();
        if !t.is_empty() {
            return Some(t.to_owned());
        }
    }
    q.get("token").filter(|t| !t.is_empty()).map(str::to_owned)
}

/// Resolves the request's token.
///
/// # Errors
/// 403 `ACL not found` for a secret that matches no (unexpired) token.
pub fn resolve(app: &AppState, headers: &HeaderMap, q: &Query) -> ApiResult<Identity> {
    resolve_secret(app, token_of(headers, q).as_deref())
}

/// Resolves a secret (e.g. the `x-consul-token` of an xDS stream); `None` is the anonymous token.
///
/// # Errors
/// 403 `ACL not found` for a secret that matches no (unexpired) token.
pub fn resolve_secret(app: &AppState, secret: Option<&str>) -> ApiResult<Identity> {
    let secret = secret.filter(|s| !s.is_empty()).map(str::to_owned);
    if !app.config.acl.enabled {
        return Ok(Identity {
            authorizer: Authz::Management,
            accessor_id: String::new(),
            secret: None,
        });
    }
    let default_allow = app.config.acl.default_allow;
    let now = time::OffsetDateTime::now_utc();
    app.store.read(|s| {
        let acl = s.acl();
        let token = match &secret {
            None => acl.tokens.get(ANONYMOUS_ACCESSOR),
            Some(secret) => match acl.token_by_secret(secret) {
                Some(t) if !is_expired(t, now) => Some(t),
                _ => return Err(ApiError::forbidden("ACL not found")),
            },
        };
        let Some(token) = token else {
            // ACLs on but not initialised yet: only the default policy applies.
            return Ok(Identity { authorizer: Authz::Rules(Authorizer::new(&[], default_allow)), accessor_id: ANONYMOUS_ACCESSOR.into(), secret });
        };
        if token.policies.iter().any(|l| l.id == GLOBAL_MANAGEMENT_ID) {
            return Ok(Identity { authorizer: Authz::Management, accessor_id: token.accessor_id.clone(), secret });
        }
        let mut rules = Vec::new();
        for link in &token.policies {
            if let Some(p) = acl.policies.get(&link.id) {
                match parse_rules(&p.rules) {
                    Ok(r) => rules.push(r),
                    // Stored policies were validated on write; a failure here means a newer
                    // grammar than this binary knows. Deny what it would have granted.
                    Err(e) => tracing::error!(policy = %p.name, error = %e, "stored policy no longer parses; ignored"),
                }
            }
        }
        rules.extend(token.identity_rules());
        Ok(Identity { authorizer: Authz::Rules(Authorizer::new(&rules, default_allow)), accessor_id: token.accessor_id.clone(), secret })
    })
}

fn is_expired(t: &AclToken, now: time::OffsetDateTime) -> bool {
    if t.expiration_time.is_empty() {
        return false;
    }
    match time::OffsetDateTime::parse(
        &t.expiration_time,
        &time::format_description::well_known::Rfc3339,
    ) {
        Ok(exp) => exp <= now,
        Err(_) => true,
    }
}

impl Identity {
    /// Fails with Consul's permission-denied text unless `allowed`.
    ///
    /// # Errors
    /// 403 naming the caller, the permission and the resource.
    pub fn require(&self, allowed: bool, permission: &str, resource: &str) -> ApiResult<()> {
        if allowed {
            return Ok(());
        }
        let who = if self.accessor_id == ANONYMOUS_ACCESSOR {
            "anonymous token".to_owned()
        } else {
            format!("token with AccessorID '{}'", self.accessor_id)
        };
        let on = if resource.is_empty() {
            String::new()
        } else {
            format!(" on {resource:?}")
        };
        Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("Permission denied: {who} lacks permission '{permission}'{on}"),
        })
    }
}

/// Sets `X-Consul-Results-Filtered-By-ACLs` when a list was trimmed for the caller's token.
pub fn mark_filtered(mut resp: Response, filtered: bool) -> Response {
    if filtered {
        resp.headers_mut().insert(
            "X-Consul-Results-Filtered-By-ACLs",
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// A read whose rows all concern one resource: the rows when the caller may read it, otherwise
/// an empty list marked as filtered (Consul answers such reads with 200, not 403).
pub fn rows_if_allowed<T: serde::Serialize>(rows: Vec<T>, index: u64, allowed: bool) -> Response {
    let rows = if allowed { rows } else { Vec::new() };
    mark_filtered(crate::query::json_with_index(&rows, index), !allowed)
}
