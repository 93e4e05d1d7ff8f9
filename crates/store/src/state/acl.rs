//! ACL tokens and policies in the state. IDs, secrets and times arrive inside the ops (the API
//! layer generates them), so replay is deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use mesh_model::acl::{
    AclPolicy, AclToken, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME, PolicyLink, policy_hash,
};

use super::{ApplyError, State, WatchKey};

/// Tokens by accessor ID, policies by ID, and the bootstrap marker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AclState {
    pub tokens: BTreeMap<String, AclToken>,
    pub policies: BTreeMap<String, AclPolicy>,
    /// Index at which `/v1/acl/bootstrap` succeeded (it succeeds once).
    pub bootstrap_index: Option<u64>,
}

/// ACL ops (a sub-enum so the main `Op` stays readable).
// Ops live for one write; boxing the large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AclOp {
    /// Creates the built-in policy and tokens that must exist when ACLs are on (idempotent).
    Init {
        anonymous: AclToken,
        initial_management: Option<AclToken>,
    },
    Bootstrap {
        token: AclToken,
    },
    TokenSet {
        token: AclToken,
        create: bool,
    },
    TokenDelete {
        accessor_id: String,
    },
    PolicySet {
        policy: AclPolicy,
        create: bool,
    },
    PolicyDelete {
        id: String,
    },
}

fn builtin_management(index: u64) -> AclPolicy {
    let mut p = AclPolicy {
        id: GLOBAL_MANAGEMENT_ID.into(),
        name: GLOBAL_MANAGEMENT_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: String::new(),
        datacenters: vec![],
        hash: String::new(),
        create_index: index,
        modify_index: index,
    };
    p.hash = policy_hash(&p);
    p
}

impl AclState {
    /// Resolves a token's policy links (by ID or name) to `{ID, Name}` pairs.
    fn resolve_links(&self, links: &[PolicyLink]) -> Result<Vec<PolicyLink>, ApplyError> {
        let mut out: Vec<PolicyLink> = Vec::with_capacity(links.len());
        for l in links {
            let p = if !l.id.is_empty() {
                self.policies.get(&l.id)
            } else {
                self.policies.values().find(|p| p.name == l.name)
            };
            let p = p.ok_or_else(|| {
                ApplyError::Invalid(format!(
                    "cannot find policy {}",
                    if l.id.is_empty() { &l.name } else { &l.id }
                ))
            })?;
            if !out.iter().any(|o| o.id == p.id) {
                out.push(PolicyLink {
                    id: p.id.clone(),
                    name: p.name.clone(),
                });
            }
        }
        Ok(out)
    }

    pub fn token_by_secret(&self, secret: &str) -> Option<&AclToken> {
        self.tokens.values().find(|t| t.secret_id == secret)
    }

    pub fn policy_by_name(&self, name: &str) -> Option<&AclPolicy> {
        self.policies.values().find(|p| p.name == name)
    }
}

impl State {
    pub fn acl(&self) -> &AclState {
        &self.acl
    }

