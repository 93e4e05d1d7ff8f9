//! ACL duties at start: the anonymous token, and the initial management token when the
//! configuration names one, written on every start (idempotently) whenever ACLs are on.
//!
//! IDs, secrets and times are generated here and by the ACL handlers, never in the store, so
//! the store's replay stays deterministic. Token resolution and the 403 texts are `authz`'s.

use mesh_model::acl::AclToken;
use store::Op;
use store::state::acl::AclOp;

use crate::AppState;
use crate::authz;

/// Now, in RFC 3339 (the format of ACL records' times).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A fresh accessor, secret or policy ID.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The tokens and policies that must exist whenever ACLs are on (run at every start).
///
/// # Errors
/// The store refuses the write.
pub(crate) async fn init(app: &AppState) -> Result<(), store::StoreError> {
    if !app.config.acl.enabled {
        return Ok(());
    }
    let anonymous = AclToken {
        accessor_id: authz::ANONYMOUS_ACCESSOR.into(),
        secret_id: "anonymous".into(),
        description: "Anonymous Token".into(),
        create_time: now_rfc3339(),
        ..AclToken::default()
    };
    let initial_management = app
        .config
        .acl
        .initial_management
        .as_ref()
        .map(|secret| AclToken {
            accessor_id: new_id(),
            secret_id: secret.clone(),
            description: "Initial Management Token".into(),
            policies: vec![mesh_model::acl::PolicyLink {
                id: mesh_model::acl::GLOBAL_MANAGEMENT_ID.into(),
                name: mesh_model::acl::GLOBAL_MANAGEMENT_NAME.into(),
            }],
            create_time: now_rfc3339(),
            ..AclToken::default()
        });
    app.store
        .write(Op::Acl(AclOp::Init {
            anonymous,
            initial_management,
        }))
        .await?;
    Ok(())
}
