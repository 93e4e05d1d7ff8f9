//! How a service is marked as an AWS Lambda function, by either Consul generation (reference
//! §1): the 1.15+ `builtin/aws/lambda` Envoy extension or the ≤1.14 `service-defaults` `Meta`
//! keys. The marking's names live here only: one reading of it, used both to validate writes
//! and to compile xDS ([`ServiceDefaults::lambda_target`]); the entry a registrator writes
//! ([`LambdaMarking::service_defaults_json`]); and the ARN read back from any Consul's answer
//! ([`lambda_arn_of_entry_json`]). Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::ServiceDefaults;
use super::common::{lambda_argument, parse_lambda_arn};

/// The Lambda extension's name (reference §1.2).
pub const LAMBDA_EXTENSION: &str = "builtin/aws/lambda";

/// The ≤1.14 `Meta` key prefix.
pub const LAMBDA_META_PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/";

/// How a Lambda-backed service is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTarget {
    /// The function ARN, with its qualifier (alias or version) when it has one.
    pub arn: String,
    /// The region the function lives in (from the ARN, or the ≤1.14 `region` key).
    pub region: String,
    /// Raw body in and out instead of the JSON envelope.
    pub payload_passthrough: bool,
    /// `Event` invocations: the caller gets 202 at once.
    pub asynchronous: bool,
}

impl ServiceDefaults {
    /// The Lambda marking of this service, if it has a usable one. The extension wins over the
    /// `Meta` keys. Invocation mode is matched case-insensitively: `ASYNCHRONOUS` really is
    /// asynchronous (Consul's exact lower-case comparison silently made it synchronous).
    pub fn lambda_target(&self) -> Option<LambdaTarget> {
        if let Some(ext) = self
            .envoy_extensions
            .iter()
            .find(|e| e.name == LAMBDA_EXTENSION)
        {
            let arn = lambda_argument(&ext.arguments, "ARN")
                .and_then(Value::as_str)?
                .to_owned();
            let parsed = parse_lambda_arn(&arn).ok()?;
            return Some(LambdaTarget {
                region: parsed.region,
                payload_passthrough: lambda_argument(&ext.arguments, "PayloadPassthrough")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                asynchronous: lambda_argument(&ext.arguments, "InvocationMode")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.eq_ignore_ascii_case("asynchronous")),
                arn,
            });
        }
        let meta = |k: &str| meta_value(&self.meta, k);
        if meta("enabled") != Some("true") {
            return None;
        }
        let arn = meta("arn").filter(|a| !a.is_empty())?.to_owned();
        let region = match meta("region").filter(|r| !r.is_empty()) {
            Some(r) => r.to_owned(),
            None => parse_lambda_arn(&arn).ok()?.region,
        };
        Some(LambdaTarget {
            arn,
            region,
            payload_passthrough: passthrough_value(&self.meta) == Some("true"),
            asynchronous: meta("invocation-mode")
                .is_some_and(|m| m.eq_ignore_ascii_case("asynchronous")),
        })
    }

    /// Whether the service carries a Lambda marking at all (valid or not).
    pub fn is_lambda(&self) -> bool {
        self.envoy_extensions
            .iter()
            .any(|e| e.name == LAMBDA_EXTENSION)
            || meta_value(&self.meta, "enabled") == Some("true")
    }
}

fn meta_value<'a>(meta: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    meta.get(&format!("{LAMBDA_META_PREFIX}{key}"))
        .map(String::as_str)
}

/// The passthrough flag, under its name or the early misspelling (reference §1.1).
fn passthrough_value(meta: &BTreeMap<String, String>) -> Option<&str> {
    meta_value(meta, "payload-passthrough").or(meta_value(meta, "payload-passhthrough"))
}

