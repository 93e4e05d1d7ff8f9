//! Function tags → desired mesh services, exactly as the reference's `GetLambdaEvents` reads
//! them (prefix, spellings, precedence), with its faults fixed: a bad tag is an error for that
//! function only, aliases are validated, and async mode is spelled as Consul compares it.

use std::collections::BTreeMap;

use crate::config::Config;

/// Prefix of every tag the registrator reads.
pub const TAG_PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda";
/// `…/enabled`: `true` (exactly) makes the function a mesh service.
pub const TAG_ENABLED: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled";
const TAG_PASSTHROUGH: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/payload-passthrough";
const TAG_INVOCATION_MODE: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/invocation-mode";
const TAG_DATACENTER: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/datacenter";
const TAG_NAMESPACE: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/namespace";
const TAG_PARTITION: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/partition";
const TAG_ALIASES: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/aliases";

/// The catalog tag that marks a service as the registrator's own.
pub const MANAGED_TAG: &str = "managed-by-lambda-registrator";

/// A Lambda function as listed: ARN, name and function-level tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub arn: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

/// Where a service lives in Consul. Empty strings mean "the default" (no query option sent):
/// the local datacenter, and no partition/namespace in OSS.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub dc: String,
    pub partition: String,
    pub namespace: String,
}

impl Scope {
    /// Where a Consul request for this scope goes (empty parts: the default, not sent).
    pub fn tenancy(&self) -> consul_client::Tenancy<'_> {
        consul_client::Tenancy {
            datacenter: Some(&self.dc),
            partition: Some(&self.partition),
            namespace: Some(&self.namespace),
        }
    }

    /// Consul query options of this scope (`?dc=…&partition=…&ns=…`), empty when all default.
    pub fn query(&self) -> String {
        self.tenancy().query()
    }

    /// The `<partition>/<namespace>` part of an extension-data path (`default` when unset).
    pub fn path_part(&self) -> String {
        let or_default = |s: &str| {
            if s.is_empty() {
                "default".to_owned()
            } else {
                s.to_owned()
            }
        };
        format!(
            "{}/{}",
            or_default(&self.partition),
            or_default(&self.namespace)
        )
    }
}

/// `SYNCHRONOUS` or `ASYNCHRONOUS` (the tag's spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationMode {
    Synchronous,
    Asynchronous,
}

/// One mesh service the registrator should keep registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Service name: the function name, or `<fn>-<alias>`.
    pub name: String,
    /// The function it comes from.
    pub function: String,
    /// The function ARN, with `:<alias>` for alias services.
    pub arn: String,
    pub scope: Scope,
    pub payload_passthrough: bool,
    pub invocation_mode: InvocationMode,
}

/// What a function's tags ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Desired {
    /// Register these services (the function, then one per alias).
    Enabled(Vec<Service>),
    /// Not enabled: these names (function and tagged aliases) must not be registered.
    Disabled { scope: Scope, names: Vec<String> },
    /// Not this registrator's business (another datacenter or an unmanaged partition).
    Ignored(String),
}

/// A tag value the registrator cannot accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("invalid invocation mode: {0:?} (want SYNCHRONOUS or ASYNCHRONOUS)")]
    InvocationMode(String),
    #[error("namespace or partition tags need Consul Enterprise (ENTERPRISE=true)")]
    NotEnterprise,
    #[error("invalid alias {0:?} in the aliases tag (want [A-Za-z0-9_-], not only digits)")]
    Alias(String),
    #[error("invalid {tag} tag value {value:?}: {reason}")]
    Name {
        tag: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Lambda's alias name rule: `(?!^[0-9]+$)([a-zA-Z0-9-_]+)`, 1..=128 characters.
fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 128
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !a.bytes().all(|b| b.is_ascii_digit())
}

/// A Consul name (dc, namespace, partition) as Consul accepts it.
fn check_name(tag: &'static str, v: &str) -> Result<(), TagError> {
    let ok = v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(TagError::Name {
            tag,
            value: v.to_owned(),
            reason: "only letters, digits, '-' and '_' (at most 64)",
        })
    }
}

/// The aliases of a function's `aliases` tag (`+`-separated; empty pieces are skipped).
///
/// # Errors
/// [`TagError::Alias`] for a piece Lambda would not accept as an alias name.
pub fn aliases(tags: &BTreeMap<String, String>) -> Result<Vec<String>, TagError> {
    let Some(v) = tags.get(TAG_ALIASES) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = Vec::new();
    for a in v.split('+').map(str::trim).filter(|a| !a.is_empty()) {
        if !valid_alias(a) {
            return Err(TagError::Alias(a.to_owned()));
        }
        if !out.iter().any(|x| x == a) {
            out.push(a.to_owned());
        }
    }
    Ok(out)
}

