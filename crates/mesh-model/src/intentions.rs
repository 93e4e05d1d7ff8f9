//! Intentions: the flattened `/v1/connect/intentions` view of `service-intentions` entries,
//! Consul's precedence rules, matching and the allow/deny decision (reference §5.1).
//!
//! Since Consul 1.9 intentions are stored only as `service-intentions` config entries (one per
//! destination, one item per source); the legacy endpoints read and write those entries. This
//! module is that bridge: [`all`], [`exact`], [`match_by`] and [`check`] read a
//! [`ConfigEntrySet`]; [`upsert_exact`] and [`delete_exact`] return the entry write to perform.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config_entry::{
    ConfigEntry, ConfigEntryError, ConfigEntrySet, EntryKey, Kind, SOURCE_TYPE_CONSUL,
    ServiceIntentions, SourceIntention,
};
use crate::decode;
use crate::names::{DEFAULT, EntMeta, ServiceName, WILDCARD};

pub use crate::config_entry::{IntentionAction, IntentionHttpPermission, IntentionPermission};

/// One source of a `service-intentions` entry seen as a legacy intention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intention {
    /// Empty for intentions written as config entries (Consul only keeps IDs for pre-1.9 data).
    pub id: String,
    pub description: String,
    pub source: ServiceName,
    pub source_peer: String,
    pub source_sameness_group: String,
    pub destination: ServiceName,
    /// `None` for L7 intentions, which carry `permissions` instead.
    pub action: Option<IntentionAction>,
    pub permissions: Vec<IntentionPermission>,
    pub precedence: u32,
    pub meta: BTreeMap<String, String>,
    pub source_type: String,
}

/// Body of `PUT /v1/connect/intentions/exact` (and the legacy create): the intention's
/// settable fields. Read-only and addressing fields are accepted, because clients send back
/// what they read, and ignored: the source and destination come from the query string, as in
/// Consul.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct IntentionRequest {
    #[serde(default)]
    pub action: Option<IntentionAction>,
    #[serde(default)]
    pub permissions: Vec<IntentionPermission>,
    #[serde(default)]
    pub description: String,
    /// Accepted for compatibility; like Consul's config-entry-backed intentions, per-source
    /// meta is not stored (the entry's `Meta` is shared by all sources).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub source_type: String,
    // Ignored fields (see the type docs).
    #[serde(rename = "ID", default)]
    _id: Option<Value>,
    #[serde(rename = "SourceNS", default)]
    _source_ns: Option<Value>,
    #[serde(default)]
    _source_name: Option<Value>,
    #[serde(rename = "DestinationNS", default)]
    _destination_ns: Option<Value>,
    #[serde(default)]
    _destination_name: Option<Value>,
    #[serde(default)]
    _source_partition: Option<Value>,
    #[serde(default)]
    _destination_partition: Option<Value>,
    #[serde(default)]
    _source_peer: Option<Value>,
    #[serde(default)]
    _source_sameness_group: Option<Value>,
    #[serde(default)]
    _precedence: Option<Value>,
    #[serde(default)]
    _create_index: Option<Value>,
    #[serde(default)]
    _modify_index: Option<Value>,
    #[serde(default)]
    _created_at: Option<Value>,
    #[serde(default)]
    _updated_at: Option<Value>,
    #[serde(default)]
    _hash: Option<Value>,
}

/// What a legacy delete should do to the store.
// The entry is not boxed: the value lives for one request and the lead's code matches on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    /// Write this entry (the source was removed, others remain).
    Write(ConfigEntry),
    /// The source was the last one: delete the whole entry.
    Delete(EntryKey),
    NotFound,
}

/// Which side of an intention `/v1/connect/intentions/match` matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    Source,
    Destination,
}

/// Outcome of `/v1/connect/intentions/check` and `/v1/agent/connect/authorize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    /// The deciding intention is L7: callers that can enforce HTTP rules must do so; here it
    /// counts as deny.
    pub has_permissions: bool,
}

/// Why an intention request was refused (all HTTP 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IntentionError {
    #[error("invalid intention: {0}")]
    Decode(String),
    #[error(transparent)]
    Invalid(#[from] ConfigEntryError),
}

// === precedence ===

/// Consul's intention precedence (reference §5.1): the destination's exactness sets the maximum
/// (9, 6, 3 for exact name, exact namespace only, all wildcard) and each non-exact source part
/// subtracts one.
pub fn precedence(source: &ServiceName, destination: &ServiceName) -> u32 {
    let max = match count_exact(destination) {
        2 => 9,
        1 => 6,
        _ => 3,
    };
    max - (2 - count_exact(source))
}

