//! Pieces shared by several config-entry kinds: Envoy extensions, mesh-gateway and transparent
//! proxy settings, header modifiers, and the HTTP match rules that routers and L7 intentions
//! validate the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lambda::LAMBDA_EXTENSION;

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

pub(crate) fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

pub(crate) fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Consul's limits on config-entry `Meta` (`validateConfigEntryMeta`).
pub const META_MAX_KEY_PAIRS: usize = 64;
pub const META_KEY_MAX_LENGTH: usize = 128;
pub const META_VALUE_MAX_LENGTH: usize = 512;

/// Protocols a service may declare.
pub const PROTOCOLS: [&str; 4] = ["tcp", "http", "http2", "grpc"];

/// Whether L7 features (routers, splitters, L7 intentions) may be used with this protocol.
pub fn is_http_like(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// One `EnvoyExtensions` item (`api.EnvoyExtension`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct EnvoyExtension {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub arguments: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consul_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub envoy_version: String,
}

/// `MeshGateway { Mode }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MeshGatewayConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

impl MeshGatewayConfig {
    pub fn is_empty(&self) -> bool {
        self.mode.is_empty()
    }

    /// The mode as a value (an unknown one, which validation refuses, reads as the default).
    pub fn mode(&self) -> MeshGatewayMode {
        MeshGatewayMode::parse(&self.mode)
    }
}

/// How traffic to another datacenter leaves a proxy (Consul's `MeshGateway.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum MeshGatewayMode {
    /// Not set here: the next level decides (upstream, then service-defaults, then
    /// proxy-defaults); unset everywhere, it means `none`.
    #[default]
    Default,
    /// Straight to the other datacenter (see `docs/multi-dc.md`: through its mesh gateways, as
    /// no direct reachability between datacenters is assumed).
    None,
    /// Through this datacenter's mesh gateways.
    Local,
    /// Through the other datacenter's mesh gateways.
    Remote,
}

impl MeshGatewayMode {
    pub fn parse(s: &str) -> Self {
        match s {
            "none" => Self::None,
            "local" => Self::Local,
            "remote" => Self::Remote,
            _ => Self::Default,
        }
    }

    /// `self` unless it is unset, then `fallback`.
    pub fn or(self, fallback: MeshGatewayMode) -> MeshGatewayMode {
        if self == Self::Default {
            fallback
        } else {
            self
        }
    }
}

/// `TransparentProxy { OutboundListenerPort, DialedDirectly }` (service/proxy defaults).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TransparentProxyConfig {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub outbound_listener_port: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dialed_directly: bool,
}

impl TransparentProxyConfig {
    pub fn is_empty(&self) -> bool {
        self.outbound_listener_port == 0 && !self.dialed_directly
    }
}

/// `Expose { Checks, Paths }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ExposeConfig {
    #[serde(default, skip_serializing_if = "is_false")]
    pub checks: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<ExposePath>,
}

impl ExposeConfig {
    pub fn is_empty(&self) -> bool {
        !self.checks && self.paths.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ExposePath {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub listener_port: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub local_path_port: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub parsed_from_check: bool,
}

/// `RequestHeaders` / `ResponseHeaders` (`HTTPHeaderModifiers`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct HttpHeaderModifiers {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header condition in a router match or an L7 intention permission.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct HeaderMatch {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub present: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub suffix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regex: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub invert: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_case: bool,
}

/// A query-parameter condition in a router match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct QueryParamMatch {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub present: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub regex: String,
}

/// Checks `Meta` the way `validateConfigEntryMeta` does. Returns `(field, message)`.
pub(crate) fn check_meta(meta: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    if meta.len() > META_MAX_KEY_PAIRS {
        return Err((
            "Meta".into(),
            format!("exceeds maximum element count {META_MAX_KEY_PAIRS}"),
        ));
    }
    for (k, v) in meta {
        if k.len() > META_KEY_MAX_LENGTH {
            return Err((
                "Meta".into(),
                format!("key {k:?} exceeds maximum length {META_KEY_MAX_LENGTH}"),
            ));
        }
        if v.len() > META_VALUE_MAX_LENGTH {
            return Err((
                "Meta".into(),
                format!("value for key {k:?} exceeds maximum length {META_VALUE_MAX_LENGTH}"),
            ));
        }
    }
    Ok(())
}

/// Checks a protocol value: empty (inherit) or one of [`PROTOCOLS`].
pub(crate) fn check_protocol(p: &str) -> Result<(), String> {
    if p.is_empty() || PROTOCOLS.contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "unsupported protocol {p:?}: must be one of tcp, http, http2, grpc"
        ))
    }
}

