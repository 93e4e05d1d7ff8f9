//! The typed topology: what `up` starts, with the line each part was declared on.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

/// A whole topology file, decoded and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// The file it was read from.
    pub file: PathBuf,
    /// Its directory: relative paths (commands, code, config files) are resolved against it.
    pub base: PathBuf,
    /// Where state lives (`state_dir`, relative to the file; default `<dir>/.lambdamesh`).
    pub state_dir: PathBuf,
    /// The datacenters in file order: one (named `dc1`, Consul's default) for a file without
    /// `datacenter` blocks.
    pub datacenters: Vec<Datacenter>,
    /// The index of the primary datacenter in `datacenters` (`primary_datacenter`, else the
    /// first block).
    pub primary: usize,
    /// Declared with `datacenter` blocks: the servers are federated through mesh gateways, and
    /// part names, endpoints, logs and state carry each datacenter's name.
    pub federated: bool,
}

/// The name of the one datacenter of a file without `datacenter` blocks (Consul's default).
pub const DEFAULT_DATACENTER: &str = "dc1";

/// One datacenter: its control plane, platform, registrator and what runs in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Datacenter {
    pub name: String,
    /// The line of its `datacenter` block (1 without blocks).
    pub line: usize,
    pub server: Server,
    pub platform: Platform,
    pub registrator: Option<Registrator>,
    pub services: Vec<Service>,
    pub functions: Vec<Function>,
    pub gateways: Vec<Gateway>,
    pub config_entries: Vec<ConfigEntry>,
    pub intentions: Vec<Intention>,
}

/// The control plane (`lambdamesh agent -dev`-like, with its data dir in the state dir).
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// Consul's HTTP API; default 127.0.0.1:8500 so Consul's clients work with no setting.
    pub http: SocketAddr,
    /// ADS for Envoy; default 127.0.0.1:8502.
    pub grpc: SocketAddr,
    /// The inter-server protocol's port (federated files only; reached through the datacenter's
    /// mesh gateways, so picked free at start when not given).
    pub server_port: Option<u16>,
    pub line: usize,
}

/// The local Lambda platform.
#[derive(Clone, Debug, PartialEq)]
pub struct Platform {
    /// Its AWS API endpoint; default 127.0.0.1:9001.
    pub addr: SocketAddr,
    /// The region in its ARNs and signatures; default `us-east-1`.
    pub region: String,
    pub line: usize,
}

/// The registrator, deployed as a function on the platform (as the Terraform module deploys it
/// on AWS): CloudTrail-shaped events of Lambda calls and a `rate()` schedule trigger it.
#[derive(Clone, Debug, PartialEq)]
pub struct Registrator {
    /// The schedule expression of the full sync; default `rate(1 minute)`.
    pub schedule: String,
    /// The Consul node functions are registered on; default `lambdas`.
    pub node: String,
    pub line: usize,
}

/// How `up` decides a service is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// A TCP connection to its port is accepted.
    Tcp,
    /// `GET http://127.0.0.1:<port><path>` answers 2xx.
    Http(String),
}

/// A plain service: any command, with its port and health check; a mesh service when it has a
/// sidecar.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    /// argv; `argv[0]` is looked up on `PATH` or relative to the file's directory.
    pub command: Vec<String>,
    pub port: u16,
    pub health: Health,
    /// Extra environment (besides `PORT`, `SERVICE_NAME` and `<UPSTREAM>_URL`, which `up` sets).
    pub env: BTreeMap<String, String>,
    /// Written as a `service-defaults` entry before the service registers.
    pub protocol: Option<String>,
    pub sidecar: Option<Sidecar>,
    pub depends_on: Vec<Reference>,
    pub line: usize,
}

/// An Envoy sidecar: the service registers with it and reaches its upstreams through it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sidecar {
    /// The sidecar's public (mTLS) port; picked free at start when not given.
    pub port: Option<u16>,
    pub upstreams: Vec<Upstream>,
    pub line: usize,
}

/// A mesh upstream on a local port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// The datacenter it is in (`name:dc` in the file); `None`: the caller's own.
    pub datacenter: Option<String>,
    pub port: u16,
    pub line: usize,
}