    pub(super) fn apply_acl(
        &mut self,
        op: &AclOp,
        index: u64,
    ) -> Result<Vec<WatchKey>, ApplyError> {
        let acl = &mut self.acl;
        match op {
            AclOp::Init {
                anonymous,
                initial_management,
            } => {
                acl.policies
                    .entry(GLOBAL_MANAGEMENT_ID.into())
                    .or_insert_with(|| builtin_management(index));
                acl.tokens
                    .entry(anonymous.accessor_id.clone())
                    .or_insert_with(|| {
                        let mut t = anonymous.clone();
                        t.create_index = index;
                        t.modify_index = index;
                        t
                    });
                if let Some(m) = initial_management
                    && acl.token_by_secret(&m.secret_id).is_none()
                {
                    let mut t = m.clone();
                    t.create_index = index;
                    t.modify_index = index;
                    acl.tokens.insert(t.accessor_id.clone(), t);
                }
            }
            AclOp::Bootstrap { token } => {
                if let Some(i) = acl.bootstrap_index {
                    return Err(ApplyError::Forbidden(format!(
                        "ACL bootstrap no longer allowed (reset index: {i})"
                    )));
                }
                acl.policies
                    .entry(GLOBAL_MANAGEMENT_ID.into())
                    .or_insert_with(|| builtin_management(index));
                let mut t = token.clone();
                t.policies = vec![PolicyLink {
                    id: GLOBAL_MANAGEMENT_ID.into(),
                    name: GLOBAL_MANAGEMENT_NAME.into(),
                }];
                t.create_index = index;
                t.modify_index = index;
                acl.tokens.insert(t.accessor_id.clone(), t.with_hash());
                acl.bootstrap_index = Some(index);
            }
            AclOp::TokenSet { token, create } => {
                let existing = acl.tokens.get(&token.accessor_id).cloned();
                match (&existing, create) {
                    (Some(_), true) => {
                        return Err(ApplyError::Invalid(format!(
                            "Invalid Token: AccessorID {:?} is already in use",
                            token.accessor_id
                        )));
                    }
                    (None, false) => {
                        return Err(ApplyError::NotFound(format!(
                            "Cannot find token {:?}",
                            token.accessor_id
                        )));
                    }
                    _ => {}
                }
                if let Some(other) = acl.token_by_secret(&token.secret_id)
                    && other.accessor_id != token.accessor_id
                {
                    return Err(ApplyError::Invalid(
                        "Invalid Token: SecretID is already in use".into(),
                    ));
                }
                let mut t = token.clone();
                t.policies = acl.resolve_links(&token.policies)?;
                if let Some(old) = &existing {
                    // The secret and creation data of a token never change on update.
                    t.secret_id = old.secret_id.clone();
                    t.create_time = old.create_time.clone();
                    t.create_index = old.create_index;
                } else {
                    t.create_index = index;
                }
                t.modify_index = index;
                acl.tokens.insert(t.accessor_id.clone(), t.with_hash());
            }
            AclOp::TokenDelete { accessor_id } => {
                if accessor_id == mesh_model::acl::ANONYMOUS_TOKEN_ID {
                    return Err(ApplyError::Invalid(
                        "Delete operation not permitted on the anonymous token".into(),
                    ));
                }
                acl.tokens.remove(accessor_id);
            }
            AclOp::PolicySet { policy, create } => {
                let existing = acl.policies.get(&policy.id).cloned();
                match (&existing, create) {
                    (Some(_), true) => {
                        return Err(ApplyError::Invalid(format!(
                            "Invalid Policy: ID {:?} is already in use",
                            policy.id
                        )));
                    }
                    (None, false) => {
                        return Err(ApplyError::NotFound(format!(
                            "Cannot find policy {:?}",
                            policy.id
                        )));
                    }
                    _ => {}
                }
                if policy.id == GLOBAL_MANAGEMENT_ID
                    && existing.as_ref().is_some_and(|e| e.rules != policy.rules)
                {
                    return Err(ApplyError::Invalid("Changing the Rules for the builtin global-management policy is not permitted".into()));
                }
                if let Some(other) = acl.policy_by_name(&policy.name)
                    && other.id != policy.id
                {
                    return Err(ApplyError::Invalid(format!(
                        "Invalid Policy: A Policy with Name {:?} already exists",
                        policy.name
                    )));
                }
                let mut p = policy.clone();
                p.create_index = existing.as_ref().map_or(index, |e| e.create_index);
                p.modify_index = index;
                p.hash = policy_hash(&p);
                let renamed = existing.as_ref().is_some_and(|e| e.name != p.name);
                if renamed {
                    for t in acl.tokens.values_mut() {
                        for l in &mut t.policies {
                            if l.id == p.id {
                                l.name = p.name.clone();
                            }
                        }
                    }
                }
                acl.policies.insert(p.id.clone(), p);
            }
            AclOp::PolicyDelete { id } => {
                if id == GLOBAL_MANAGEMENT_ID {
                    return Err(ApplyError::Invalid(
                        "Delete operation not permitted on the builtin global-management policy"
                            .into(),
                    ));
                }
                if acl.policies.remove(id).is_some() {
                    for t in acl.tokens.values_mut() {
                        t.policies.retain(|l| &l.id != id);
                    }
                }
            }
        }
        Ok(vec![WatchKey::Acl])
    }
}
