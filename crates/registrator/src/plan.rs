//! The reconcile diff as a pure function: desired services × actual Consul and Parameter Store
//! state → the writes that make them agree. Unlike the reference, a registered service is
//! compared field by field (config drift is repaired, mTLS material is refreshed), and deletions
//! happen only where the caller says the listing was complete and never for a protected
//! (unreadable or mis-tagged) function or a service the registrator does not own.

use std::collections::{BTreeMap, BTreeSet};

use mesh_model::config_entry::{LambdaMarking, lambda_arn_of_entry_json};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::{
    config::Markings,
    tags::{InvocationMode, MANAGED_TAG, Scope, Service, function_name},
};

/// What was read from Consul in one scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeState {
    /// Services on `NODE_NAME` carrying [`MANAGED_TAG`]: the registrator's own.
    pub owned: BTreeSet<String>,
    /// Other services on `NODE_NAME`: never touched.
    pub foreign: BTreeSet<String>,
    /// `service-defaults` entries by name.
    pub entries: BTreeMap<String, Value>,
}

/// The actual state the plan is computed against.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actual {
    /// Scopes that were read successfully; others get no writes and no deletions.
    pub scopes: BTreeMap<Scope, ScopeState>,
    /// Extension data by parameter path (decrypted JSON); `None` when unknown.
    pub params: Option<BTreeMap<String, String>>,
}

/// The CA state mTLS material must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ca {
    pub root_pem: String,
    pub trust_domain: String,
}

/// Which owned services may be deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deletions {
    /// None (the listing was incomplete).
    None,
    /// Every owned service that is not desired (a complete full sync).
    All,
    /// Only services of these functions, plus these exact names (an event).
    Only {
        functions: BTreeSet<String>,
        names: BTreeSet<(Scope, String)>,
    },
}

/// Inputs of [`plan`].
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub desired: &'a [Service],
    /// Functions whose services must not be deleted (unreadable, or a bad tag).
    pub protect: &'a BTreeSet<String>,
    pub deletions: Deletions,
    /// `CONSUL_EXTENSION_DATA_PREFIX` (mTLS material managed when set).
    pub prefix: Option<&'a str>,
    /// The active CA root; without it no mTLS material is written.
    pub ca: Option<&'a Ca>,
    pub legacy_meta: Markings,
    pub now: OffsetDateTime,
}

/// Writes for one desired service (in this order: config, catalog, mTLS material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upsert {
    pub service: Service,
    pub config: bool,
    pub register: bool,
    pub tls: bool,
}

/// Removal of one owned service (config entry, catalog instance, parameter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub scope: Scope,
    pub name: String,
    pub config: bool,
    pub param: Option<String>,
}

/// The writes that make actual equal desired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub upserts: Vec<Upsert>,
    pub deletes: Vec<Delete>,
    /// Parameters under the prefix that belong to no desired service.
    pub orphan_params: Vec<String>,
    /// Desired services whose name is taken on the node by a service we do not own, or by
    /// another desired service.
    pub conflicts: Vec<(Scope, String)>,
    /// Scopes of desired services that could not be read.
    pub unreadable: BTreeSet<Scope>,
}

impl Plan {
    /// Number of individual writes.
    pub fn writes(&self) -> usize {
        let up: usize = self
            .upserts
            .iter()
            .map(|u| usize::from(u.config) + usize::from(u.register) + usize::from(u.tls))
            .sum();
        let del: usize = self
            .deletes
            .iter()
            .map(|d| 1 + usize::from(d.config) + usize::from(d.param.is_some()))
            .sum();
        up + del + self.orphan_params.len()
    }
}

/// Parameter path of a service's extension data: `<prefix>/<partition>/<namespace>/<service>`.
pub fn param_path(prefix: &str, scope: &Scope, name: &str) -> String {
    format!("{prefix}/{}/{name}", scope.path_part())
}

/// The `service-defaults` entry the registrator writes for `s` (the marking is mesh-model's).
pub fn expected_entry(s: &Service, markings: Markings) -> Value {
    LambdaMarking {
        arn: &s.arn,
        payload_passthrough: s.payload_passthrough,
        asynchronous: s.invocation_mode == InvocationMode::Asynchronous,
    }
    .service_defaults_json(&s.name, markings)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn get_ci<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).or_else(|| {
        o.iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    })
}

