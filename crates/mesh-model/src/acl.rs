//! ACL rules, policies, tokens and authorization decisions, as Consul defines them.
//!
//! ```text
//!   policy text (HCL/JSON) ──parse_rules──▶ Rules
//!   [Rules] of a token's policies ──Authorizer::new(rules, default_allow)──▶ Authorizer
//!        merge: per name, deny > write > list > read (Consul's policy merger)
//!        lookup: exact rule, else longest prefix rule, else the default policy
//! ```
//!
//! Tokens and policies are plain records in Consul's `/v1/acl` JSON shapes; IDs, secrets and
//! times are chosen by the caller so everything here stays deterministic.

mod authorizer;
mod records;
mod rules;

pub use authorizer::Authorizer;
pub use records::{
    ANONYMOUS_TOKEN_ID, AclPolicy, AclToken, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME,
    NodeIdentity, PolicyLink, PolicyRequest, ServiceIdentity, TokenRequest, is_uuid, policy_hash,
    validate_policy_name,
};
pub use rules::{Access, NameRule, Rules, ServiceRule, parse_rules};

/// Why ACL input was refused (HTTP 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AclError {
    #[error("failed to parse ACL rules: {0}")]
    Parse(String),
    /// An unknown resource or block field, named.
    #[error("failed to parse ACL rules: unknown {what} {name:?}")]
    Unknown { what: &'static str, name: String },
    /// A policy value outside the resource's allowed levels.
    #[error("invalid {resource} policy {value:?}{}: must be one of {allowed}", if name.is_empty() { String::new() } else { format!(" for {name:?}") })]
    BadPolicy {
        resource: String,
        name: String,
        value: String,
        allowed: &'static str,
    },
    #[error("invalid {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests;
