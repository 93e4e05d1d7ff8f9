//! Config entries: the eight kinds lambdamesh serves, decoded the way Consul decodes them (any
//! key case, snake_case, HCL or JSON, unknown fields refused by name), validated the way Consul
//! validates them, and written back in Consul's API JSON.
//!
//! ```text
//!   bytes ──decode_json / decode_hcl_or_json──▶ decode_value ──▶ ConfigEntry ──to_json──▶ JSON
//!                                                    │ normalise (Protocol lowercase, Methods
//!                                                    │ uppercase, intention precedence)
//!   ConfigEntry::validate        self-contained rules (names, weights, matches, subsets)
//!   ConfigEntrySet::validate_*   rules that need the other entries (protocols, subsets of
//!                                other services), checked on the would-be state
//! ```
//!
//! Entries keep `Partition`/`Namespace` as written (empty = not given); [`ConfigEntry::ent_meta`]
//! resolves them to `default`, and [`ConfigEntry::set_ent_meta`] fills in what the body omitted.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::decode::{self, DecodeError};
use crate::names::{self, EntMeta, ServiceName};

pub mod bexpr;
mod chain;
mod common;
mod defaults;
mod duration;
mod gateway;
pub mod hcl1;
mod intentions_entry;
mod lambda;
mod set;

pub use chain::{
    CookieConfig, FailoverPolicy, FailoverTarget, HashPolicy, LeastRequestConfig, LoadBalancer,
    MAX_SCALED_WEIGHT, ResolverFailover, ResolverRedirect, ResolverSubset, RingHashConfig,
    ServiceResolver, ServiceRoute, ServiceRouteDestination, ServiceRouteHttpMatch,
    ServiceRouteMatch, ServiceRouter, ServiceSplit, ServiceSplitter, scale_weight,
};
pub use common::{
    EnvoyExtension, ExposeConfig, ExposePath, HTTP_METHODS, HeaderMatch, HttpHeaderModifiers,
    LambdaArn, MeshGatewayConfig, MeshGatewayMode, PROTOCOLS, QueryParamMatch,
    TransparentProxyConfig, is_http_like, lambda_argument, parse_lambda_arn,
};
pub use defaults::{
    DestinationConfig, MeshConfig, MeshHttpConfig, MeshTransparentProxy, PeeringMeshConfig,
    ProxyDefaults, ServiceDefaults,
};
pub use duration::{DurationError, GoDuration};
pub use gateway::{LinkedService, TerminatingGateway};
pub use intentions_entry::{
    IntentionAction, IntentionHttpPermission, IntentionPermission, SOURCE_TYPE_CONSUL,
    ServiceIntentions, SourceIntention,
};
pub use lambda::{
    LAMBDA_EXTENSION, LAMBDA_META_PREFIX, LambdaMarking, LambdaMarkings, LambdaTarget,
    invocation_mode_argument, lambda_arn_of_entry_json,
};
pub use set::ConfigEntrySet;

/// The only name a `proxy-defaults` entry may have.
pub const PROXY_DEFAULTS_GLOBAL: &str = "global";
/// The only name a `mesh` entry may have.
pub const MESH_NAME: &str = "mesh";
/// The protocol of a service nothing configures.
pub const DEFAULT_PROTOCOL: &str = "tcp";

/// Result of a self-contained check: `Err((field path, message))`.
pub(crate) type FieldResult = Result<(), (String, String)>;

/// The config-entry kinds lambdamesh serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ServiceDefaults,
    ProxyDefaults,
    ServiceRouter,
    ServiceSplitter,
    ServiceResolver,
    TerminatingGateway,
    ServiceIntentions,
    Mesh,
}

/// A decoded, normalised config entry of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigEntry {
    ServiceDefaults(ServiceDefaults),
    ProxyDefaults(ProxyDefaults),
    ServiceRouter(ServiceRouter),
    ServiceSplitter(ServiceSplitter),
    ServiceResolver(ServiceResolver),
    TerminatingGateway(TerminatingGateway),
    ServiceIntentions(ServiceIntentions),
    Mesh(MeshConfig),
}

/// Identity of an entry in the store: kind, tenancy, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    pub kind: Kind,
    pub meta: EntMeta,
    pub name: String,
}

/// Why an entry was refused. Every variant is the client's fault (HTTP 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigEntryError {
    /// The body is not valid JSON/HCL or does not fit the kind's shape.
    #[error("{}{message}", kind.map(|k| format!("{k}: ")).unwrap_or_default())]
    Decode { kind: Option<Kind>, message: String },
    #[error("Kind is required")]
    MissingKind,
    #[error("invalid config entry kind {0:?}")]
    UnknownKind(String),
    /// A self-contained rule failed; `field` is a path like `Splits[1].Weight` (empty when the
    /// rule is about the whole entry).
    #[error("{kind} {name:?}: {}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Invalid {
        kind: Kind,
        name: String,
        field: String,
        message: String,
    },
    /// The entry conflicts with other entries (or removing it would break them).
    #[error("{kind} {name:?}: {message}")]
    Conflict {
        kind: Kind,
        name: String,
        message: String,
    },
}