/// Exact parts of a name: `*/*` → 0, `ns/*` → 1, `ns/name` → 2. An exact name after a wildcard
/// namespace is invalid (refused by validation) and counts as 0.
fn count_exact(n: &ServiceName) -> u32 {
    if n.meta.namespace == WILDCARD {
        0
    } else if n.name == WILDCARD {
        1
    } else {
        2
    }
}

// === impl Intention ===

impl Intention {
    fn from_entry(e: &ServiceIntentions, src: &SourceIntention) -> Self {
        Intention {
            id: String::new(),
            description: src.description.clone(),
            source: e.source_name(src),
            source_peer: src.peer.clone(),
            source_sameness_group: src.sameness_group.clone(),
            destination: e.destination(),
            action: src.action,
            permissions: src.permissions.clone(),
            precedence: src.precedence,
            meta: e.meta.clone(),
            source_type: if src.r#type.is_empty() {
                SOURCE_TYPE_CONSUL.to_owned()
            } else {
                src.r#type.clone()
            },
        }
    }

    /// Whether the source is a local (non-peer, non-sameness-group) name that covers `src`,
    /// wildcards included.
    pub fn source_matches(&self, src: &ServiceName) -> bool {
        self.source_peer.is_empty()
            && self.source_sameness_group.is_empty()
            && name_matches(&self.source, src)
    }

    pub fn is_l7(&self) -> bool {
        !self.permissions.is_empty()
    }

    /// The `/v1/connect/intentions` JSON shape. Partitions are omitted when `default`, as
    /// Consul CE omits them.
    pub fn to_api_json(&self, create_index: u64, modify_index: u64) -> Value {
        let mut m = Map::new();
        m.insert("ID".into(), json!(self.id));
        if !self.description.is_empty() {
            m.insert("Description".into(), json!(self.description));
        }
        if !self.source_peer.is_empty() {
            m.insert("SourcePeer".into(), json!(self.source_peer));
        }
        if !self.source_sameness_group.is_empty() {
            m.insert(
                "SourceSamenessGroup".into(),
                json!(self.source_sameness_group),
            );
        }
        m.insert("SourceNS".into(), json!(self.source.meta.namespace));
        m.insert("SourceName".into(), json!(self.source.name));
        m.insert(
            "DestinationNS".into(),
            json!(self.destination.meta.namespace),
        );
        m.insert("DestinationName".into(), json!(self.destination.name));
        if self.source.meta.partition != DEFAULT {
            m.insert("SourcePartition".into(), json!(self.source.meta.partition));
        }
        if self.destination.meta.partition != DEFAULT {
            m.insert(
                "DestinationPartition".into(),
                json!(self.destination.meta.partition),
            );
        }
        m.insert("SourceType".into(), json!(self.source_type));
        m.insert(
            "Action".into(),
            json!(self.action.map(IntentionAction::as_str).unwrap_or("")),
        );
        if !self.permissions.is_empty() {
            m.insert(
                "Permissions".into(),
                serde_json::to_value(&self.permissions).unwrap_or(Value::Null),
            );
        }
        m.insert("Precedence".into(), json!(self.precedence));
        m.insert("Meta".into(), json!(self.meta));
        m.insert("CreateIndex".into(), json!(create_index));
        m.insert("ModifyIndex".into(), json!(modify_index));
        Value::Object(m)
    }
}

impl std::fmt::Display for Intention {
    /// Consul's `Intention.String()`, used in authorize reasons.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = match self.action {
            _ if self.is_l7() => format!("Permissions: {}", self.permissions.len()),
            Some(a) => format!("Action: {}", a.as_str().to_ascii_uppercase()),
            None => "Action: ".to_owned(),
        };
        write!(
            f,
            "{} => {} (Precedence: {}, {detail})",
            display_name(&self.source),
            display_name(&self.destination),
            self.precedence
        )
    }
}

fn display_name(n: &ServiceName) -> String {
    if n.meta == EntMeta::default() {
        n.name.clone()
    } else {
        format!("{}/{}/{}", n.meta.partition, n.meta.namespace, n.name)
    }
}

/// Whether pattern `p` (possibly `*` name / `*` namespace) covers `n`. Partitions never take
/// wildcards.
fn name_matches(p: &ServiceName, n: &ServiceName) -> bool {
    p.meta.partition == n.meta.partition
        && (p.meta.namespace == WILDCARD || p.meta.namespace == n.meta.namespace)
        && (p.name == WILDCARD || p.name == n.name)
}