/// What `f`'s tags ask for under `cfg`. Pure; tested by value and fuzzed.
///
/// # Errors
/// A [`TagError`] for the first bad tag; the caller fails this function only.
pub fn desired(f: &Function, cfg: &Config) -> Result<Desired, TagError> {
    let tag = |k: &str| f.tags.get(k).map(String::as_str);
    let dc = tag(TAG_DATACENTER).unwrap_or_default();
    if !cfg.datacenter.is_empty() && dc != cfg.datacenter {
        return Ok(Desired::Ignored(format!(
            "datacenter tag {dc:?} is not DATACENTER {:?}",
            cfg.datacenter
        )));
    }
    check_name("datacenter", dc)?;
    let enabled = tag(TAG_ENABLED) == Some("true");
    let payload_passthrough = tag(TAG_PASSTHROUGH) == Some("true");
    let invocation_mode = match tag(TAG_INVOCATION_MODE) {
        None | Some("SYNCHRONOUS") => InvocationMode::Synchronous,
        Some("ASYNCHRONOUS") => InvocationMode::Asynchronous,
        Some(other) => return Err(TagError::InvocationMode(other.to_owned())),
    };
    let ns = tag(TAG_NAMESPACE).unwrap_or_default();
    let ap = tag(TAG_PARTITION).unwrap_or_default();
    let (partition, namespace) = if cfg.enterprise {
        check_name("namespace", ns)?;
        check_name("partition", ap)?;
        let ap = if ap.is_empty() { "default" } else { ap };
        let ns = if ns.is_empty() { "default" } else { ns };
        if !cfg.partitions.iter().any(|p| p == ap) {
            return Ok(Desired::Ignored(format!(
                "partition {ap:?} is not in PARTITIONS"
            )));
        }
        (ap.to_owned(), ns.to_owned())
    } else if !ns.is_empty() || !ap.is_empty() {
        return Err(TagError::NotEnterprise);
    } else {
        (String::new(), String::new())
    };
    let scope = Scope {
        dc: dc.to_owned(),
        partition,
        namespace,
    };
    let aliases = aliases(&f.tags)?;
    if !enabled {
        let mut names = vec![f.name.clone()];
        names.extend(aliases.iter().map(|a| format!("{}-{a}", f.name)));
        return Ok(Desired::Disabled { scope, names });
    }
    let base = Service {
        name: f.name.clone(),
        function: f.name.clone(),
        arn: f.arn.clone(),
        scope,
        payload_passthrough,
        invocation_mode,
    };
    let mut out = Vec::with_capacity(1 + aliases.len());
    for a in &aliases {
        out.push(Service {
            name: format!("{}-{a}", f.name),
            arn: format!("{}:{a}", f.arn),
            ..base.clone()
        });
    }
    out.insert(0, base);
    Ok(Desired::Enabled(out))
}

/// The function name in a Lambda ARN (`arn:aws:lambda:r:a:function:NAME[:qualifier]`), or the
/// input itself when it is a plain name (`NAME[:qualifier]`).
pub fn function_name(arn_or_name: &str) -> &str {
    let parts: Vec<&str> = arn_or_name.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        // `account:function:name` partial ARN.
        [_, "function", name, ..] => name,
        [name, ..] => name,
        [] => arn_or_name,
    }
}

