//! The CA configuration: Consul's defaults and bounds, and the decoder of the
//! `PUT /v1/connect/ca/configuration` body (`{Provider, Config:{...}, ForceWithoutCrossSigning}`).
//! Keys match in any case and with or without underscores (`LeafCertTTL`, `leaf_cert_ttl`), as
//! Consul's mapstructure decoding does; unknown keys are refused by name.

use std::time::Duration;

use serde_json::{Map, Value};

use mesh_model::catalog::definition::parse_go_duration;

const HOUR: u64 = 3600;

/// The provider settings lambdamesh honours (durations in whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaConfig {
    pub leaf_cert_ttl: Duration,
    pub intermediate_cert_ttl: Duration,
    pub root_cert_ttl: Duration,
    pub rotation_period: Duration,
    pub private_key_type: String,
    pub private_key_bits: u32,
    /// A caller-supplied signing key (PKCS#8 PEM, P-256): the next root uses it.
    pub private_key: Option<String>,
    /// A caller-supplied root certificate: refused by the decoder (see `docs/connect-ca.md`).
    pub root_cert: Option<String>,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            leaf_cert_ttl: Duration::from_secs(72 * HOUR),
            intermediate_cert_ttl: Duration::from_secs(8760 * HOUR),
            root_cert_ttl: Duration::from_secs(87600 * HOUR),
            rotation_period: Duration::from_secs(2160 * HOUR),
            private_key_type: "ec".into(),
            private_key_bits: 256,
            private_key: None,
            root_cert: None,
        }
    }
}

/// A decoded and validated configuration PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRequest {
    pub provider: String,
    pub config: CaConfig,
    pub force_without_cross_signing: bool,
}

/// A bad configuration body; `field` is the key path the caller wrote wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// `LeafCertTTL` → `leafcertttl`: the spelling-insensitive key.
fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Formats a duration the short way Consul's defaults are written (`72h`, `90m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(HOUR) {
        format!("{}h", s / HOUR)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn duration(field: &str, v: &Value) -> Result<Duration, ConfigError> {
    match v {
        Value::String(s) => parse_go_duration(s).map_err(|e| err(field, e)),
        // Go's weak decoding reads a bare number as nanoseconds.
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_nanos)
            .ok_or_else(|| err(field, format!("invalid duration {n}"))),
        other => Err(err(
            field,
            format!("expected a duration string, got {other}"),
        )),
    }
}

fn string(field: &str, v: &Value) -> Result<String, ConfigError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| err(field, format!("expected a string, got {v}")))
}

fn boolean(field: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(err(field, format!("expected a boolean, got {other}"))),
    }
}

fn number(field: &str, v: &Value) -> Result<u64, ConfigError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| err(field, format!("expected a non-negative integer, got {v}")))
}

fn object<'a>(field: &str, v: &'a Value) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| err(field, format!("expected an object, got {v}")))
}

/// Decodes and validates a configuration PUT body. Missing provider settings take Consul's
/// defaults.
///
/// # Errors
/// [`ConfigError`] naming the first bad field: malformed JSON, unknown keys, an unsupported
/// provider, bad durations, a `LeafCertTTL` outside 1h..8760h, an unsupported key type or size.
pub fn parse_config_request(body: &[u8]) -> Result<ConfigRequest, ConfigError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| err("body", e.to_string()))?;
    let top = object("body", &v)?;
    let mut provider = None;
    let mut raw_config = None;
    let mut force = false;
    for (k, v) in top {
        match norm(k).as_str() {
            "provider" => provider = Some(string("Provider", v)?),
            "config" => raw_config = Some(v),
            "forcewithoutcrosssigning" => force = boolean("ForceWithoutCrossSigning", v)?,
            // What a GET returns, so that a read-modify-write round trip is accepted.
            "clusterid" | "state" | "createindex" | "modifyindex" => {}
            _ => return Err(err(k, "unknown field")),
        }
    }
    let provider = provider
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err("Provider", "required"))?;
    if provider != "consul" {
        return Err(err(
            "Provider",
            format!("unsupported CA provider {provider:?}: only \"consul\" is built in"),
        ));
    }
    let mut config = CaConfig::default();
    if let Some(raw) = raw_config.filter(|v| !v.is_null()) {
        for (k, v) in object("Config", raw)? {
            let field = format!("Config.{k}");
            let f = field.as_str();
            match norm(k).as_str() {
                "leafcertttl" => config.leaf_cert_ttl = duration(f, v)?,
                "intermediatecertttl" => config.intermediate_cert_ttl = duration(f, v)?,
                "rootcertttl" => config.root_cert_ttl = duration(f, v)?,
                "rotationperiod" => config.rotation_period = duration(f, v)?,
                "privatekeytype" => config.private_key_type = string(f, v)?,
                "privatekeybits" => {
                    config.private_key_bits =
                        u32::try_from(number(f, v)?).map_err(|_| err(f, "out of range"))?;
                }
                "privatekey" => config.private_key = Some(string(f, v)?).filter(|s| !s.is_empty()),
                "rootcert" => config.root_cert = Some(string(f, v)?).filter(|s| !s.is_empty()),
                // Accepted for compatibility; the built-in CA signs in-process without limits.
                "csrmaxpersecond" | "csrmaxconcurrent" => {
                    number(f, v)?;
                }
                "disablecrosssigning" => {
                    boolean(f, v)?;
                }
                _ => return Err(err(&field, "unknown field")),
            }
        }
    }
    validate(&config)?;
    Ok(ConfigRequest {
        provider,
        config,
        force_without_cross_signing: force,
    })
}

