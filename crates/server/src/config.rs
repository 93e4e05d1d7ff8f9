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
    /// Several datacenters (`docs/multi-dc.md`).
    pub federation: Federation,
}

/// How this server's datacenter is joined to others: Consul's `primary_datacenter`,
/// `primary_gateways`, `connect { enable_mesh_gateway_wan_federation }`, `ports { server }`.
#[derive(Debug, Clone)]
pub struct Federation {
    /// The datacenter whose CA is the root of trust (this one when not set).
    pub primary_datacenter: String,
    /// The primary's mesh gateways, dialled with the SNI `server.<primary>.consul`.
    pub primary_gateways: Vec<mesh_model::federation::GatewayAddr>,
    /// How often a secondary retries its gateways when none answers (Consul's
    /// `primary_gateways_interval`, 30 s by default).
    pub primary_gateways_interval: std::time::Duration,
    /// `connect { enable_mesh_gateway_wan_federation = true }`.
    pub wan_federation: bool,
    /// Where the inter-server protocol listens (`ports { server }`, Consul's 8300, on
    /// `bind_addr`).
    pub server_addr: SocketAddr,
    /// PEM file with the primary's CA roots: how a secondary that holds no roots yet recognises
    /// the primary the first time (`ca_file` or `tls { defaults { ca_file } }`).
    pub ca_file: Option<PathBuf>,
    /// The token a secondary presents when it asks the primary for its intermediate
    /// (`acl { tokens { replication } }`).
    pub replication_token: Option<String>,
}

impl Federation {
    /// This datacenter is a secondary (its CA chains to another datacenter's roots).
    pub fn is_secondary(&self, datacenter: &str) -> bool {
        self.primary_datacenter != datacenter
    }

    fn single(datacenter: &str) -> Self {
        Self {
            primary_datacenter: datacenter.to_owned(),
            primary_gateways: Vec::new(),
            primary_gateways_interval: std::time::Duration::from_secs(30),
            wan_federation: false,
            server_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ca_file: None,
            replication_token: None,
        }
    }
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
    pub primary_datacenter: Option<String>,
    pub primary_gateways: Option<Vec<String>>,
    pub primary_gateways_interval: Option<String>,
    pub ca_file: Option<String>,
    pub tls: Option<TlsFile>,
}

/// `tls { defaults { ca_file } }`: only the CA file is read (servers present certificates from
/// the mesh CA, not operator-made ones).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub defaults: Option<TlsDefaultsFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsDefaultsFile {
    pub ca_file: Option<String>,
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
    pub replication: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectFile {
    pub enabled: Option<bool>,
    pub enable_serverless_plugin: Option<bool>,
    pub enable_mesh_gateway_wan_federation: Option<bool>,
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
    pub primary_datacenter: Option<String>,
    /// `-primary-gateway` (repeatable): replaces the files' list when given.
    pub primary_gateways: Vec<String>,
    /// `-server-port`.
    pub server_port: Option<u16>,
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
        let mut fed = FederationFile::default();
        let mut server_port = 8300u16;
        let mut bind = "127.0.0.1".to_owned();
        for f in files {
            fed.merge(f);
            if let Some(b) = &f.bind_addr {
                bind = b.clone();
            }
            if let Some(ports) = &f.ports {
                server_port = port_of(&mut p, "ports.server", ports.server, server_port);
            }
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
        if let Some(v) = &flags.primary_datacenter {
            fed.primary_datacenter = Some(v.clone());
        }
        if !flags.primary_gateways.is_empty() {
            fed.primary_gateways = Some(flags.primary_gateways.clone());
        }
        if let Some(port) = flags.server_port {
            server_port = port;
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
        // Consul lower-cases both names before it checks them.
        let datacenter = datacenter.to_lowercase();
        if let Err(e) = mesh_model::federation::validate_datacenter(&datacenter) {
            p.push(format!("datacenter: {e}"));
        }
        let federation = fed.build(&datacenter, &bind, server_port, &mut p);
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
            federation,
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
            federation: Federation::single("dc1"),
        }
    }
}

/// The federation keys of all files, merged (later files win), before they are checked.
#[derive(Debug, Default)]
struct FederationFile {
    primary_datacenter: Option<String>,
    primary_gateways: Option<Vec<String>>,
    interval: Option<String>,
    wan_federation: Option<bool>,
    ca_file: Option<String>,
    replication_token: Option<String>,
}