/// Whether two maps agree, keys compared case-insensitively (Consul's mapstructure) and
/// missing members equal to empty ones.
fn same_map(actual: &Map<String, Value>, expected: &Map<String, Value>, ignore: &[&str]) -> bool {
    let keys: BTreeSet<String> = actual
        .keys()
        .chain(expected.keys())
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| !ignore.contains(&k.as_str()))
        .collect();
    keys.iter().all(|k| {
        let a = get_ci(actual, k);
        let e = get_ci(expected, k);
        match (a, e) {
            (Some(a), Some(e)) => same_value(a, e),
            (Some(x), None) | (None, Some(x)) => is_empty(x),
            (None, None) => true,
        }
    })
}

fn same_value(a: &Value, e: &Value) -> bool {
    match (a, e) {
        (Value::Object(a), Value::Object(e)) => same_map(a, e, &[]),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(a, e)| same_value(a, e))
        }
        _ => a == e || (is_empty(a) && is_empty(e)),
    }
}

/// Whether a `service-defaults` entry read from Consul is what [`expected_entry`] would write
/// (bookkeeping fields and empty members ignored).
pub fn entry_matches(actual: &Value, expected: &Value) -> bool {
    match (actual.as_object(), expected.as_object()) {
        (Some(a), Some(e)) => same_map(
            a,
            e,
            &[
                "kind",
                "name",
                "createindex",
                "modifyindex",
                "namespace",
                "partition",
                "hash",
            ],
        ),
        _ => false,
    }
}

/// The Lambda ARN an entry points at: its `builtin/aws/lambda` extension's `arn`, or the
/// ≤ 1.14 `Meta` marking (read by mesh-model).
pub fn entry_arn(entry: &Value) -> Option<&str> {
    lambda_arn_of_entry_json(entry)
}

/// The function an owned service belongs to: from its entry's Lambda ARN when present,
/// otherwise the service name itself.
pub fn owner_function<'a>(name: &'a str, entry: Option<&'a Value>) -> &'a str {
    entry.and_then(entry_arn).map_or(name, function_name)
}

/// The DER of the first certificate in a PEM text.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let len = pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// One DER tag-length-value at the start of `input`: `(tag, content, rest)`.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The value of a certificate extension: the OCTET STRING after the extension's OID (and its
/// optional `critical` flag). Found by the OID's encoding, which cannot occur elsewhere in the
/// DER of a certificate made by a Connect CA.
fn extension<'a>(der: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    let pos = der.windows(oid.len()).position(|w| w == oid)?;
    let mut rest = &der[pos + oid.len()..];
    loop {
        let (tag, content, tail) = tlv(rest)?;
        match tag {
            0x01 => rest = tail, // critical
            0x04 => return Some(content),
            _ => return None,
        }
    }
}

/// Whether the leaf was issued by this root: its Authority Key Identifier is the root's
/// Subject Key Identifier. `None` when either is missing (nothing can be said then).
pub fn issued_by(leaf_pem: &str, root_pem: &str) -> Option<bool> {
    // id-ce-authorityKeyIdentifier (2.5.29.35) and id-ce-subjectKeyIdentifier (2.5.29.14).
    const AKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];
    const SKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0e];
    let leaf = pem_der(leaf_pem)?;
    let root = pem_der(root_pem)?;
    // AKI: SEQUENCE { [0] keyIdentifier, ... }; SKI: OCTET STRING.
    let (_, aki_seq, _) = tlv(extension(&leaf, AKI)?)?;
    let (tag, aki, _) = tlv(aki_seq)?;
    let (_, ski, _) = tlv(extension(&root, SKI)?)?;
    (tag == 0x80).then(|| aki == ski)
}

/// Whether stored mTLS material is still good: same root and trust domain, a leaf issued by that
/// root (it lags a rotation until the agent renews it), and younger than ⅔ of its lifetime
/// (Consul's own agent renews at that point).
pub fn tls_fresh(value: &str, ca: &Ca, now: OffsetDateTime) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(value) else {
        return false;
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    if s("rootCertPEM").trim() != ca.root_pem.trim() || s("trustDomain") != ca.trust_domain {
        return false;
    }
    if s("privateKeyPEM").is_empty() || issued_by(s("certPEM"), &ca.root_pem) == Some(false) {
        return false;
    }
    match ca::cert_validity(s("certPEM")) {
        Ok((not_before, not_after)) => {
            let renew_at = not_before + (not_after - not_before) * 2 / 3;
            now >= not_before - time::Duration::minutes(5) && now < renew_at
        }
        Err(_) => false,
    }
}

fn protected(name: &str, owner: &str, protect: &BTreeSet<String>) -> bool {
    // Without an entry the owner is a guess, so a prefix match protects alias services too.
    protect.contains(owner)
        || protect.contains(name)
        || protect.iter().any(|p| {
            name.strip_prefix(p.as_str())
                .is_some_and(|r| r.starts_with('-'))
        })
}

