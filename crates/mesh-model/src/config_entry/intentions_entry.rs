//! `service-intentions`: the config entry that stores intentions, one entry per destination with
//! one item per source. The flattened `/v1/connect/intentions` view lives in `crate::intentions`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FieldResult;
use super::common::{HeaderMatch, HttpMatchView, check_http_match, check_meta};
use crate::names::{EntMeta, ServiceName, WILDCARD};

/// The only intention source type.
pub const SOURCE_TYPE_CONSUL: &str = "consul";
/// Consul's limit on `Description` (`metaValueMaxLength`).
const DESCRIPTION_MAX: usize = 512;

/// `Action` of an L4 intention or of one L7 permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentionAction {
    Allow,
    Deny,
}

impl IntentionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentionAction::Allow => "allow",
            IntentionAction::Deny => "deny",
        }
    }
}

/// `service-intentions`; `Name` is the destination service (`"*"` allowed).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceIntentions {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub sources: Vec<SourceIntention>,
    /// JWT requirements are stored verbatim; nothing here enforces them yet.
    #[serde(rename = "JWT", default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// One source of a `service-intentions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SourceIntention {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<IntentionAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    /// Read-only: accepted on input (clients echo it back) and always recomputed.
    #[serde(default)]
    pub precedence: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Legacy (pre-1.9, ID-based) fields: Consul refuses them on config-entry writes, and so do
    /// we, with Consul's message rather than an "unknown field".
    #[serde(rename = "LegacyID", default, skip_serializing_if = "String::is_empty")]
    pub legacy_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_meta: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_create_time: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_update_time: Option<Value>,
}

/// One L7 permission.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct IntentionPermission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<IntentionAction>,
    #[serde(rename = "HTTP", default, skip_serializing_if = "Option::is_none")]
    pub http: Option<IntentionHttpPermission>,
    #[serde(rename = "JWT", default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct IntentionHttpPermission {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_exact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_regex: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

// === impl ServiceIntentions ===

impl ServiceIntentions {
    /// The destination as a qualified name.
    pub fn destination(&self) -> ServiceName {
        ServiceName::new(
            self.name.clone(),
            EntMeta::new(Some(&self.partition), Some(&self.namespace)),
        )
    }

    /// Whether the destination namespace or name is a wildcard.
    pub fn has_wildcard_destination(&self) -> bool {
        self.name == WILDCARD || self.namespace == WILDCARD
    }

    pub fn has_any_permissions(&self) -> bool {
        self.sources.iter().any(|s| !s.permissions.is_empty())
    }

    /// The source of `src` as a qualified name: a local source inherits the destination's
    /// partition; its namespace defaults to `default`, as Consul normalises it.
    pub fn source_name(&self, src: &SourceIntention) -> ServiceName {
        let partition = if !src.partition.is_empty() {
            src.partition.as_str()
        } else if src.peer.is_empty() && src.sameness_group.is_empty() {
            self.partition.as_str()
        } else {
            ""
        };
        ServiceName::new(
            src.name.clone(),
            EntMeta::new(Some(partition), Some(&src.namespace)),
        )
    }

