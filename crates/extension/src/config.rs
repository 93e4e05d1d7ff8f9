//! The extension's configuration, read once from the environment into types: the Go extension's
//! variables (reference §2.2) with the same names, defaults and meanings, `CONSUL_DATACENTER` in
//! addition, and what Lambda gives every process (`AWS_LAMBDA_*`, region, credentials, endpoint).
//!
//! Every problem is collected and reported, each naming its variable, so one `init/error` says
//! all that is wrong. Pure (takes the variables as a map); fuzzed through `upstream`.

use std::{collections::BTreeMap, time::Duration};

use aws_wire::{Credentials, Endpoint, credentials};
use mesh_model::{catalog::definition::parse_go_duration, names::DEFAULT};
use tracing::level_filters::LevelFilter;

use crate::upstream::{self, Upstream, UpstreamError};

/// The Go extension's default refresh period of the mTLS material.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// The Go extension's default for `CONSUL_EXTENSION_PROXY_TIMEOUT`.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(3);
/// The datacenter of upstreams that name none, when `CONSUL_DATACENTER` is not set (the Go
/// extension always uses it).
pub const DEFAULT_DATACENTER: &str = "dc1";

/// Everything the extension needs, parsed.
#[derive(Clone, Debug)]
pub struct Config {
    /// The function's mesh service name (`AWS_LAMBDA_FUNCTION_NAME`; aliases are not appended,
    /// as in the reference).
    pub service: String,
    /// `host:port` of the Extensions API (`AWS_LAMBDA_RUNTIME_API`).
    pub runtime_api: String,
    /// `host:port` of the mesh gateway (`CONSUL_MESH_GATEWAY_URI`).
    pub gateway: String,
    /// Parameter Store prefix, without a trailing `/` (`CONSUL_EXTENSION_DATA_PREFIX`).
    pub data_prefix: String,
    /// The function's namespace (`CONSUL_SERVICE_NAMESPACE`), only used for the parameter name.
    pub namespace: String,
    /// The function's partition (`CONSUL_SERVICE_PARTITION`), only used for the parameter name.
    pub partition: String,
    /// The datacenter of upstreams that name none (`CONSUL_DATACENTER`, default `dc1`).
    pub datacenter: String,
    /// The upstreams (`CONSUL_SERVICE_UPSTREAMS`).
    pub upstreams: Vec<Upstream>,
    /// How often the material is re-read (`CONSUL_REFRESH_FREQUENCY`, default 5m).
    pub refresh: Duration,
    /// Bound on starting the listeners, and on connecting to the gateway plus the TLS handshake
    /// of one connection (`CONSUL_EXTENSION_PROXY_TIMEOUT`, default 3s).
    pub proxy_timeout: Duration,
    /// `LOG_LEVEL` (hclog's names; default `info`).
    pub log_level: LevelFilter,
    /// A `LOG_LEVEL` that was not understood (logged once logging is up; `info` is used).
    pub unknown_log_level: Option<String>,
    /// TLS session resumption (`LAMBDAMESH_TLS_RESUMPTION`, default on; off only to measure
    /// what it saves).
    pub tls_resumption: bool,
    /// How Parameter Store is reached.
    pub aws: AwsConfig,
}

/// Parameter Store's endpoint, region and the function's credentials.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    pub region: String,
    pub endpoint: Endpoint,
    pub credentials: Credentials,
    pub session_token: Option<String>,
}

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set")]
    Missing { name: &'static str },
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("CONSUL_SERVICE_UPSTREAMS: {0}")]
    Upstream(UpstreamError),
    #[error("AWS credentials: {0}")]
    Credentials(String),
}