/// Computes the writes. Pure; tested by value.
pub fn plan(input: &Inputs<'_>, actual: &Actual) -> Plan {
    let mut out = Plan::default();
    let mut wanted: BTreeMap<(Scope, String), &Service> = BTreeMap::new();
    // A function's own name wins over an alias service of another function with that name.
    let mut ordered: Vec<&Service> = input.desired.iter().collect();
    ordered.sort_by_key(|s| s.name != s.function);
    for s in ordered {
        let key = (s.scope.clone(), s.name.clone());
        match wanted.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => out.conflicts.push(e.key().clone()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(s);
            }
        }
    }
    let manage_tls = input.prefix.is_some() && input.ca.is_some() && actual.params.is_some();
    let mut desired_paths = BTreeSet::new();
    for ((scope, name), s) in &wanted {
        let Some(state) = actual.scopes.get(scope) else {
            out.unreadable.insert(scope.clone());
            continue;
        };
        // Not ours: a service of that name on the node without our tag, or (while we have not
        // registered it) an entry someone wrote for something other than this function.
        let foreign_entry = !state.owned.contains(name)
            && state
                .entries
                .get(name)
                .is_some_and(|e| entry_arn(e).map(function_name) != Some(s.function.as_str()));
        if state.foreign.contains(name) || foreign_entry {
            out.conflicts.push((scope.clone(), name.clone()));
            continue;
        }
        let config = state
            .entries
            .get(name)
            .is_none_or(|e| !entry_matches(e, &expected_entry(s, input.legacy_meta)));
        let register = !state.owned.contains(name);
        let tls = match (input.prefix, input.ca, &actual.params) {
            (Some(prefix), Some(ca), Some(params)) => {
                let path = param_path(prefix, scope, name);
                let fresh = params
                    .get(&path)
                    .is_some_and(|v| tls_fresh(v, ca, input.now));
                desired_paths.insert(path);
                !fresh
            }
            _ => false,
        };
        if config || register || tls {
            out.upserts.push(Upsert {
                service: (*s).clone(),
                config,
                register,
                tls,
            });
        }
    }
    for (scope, state) in &actual.scopes {
        for name in &state.owned {
            if wanted.contains_key(&(scope.clone(), name.clone())) {
                continue;
            }
            let entry = state.entries.get(name);
            let owner = owner_function(name, entry);
            let allowed = match &input.deletions {
                Deletions::None => false,
                Deletions::All => true,
                Deletions::Only { functions, names } => {
                    functions.contains(owner)
                        || functions.contains(name)
                        || names.contains(&(scope.clone(), name.clone()))
                }
            };
            if !allowed || protected(name, owner, input.protect) {
                continue;
            }
            let param = input.prefix.map(|p| param_path(p, scope, name));
            let param = param.filter(|p| {
                actual
                    .params
                    .as_ref()
                    .is_none_or(|params| params.contains_key(p))
            });
            out.deletes.push(Delete {
                scope: scope.clone(),
                name: name.clone(),
                config: entry.is_some(),
                param,
            });
        }
    }
    if manage_tls
        && input.deletions == Deletions::All
        && let (Some(prefix), Some(params)) = (input.prefix, &actual.params)
    {
        let deleting: BTreeSet<&String> = out
            .deletes
            .iter()
            .filter_map(|d| d.param.as_ref())
            .collect();
        // Only `<prefix>/<partition>/<namespace>/<service>` of a scope that was read: anything
        // else under the prefix is not the registrator's to remove.
        let scope_dirs: BTreeSet<String> = actual
            .scopes
            .keys()
            .map(|sc| format!("{prefix}/{}/", sc.path_part()))
            .collect();
        for path in params.keys() {
            let name = path.rsplit('/').next().unwrap_or_default();
            let in_scope_dir = scope_dirs.iter().any(|d| {
                path.strip_prefix(d.as_str())
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            });
            if desired_paths.contains(path)
                || deleting.contains(path)
                || !in_scope_dir
                || protected(name, name, input.protect)
            {
                continue;
            }
            out.orphan_params.push(path.clone());
        }
    }
    out
}

/// The catalog registration the registrator writes (exactly the reference's body).
pub fn registration(node: &str, name: &str) -> Value {
    json!({
        "Node": node,
        "Address": "",
        "SkipNodeUpdate": true,
        "NodeMeta": {"external-node": "true", "external-probe": "true"},
        "Service": {"ID": name, "Service": name, "Tags": [MANAGED_TAG]},
    })
}

#[cfg(test)]
mod tests;