// === impl Kind ===

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::ServiceDefaults,
        Kind::ProxyDefaults,
        Kind::ServiceRouter,
        Kind::ServiceSplitter,
        Kind::ServiceResolver,
        Kind::TerminatingGateway,
        Kind::ServiceIntentions,
        Kind::Mesh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ServiceDefaults => "service-defaults",
            Kind::ProxyDefaults => "proxy-defaults",
            Kind::ServiceRouter => "service-router",
            Kind::ServiceSplitter => "service-splitter",
            Kind::ServiceResolver => "service-resolver",
            Kind::TerminatingGateway => "terminating-gateway",
            Kind::ServiceIntentions => "service-intentions",
            Kind::Mesh => "mesh",
        }
    }

    /// Parses a kind name, exactly as Consul spells it.
    ///
    /// # Errors
    /// [`ConfigEntryError::UnknownKind`] naming the input.
    pub fn parse(s: &str) -> Result<Kind, ConfigEntryError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ConfigEntryError::UnknownKind(s.to_owned()))
    }

    /// Whether entries of this kind are part of a service's discovery chain.
    pub fn is_discovery_chain(self) -> bool {
        matches!(
            self,
            Kind::ServiceRouter | Kind::ServiceSplitter | Kind::ServiceResolver
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl ConfigEntry ===

/// Expands to a `match` over every variant binding the inner entry as `$e`.
macro_rules! each {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            ConfigEntry::ServiceDefaults($e) => $body,
            ConfigEntry::ProxyDefaults($e) => $body,
            ConfigEntry::ServiceRouter($e) => $body,
            ConfigEntry::ServiceSplitter($e) => $body,
            ConfigEntry::ServiceResolver($e) => $body,
            ConfigEntry::TerminatingGateway($e) => $body,
            ConfigEntry::ServiceIntentions($e) => $body,
            ConfigEntry::Mesh($e) => $body,
        }
    };
}

impl ConfigEntry {
    pub fn kind(&self) -> Kind {
        match self {
            ConfigEntry::ServiceDefaults(_) => Kind::ServiceDefaults,
            ConfigEntry::ProxyDefaults(_) => Kind::ProxyDefaults,
            ConfigEntry::ServiceRouter(_) => Kind::ServiceRouter,
            ConfigEntry::ServiceSplitter(_) => Kind::ServiceSplitter,
            ConfigEntry::ServiceResolver(_) => Kind::ServiceResolver,
            ConfigEntry::TerminatingGateway(_) => Kind::TerminatingGateway,
            ConfigEntry::ServiceIntentions(_) => Kind::ServiceIntentions,
            ConfigEntry::Mesh(_) => Kind::Mesh,
        }
    }

    pub fn name(&self) -> &str {
        each!(self, e => &e.name)
    }

    /// Partition and namespace; empty means `default`.
    pub fn ent_meta(&self) -> EntMeta {
        each!(self, e => EntMeta::new(Some(&e.partition), Some(&e.namespace)))
    }

    /// Fills in the partition/namespace the body omitted (from `?partition=` / `?ns=`); values
    /// the body gave win, as in Consul, where the body's enterprise meta is decoded last.
    ///
    /// The entry is normalised again (intention precedence depends on the tenancy), so it stays
    /// what [`decode_value`] of its [`ConfigEntry::to_json`] gives: the store keeps the entry as
    /// given and logs its JSON, and replay must rebuild the same entry from that JSON.
    pub fn set_ent_meta(&mut self, meta: &EntMeta) {
        each!(self, e => {
            if e.partition.is_empty() {
                e.partition = meta.partition.clone();
            }
            if e.namespace.is_empty() {
                e.namespace = meta.namespace.clone();
            }
        });
        self.normalize();
    }

    pub fn key(&self) -> EntryKey {
        EntryKey {
            kind: self.kind(),
            meta: self.ent_meta(),
            name: self.name().to_owned(),
        }
    }

    /// The entry's `(kind, name)` as a qualified service name (meaningful for service-scoped
    /// kinds).
    pub fn service_name(&self) -> ServiceName {
        ServiceName::new(self.name(), self.ent_meta())
    }