/// Consul's `IntentionPrecedenceSorter`: precedence descending, then the names.
fn precedence_order(a: &Intention, b: &Intention) -> Ordering {
    b.precedence
        .cmp(&a.precedence)
        .then_with(|| a.source.meta.partition.cmp(&b.source.meta.partition))
        .then_with(|| a.source.meta.namespace.cmp(&b.source.meta.namespace))
        .then_with(|| a.source.name.cmp(&b.source.name))
        .then_with(|| {
            a.destination
                .meta
                .partition
                .cmp(&b.destination.meta.partition)
        })
        .then_with(|| {
            a.destination
                .meta
                .namespace
                .cmp(&b.destination.meta.namespace)
        })
        .then_with(|| a.destination.name.cmp(&b.destination.name))
        .then_with(|| a.source_peer.cmp(&b.source_peer))
        .then_with(|| a.source_sameness_group.cmp(&b.source_sameness_group))
}

fn intention_entries(set: &ConfigEntrySet) -> impl Iterator<Item = &ServiceIntentions> {
    set.list(Kind::ServiceIntentions)
        .into_iter()
        .filter_map(|e| match e {
            ConfigEntry::ServiceIntentions(i) => Some(i),
            _ => None,
        })
}

// === queries ===

/// Every intention, sorted as Consul sorts them.
pub fn all(set: &ConfigEntrySet) -> Vec<Intention> {
    let mut out: Vec<Intention> = intention_entries(set)
        .flat_map(|e| e.sources.iter().map(move |s| Intention::from_entry(e, s)))
        .collect();
    out.sort_by(precedence_order);
    out
}

/// The intention from exactly `src` (a local source) to exactly `dst`, wildcards compared
/// literally.
pub fn exact(set: &ConfigEntrySet, src: &ServiceName, dst: &ServiceName) -> Option<Intention> {
    let e = entry_for(set, dst)?;
    e.sources
        .iter()
        .find(|s| is_local_source(e, s, src))
        .map(|s| Intention::from_entry(e, s))
}

fn entry_for<'a>(set: &'a ConfigEntrySet, dst: &ServiceName) -> Option<&'a ServiceIntentions> {
    match set.for_service(Kind::ServiceIntentions, dst) {
        Some(ConfigEntry::ServiceIntentions(e)) => Some(e),
        _ => None,
    }
}

fn is_local_source(e: &ServiceIntentions, s: &SourceIntention, src: &ServiceName) -> bool {
    s.peer.is_empty() && s.sameness_group.is_empty() && e.source_name(s) == *src
}

/// `/v1/connect/intentions/match`: every intention whose source (or destination) covers
/// `name`, wildcards included, highest precedence first.
pub fn match_by(set: &ConfigEntrySet, by: MatchBy, name: &ServiceName) -> Vec<Intention> {
    let mut out: Vec<Intention> = match by {
        MatchBy::Destination => intention_entries(set)
            .filter(|e| name_matches(&e.destination(), name))
            .flat_map(|e| e.sources.iter().map(move |s| Intention::from_entry(e, s)))
            .collect(),
        MatchBy::Source => intention_entries(set)
            .flat_map(|e| e.sources.iter().map(move |s| Intention::from_entry(e, s)))
            .filter(|i| i.source_matches(name))
            .collect(),
    };
    out.sort_by(precedence_order);
    out
}

/// The `service-intentions` entries [`match_by`] with [`MatchBy::Destination`] can match for
/// `dst`, present or not: its own, its namespace's `*`, and its partition's `*` in namespace
/// `*` (an exact name in namespace `*` is refused when written). Writing or deleting any other
/// entry never changes who may reach `dst`.
pub fn destination_entry_keys(dst: &ServiceName) -> [EntryKey; 3] {
    let key = |namespace: &str, name: &str| EntryKey {
        kind: Kind::ServiceIntentions,
        meta: EntMeta::new(Some(&dst.meta.partition), Some(namespace)),
        name: name.to_owned(),
    };
    [
        key(&dst.meta.namespace, &dst.name),
        key(&dst.meta.namespace, WILDCARD),
        key(WILDCARD, WILDCARD),
    ]
}

