//! Consul's ACL rule language (`acl/policy.go`): resources with a name (`service "web" { ... }`,
//! `*_prefix` variants) and global ones (`operator = "read"`), in HCL or JSON.

use std::fmt;

use serde_json::{Map, Value};

use super::AclError;

/// An access level. `Ord` is by strength for merging: when two policies name the same resource,
/// deny beats write beats list beats read (Consul's `takesPrecedenceOver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Read,
    List,
    Write,
    Deny,
}

/// A rule on a named resource (exact or prefix, depending on the list it is in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    pub name: String,
    pub policy: Access,
}

/// A service rule; `intentions` defaults (at authorization time) to read when the service
/// policy is read or write, else deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    pub name: String,
    pub policy: Access,
    pub intentions: Option<Access>,
}

/// One policy's rules. Resources this product does not enforce (keys, sessions, events,
/// prepared queries) are parsed and validated anyway, so real Consul policies are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    pub acl: Option<Access>,
    pub operator: Option<Access>,
    pub keyring: Option<Access>,
    pub mesh: Option<Access>,
    pub peering: Option<Access>,
    pub services: Vec<ServiceRule>,
    pub service_prefixes: Vec<ServiceRule>,
    pub nodes: Vec<NameRule>,
    pub node_prefixes: Vec<NameRule>,
    pub agents: Vec<NameRule>,
    pub agent_prefixes: Vec<NameRule>,
    pub keys: Vec<NameRule>,
    pub key_prefixes: Vec<NameRule>,
    pub sessions: Vec<NameRule>,
    pub session_prefixes: Vec<NameRule>,
    pub events: Vec<NameRule>,
    pub event_prefixes: Vec<NameRule>,
    pub queries: Vec<NameRule>,
    pub query_prefixes: Vec<NameRule>,
}

const RW: &str = "\"read\", \"write\" or \"deny\"";
const RLW: &str = "\"read\", \"list\", \"write\" or \"deny\"";

// === impl Access ===

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
            Access::Deny => "deny",
        }
    }

    /// Consul's `enforce`: whether a rule of this level grants `required`.
    pub fn grants(self, required: Access) -> bool {
        match self {
            Access::Write => true,
            Access::List => matches!(required, Access::List | Access::Read),
            Access::Read => required == Access::Read,
            Access::Deny => false,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse_access(
    resource: &str,
    name: &str,
    v: &Value,
    allow_list: bool,
) -> Result<Access, AclError> {
    let bad = |value: String| AclError::BadPolicy {
        resource: resource.to_owned(),
        name: name.to_owned(),
        value,
        allowed: if allow_list { RLW } else { RW },
    };
    let Some(s) = v.as_str() else {
        return Err(bad(v.to_string()));
    };
    match s {
        "read" => Ok(Access::Read),
        "write" => Ok(Access::Write),
        "deny" => Ok(Access::Deny),
        "list" if allow_list => Ok(Access::List),
        other => Err(bad(other.to_owned())),
    }
}

// === parsing ===

/// Parses policy rules in HCL or JSON (JSON when the text starts with `{`). Empty rules are
/// valid and grant nothing.
///
/// # Errors
/// [`AclError`] naming the unknown resource/field or the bad policy value.
pub fn parse_rules(text: &str) -> Result<Rules, AclError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Rules::default());
    }
    let value: Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| AclError::Parse(format!("invalid JSON: {e}")))?
    } else {
        parse_hcl(text)?
    };
    let Value::Object(top) = value else {
        return Err(AclError::Parse("rules must be an object".into()));
    };
    let mut rules = Rules::default();
    for (key, v) in top {
        let resource = key.to_ascii_lowercase();
        match resource.as_str() {
            "acl" | "operator" | "keyring" | "mesh" | "peering" => {
                let a = Some(parse_access(&resource, "", &v, false)?);
                match resource.as_str() {
                    "acl" => rules.acl = a,
                    "operator" => rules.operator = a,
                    "keyring" => rules.keyring = a,
                    "mesh" => rules.mesh = a,
                    _ => rules.peering = a,
                }
            }
            "service" | "service_prefix" => {
                for (name, body) in named_blocks(&resource, v)? {
                    let rule = service_rule(&resource, name, &body)?;
                    if resource == "service" {
                        rules.services.push(rule);
                    } else {
                        rules.service_prefixes.push(rule);
                    }
                }
            }
            _ => {
                let list = match resource.as_str() {
                    "node" => &mut rules.nodes,
                    "node_prefix" => &mut rules.node_prefixes,
                    "agent" => &mut rules.agents,
                    "agent_prefix" => &mut rules.agent_prefixes,
                    "key" => &mut rules.keys,
                    "key_prefix" => &mut rules.key_prefixes,
                    "session" => &mut rules.sessions,
                    "session_prefix" => &mut rules.session_prefixes,
                    "event" => &mut rules.events,
                    "event_prefix" => &mut rules.event_prefixes,
                    "query" => &mut rules.queries,
                    "query_prefix" => &mut rules.query_prefixes,
                    _ => {
                        return Err(AclError::Unknown {
                            what: "resource",
                            name: key,
                        });
                    }
                };
                let allow_list = resource.starts_with("key");
                for (name, body) in named_blocks(&resource, v)? {
                    let policy = block_policy(&resource, &name, &body, &[], allow_list)?;
                    list.push(NameRule { name, policy });
                }
            }
        }
    }
    Ok(rules)
}