/// Consul's bounds (`CommonCAProviderConfig.Validate`), plus what this CA can do.
fn validate(c: &CaConfig) -> Result<(), ConfigError> {
    let (min_leaf, max_leaf) = (Duration::from_secs(HOUR), Duration::from_secs(8760 * HOUR));
    if c.leaf_cert_ttl < min_leaf || c.leaf_cert_ttl > max_leaf {
        return Err(err(
            "Config.LeafCertTTL",
            format!(
                "must be between 1h and 8760h, got {}",
                format_duration(c.leaf_cert_ttl)
            ),
        ));
    }
    if c.intermediate_cert_ttl < c.leaf_cert_ttl * 3 {
        return Err(err(
            "Config.IntermediateCertTTL",
            "must be at least 3 times LeafCertTTL",
        ));
    }
    if c.root_cert_ttl < c.intermediate_cert_ttl {
        return Err(err(
            "Config.RootCertTTL",
            "must not be shorter than IntermediateCertTTL",
        ));
    }
    match (c.private_key_type.as_str(), c.private_key_bits) {
        ("ec", 256) => {}
        ("ec", 224 | 384 | 521) => {
            return Err(err(
                "Config.PrivateKeyBits",
                "the built-in CA only makes 256-bit ec keys",
            ));
        }
        ("ec", b) => {
            return Err(err(
                "Config.PrivateKeyBits",
                format!("invalid ec key size {b}: must be 224, 256, 384 or 521"),
            ));
        }
        ("rsa", _) => {
            return Err(err(
                "Config.PrivateKeyType",
                "rsa keys are not supported by the built-in CA; use \"ec\"",
            ));
        }
        (t, _) => {
            return Err(err(
                "Config.PrivateKeyType",
                format!("invalid key type {t:?}: must be \"ec\" or \"rsa\""),
            ));
        }
    }
    if c.root_cert.is_some() {
        return Err(err(
            "Config.RootCert",
            "supplying a root certificate is not supported; supply only PrivateKey",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn field_of(body: &str) -> String {
        parse_config_request(body.as_bytes()).unwrap_err().field
    }

    #[test]
    fn defaults_and_spellings() {
        let r = parse_config_request(br#"{"Provider":"consul"}"#).unwrap();
        assert_eq!(r.config, CaConfig::default());
        let r = parse_config_request(
            br#"{"provider":"consul","config":{"leaf_cert_ttl":"2h","PrivateKeyBits":"256"},"ClusterID":"x"}"#,
        )
        .unwrap();
        assert_eq!(r.config.leaf_cert_ttl, Duration::from_secs(7200));
        assert_eq!(format_duration(r.config.leaf_cert_ttl), "2h");
        assert_eq!(format_duration(Duration::from_secs(90 * 60)), "90m");
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert_eq!(field_of("{"), "body");
        assert_eq!(field_of(r#"{"Config":{}}"#), "Provider");
        assert_eq!(field_of(r#"{"Provider":"vault"}"#), "Provider");
        assert_eq!(field_of(r#"{"Provider":"consul","Nope":1}"#), "Nope");
        assert_eq!(
            field_of(r#"{"Provider":"consul","Config":{"Nope":1}}"#),
            "Config.Nope"
        );
        assert_eq!(
            field_of(r#"{"Provider":"consul","Config":{"LeafCertTTL":"30m"}}"#),
            "Config.LeafCertTTL"
        );
        assert_eq!(
            field_of(r#"{"Provider":"consul","Config":{"LeafCertTTL":"9000h"}}"#),
            "Config.LeafCertTTL"
        );
        assert_eq!(
            field_of(r#"{"Provider":"consul","Config":{"LeafCertTTL":"soon"}}"#),
            "Config.LeafCertTTL"
        );
        assert_eq!(
            field_of(r#"{"Provider":"consul","Config":{"PrivateKeyType":"dsa"}}"#),
            "Config.PrivateKeyType"
        );
        assert_eq!(
            field_of(
                r#"{"Provider":"consul","Config":{"PrivateKeyType":"rsa","PrivateKeyBits":2048}}"#
            ),
            "Config.PrivateKeyType"
        );
        assert_eq!(
            field_of(r#"{"Provider":"consul","Config":{"PrivateKeyBits":100}}"#),
            "Config.PrivateKeyBits"
        );
    }
}
