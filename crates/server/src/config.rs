//! Server configuration: parsed once from config files (HCL or JSON, Consul's key names) and
//! flags into typed values. Every bad value is reported, not only the first. HCL files get the
//! same HCL 1 compatibility pass as config entries and ACL rules
//! (`mesh_model::config_entry::hcl1`), since Consul reads its config files with HCL 1 too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use xds::compile::lambda::LambdaEndpoint;

pub mod store;
pub use store::{StoreChoice, StoreFlags};

/// Typed configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub datacenter: String,
    pub node_name: String,
    pub node_id: String,
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub acl: AclConfig,
    pub dev: bool,
    /// Where Lambda services are invoked (`None` = real AWS regional endpoints).
    pub lambda_endpoint: Option<xds::compile::lambda::LambdaEndpoint>,
    /// The embedded log (default) or a shared etcd cluster.
    pub store: StoreChoice,
}

/// `acl { enabled, default_policy, tokens { initial_management } }`.
#[derive(Debug, Clone, Default)]
pub struct AclConfig {
    pub enabled: bool,
    /// `default_policy = "allow"` (Consul's default) or `"deny"`.
    pub default_allow: bool,
    pub initial_management: Option<String>,
}

/// A config file as written (Consul's snake_case keys). Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub datacenter: Option<String>,
    pub node_name: Option<String>,
    pub node_id: Option<String>,
    pub data_dir: Option<String>,
    pub server: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub bootstrap: Option<bool>,
    pub client_addr: Option<String>,
    pub bind_addr: Option<String>,
    pub log_level: Option<String>,
    pub addresses: Option<Addresses>,
    pub ports: Option<Ports>,
    pub acl: Option<AclFile>,
    pub connect: Option<ConnectFile>,
    pub ui_config: Option<serde_json::Value>,
    pub lambda_endpoint: Option<String>,
    pub store: Option<store::StoreFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    pub http: Option<String>,
    pub grpc: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<i64>,
    pub grpc: Option<i64>,
    pub grpc_tls: Option<i64>,
    pub dns: Option<i64>,
    pub server: Option<i64>,
    pub serf_lan: Option<i64>,
    pub serf_wan: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclFile {
    pub enabled: Option<bool>,
    pub default_policy: Option<String>,
    pub down_policy: Option<String>,
    pub enable_token_persistence: Option<bool>,
    pub tokens: Option<AclTokensFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclTokensFile {
    pub initial_management: Option<String>,
    pub agent: Option<String>,
    pub default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectFile {
    pub enabled: Option<bool>,
    pub enable_serverless_plugin: Option<bool>,
}

/// Errors in configuration: all problems found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigFile {
    /// Parses one file: JSON when the name ends in `.json`, HCL otherwise.
    ///
    /// # Errors
    /// Unreadable file, syntax errors, unknown keys.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("{}: {e}", path.display())],
        })?;
        let json = path.extension().is_some_and(|e| e == "json");
        Self::parse_str(&text, json).map_err(|e| ConfigError {
            problems: vec![format!("{}: {e}", path.display())],
        })
    }

    /// Parses config text: JSON when `json`, HCL (with Consul's HCL 1 forms) otherwise.
    ///
    /// # Errors
    /// Syntax errors, nesting beyond `hcl1::MAX_NESTING`, and unknown keys, as text.
    pub fn parse_str(text: &str, json: bool) -> Result<Self, String> {
        if json {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            mesh_model::config_entry::hcl1::from_str(text)
        }
    }
}

/// Flags given on the command line; they override config files.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub datacenter: Option<String>,
    pub node_name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub lambda_endpoint: Option<String>,
    pub dev: bool,
    pub store: StoreFlags,
}

fn port_of(problems: &mut Vec<String>, field: &str, v: Option<i64>, default: u16) -> u16 {
    match v {
        None => default,
        Some(p) => match u16::try_from(p) {
            Ok(p) => p,
            Err(_) => {
                problems.push(format!("{field}: invalid port {p}"));
                default
            }
        },
    }
}

