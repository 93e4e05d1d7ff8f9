//! ACL policies and tokens in Consul's `/v1/acl` JSON shapes, and the request bodies that create
//! or update them. IDs, secrets and times are the caller's: nothing here generates or reads a
//! clock.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AclError;
use super::rules::{Access, NameRule, Rules, ServiceRule, parse_rules};
use crate::decode;

/// Consul's built-in management policy.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// Accessor ID of the anonymous token.
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";

/// A stored ACL policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicy {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A token's link to a policy (`{"ID": ..., "Name": ...}`); requests may give either.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PolicyLink {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// A service identity: the synthetic policy Consul grants for `-service-identity`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceIdentity {
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// A node identity: the synthetic policy Consul grants for `-node-identity`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct NodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

/// A stored ACL token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default)]
    pub local: bool,
    /// RFC 3339, chosen by the caller.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expiration_time: String,
    /// RFC 3339, chosen by the caller.
    #[serde(default)]
    pub create_time: String,
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// Body of `PUT /v1/acl/policy` and `PUT /v1/acl/policy/:id`. Read-only fields are accepted
/// (clients send back what they read) and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PolicyRequest {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: String,
    #[serde(default)]
    pub datacenters: Vec<String>,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    _hash: Option<Value>,
    #[serde(default)]
    _create_index: Option<Value>,
    #[serde(default)]
    _modify_index: Option<Value>,
}

/// Body of `PUT /v1/acl/token` and `PUT /v1/acl/token/:accessor`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TokenRequest {
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub policies: Vec<PolicyLink>,
    #[serde(default)]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default)]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default)]
    pub local: bool,
    /// A Go duration (`"1h"`); the caller turns it into `ExpirationTime`.
    #[serde(rename = "ExpirationTTL", default)]
    pub expiration_ttl: String,
    #[serde(default)]
    pub expiration_time: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    /// Roles are not implemented; a non-empty list is refused by `validate`.
    #[serde(default)]
    pub roles: Vec<Value>,
    #[serde(default)]
    _hash: Option<Value>,
    #[serde(default)]
    _create_index: Option<Value>,
    #[serde(default)]
    _modify_index: Option<Value>,
    #[serde(default)]
    _create_time: Option<Value>,
}

// === validation ===

/// Consul's policy-name rule: `^[A-Za-z0-9\-_]{1,128}$`.
///
/// # Errors
/// [`AclError::Invalid`] explaining the rule.
pub fn validate_policy_name(name: &str) -> Result<(), AclError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AclError::Invalid(format!(
            "policy name {name:?}: only alphanumeric characters, '-' and '_' are allowed, 1 to 128 characters"
        )))
    }
}

/// Consul's service-identity name rule: lowercase DNS-ish, 1-256 characters.
fn valid_identity_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 256
        && b.iter().all(inner)
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
}

/// Whether `s` is a UUID in the 8-4-4-4-12 hex form Consul uses for IDs and secrets.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn decode_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AclError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| AclError::Invalid(format!("request body: invalid JSON: {e}")))?;
    let v = decode::canonicalize(v).map_err(|e| AclError::Invalid(format!("request body: {e}")))?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        AclError::Invalid(if path == "." {
            format!("request body: {inner}")
        } else {
            format!("request body: {path}: {inner}")
        })
    })
}

impl PolicyRequest {
    /// Decodes a JSON body (any key case; unknown fields refused by name).
    ///
    /// # Errors
    /// [`AclError::Invalid`] naming the problem.
    pub fn decode_json(bytes: &[u8]) -> Result<Self, AclError> {
        decode_body(bytes)
    }

    /// Name and rules syntax.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<Rules, AclError> {
        validate_policy_name(&self.name)?;
        if !self.id.is_empty() && !is_uuid(&self.id) {
            return Err(AclError::Invalid(format!(
                "policy ID {:?}: must be a UUID",
                self.id
            )));
        }
        parse_rules(&self.rules)
    }

    /// The policy to store, with the ID and indexes the caller chose.
    pub fn into_policy(self, id: String, create_index: u64, modify_index: u64) -> AclPolicy {
        let mut p = AclPolicy {
            id,
            name: self.name,
            description: self.description,
            rules: self.rules,
            datacenters: self.datacenters,
            hash: String::new(),
            create_index,
            modify_index,
        };
        p.hash = policy_hash(&p);
        p
    }
}