/// Write-time checks of the ≤1.14 keys when `enabled` is `"true"`, so a bad marking is refused
/// when written, not discovered when a request fails. Consul ignored such a service silently.
pub(crate) fn check_lambda_meta(meta: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    if meta_value(meta, "enabled") != Some("true") {
        return Ok(());
    }
    let field = |k: &str| format!("Meta[{:?}]", format!("{LAMBDA_META_PREFIX}{k}"));
    match meta_value(meta, "arn") {
        None | Some("") => {
            return Err((field("arn"), "is required when enabled is \"true\"".into()));
        }
        Some(arn) => {
            let parsed = parse_lambda_arn(arn).map_err(|m| (field("arn"), m))?;
            if let Some(region) = meta_value(meta, "region")
                && !region.is_empty()
                && region != parsed.region
            {
                return Err((
                    field("region"),
                    format!("is {region:?} but the ARN's region is {:?}", parsed.region),
                ));
            }
        }
    }
    if let Some(v) = passthrough_value(meta)
        && v != "true"
        && v != "false"
    {
        return Err((
            field("payload-passthrough"),
            format!("must be \"true\" or \"false\", got {v:?}"),
        ));
    }
    if let Some(v) = meta_value(meta, "invocation-mode")
        && !v.eq_ignore_ascii_case("synchronous")
        && !v.eq_ignore_ascii_case("asynchronous")
    {
        return Err((
            field("invocation-mode"),
            format!("must be \"synchronous\" or \"asynchronous\", got {v:?}"),
        ));
    }
    Ok(())
}

/// Which generation(s) of the marking a writer puts in `service-defaults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LambdaMarkings {
    /// `EnvoyExtensions` only (Consul ≥ 1.15).
    Extensions,
    /// `EnvoyExtensions` and the ≤ 1.14 `Meta` keys, for clusters of mixed versions.
    Both,
    /// The ≤ 1.14 `Meta` keys only: older servers reject `EnvoyExtensions`.
    MetaOnly,
}

/// The marking of one Lambda-backed service, as a registrator writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LambdaMarking<'a> {
    /// The function ARN, with `:<alias>` for an alias service.
    pub arn: &'a str,
    /// Raw body in and out instead of the JSON envelope.
    pub payload_passthrough: bool,
    /// `Event` invocations.
    pub asynchronous: bool,
}

/// The extension's `invocationMode` argument. Consul's `builtin/aws/lambda` compares with
/// `"asynchronous"` exactly, so the Go registrator's upper-case value silently meant synchronous;
/// lower case is written (consul-lambda-tools §4).
pub fn invocation_mode_argument(asynchronous: bool) -> &'static str {
    if asynchronous {
        "asynchronous"
    } else {
        "synchronous"
    }
}

impl LambdaMarking<'_> {
    /// The `service-defaults` entry of `service` with this marking, as the JSON body of
    /// `PUT /v1/config`: the Go registrator's body (`Protocol: http`, the extension with
    /// `Required: false` and the arguments `arn`, `invocationMode`, `payloadPassthrough`), and
    /// with [`LambdaMarkings::Both`] or [`LambdaMarkings::MetaOnly`] the ≤ 1.14 keys `enabled`,
    /// `arn`, `region` (from the ARN) and `payload-passthrough` (the invocation mode had no key).
    pub fn service_defaults_json(&self, service: &str, markings: LambdaMarkings) -> Value {
        let mut entry = Map::new();
        entry.insert("Kind".into(), json!("service-defaults"));
        entry.insert("Name".into(), json!(service));
        entry.insert("Protocol".into(), json!("http"));
        if markings != LambdaMarkings::MetaOnly {
            entry.insert(
                "EnvoyExtensions".into(),
                json!([{
                    "Name": LAMBDA_EXTENSION,
                    "Required": false,
                    "Arguments": {
                        "arn": self.arn,
                        "invocationMode": invocation_mode_argument(self.asynchronous),
                        "payloadPassthrough": self.payload_passthrough,
                    },
                }]),
            );
        }
        if markings != LambdaMarkings::Extensions {
            let region = self.arn.split(':').nth(3).unwrap_or_default();
            let key = |k: &str| format!("{LAMBDA_META_PREFIX}{k}");
            entry.insert(
                "Meta".into(),
                json!({
                    key("enabled"): "true",
                    key("arn"): self.arn,
                    key("region"): region,
                    key("payload-passthrough"): self.payload_passthrough.to_string(),
                }),
            );
        }
        Value::Object(entry)
    }
}