fn addr_of(problems: &mut Vec<String>, field: &str, s: &str) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!("{field}: invalid address {s:?}: expected HOST:PORT with an IP host, e.g. 127.0.0.1:8500"));
            None
        }
    }
}

impl ServerConfig {
    /// Merges files (in order) and flags into a typed config, validating every value.
    ///
    /// # Errors
    /// Every invalid value, listed.
    pub fn build(files: &[ConfigFile], flags: &Overrides) -> Result<Self, ConfigError> {
        let mut p = Vec::new();
        let mut datacenter = "dc1".to_owned();
        let mut node_name = None;
        let mut node_id = None;
        let mut data_dir = None;
        let mut client = "127.0.0.1".to_owned();
        let (mut http_port, mut grpc_port) = (8500u16, 8502u16);
        let (mut http_host, mut grpc_host) = (None, None);
        let mut acl = AclConfig {
            enabled: false,
            default_allow: true,
            initial_management: None,
        };
        let mut lambda_endpoint = None;
        for f in files {
            if let Some(v) = &f.datacenter {
                datacenter = v.clone();
            }
            if f.node_name.is_some() {
                node_name = f.node_name.clone();
            }
            if f.node_id.is_some() {
                node_id = f.node_id.clone();
            }
            if let Some(d) = &f.data_dir {
                data_dir = Some(PathBuf::from(d));
            }
            if let Some(c) = &f.client_addr {
                client = c.clone();
            }
            if let Some(a) = &f.addresses {
                http_host = a.http.clone().or(http_host);
                grpc_host = a.grpc.clone().or(grpc_host);
            }
            if let Some(ports) = &f.ports {
                http_port = port_of(&mut p, "ports.http", ports.http, http_port);
                grpc_port = port_of(&mut p, "ports.grpc", ports.grpc, grpc_port);
            }
            if let Some(a) = &f.acl {
                if let Some(e) = a.enabled {
                    acl.enabled = e;
                }
                match a.default_policy.as_deref() {
                    None => {}
                    Some("allow") => acl.default_allow = true,
                    Some("deny") => acl.default_allow = false,
                    Some(other) => p.push(format!(
                        "acl.default_policy: invalid value {other:?}: must be \"allow\" or \"deny\""
                    )),
                }
                if let Some(t) = a.tokens.as_ref().and_then(|t| t.initial_management.clone()) {
                    acl.initial_management = Some(t);
                }
            }
            if f.lambda_endpoint.is_some() {
                lambda_endpoint = f.lambda_endpoint.clone();
            }
        }
        if let Some(v) = &flags.datacenter {
            datacenter = v.clone();
        }
        if let Some(v) = &flags.node_name {
            node_name = Some(v.clone());
        }
        if let Some(v) = &flags.data_dir {
            data_dir = Some(v.clone());
        }
        if flags.lambda_endpoint.is_some() {
            lambda_endpoint = flags.lambda_endpoint.clone();
        }
        if datacenter.is_empty()
            || !datacenter
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            p.push(format!("datacenter: invalid name {datacenter:?}: only letters, digits, '-' and '_' are allowed"));
        }
        let http_addr = match &flags.http_addr {
            Some(a) => addr_of(&mut p, "-http-addr", a.trim_start_matches("http://")),
            None => addr_of(
                &mut p,
                "addresses.http",
                &format!("{}:{http_port}", http_host.as_deref().unwrap_or(&client)),
            ),
        };
        let grpc_addr = match &flags.grpc_addr {
            Some(a) => addr_of(&mut p, "-grpc-addr", a),
            None => addr_of(
                &mut p,
                "addresses.grpc",
                &format!("{}:{grpc_port}", grpc_host.as_deref().unwrap_or(&client)),
            ),
        };
        let lambda_endpoint = match lambda_endpoint.as_deref().map(LambdaEndpoint::parse) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(m)) => {
                p.push(format!("lambda_endpoint: {m}"));
                None
            }
        };
        let data_dir = match data_dir {
            Some(d) => Some(d),
            None if flags.dev => None,
            None => {
                p.push("data_dir: must be set (flag -data-dir or `data_dir` in a config file) unless in -dev mode".into());
                None
            }
        };
        let node_name = node_name.unwrap_or_else(default_node_name);
        let store_files: Vec<_> = files.iter().map(|f| f.store.as_ref()).collect();
        let store = store::build(&store_files, &flags.store, &node_name, &mut p);
        if !p.is_empty() {
            return Err(ConfigError { problems: p });
        }
        Ok(ServerConfig {
            datacenter,
            node_id: node_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            node_name,
            data_dir: data_dir.unwrap_or_default(),
            http_addr: http_addr
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8500))),
            grpc_addr: grpc_addr
                .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8502))),
            acl,
            dev: flags.dev,
            lambda_endpoint,
            store,
        })
    }

    /// A config for tests: everything default, data in `dir`.
    pub fn for_tests(dir: &Path) -> Self {
        ServerConfig {
            datacenter: "dc1".into(),
            node_name: "test-node".into(),
            node_id: "00000000-0000-0000-0000-000000000001".into(),
            data_dir: dir.to_owned(),
            http_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            acl: AclConfig {
                enabled: false,
                default_allow: true,
                initial_management: None,
            },
            dev: true,
            lambda_endpoint: None,
            store: StoreChoice::Embedded,
        }
    }
}