impl TokenRequest {
    /// Decodes a JSON body (any key case; unknown fields refused by name).
    ///
    /// # Errors
    /// [`AclError::Invalid`] naming the problem.
    pub fn decode_json(bytes: &[u8]) -> Result<Self, AclError> {
        decode_body(bytes)
    }

    /// Field checks that need no store: ID syntax, links, identities.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), AclError> {
        for (field, v) in [
            ("AccessorID", &self.accessor_id),
            ("SecretID", &self.secret_id),
        ] {
            if !v.is_empty() && !is_uuid(v) {
                return Err(AclError::Invalid(format!(
                    "{field}: {v:?} is not a valid UUID"
                )));
            }
        }
        for (i, l) in self.policies.iter().enumerate() {
            if l.id.is_empty() && l.name.is_empty() {
                return Err(AclError::Invalid(format!(
                    "Policies[{i}]: ID or Name is required"
                )));
            }
        }
        for (i, s) in self.service_identities.iter().enumerate() {
            if !valid_identity_name(&s.service_name) {
                return Err(AclError::Invalid(format!(
                    "ServiceIdentities[{i}].ServiceName: {:?} is not a valid service identity name",
                    s.service_name
                )));
            }
        }
        for (i, n) in self.node_identities.iter().enumerate() {
            if !valid_identity_name(&n.node_name) {
                return Err(AclError::Invalid(format!(
                    "NodeIdentities[{i}].NodeName: {:?} is not a valid node identity name",
                    n.node_name
                )));
            }
            if n.datacenter.is_empty() {
                return Err(AclError::Invalid(format!(
                    "NodeIdentities[{i}].Datacenter: is required"
                )));
            }
        }
        if !self.roles.is_empty() {
            return Err(AclError::Invalid(
                "Roles: ACL roles are not supported".into(),
            ));
        }
        if !self.expiration_ttl.is_empty() && !self.expiration_time.is_empty() {
            return Err(AclError::Invalid(
                "ExpirationTTL and ExpirationTime cannot both be set".into(),
            ));
        }
        Ok(())
    }
}

// === impl AclToken ===

impl AclToken {
    /// The synthetic rules Consul derives from service and node identities (its
    /// `ServiceIdentity.SyntheticPolicy` / `NodeIdentity.SyntheticPolicy`).
    pub fn identity_rules(&self) -> Vec<Rules> {
        let read_all = |r: &mut Rules| {
            r.service_prefixes.push(ServiceRule {
                name: String::new(),
                policy: Access::Read,
                intentions: None,
            });
            r.node_prefixes.push(NameRule {
                name: String::new(),
                policy: Access::Read,
            });
        };
        let mut out = Vec::new();
        for s in &self.service_identities {
            let mut r = Rules::default();
            for name in [
                s.service_name.clone(),
                format!("{}-sidecar-proxy", s.service_name),
            ] {
                r.services.push(ServiceRule {
                    name,
                    policy: Access::Write,
                    intentions: None,
                });
            }
            read_all(&mut r);
            out.push(r);
        }
        for n in &self.node_identities {
            let mut r = Rules::default();
            r.nodes.push(NameRule {
                name: n.node_name.clone(),
                policy: Access::Write,
            });
            r.service_prefixes.push(ServiceRule {
                name: String::new(),
                policy: Access::Read,
                intentions: None,
            });
            out.push(r);
        }
        out
    }

    /// Recomputes `hash` from the token's content.
    pub fn with_hash(mut self) -> Self {
        let mut h = Fnv::new();
        h.field(&self.description);
        for p in &self.policies {
            h.field(&p.id);
        }
        for s in &self.service_identities {
            h.field(&s.service_name);
        }
        for n in &self.node_identities {
            h.field(&n.node_name);
            h.field(&n.datacenter);
        }
        h.field(if self.local { "local" } else { "global" });
        self.hash = h.base64();
        self
    }
}

/// A content hash for a policy (Consul serves one so clients can detect changes; only equality
/// matters, so a 64-bit FNV-1a stands in for Consul's blake2b), base64 like Consul's `[]byte`.
pub fn policy_hash(p: &AclPolicy) -> String {
    let mut h = Fnv::new();
    h.field(&p.name);
    h.field(&p.description);
    h.field(&p.rules);
    for dc in &p.datacenters {
        h.field(dc);
    }
    h.base64()
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes a field plus a separator, so ("ab","c") and ("a","bc") differ.
    fn field(&mut self, s: &str) {
        for b in s.bytes().chain(std::iter::once(0xff)) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn base64(&self) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = self.0.to_be_bytes();
        let mut out = String::with_capacity(12);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