pub(crate) fn check_envoy_extensions(exts: &[EnvoyExtension]) -> Result<(), (String, String)> {
    for (i, ext) in exts.iter().enumerate() {
        if ext.name.is_empty() {
            return Err((format!("EnvoyExtensions[{i}].Name"), "is required".into()));
        }
        if ext.name == LAMBDA_EXTENSION {
            check_lambda_arguments(&ext.arguments).map_err(|(f, m)| {
                let path = format!("EnvoyExtensions[{i}].Arguments");
                (
                    if f.is_empty() {
                        path
                    } else {
                        format!("{path}.{f}")
                    },
                    m,
                )
            })?;
        }
    }
    Ok(())
}

/// Argument of a Lambda extension by case-insensitive name: Consul decodes `Arguments` with
/// mapstructure, which matches field names that way (the registrator sends `arn`,
/// `payloadPassthrough`, `invocationMode`).
pub fn lambda_argument<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    args.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The Lambda extension's arguments in Consul's spelling; any case is accepted (mapstructure).
pub const LAMBDA_ARGUMENTS: [&str; 3] = ["ARN", "PayloadPassthrough", "InvocationMode"];

/// What Consul's Lambda extension checks when it is configured: an ARN it can take the region
/// from, a boolean passthrough flag and a string invocation mode. Unlike Consul, whose
/// mapstructure decoding silently drops an unknown key (so a misspelt `PayloadPasthrough`
/// leaves passthrough off), an argument that is none of [`LAMBDA_ARGUMENTS`] in any case is
/// refused by name (docs/model.md).
fn check_lambda_arguments(args: &Map<String, Value>) -> Result<(), (String, String)> {
    let mut unknown: Vec<&str> = args
        .keys()
        .filter(|k| !LAMBDA_ARGUMENTS.iter().any(|a| a.eq_ignore_ascii_case(k)))
        .map(String::as_str)
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        let hints: Vec<String> = unknown
            .iter()
            .map(|k| match closest_lambda_argument(k) {
                Some(a) => format!("{k:?} (did you mean {a:?}?)"),
                None => format!("{k:?}"),
            })
            .collect();
        return Err((
            String::new(),
            format!(
                "unknown argument{} {}: the builtin/aws/lambda arguments are ARN, PayloadPassthrough and InvocationMode (any case)",
                if unknown.len() == 1 { "" } else { "s" },
                hints.join(", ")
            ),
        ));
    }
    match lambda_argument(args, "ARN") {
        None => return Err(("ARN".into(), "is required".into())),
        Some(Value::String(arn)) => {
            parse_lambda_arn(arn).map_err(|m| ("ARN".to_owned(), m))?;
        }
        Some(other) => return Err(("ARN".into(), format!("must be a string, got {other}"))),
    }
    if let Some(v) = lambda_argument(args, "PayloadPassthrough")
        && !v.is_boolean()
    {
        return Err((
            "PayloadPassthrough".into(),
            format!("must be a boolean, got {v}"),
        ));
    }
    if let Some(v) = lambda_argument(args, "InvocationMode") {
        // Consul compares against "asynchronous" exactly; we accept any case (the registrator
        // sends upper case), see docs/model.md.
        let ok = v.as_str().is_some_and(|s| {
            s.eq_ignore_ascii_case("synchronous") || s.eq_ignore_ascii_case("asynchronous")
        });
        if !ok {
            return Err((
                "InvocationMode".into(),
                format!("must be \"synchronous\" or \"asynchronous\", got {v}"),
            ));
        }
    }
    Ok(())
}

/// The Lambda argument a misspelt key most likely meant: the same letters ignoring case,
/// `_` and `-` (`payload_passthrough`), or at most two edits away (`PayloadPasthrough`).
fn closest_lambda_argument(key: &str) -> Option<&'static str> {
    let fold = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let k = fold(key);
    LAMBDA_ARGUMENTS
        .iter()
        .map(|a| (edit_distance(&k, &fold(a)), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance of two short strings.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The parts of a Lambda function ARN:
/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub function: String,
    pub qualifier: Option<String>,
}

/// Parses a Lambda function ARN.
///
/// # Errors
/// A message saying which part is wrong.
pub fn parse_lambda_arn(arn: &str) -> Result<LambdaArn, String> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 7 || parts.len() > 8 || parts[0] != "arn" {
        return Err(format!(
            "invalid ARN {arn:?}: expected arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]"
        ));
    }
    if parts[2] != "lambda" || parts[5] != "function" {
        return Err(format!("invalid ARN {arn:?}: not a Lambda function ARN"));
    }
    for (what, v) in [
        ("partition", parts[1]),
        ("region", parts[3]),
        ("account", parts[4]),
        ("function name", parts[6]),
    ] {
        if v.is_empty() {
            return Err(format!("invalid ARN {arn:?}: empty {what}"));
        }
    }
    let qualifier = match parts.get(7) {
        Some(&"") => return Err(format!("invalid ARN {arn:?}: empty qualifier")),
        Some(q) => Some((*q).to_owned()),
        None => None,
    };
    Ok(LambdaArn {
        partition: parts[1].to_owned(),
        region: parts[3].to_owned(),
        account: parts[4].to_owned(),
        function: parts[6].to_owned(),
        qualifier,
    })
}