fn default_node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "lambdamesh".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_file_and_flags_merge() {
        let file: ConfigFile = hcl::from_str(
            "datacenter = \"east\"\nacl {\n  enabled = true\n  default_policy = \"deny\"\n}\nports {\n  http = 8600\n}\n",
        )
        .unwrap();
        let cfg = ServerConfig::build(
            &[file],
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.datacenter, "east");
        assert!(cfg.acl.enabled);
        assert!(!cfg.acl.default_allow);
        assert_eq!(cfg.http_addr.port(), 8600);
    }

    #[test]
    fn every_problem_is_reported() {
        let file: ConfigFile = hcl::from_str(
            "acl {\n  default_policy = \"maybe\"\n}\nports {\n  http = 70000\n}\nlambda_endpoint = \"http://127.0.0.1:port\"\n",
        )
        .unwrap();
        let err = ServerConfig::build(&[file], &Overrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("acl.default_policy"), "{text}");
        assert!(text.contains("lambda_endpoint: invalid URL"), "{text}");
        assert!(text.contains("ports.http"), "{text}");
        assert!(text.contains("data_dir"), "{text}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(hcl::from_str::<ConfigFile>("datacentre = \"x\"\n").is_err());
        let err =
            ConfigFile::parse_str("acl { enabled = true colour = \"red\" }\n", false).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn hcl1_forms_are_accepted_as_consul_reads_them() {
        // Several attributes in a one-line block: valid HCL 1 (Consul's parser), not HCL 2.
        let text =
            "acl { enabled = true default_policy = \"deny\" }\nports { http = 8600 grpc = 8602 }\n";
        assert!(
            hcl::from_str::<ConfigFile>(text).is_err(),
            "plain HCL 2 refuses it"
        );
        let file = ConfigFile::parse_str(text, false).unwrap();
        let cfg = ServerConfig::build(
            &[file],
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(cfg.acl.enabled);
        assert!(!cfg.acl.default_allow);
        assert_eq!((cfg.http_addr.port(), cfg.grpc_addr.port()), (8600, 8602));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let text = format!("ui_config = {}", "[".repeat(40));
        let err = ConfigFile::parse_str(&text, false).unwrap_err();
        assert!(err.contains("nested more than"), "{err}");
    }
}