/// Parses HCL, retrying HCL 1-only forms (several attributes in a one-line block, which
/// Consul's parser accepts) through `config_entry::hcl1`; the first error is reported if the
/// retry fails too.
fn parse_hcl(text: &str) -> Result<Value, AclError> {
    crate::config_entry::hcl1::from_str(text).map_err(AclError::Parse)
}

/// A labelled rule block: its name and body.
type Block = (String, Map<String, Value>);

/// The `(name, body)` pairs of a labelled resource. HCL gives `{"web": {...}}` (or
/// `{"web": [{...}, {...}]}` for a repeated label); JSON may also use a list of such objects.
fn named_blocks(resource: &str, v: Value) -> Result<Vec<Block>, AclError> {
    let bad = || {
        AclError::Parse(format!(
            "{resource} must be a block with a name, as in {resource} \"name\" {{ policy = \"read\" }}"
        ))
    };
    let objects = match v {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::Object(m) => Ok(m),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    let mut out = Vec::new();
    for obj in objects {
        for (name, body) in obj {
            match body {
                Value::Object(b) => out.push((name, b)),
                Value::Array(bodies) => {
                    for b in bodies {
                        match b {
                            Value::Object(b) => out.push((name.clone(), b)),
                            _ => return Err(bad()),
                        }
                    }
                }
                _ => return Err(bad()),
            }
        }
    }
    Ok(out)
}

/// The `policy` of a block; other fields must be in `extra` (returned to the caller via the
/// block) or are refused by name.
fn block_policy(
    resource: &str,
    name: &str,
    body: &Map<String, Value>,
    extra: &[&str],
    allow_list: bool,
) -> Result<Access, AclError> {
    let mut policy = None;
    for (k, v) in body {
        let field = k.to_ascii_lowercase();
        if field == "policy" {
            policy = Some(parse_access(resource, name, v, allow_list)?);
        } else if field == "sentinel" {
            // Enterprise-only Sentinel code: accepted so policies written for Consul
            // Enterprise parse, never enforced.
        } else if !extra.contains(&field.as_str()) {
            return Err(AclError::Unknown {
                what: "field in rule block",
                name: format!("{resource} {name:?} {k}"),
            });
        }
    }
    policy.ok_or_else(|| AclError::BadPolicy {
        resource: resource.to_owned(),
        name: name.to_owned(),
        value: String::new(),
        allowed: if allow_list { RLW } else { RW },
    })
}

fn service_rule(
    resource: &str,
    name: String,
    body: &Map<String, Value>,
) -> Result<ServiceRule, AclError> {
    let policy = block_policy(resource, &name, body, &["intentions"], false)?;
    let intentions = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("intentions"))
        .map(|(_, v)| parse_access(&format!("{resource} intentions"), &name, v, false))
        .transpose()?;
    Ok(ServiceRule {
        name,
        policy,
        intentions,
    })
}