/// All problems found; displayed one after another, separated by `; `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Parses `vars` (the process environment).
    ///
    /// # Errors
    /// Every problem, each naming its variable.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |name: &'static str, errors: &mut Vec<ConfigError>| match get(name) {
            Some(v) => v.to_owned(),
            None => {
                errors.push(ConfigError::Missing { name });
                String::new()
            }
        };
        let service = required("AWS_LAMBDA_FUNCTION_NAME", &mut errors);
        let runtime_api = required("AWS_LAMBDA_RUNTIME_API", &mut errors);
        let gateway = required("CONSUL_MESH_GATEWAY_URI", &mut errors);
        if !gateway.is_empty() && !valid_host_port(&gateway) {
            errors.push(ConfigError::Invalid {
                name: "CONSUL_MESH_GATEWAY_URI",
                value: gateway.clone(),
                reason: "must be host:port (no scheme)",
            });
        }
        let prefix = required("CONSUL_EXTENSION_DATA_PREFIX", &mut errors);
        if !prefix.is_empty() && !prefix.starts_with('/') {
            errors.push(ConfigError::Invalid {
                name: "CONSUL_EXTENSION_DATA_PREFIX",
                value: prefix.clone(),
                reason: "must start with '/' (a Parameter Store path)",
            });
        }
        let data_prefix = prefix.trim_end_matches('/').to_owned();
        let label = |name: &'static str, default: &str, errors: &mut Vec<ConfigError>| {
            let v = get(name).unwrap_or(default);
            if !upstream::valid_label(v) {
                errors.push(ConfigError::Invalid {
                    name,
                    value: v.to_owned(),
                    reason: "must be letters, digits, '-' or '_' (not starting or ending with '-')",
                });
            }
            v.to_owned()
        };
        let namespace = label("CONSUL_SERVICE_NAMESPACE", DEFAULT, &mut errors);
        let partition = label("CONSUL_SERVICE_PARTITION", DEFAULT, &mut errors);
        let datacenter = label("CONSUL_DATACENTER", DEFAULT_DATACENTER, &mut errors);
        let upstreams = match upstream::parse_list(
            get("CONSUL_SERVICE_UPSTREAMS").unwrap_or(""),
            &datacenter,
        ) {
            Ok(u) => u,
            Err(list) => {
                errors.extend(list.into_iter().map(ConfigError::Upstream));
                Vec::new()
            }
        };
        let duration = |name: &'static str, default: Duration, errors: &mut Vec<ConfigError>| {
            let Some(v) = get(name) else {
                return default;
            };
            match parse_go_duration(v) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    errors.push(ConfigError::Invalid {
                        name,
                        value: v.to_owned(),
                        reason: "must be a positive Go duration such as 300ms, 30s, 5m or 1h",
                    });
                    default
                }
            }
        };
        let refresh = duration("CONSUL_REFRESH_FREQUENCY", DEFAULT_REFRESH, &mut errors);
        let proxy_timeout = duration(
            "CONSUL_EXTENSION_PROXY_TIMEOUT",
            DEFAULT_PROXY_TIMEOUT,
            &mut errors,
        );
        let (log_level, unknown_log_level) = match get("LOG_LEVEL") {
            None => (LevelFilter::INFO, None),
            Some(v) => match parse_level(v) {
                Some(l) => (l, None),
                // hclog falls back to its default for a name it does not know; so do we.
                None => (LevelFilter::INFO, Some(v.to_owned())),
            },
        };
        let tls_resumption = match get("LAMBDAMESH_TLS_RESUMPTION") {
            None => true,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                _ => {
                    errors.push(ConfigError::Invalid {
                        name: "LAMBDAMESH_TLS_RESUMPTION",
                        value: v.to_owned(),
                        reason: "must be true or false",
                    });
                    true
                }
            },
        };
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_default()
            .to_owned();
        if region.is_empty() {
            errors.push(ConfigError::Missing { name: "AWS_REGION" });
        }
        let endpoint = match Endpoint::from_vars(vars, "SSM", "ssm", &region) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(ConfigError::Invalid {
                    name: "AWS_ENDPOINT_URL",
                    value: e.0,
                    reason: "must be http[s]://host[:port]",
                });
                None
            }
        };
        let resolved = match credentials::from_vars(vars) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(ConfigError::Credentials(e.to_string()));
                None
            }
        };
        match (endpoint, resolved) {
            (Some(endpoint), Some(resolved)) if errors.is_empty() => Ok(Config {
                service,
                runtime_api,
                gateway,
                data_prefix,
                namespace,
                partition,
                datacenter,
                upstreams,
                refresh,
                proxy_timeout,
                log_level,
                unknown_log_level,
                tls_resumption,
                aws: AwsConfig {
                    region,
                    endpoint,
                    credentials: resolved.credentials,
                    session_token: resolved.session_token,
                },
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The parameter holding this function's material, as the registrator names it:
    /// `<prefix>/<partition>/<namespace>/<function>`.
    pub fn parameter_name(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.data_prefix, self.partition, self.namespace, self.service
        )
    }
}

/// hclog's level names (any case).
fn parse_level(v: &str) -> Option<LevelFilter> {
    Some(match v.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return None,
    })
}