    pub(crate) fn normalize(&mut self) {
        let dest = self.destination();
        let sources = std::mem::take(&mut self.sources);
        self.sources = sources
            .into_iter()
            .map(|mut s| {
                if s.r#type.is_empty() {
                    s.r#type = SOURCE_TYPE_CONSUL.to_owned();
                }
                for p in &mut s.permissions {
                    if let Some(h) = &mut p.http {
                        for m in &mut h.methods {
                            *m = m.to_ascii_uppercase();
                        }
                    }
                }
                s.precedence = crate::intentions::precedence(&self.source_name(&s), &dest);
                s
            })
            .collect();
        // Consul keeps sources sorted by precedence (stable), highest first.
        self.sources
            .sort_by_key(|s| std::cmp::Reverse(s.precedence));
    }

    pub(crate) fn check(&self) -> FieldResult {
        check_wildcards("", &self.name, &self.namespace, &self.partition, "", "")?;
        check_meta(&self.meta)?;
        if self.sources.is_empty() {
            return Err(("Sources".into(), "at least one source is required".into()));
        }
        let dest_wild = self.has_wildcard_destination();
        let mut seen = BTreeSet::new();
        for (i, src) in self.sources.iter().enumerate() {
            let f = |sub: &str| format!("Sources[{i}]{sub}");
            if src.name.is_empty() {
                return Err((f(".Name"), "is required".into()));
            }
            check_wildcards(
                &f("."),
                &src.name,
                &src.namespace,
                &src.partition,
                &src.peer,
                &src.sameness_group,
            )?;
            if src.name != WILDCARD {
                crate::names::validate_service_name("service name", &src.name)
                    .map_err(|e| (f(".Name"), e.to_string()))?;
            }
            if !src.peer.is_empty() && !src.partition.is_empty() {
                return Err((
                    f(".Peer"),
                    "cannot set Peer and Partition at the same time".into(),
                ));
            }
            if !src.sameness_group.is_empty() && !src.partition.is_empty() {
                return Err((
                    f(".SamenessGroup"),
                    "cannot set SamenessGroup and Partition at the same time".into(),
                ));
            }
            if !src.sameness_group.is_empty() && !src.peer.is_empty() {
                return Err((
                    f(".SamenessGroup"),
                    "cannot set SamenessGroup and Peer at the same time".into(),
                ));
            }
            if src.description.len() > DESCRIPTION_MAX {
                return Err((
                    f(".Description"),
                    format!("exceeds maximum length {DESCRIPTION_MAX}"),
                ));
            }
            if !src.legacy_id.is_empty() {
                return Err((f(".LegacyID"), "must be omitted".into()));
            }
            if src.legacy_meta.as_ref().is_some_and(|m| !m.is_empty()) {
                return Err((f(".LegacyMeta"), "must be omitted".into()));
            }
            if src.legacy_create_time.is_some() {
                return Err((f(".LegacyCreateTime"), "must be omitted".into()));
            }
            if src.legacy_update_time.is_some() {
                return Err((f(".LegacyUpdateTime"), "must be omitted".into()));
            }
            if src.permissions.is_empty() && src.action.is_none() {
                return Err((f(".Action"), "must be set to 'allow' or 'deny'".into()));
            }
            if !src.permissions.is_empty() && src.action.is_some() {
                return Err((
                    f(".Action"),
                    "must be omitted if Permissions are specified".into(),
                ));
            }
            if dest_wild && !src.permissions.is_empty() {
                return Err((
                    f(".Permissions"),
                    "cannot be specified on intentions with wildcarded destinations".into(),
                ));
            }
            if !src.r#type.is_empty() && src.r#type != SOURCE_TYPE_CONSUL {
                return Err((f(".Type"), "must be set to 'consul'".into()));
            }
            for (j, perm) in src.permissions.iter().enumerate() {
                let pf = f(&format!(".Permissions[{j}]"));
                if perm.action.is_none() {
                    return Err((
                        format!("{pf}.Action"),
                        "must be set to 'allow' or 'deny'".into(),
                    ));
                }
                let Some(http) = &perm.http else {
                    return Err((format!("{pf}.HTTP"), "is required".into()));
                };
                let parts = check_http_match(
                    &format!("{pf}.HTTP"),
                    &HttpMatchView {
                        path_exact: &http.path_exact,
                        path_prefix: &http.path_prefix,
                        path_regex: &http.path_regex,
                        header: &http.header,
                        methods: &http.methods,
                    },
                )?;
                if parts == 0 {
                    return Err((format!("{pf}.HTTP"), "should not be empty".into()));
                }
            }
            let key = (
                self.source_name(src),
                src.peer.clone(),
                src.sameness_group.clone(),
            );
            if !seen.insert(key) {
                let qualifier = if !src.peer.is_empty() {
                    format!("peer({:?}) ", src.peer)
                } else if !src.sameness_group.is_empty() {
                    format!("sameness-group({:?}) ", src.sameness_group)
                } else {
                    String::new()
                };
                return Err((
                    f(""),
                    format!("defines {qualifier}{:?} more than once", src.name),
                ));
            }
        }
        Ok(())
    }
}

/// Consul's `validateIntentionWildcards`: wildcards are whole values only, an exact name cannot
/// follow a wildcard namespace, and partitions, peers and sameness groups never take wildcards.
fn check_wildcards(
    prefix: &str,
    name: &str,
    namespace: &str,
    partition: &str,
    peer: &str,
    sameness_group: &str,
) -> FieldResult {
    let err = |field: &str, msg: &str| Err((format!("{prefix}{field}"), msg.to_owned()));
    if namespace != WILDCARD && namespace.contains('*') {
        return err(
            "Namespace",
            "wildcard character '*' cannot be used with partial values",
        );
    }
    if name != WILDCARD {
        if name.contains('*') {
            return err(
                "Name",
                "wildcard character '*' cannot be used with partial values",
            );
        }
        if namespace == WILDCARD {
            return err("Name", "exact value cannot follow wildcard namespace");
        }
    }
    if partition.contains('*') {
        return err("Partition", "cannot use wildcard '*' in partition");
    }
    if peer.contains('*') {
        return err("Peer", "cannot use wildcard '*' in peer");
    }
    if sameness_group.contains('*') {
        return err("SamenessGroup", "cannot use wildcard '*' in sameness group");
    }
    Ok(())
}