impl FederationFile {
    fn merge(&mut self, f: &ConfigFile) {
        if f.primary_datacenter.is_some() {
            self.primary_datacenter = f.primary_datacenter.clone();
        }
        if f.primary_gateways.is_some() {
            self.primary_gateways = f.primary_gateways.clone();
        }
        if f.primary_gateways_interval.is_some() {
            self.interval = f.primary_gateways_interval.clone();
        }
        if let Some(w) = f
            .connect
            .as_ref()
            .and_then(|c| c.enable_mesh_gateway_wan_federation)
        {
            self.wan_federation = Some(w);
        }
        let tls_ca = f
            .tls
            .as_ref()
            .and_then(|t| t.defaults.as_ref())
            .and_then(|d| d.ca_file.clone());
        if let Some(ca) = tls_ca.or_else(|| f.ca_file.clone()) {
            self.ca_file = Some(ca);
        }
        if let Some(t) = f
            .acl
            .as_ref()
            .and_then(|a| a.tokens.as_ref())
            .and_then(|t| t.replication.clone())
        {
            self.replication_token = Some(t);
        }
    }

    /// Checks the merged keys against each other as Consul does, naming every bad one.
    fn build(self, datacenter: &str, bind: &str, port: u16, p: &mut Vec<String>) -> Federation {
        use mesh_model::federation::{parse_gateway_addr, validate_datacenter};
        let primary = match self.primary_datacenter {
            Some(v) => {
                let v = v.to_lowercase();
                if let Err(e) = validate_datacenter(&v) {
                    p.push(format!("primary_datacenter: {e}"));
                }
                v
            }
            None => datacenter.to_owned(),
        };
        let mut gateways = Vec::new();
        for (i, g) in self.primary_gateways.iter().flatten().enumerate() {
            match parse_gateway_addr(g) {
                Ok(a) => gateways.push(a),
                Err(e) => p.push(format!("primary_gateways[{i}]: {e}")),
            }
        }
        let interval = match self.interval.as_deref() {
            None => std::time::Duration::from_secs(30),
            Some(t) => match mesh_model::catalog::definition::parse_go_duration(t) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    p.push(format!(
                        "primary_gateways_interval: {t:?} must be above zero"
                    ));
                    std::time::Duration::from_secs(30)
                }
                Err(e) => {
                    p.push(format!("primary_gateways_interval: {e}"));
                    std::time::Duration::from_secs(30)
                }
            },
        };
        let wan = self.wan_federation.unwrap_or(false);
        let secondary = primary != datacenter;
        if self.primary_gateways.is_some() && !wan {
            p.push(
                "primary_gateways: requires connect { enable_mesh_gateway_wan_federation = true }"
                    .into(),
            );
        }
        if self.primary_gateways.is_some() && !secondary {
            p.push(format!(
                "primary_gateways: only a secondary datacenter lists the primary's gateways, and this one ({datacenter}) is the primary"
            ));
        }
        if secondary && !wan {
            p.push(format!(
                "primary_datacenter: {datacenter} is a secondary of {primary}, which needs connect {{ enable_mesh_gateway_wan_federation = true }}: datacenters are joined only through mesh gateways"
            ));
        }
        if secondary && wan && gateways.is_empty() && self.primary_gateways.is_none() {
            p.push(format!(
                "primary_gateways: a secondary datacenter must list at least one mesh gateway of its primary ({primary})"
            ));
        }
        if secondary && self.ca_file.is_none() {
            p.push(format!(
                "ca_file: a secondary datacenter needs the primary's CA roots (PEM, as GET /v1/connect/ca/roots in {primary} shows them) to recognise the primary's servers on first contact"
            ));
        }
        let server_addr = match format!("{bind}:{port}").parse() {
            Ok(a) => a,
            Err(_) => {
                p.push(format!(
                    "bind_addr: invalid address {bind:?}: the server port binds to an IP address"
                ));
                SocketAddr::from(([127, 0, 0, 1], port))
            }
        };
        Federation {
            primary_datacenter: primary,
            primary_gateways: gateways,
            primary_gateways_interval: interval,
            wan_federation: wan,
            server_addr,
            ca_file: self.ca_file.map(PathBuf::from),
            replication_token: self.replication_token,
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

    fn build(text: &str) -> Result<ServerConfig, ConfigError> {
        let file = ConfigFile::parse_str(text, false).unwrap();
        ServerConfig::build(
            &[file],
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
        )
    }

    #[test]
    fn a_secondary_as_consul_configures_it() {
        let cfg = build(
            r#"
datacenter = "DC2"
primary_datacenter = "dc1"
primary_gateways = ["127.0.0.1:4431", "mesh-dc1.example:8443"]
primary_gateways_interval = "5s"
bind_addr = "127.0.0.2"
ports { server = 8311 }
connect {
  enabled = true
  enable_mesh_gateway_wan_federation = true
}
tls { defaults { ca_file = "/etc/dc1-roots.pem" } }
acl { tokens { replication = "secret" } }
"#,
        )
        .unwrap();
        assert_eq!(cfg.datacenter, "dc2", "lower-cased as Consul does");
        let f = &cfg.federation;
        assert!(f.is_secondary(&cfg.datacenter));
        assert_eq!(f.primary_datacenter, "dc1");
        assert_eq!(
            f.primary_gateways
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["127.0.0.1:4431", "mesh-dc1.example:8443"]
        );
        assert_eq!(
            f.primary_gateways_interval,
            std::time::Duration::from_secs(5)
        );
        assert!(f.wan_federation);
        assert_eq!(f.server_addr.to_string(), "127.0.0.2:8311");
        assert_eq!(f.ca_file.as_deref(), Some(Path::new("/etc/dc1-roots.pem")));
        assert_eq!(f.replication_token.as_deref(), Some("secret"));
        // Flags win over files.
        let file = ConfigFile::parse_str(
            "primary_datacenter = \"dc1\"\nca_file = \"/r.pem\"\nconnect { enable_mesh_gateway_wan_federation = true }\n",
            false,
        )
        .unwrap();
        let cfg = ServerConfig::build(
            &[file],
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                datacenter: Some("dc3".into()),
                primary_gateways: vec!["127.0.0.1:9".into()],
                server_port: Some(0),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(cfg.federation.primary_gateways[0].port, 9);
        assert_eq!(cfg.federation.server_addr.port(), 0);
        // A single datacenter is its own primary.
        let cfg = build("datacenter = \"east\"\n").unwrap();
        assert!(!cfg.federation.is_secondary(&cfg.datacenter));
        assert_eq!(cfg.federation.primary_datacenter, "east");
        assert_eq!(cfg.federation.server_addr.to_string(), "127.0.0.1:8300");
    }

    #[test]
    fn every_bad_federation_value_is_named() {
        let text = build(
            r#"
datacenter = "dc.2"
primary_datacenter = "-dc1"
primary_gateways = ["127.0.0.1", "127.0.0.1:0", "{{ GetInterfaceIP \"eth0\" }}:1"]
primary_gateways_interval = "soon"
ports { server = 70000 }
"#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "datacenter: invalid datacenter name \"dc.2\"",
            "primary_datacenter: invalid datacenter name \"-dc1\"",
            "primary_gateways[0]: \"127.0.0.1\": expected HOST:PORT",
            "primary_gateways[1]: \"127.0.0.1:0\"",
            "primary_gateways[2]:",
            "primary_gateways_interval:",
            "ports.server: invalid port 70000",
            "primary_gateways: requires connect { enable_mesh_gateway_wan_federation = true }",
            "needs connect { enable_mesh_gateway_wan_federation = true }",
            "ca_file: a secondary datacenter needs the primary's CA roots",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let text = build(
            "primary_datacenter = \"dc2\"\nca_file = \"/r\"\nconnect { enable_mesh_gateway_wan_federation = true }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("must list at least one mesh gateway of its primary (dc2)"),
            "{text}"
        );
        let text = build(
            "primary_gateways = [\"127.0.0.1:1\"]\nconnect { enable_mesh_gateway_wan_federation = true }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(text.contains("this one (dc1) is the primary"), "{text}");
        let err =
            ConfigFile::parse_str("tls { defaults { cert_file = \"x\" } }\n", false).unwrap_err();
        assert!(err.contains("cert_file"), "{err}");
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