pub(crate) fn check_one_of(
    field: &str,
    value: &str,
    allowed: &[&str],
) -> Result<(), (String, String)> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err((
            field.to_owned(),
            format!(
                "invalid value {value:?}: must be one of {}",
                allowed
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// HTTP methods Consul accepts in matches (`isValidHTTPMethod`).
pub const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// The HTTP match shape shared by router matches and intention permissions.
pub(crate) struct HttpMatchView<'a> {
    pub path_exact: &'a str,
    pub path_prefix: &'a str,
    pub path_regex: &'a str,
    pub header: &'a [HeaderMatch],
    pub methods: &'a [String],
}

/// Validates a path/header/method match; `prefix` is the field path of the HTTP block
/// (`Routes[0].Match.HTTP`). Returns the number of conditions set, so callers can refuse an
/// empty permission.
pub(crate) fn check_http_match(
    prefix: &str,
    m: &HttpMatchView<'_>,
) -> Result<usize, (String, String)> {
    let mut path_parts = 0;
    if !m.path_exact.is_empty() {
        path_parts += 1;
        if !m.path_exact.starts_with('/') {
            return Err((
                format!("{prefix}.PathExact"),
                format!("doesn't start with '/': {:?}", m.path_exact),
            ));
        }
    }
    if !m.path_prefix.is_empty() {
        path_parts += 1;
        if !m.path_prefix.starts_with('/') {
            return Err((
                format!("{prefix}.PathPrefix"),
                format!("doesn't start with '/': {:?}", m.path_prefix),
            ));
        }
    }
    if !m.path_regex.is_empty() {
        path_parts += 1;
        check_regex(&format!("{prefix}.PathRegex"), m.path_regex)?;
    }
    if path_parts > 1 {
        return Err((
            prefix.to_owned(),
            "should only contain at most one of PathExact, PathPrefix, or PathRegex".into(),
        ));
    }
    let mut parts = path_parts;
    for (k, h) in m.header.iter().enumerate() {
        let field = format!("{prefix}.Header[{k}]");
        if h.name.is_empty() {
            return Err((field, "missing required Name field".into()));
        }
        let n = usize::from(h.present)
            + usize::from(!h.exact.is_empty())
            + usize::from(!h.prefix.is_empty())
            + usize::from(!h.suffix.is_empty())
            + usize::from(!h.regex.is_empty());
        if n != 1 {
            return Err((
                field,
                "should only contain one of Present, Exact, Prefix, Suffix, or Regex".into(),
            ));
        }
        if !h.regex.is_empty() {
            check_regex(&format!("{field}.Regex"), &h.regex)?;
        }
        parts += 1;
    }
    if !m.methods.is_empty() {
        check_methods(&format!("{prefix}.Methods"), m.methods)?;
        parts += 1;
    }
    Ok(parts)
}

pub(crate) fn check_methods(field: &str, methods: &[String]) -> Result<(), (String, String)> {
    let mut seen = Vec::new();
    for m in methods {
        if !HTTP_METHODS.contains(&m.as_str()) {
            return Err((
                field.to_owned(),
                format!("contains an invalid method {m:?}"),
            ));
        }
        if seen.contains(&m) {
            return Err((field.to_owned(), format!("contains {m:?} more than once")));
        }
        seen.push(m);
    }
    Ok(())
}

/// Envoy uses RE2; the `regex` crate accepts the same syntax minus backreferences and
/// look-around, which RE2 refuses too, so compiling here catches what Envoy would NACK.
pub(crate) fn check_regex(field: &str, re: &str) -> Result<(), (String, String)> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| (field.to_owned(), format!("invalid regular expression: {e}")))
}

/// Consul's subset-name rule (`validateServiceSubset`): a lowercase DNS label, because subset
/// names end up in SNI host names.
pub(crate) fn check_subset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("subset defined with empty name".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "subset {name:?} is invalid: must be 63 characters or less"
        ));
    }
    let b = name.as_bytes();
    let ok_inner = b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok_ends = b.first().is_some_and(|c| alnum(*c)) && b.last().is_some_and(|c| alnum(*c));
    if ok_inner && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "subset {name:?} is invalid: must be a DNS label of lower case letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}