    /// Consul's API JSON for this entry (PascalCase, `Kind` included), without the raft indexes.
    pub fn to_json(&self) -> Value {
        let body = each!(self, e => serde_json::to_value(e));
        // Serialising these plain structs cannot fail: every map key is a string and there are
        // no non-finite floats once `validate` or decoding has run (a NaN weight cannot be
        // decoded from JSON). Fall back to an empty object rather than panic.
        let mut obj = match body {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        obj.insert(
            "Kind".into(),
            Value::String(self.kind().as_str().to_owned()),
        );
        Value::Object(obj)
    }

    /// Self-contained validation (no other entries consulted).
    ///
    /// # Errors
    /// The first rule that fails, naming the field.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        let kind = self.kind();
        let name = self.name();
        let invalid = |(field, message): (String, String)| ConfigEntryError::Invalid {
            kind,
            name: name.to_owned(),
            field,
            message,
        };
        if name.is_empty() {
            return Err(invalid(("Name".into(), "is required".into())));
        }
        self.check_names().map_err(invalid)?;
        let r = match self {
            ConfigEntry::ServiceDefaults(e) => e.check(),
            ConfigEntry::ProxyDefaults(e) => e.check(),
            ConfigEntry::ServiceRouter(e) => e.check(),
            ConfigEntry::ServiceSplitter(e) => e.check(),
            ConfigEntry::ServiceResolver(e) => e.check(),
            ConfigEntry::TerminatingGateway(e) => e.check(),
            ConfigEntry::ServiceIntentions(e) => e.check(),
            ConfigEntry::Mesh(e) => e.check(),
        };
        r.map_err(invalid)
    }

    /// Name and tenancy syntax. Service intentions allow a `*` name and namespace; their
    /// wildcard rules are checked with the rest of the entry.
    fn check_names(&self) -> FieldResult {
        let (partition, namespace) = each!(self, e => (e.partition.as_str(), e.namespace.as_str()));
        let wildcard_ok = matches!(self, ConfigEntry::ServiceIntentions(_));
        // Wildcards in intentions get Consul's wildcard messages from the kind's own rules.
        let skip = |v: &str| v.is_empty() || (wildcard_ok && v.contains('*'));
        if !skip(partition) {
            names::validate_tenancy_name("partition", partition)
                .map_err(|e| ("Partition".to_owned(), e.to_string()))?;
        }
        if !skip(namespace) {
            names::validate_tenancy_name("namespace", namespace)
                .map_err(|e| ("Namespace".to_owned(), e.to_string()))?;
        }
        // Mesh-wide kinds are partition-scoped: Consul keeps them in the default namespace.
        if matches!(self, ConfigEntry::ProxyDefaults(_) | ConfigEntry::Mesh(_))
            && !namespace.is_empty()
            && namespace != names::DEFAULT
        {
            return Err((
                "Namespace".to_owned(),
                format!(
                    "{} entries can only be created in the default namespace, not {namespace:?}",
                    self.kind()
                ),
            ));
        }
        let name = self.name();
        match self {
            // Fixed names are checked by the kind's own rules, with Consul's message.
            ConfigEntry::ProxyDefaults(_) | ConfigEntry::Mesh(_) => Ok(()),
            ConfigEntry::ServiceIntentions(_) if name == names::WILDCARD => Ok(()),
            ConfigEntry::ServiceIntentions(_) if name.contains('*') => Ok(()),
            ConfigEntry::ServiceDefaults(_) if name == names::WILDCARD => Ok(()),
            _ => names::validate_service_name("service name", name)
                .map_err(|e| ("Name".to_owned(), e.to_string())),
        }
    }

    fn normalize(&mut self) {
        match self {
            ConfigEntry::ServiceDefaults(e) => e.normalize(),
            ConfigEntry::ServiceRouter(e) => e.normalize(),
            ConfigEntry::ServiceIntentions(e) => e.normalize(),
            ConfigEntry::Mesh(e) => e.normalize(),
            ConfigEntry::ProxyDefaults(_)
            | ConfigEntry::ServiceSplitter(_)
            | ConfigEntry::ServiceResolver(_)
            | ConfigEntry::TerminatingGateway(_) => {}
        }
    }
}

// === decoding ===