/// The allow/deny decision for a connection from `src` to `dst`: the highest-precedence
/// intention whose source and destination cover them decides; an L7 intention counts as deny
/// (this answer cannot see the request); nothing matching means the ACL default policy.
pub fn check(
    set: &ConfigEntrySet,
    src: &ServiceName,
    dst: &ServiceName,
    default_allow: bool,
) -> Decision {
    let winner = match_by(set, MatchBy::Destination, dst)
        .into_iter()
        .find(|i| i.source_matches(src));
    match winner {
        Some(i) if i.is_l7() => Decision {
            allowed: false,
            reason: format!("Matched L7 intention: {i}; L7 intentions count as deny here"),
            has_permissions: true,
        },
        Some(i) => Decision {
            allowed: i.action == Some(IntentionAction::Allow),
            reason: format!("Matched L4 intention: {i}"),
            has_permissions: false,
        },
        None => Decision {
            allowed: default_allow,
            reason: "Default behavior configured by ACLs".to_owned(),
            has_permissions: false,
        },
    }
}

// === writes ===

impl IntentionRequest {
    /// Decodes the JSON body (any key case; unknown fields refused by name).
    ///
    /// # Errors
    /// [`IntentionError::Decode`] naming the problem.
    pub fn decode_json(bytes: &[u8]) -> Result<Self, IntentionError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| IntentionError::Decode(format!("invalid JSON: {e}")))?;
        Self::decode_value(v)
    }

    /// As [`Self::decode_json`], from a parsed value.
    ///
    /// # Errors
    /// [`IntentionError::Decode`] naming the problem.
    pub fn decode_value(v: Value) -> Result<Self, IntentionError> {
        let v = crate::config_entry::fix_header_lists(v)
            .map_err(|e| IntentionError::Decode(e.to_string()))?;
        let v = decode::canonicalize(v).map_err(|e| IntentionError::Decode(e.to_string()))?;
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            IntentionError::Decode(if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        })
    }

    fn to_source(&self, src: &ServiceName) -> SourceIntention {
        SourceIntention {
            name: src.name.clone(),
            namespace: src.meta.namespace.clone(),
            partition: src.meta.partition.clone(),
            action: self.action,
            permissions: self.permissions.clone(),
            r#type: if self.source_type.is_empty() {
                SOURCE_TYPE_CONSUL.to_owned()
            } else {
                self.source_type.clone()
            },
            description: self.description.clone(),
            ..SourceIntention::default()
        }
    }
}

/// The `service-intentions` entry to write so that `src → dst` becomes `req`: the existing
/// entry with that source replaced (or appended), or a new entry. Validated, including against
/// the other entries (an L7 intention needs an HTTP destination).
///
/// # Errors
/// [`IntentionError::Invalid`] with the entry's validation error.
pub fn upsert_exact(
    set: &ConfigEntrySet,
    src: &ServiceName,
    dst: &ServiceName,
    req: IntentionRequest,
) -> Result<ConfigEntry, IntentionError> {
    let source = req.to_source(src);
    let mut entry = match entry_for(set, dst) {
        Some(e) => e.clone(),
        None => ServiceIntentions {
            name: dst.name.clone(),
            namespace: dst.meta.namespace.clone(),
            partition: dst.meta.partition.clone(),
            ..ServiceIntentions::default()
        },
    };
    match entry
        .sources
        .iter()
        .position(|s| is_local_source(&entry, s, src))
    {
        Some(i) => entry.sources[i] = source,
        None => entry.sources.push(source),
    }
    let entry = renormalize(entry)?;
    set.validate_upsert(&entry)?;
    Ok(entry)
}

/// Recomputes precedence and ordering through the normal decode path, so an entry built here is
/// identical to the same entry written through `PUT /v1/config`.
fn renormalize(e: ServiceIntentions) -> Result<ConfigEntry, IntentionError> {
    let v = ConfigEntry::ServiceIntentions(e).to_json();
    Ok(crate::config_entry::decode_value(v)?)
}

/// What to do for `DELETE /v1/connect/intentions/exact`.
pub fn delete_exact(set: &ConfigEntrySet, src: &ServiceName, dst: &ServiceName) -> DeleteOutcome {
    let Some(e) = entry_for(set, dst) else {
        return DeleteOutcome::NotFound;
    };
    let Some(i) = e.sources.iter().position(|s| is_local_source(e, s, src)) else {
        return DeleteOutcome::NotFound;
    };
    let mut e = e.clone();
    e.sources.remove(i);
    let entry = ConfigEntry::ServiceIntentions(e);
    if matches!(&entry, ConfigEntry::ServiceIntentions(x) if x.sources.is_empty()) {
        DeleteOutcome::Delete(entry.key())
    } else {
        DeleteOutcome::Write(entry)
    }
}

#[cfg(test)]
mod tests;