/// A function reference without its qualifier (`...:function:NAME`, or `NAME`).
pub fn unqualified(arn_or_name: &str) -> String {
    if arn_or_name.starts_with("arn:") {
        arn_or_name.split(':').take(7).collect::<Vec<_>>().join(":")
    } else {
        function_name(arn_or_name).to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:pay";

    fn f(tags: &[(&str, &str)]) -> Function {
        Function {
            arn: ARN.into(),
            name: "pay".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (format!("{TAG_PREFIX}/{k}"), (*v).to_owned()))
                .collect(),
        }
    }

    fn oss() -> Config {
        Config::from_vars(&BTreeMap::new()).unwrap()
    }

    #[test]
    fn enabled_with_aliases_and_modes() {
        let d = desired(
            &f(&[
                ("enabled", "true"),
                ("payload-passthrough", "true"),
                ("invocation-mode", "ASYNCHRONOUS"),
                ("aliases", "prod+dev"),
            ]),
            &oss(),
        )
        .unwrap();
        let Desired::Enabled(s) = d else {
            panic!("{d:?}")
        };
        let names: Vec<(&str, &str)> = s
            .iter()
            .map(|s| (s.name.as_str(), s.arn.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("pay", ARN),
                ("pay-prod", &*format!("{ARN}:prod")),
                ("pay-dev", &*format!("{ARN}:dev"))
            ]
        );
        assert!(s.iter().all(|s| s.payload_passthrough
            && s.invocation_mode == InvocationMode::Asynchronous
            && s.scope == Scope::default()));
        // Written in the lower case Consul compares with.
        let entry = crate::plan::expected_entry(&s[0], crate::config::Markings::Extensions);
        assert_eq!(
            entry["EnvoyExtensions"][0]["Arguments"]["invocationMode"],
            "asynchronous"
        );
    }

    #[test]
    fn enabled_is_exact_and_disabled_lists_alias_names() {
        for v in ["True", "yes", "1", ""] {
            let d = desired(&f(&[("enabled", v), ("aliases", "a")]), &oss()).unwrap();
            assert_eq!(
                d,
                Desired::Disabled {
                    scope: Scope::default(),
                    names: vec!["pay".into(), "pay-a".into()]
                },
                "{v}"
            );
        }
    }

    #[test]
    fn bad_tags_are_errors_even_when_disabled() {
        assert_eq!(
            desired(&f(&[("invocation-mode", "async")]), &oss()),
            Err(TagError::InvocationMode("async".into()))
        );
        assert_eq!(
            desired(&f(&[("enabled", "true"), ("namespace", "ns1")]), &oss()),
            Err(TagError::NotEnterprise)
        );
        assert_eq!(
            desired(
                &f(&[("enabled", "true"), ("aliases", "ok+bad alias")]),
                &oss()
            ),
            Err(TagError::Alias("bad alias".into()))
        );
        assert_eq!(
            desired(&f(&[("enabled", "true"), ("aliases", "123")]), &oss()),
            Err(TagError::Alias("123".into()))
        );
        assert!(matches!(
            desired(&f(&[("enabled", "true"), ("datacenter", "dc/1")]), &oss()),
            Err(TagError::Name { .. })
        ));
    }

    #[test]
    fn empty_alias_pieces_are_skipped() {
        let Desired::Enabled(s) =
            desired(&f(&[("enabled", "true"), ("aliases", "+a++a+")]), &oss()).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.len(), 2);
        let Desired::Enabled(s) =
            desired(&f(&[("enabled", "true"), ("aliases", "")]), &oss()).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn datacenter_filter_and_enterprise_scopes() {
        let mut c = oss();
        c.datacenter = "dc2".into();
        assert!(matches!(
            desired(&f(&[("enabled", "true")]), &c).unwrap(),
            Desired::Ignored(_)
        ));
        let Desired::Enabled(s) =
            desired(&f(&[("enabled", "true"), ("datacenter", "dc2")]), &c).unwrap()
        else {
            panic!()
        };
        assert_eq!(s[0].scope.dc, "dc2");
        assert_eq!(s[0].scope.query(), "?dc=dc2");

        let mut e = oss();
        e.enterprise = true;
        e.partitions = vec!["default".into(), "team".into()];
        let Desired::Enabled(s) =
            desired(&f(&[("enabled", "true"), ("namespace", "ns1")]), &e).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            s[0].scope,
            Scope {
                dc: String::new(),
                partition: "default".into(),
                namespace: "ns1".into()
            }
        );
        assert_eq!(s[0].scope.path_part(), "default/ns1");
        assert!(matches!(
            desired(&f(&[("enabled", "true"), ("partition", "other")]), &e).unwrap(),
            Desired::Ignored(_)
        ));
    }

    #[test]
    fn function_names_from_arns() {
        assert_eq!(function_name(ARN), "pay");
        assert_eq!(function_name(&format!("{ARN}:prod")), "pay");
        assert_eq!(function_name("123456789012:function:pay"), "pay");
        assert_eq!(function_name("pay:1"), "pay");
        assert_eq!(function_name("pay"), "pay");
        assert_eq!(unqualified(&format!("{ARN}:prod")), ARN);
        assert_eq!(unqualified(ARN), ARN);
        assert_eq!(unqualified("pay:3"), "pay");
        assert_eq!(unqualified("123456789012:function:pay:3"), "pay");
    }
}