impl Upstream {
    /// As the file writes it: `name` or `name:dc`.
    pub fn label(&self) -> String {
        match &self.datacenter {
            Some(dc) => format!("{}:{dc}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A function on the local platform.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    /// A code directory (zipped at start) or a `.zip`.
    pub code: PathBuf,
    pub runtime: String,
    pub handler: String,
    /// Layer version ARNs as the platform knows them.
    pub layers: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub timeout: Option<u32>,
    pub memory: Option<u32>,
    /// The Lambda extension layer (Lambda → mesh through the mesh gateway).
    pub extension: Option<Extension>,
    pub depends_on: Vec<Reference>,
    pub line: usize,
}

impl Function {
    /// Whether the registrator will make it a mesh service.
    pub fn mesh_enabled(&self) -> bool {
        self.tags
            .get(ENABLED_TAG)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The registrator's enabling tag.
pub const ENABLED_TAG: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled";

/// The extension layer and its upstreams (`CONSUL_SERVICE_UPSTREAMS`).
#[derive(Clone, Debug, PartialEq)]
pub struct Extension {
    pub upstreams: Vec<Upstream>,
    pub line: usize,
}

/// An Envoy gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub kind: GatewayKind,
    pub port: u16,
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayKind {
    Terminating,
    Mesh,
}

impl GatewayKind {
    /// As `connect envoy -gateway` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayKind::Terminating => "terminating",
            GatewayKind::Mesh => "mesh",
        }
    }
}

/// A config entry, decoded and validated (from a file or inline).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    /// Consul's JSON of the entry, as `PUT /v1/config` takes it.
    pub json: serde_json::Value,
    /// `kind/name`, for progress lines.
    pub label: String,
    /// The file it came from (`None`: inline).
    pub source: Option<PathBuf>,
    pub line: usize,
}

/// An intention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intention {
    pub source: String,
    pub destination: String,
    pub allow: bool,
    pub line: usize,
}

/// A name that must be another part (`depends_on`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub line: usize,
}

/// The platform's default region.
pub const DEFAULT_REGION: &str = "us-east-1";

impl Topology {
    /// The primary datacenter (the only one of a file without `datacenter` blocks).
    pub fn primary(&self) -> &Datacenter {
        &self.datacenters[self.primary]
    }

    /// `what` as `status`, `logs` and the run record name it: `dc2/what` in a federated file,
    /// `what` otherwise.
    pub fn scoped(&self, dc: usize, what: &str) -> String {
        match self.datacenters.get(dc) {
            Some(d) if self.federated => format!("{}/{what}", d.name),
            _ => what.to_owned(),
        }
    }

    /// The index of the datacenter named `name`.
    pub fn datacenter_index(&self, name: &str) -> Option<usize> {
        self.datacenters.iter().position(|d| d.name == name)
    }

    /// Moves every port the file names to one `pick` gives (`up --free-ports`: a second copy
    /// next to a running one, tests). Services learn their ports from the environment `up`
    /// sets, so the topology stays consistent.
    pub fn remap_ports(&mut self, mut pick: impl FnMut() -> u16) {
        for d in &mut self.datacenters {
            d.remap_ports(&mut pick);
        }
    }
}

impl Datacenter {
    fn remap_ports(&mut self, pick: &mut impl FnMut() -> u16) {
        self.server.http.set_port(pick());
        self.server.grpc.set_port(pick());
        if self.server.server_port.is_some() {
            self.server.server_port = Some(pick());
        }
        self.platform.addr.set_port(pick());
        for s in &mut self.services {
            s.port = pick();
            if let Some(sc) = &mut s.sidecar {
                sc.port = Some(pick());
                for u in &mut sc.upstreams {
                    u.port = pick();
                }
            }
        }
        for f in &mut self.functions {
            for u in f.extension.iter_mut().flat_map(|e| &mut e.upstreams) {
                u.port = pick();
            }
        }
        for g in &mut self.gateways {
            g.port = pick();
        }
    }
}
