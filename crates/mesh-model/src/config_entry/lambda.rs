//! How a service is marked as an AWS Lambda function, by either Consul generation (reference
//! §1): the 1.15+ `builtin/aws/lambda` Envoy extension or the ≤1.14 `service-defaults` `Meta`
//! keys. One reading of the marking, used both to validate writes and to compile xDS.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ServiceDefaults;
use super::common::{LAMBDA_EXTENSION, lambda_argument, parse_lambda_arn};

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