/// `host:port` with a port from 1 to 65535 (`[v6]:port` too).
fn valid_host_port(v: &str) -> bool {
    let Some((host, port)) = v.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|h| !h.is_empty())
    } else {
        !host.is_empty() && !host.contains(['/', ':', ' '])
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut v: BTreeMap<String, String> = [
            ("AWS_LAMBDA_FUNCTION_NAME", "greeter"),
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("CONSUL_MESH_GATEWAY_URI", "10.0.0.1:8443"),
            ("CONSUL_EXTENSION_DATA_PREFIX", "/lambda-data/"),
            ("CONSUL_SERVICE_UPSTREAMS", "name:1234,greeting:1235:dc2"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, val) in pairs {
            if val.is_empty() {
                v.remove(*k);
            } else {
                v.insert((*k).to_owned(), (*val).to_owned());
            }
        }
        v
    }

    #[test]
    fn the_go_extensions_defaults() {
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.parameter_name(), "/lambda-data/default/default/greeter");
        assert_eq!(c.refresh, Duration::from_secs(300));
        assert_eq!(c.proxy_timeout, Duration::from_secs(3));
        assert_eq!(c.log_level, LevelFilter::INFO);
        assert_eq!(c.upstreams[0].datacenter, "dc1");
        assert_eq!(c.upstreams[1].datacenter, "dc2");
        assert_eq!(c.aws.endpoint.base(), "https://ssm.us-east-1.amazonaws.com");
        assert_eq!(c.aws.session_token, None);
        assert!(c.tls_resumption);
        let c = Config::from_vars(&vars(&[("LAMBDAMESH_TLS_RESUMPTION", "off")])).unwrap();
        assert!(!c.tls_resumption);
    }

    #[test]
    fn every_setting_is_read() {
        let c = Config::from_vars(&vars(&[
            ("CONSUL_SERVICE_NAMESPACE", "team"),
            ("CONSUL_SERVICE_PARTITION", "p1"),
            ("CONSUL_DATACENTER", "east"),
            ("CONSUL_REFRESH_FREQUENCY", "1m30s"),
            ("CONSUL_EXTENSION_PROXY_TIMEOUT", "500ms"),
            ("LOG_LEVEL", "DEBUG"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9001"),
            ("AWS_SESSION_TOKEN", "tok"),
        ]))
        .unwrap();
        assert_eq!(c.parameter_name(), "/lambda-data/p1/team/greeter");
        assert_eq!(c.upstreams[0].datacenter, "east");
        assert_eq!(c.refresh, Duration::from_secs(90));
        assert_eq!(c.proxy_timeout, Duration::from_millis(500));
        assert_eq!(c.log_level, LevelFilter::DEBUG);
        assert_eq!(c.aws.endpoint.authority(), "127.0.0.1:9001");
        assert_eq!(c.aws.session_token.as_deref(), Some("tok"));
        let c = Config::from_vars(&vars(&[("LOG_LEVEL", "chatty")])).unwrap();
        assert_eq!(
            (c.log_level, c.unknown_log_level.as_deref()),
            (LevelFilter::INFO, Some("chatty"))
        );
    }

    #[test]
    fn every_problem_is_named() {
        let e = Config::from_vars(&vars(&[
            ("CONSUL_MESH_GATEWAY_URI", "https://gw:443"),
            ("CONSUL_EXTENSION_DATA_PREFIX", "lambda-data"),
            ("CONSUL_SERVICE_UPSTREAMS", "a:1,b:1,c"),
            ("CONSUL_REFRESH_FREQUENCY", "5"),
            ("AWS_LAMBDA_FUNCTION_NAME", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ]))
        .unwrap_err();
        assert_eq!(
            e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "AWS_LAMBDA_FUNCTION_NAME is not set",
                r#"CONSUL_MESH_GATEWAY_URI="https://gw:443": must be host:port (no scheme)"#,
                r#"CONSUL_EXTENSION_DATA_PREFIX="lambda-data": must start with '/' (a Parameter Store path)"#,
                r#"CONSUL_SERVICE_UPSTREAMS: upstreams "a:1" and "b:1" both use port 1"#,
                r#"CONSUL_SERVICE_UPSTREAMS: upstream "c": expected name[.namespace[.partition]]:port[:datacenter]"#,
                r#"CONSUL_REFRESH_FREQUENCY="5": must be a positive Go duration such as 300ms, 30s, 5m or 1h"#,
                "AWS credentials: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            ]
        );
        let all_missing = Config::from_vars(&BTreeMap::new()).unwrap_err().to_string();
        for name in [
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_RUNTIME_API",
            "CONSUL_MESH_GATEWAY_URI",
            "CONSUL_EXTENSION_DATA_PREFIX",
            "AWS_REGION",
        ] {
            assert!(
                all_missing.contains(&format!("{name} is not set")),
                "{all_missing}"
            );
        }
    }

    #[test]
    fn gateway_addresses() {
        for good in [
            "gw:1",
            "10.0.0.1:8443",
            "[::1]:443",
            "mesh-gateway.internal:8443",
        ] {
            assert!(valid_host_port(good), "{good}");
        }
        for bad in ["gw", ":1", "gw:0", "gw:x", "http://gw:1", "[]:1", "a b:1"] {
            assert!(!valid_host_port(bad), "{bad}");
        }
    }
}