/// The Lambda ARN a `service-defaults` entry points at, read from the JSON a Consul server
/// answers: its `builtin/aws/lambda` extension's `arn`, else the ≤ 1.14 `Meta` marking. Keys
/// match exactly or, failing that, in any case (Consul's mapstructure); unknown fields are
/// ignored and nothing is validated, so an entry any Consul version wrote can be read.
pub fn lambda_arn_of_entry_json(entry: &Value) -> Option<&str> {
    let o = entry.as_object()?;
    let from_extension = get_ci(o, "EnvoyExtensions")
        .and_then(Value::as_array)
        .and_then(|exts| {
            exts.iter().find_map(|x| {
                let o = x.as_object()?;
                (get_ci(o, "Name")?.as_str()? == LAMBDA_EXTENSION).then_some(())?;
                get_ci(get_ci(o, "Arguments")?.as_object()?, "arn")?.as_str()
            })
        });
    from_extension.or_else(|| {
        get_ci(o, "Meta")?
            .get(format!("{LAMBDA_META_PREFIX}arn"))?
            .as_str()
    })
}

/// A member by exact key, else by a key equal in any case.
fn get_ci<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).or_else(|| {
        o.iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config_entry::{ConfigEntry, decode_value};

    const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:f:prod";

    fn target(entry: Value) -> LambdaTarget {
        let ConfigEntry::ServiceDefaults(d) = decode_value(entry).unwrap() else {
            panic!("not service-defaults");
        };
        d.lambda_target().unwrap()
    }

    #[test]
    fn the_written_entry_is_the_go_registrators_body() {
        let m = LambdaMarking {
            arn: ARN,
            payload_passthrough: true,
            asynchronous: false,
        };
        assert_eq!(
            m.service_defaults_json("f-prod", LambdaMarkings::Extensions)
                .to_string(),
            r#"{"EnvoyExtensions":[{"Arguments":{"arn":"arn:aws:lambda:eu-west-1:123456789012:function:f:prod","invocationMode":"synchronous","payloadPassthrough":true},"Name":"builtin/aws/lambda","Required":false}],"Kind":"service-defaults","Name":"f-prod","Protocol":"http"}"#
        );
        let only = m.service_defaults_json("f-prod", LambdaMarkings::MetaOnly);
        assert!(only.get("EnvoyExtensions").is_none());
        assert_eq!(
            only["Meta"],
            json!({
                "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled": "true",
                "serverless.consul.hashicorp.com/v1alpha1/lambda/arn": ARN,
                "serverless.consul.hashicorp.com/v1alpha1/lambda/region": "eu-west-1",
                "serverless.consul.hashicorp.com/v1alpha1/lambda/payload-passthrough": "true",
            })
        );
    }

    #[test]
    fn what_is_written_reads_back_in_every_generation() {
        for markings in [
            LambdaMarkings::Extensions,
            LambdaMarkings::Both,
            LambdaMarkings::MetaOnly,
        ] {
            for asynchronous in [false, true] {
                let m = LambdaMarking {
                    arn: ARN,
                    payload_passthrough: !asynchronous,
                    asynchronous,
                };
                let entry = m.service_defaults_json("s", markings);
                assert_eq!(lambda_arn_of_entry_json(&entry), Some(ARN));
                let t = target(entry);
                assert_eq!(t.arn, ARN);
                assert_eq!(t.region, "eu-west-1");
                assert_eq!(t.payload_passthrough, !asynchronous);
                // The ≤ 1.14 keys never carried the invocation mode.
                if markings != LambdaMarkings::MetaOnly {
                    assert_eq!(t.asynchronous, asynchronous);
                }
            }
        }
    }

    #[test]
    fn the_arn_is_read_from_any_consuls_spelling() {
        let e = json!({"envoyExtensions": [
            {"name": "other", "arguments": {"arn": "x"}},
            {"NAME": LAMBDA_EXTENSION, "Arguments": {"ARN": "a"}},
        ]});
        assert_eq!(lambda_arn_of_entry_json(&e), Some("a"));
        let e = json!({"Meta": {"serverless.consul.hashicorp.com/v1alpha1/lambda/arn": "m"}});
        assert_eq!(lambda_arn_of_entry_json(&e), Some("m"));
        assert_eq!(
            lambda_arn_of_entry_json(&json!({"Kind": "service-defaults"})),
            None
        );
        assert_eq!(lambda_arn_of_entry_json(&json!([])), None);
    }
}