/// Decodes one entry from a JSON value, dispatching on `Kind`. Keys may use any case or
/// snake_case; `CreateIndex`/`ModifyIndex` (echoed back by read-modify-write clients) are
/// ignored; unknown fields are refused by path. The result is normalised but not validated.
///
/// # Errors
/// [`ConfigEntryError::MissingKind`], [`ConfigEntryError::UnknownKind`] or
/// [`ConfigEntryError::Decode`] naming the offending field.
pub fn decode_value(v: Value) -> Result<ConfigEntry, ConfigEntryError> {
    let Value::Object(_) = v else {
        return Err(ConfigEntryError::Decode {
            kind: None,
            message: "config entry must be a JSON object".into(),
        });
    };
    let v = fix_header_lists(v)?;
    let v = decode::canonicalize(v).map_err(decode_err(None))?;
    let Value::Object(mut obj) = v else {
        return Err(ConfigEntryError::MissingKind);
    };
    let kind = match obj.remove("Kind") {
        Some(Value::String(s)) if !s.is_empty() => Kind::parse(&s)?,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ConfigEntryError::MissingKind);
        }
        Some(other) => {
            return Err(ConfigEntryError::Decode {
                kind: None,
                message: format!("Kind: expected a string, got {other}"),
            });
        }
    };
    // Server-owned fields a client may echo back from a read.
    for k in ["CreateIndex", "ModifyIndex", "Hash"] {
        obj.remove(k);
    }
    let v = Value::Object(obj);
    let mut entry = match kind {
        Kind::ServiceDefaults => ConfigEntry::ServiceDefaults(de(kind, v)?),
        Kind::ProxyDefaults => ConfigEntry::ProxyDefaults(de(kind, v)?),
        Kind::ServiceRouter => ConfigEntry::ServiceRouter(de(kind, v)?),
        Kind::ServiceSplitter => ConfigEntry::ServiceSplitter(de(kind, v)?),
        Kind::ServiceResolver => ConfigEntry::ServiceResolver(de(kind, v)?),
        Kind::TerminatingGateway => ConfigEntry::TerminatingGateway(de(kind, v)?),
        Kind::ServiceIntentions => ConfigEntry::ServiceIntentions(de(kind, v)?),
        Kind::Mesh => ConfigEntry::Mesh(de(kind, v)?),
    };
    entry.normalize();
    Ok(entry)
}

/// Parses JSON bytes (size limits are the caller's job) and decodes them.
///
/// # Errors
/// As [`decode_value`], plus malformed JSON.
pub fn decode_json(bytes: &[u8]) -> Result<ConfigEntry, ConfigEntryError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| ConfigEntryError::Decode {
        kind: None,
        message: format!("invalid JSON: {e}"),
    })?;
    decode_value(v)
}

/// Decodes a `consul config write` file: JSON when it starts with `{`, HCL otherwise.
///
/// # Errors
/// As [`decode_value`], plus malformed JSON/HCL.
pub fn decode_hcl_or_json(text: &str) -> Result<ConfigEntry, ConfigEntryError> {
    if !text.trim_start().starts_with(['{', '[']) {
        hcl1::check_nesting(text).map_err(|m| ConfigEntryError::Decode {
            kind: None,
            message: format!("invalid HCL: {m}"),
        })?;
    }
    // HCL is read as Consul's HCL 1 (the retry with its HCL 1-only forms rewritten lives in
    // `decode::json_or_hcl_to_value`).
    let v = decode::json_or_hcl_to_value(text).map_err(decode_err(None))?;
    decode_value(v)
}

fn decode_err(kind: Option<Kind>) -> impl Fn(DecodeError) -> ConfigEntryError {
    move |e| ConfigEntryError::Decode {
        kind,
        message: e.to_string(),
    }
}

/// serde with the failing path in the message (`Splits[1].Weight: invalid type: ...`).
fn de<T: DeserializeOwned>(kind: Kind, v: Value) -> Result<T, ConfigEntryError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        };
        ConfigEntryError::Decode {
            kind: Some(kind),
            message,
        }
    })
}

/// `decode::canonicalize` treats `Header` as user data (a health check's header map), but in
/// routers and intention permissions it is a list of match structs whose keys are field names.
/// Canonicalise those elements here, before the generic pass leaves them alone; a single HCL
/// block (an object of scalars) becomes a one-element list.
///
/// Also drops `"Action": ""`, which Consul's own intention JSON carries for L7 intentions (the
/// field is not `omitempty` there) and clients echo back.
pub(crate) fn fix_header_lists(v: Value) -> Result<Value, ConfigEntryError> {
    match v {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, child) in map {
                let folded = fold_key(&k);
                if folded == "action" && child.as_str() == Some("") {
                    continue;
                }
                let child = if folded == "header" {
                    match child {
                        Value::Array(items) => Value::Array(
                            items
                                .into_iter()
                                .map(|i| decode::canonicalize(i).map_err(decode_err(None)))
                                .collect::<Result<_, _>>()?,
                        ),
                        Value::Object(o) if o.values().all(|x| !x.is_object()) => {
                            Value::Array(vec![
                                decode::canonicalize(Value::Object(o)).map_err(decode_err(None))?,
                            ])
                        }
                        other => other,
                    }
                } else if USER_DATA_KEYS.contains(&folded.as_str()) {
                    child
                } else {
                    fix_header_lists(child)?
                };
                out.insert(k, child);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .into_iter()
            .map(fix_header_lists)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

/// Folded names of fields whose contents are user data, never descended into.
const USER_DATA_KEYS: &[&str] = &[
    "meta",
    "config",
    "arguments",
    "add",
    "set",
    "legacymeta",
    "upstreamconfig",
    "ratelimits",
    "accesslogs",
    "tls",
    "jwt",
];

fn fold_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests;
