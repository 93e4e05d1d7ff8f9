//! Client subcommands shaped like Consul's CLI: `services`, `catalog`, `members`, `config`,
//! `intention` (`client_cmd/intention.rs`), `acl` (`client_cmd/acl.rs`). Each parses its input
//! locally first (so a bad file is reported without a round trip), then calls the HTTP API and
//! prints the server's message on failure (exit code 1).

mod acl;
mod intention;

pub use acl::{AclCommand, acl};
pub use intention::{IntentionCommand, intention};

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use consul_client::{Client, Tenancy};
use mesh_model::catalog::ServiceFile;
use mesh_model::config_entry;

use crate::table::columns;

/// Flags every client command takes, with Consul's names and environment variables.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address of the HTTP API.
    #[arg(
        long = "http-addr",
        env = "CONSUL_HTTP_ADDR",
        default_value = "127.0.0.1:8500"
    )]
    pub http_addr: String,
    /// ACL token.
    #[arg(long = "token", env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Namespace of the request.
    #[arg(long = "namespace")]
    pub namespace: Option<String>,
    /// Admin partition of the request.
    #[arg(long = "partition")]
    pub partition: Option<String>,
}

impl HttpArgs {
    /// The client these flags describe.
    pub fn client(&self) -> Client {
        Client::new(&self.http_addr, self.token.clone())
    }

    /// The namespace and partition of this request.
    pub fn tenancy(&self) -> Tenancy<'_> {
        Tenancy {
            datacenter: None,
            partition: self.partition.as_deref(),
            namespace: self.namespace.as_deref(),
        }
    }
}

fn out(line: impl AsRef<str>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", line.as_ref()).context("cannot write to stdout")
}

fn read_file(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[derive(Subcommand, Debug)]
pub enum ServicesCommand {
    /// Register services from an HCL or JSON file with the local agent.
    Register {
        #[command(flatten)]
        http: HttpArgs,
        file: PathBuf,
    },
    /// Deregister services named in a file, or one by -id.
    Deregister {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long)]
        id: Option<String>,
        file: Option<PathBuf>,
    },
}

pub fn services(cmd: ServicesCommand) -> anyhow::Result<u8> {
    match cmd {
        ServicesCommand::Register { http, file } => {
            let defs = ServiceFile::parse_with_json(&read_file(&file)?)
                .with_context(|| format!("Error parsing {}", file.display()))?;
            let client = http.client();
            for (def, body) in defs {
                client
                    .agent_service_register(&body, &http.tenancy())
                    .with_context(|| format!("Error registering service {:?}", def.name))?;
                out(format!("Registered service: {}", def.name))?;
            }
            Ok(0)
        }
        ServicesCommand::Deregister { http, id, file } => {
            let ids: Vec<String> = match (id, file) {
                (Some(id), None) => vec![id],
                (None, Some(file)) => ServiceFile::parse(&read_file(&file)?)
                    .with_context(|| format!("Error parsing {}", file.display()))?
                    .iter()
                    .map(|d| d.effective_id().to_owned())
                    .collect(),
                _ => bail!("exactly one of -id or a file must be given"),
            };
            let client = http.client();
            for id in ids {
                client
                    .agent_service_deregister(&id, &http.tenancy())
                    .with_context(|| format!("Error deregistering service {id:?}"))?;
                out(format!("Deregistered service: {id}"))?;
            }
            Ok(0)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// List services in the catalog.
    Services {
        #[command(flatten)]
        http: HttpArgs,
        /// Show tags next to each service.
        #[arg(long)]
        tags: bool,
    },
    /// List nodes in the catalog.
    Nodes {
        #[command(flatten)]
        http: HttpArgs,
        /// Show full node IDs, tagged addresses and metadata.
        #[arg(long)]
        detailed: bool,
        /// Filter expression (go-bexpr) applied by the server.
        #[arg(long)]
        filter: Option<String>,
    },
}

pub fn catalog(cmd: CatalogCommand) -> anyhow::Result<u8> {
    match cmd {
        CatalogCommand::Services { http, tags } => {
            let services = http
                .client()
                .catalog_services(&http.tenancy())
                .context("Error listing services")?;
            let width = services.keys().map(String::len).max().unwrap_or(0);
            for (name, t) in services {
                if tags {
                    out(format!("{name:width$}  {}", t.join(",")))?;
                } else {
                    out(name)?;
                }
            }
            Ok(0)
        }
        CatalogCommand::Nodes {
            http,
            detailed,
            filter,
        } => {
            let nodes = http
                .client()
                .catalog_nodes_filtered(&http.tenancy(), filter.as_deref())
                .context("Error listing nodes")?;
            if nodes.is_empty() {
                eprintln!("No nodes match the given query - try expanding your search.");
                return Ok(0);
            }
            let mut rows = vec![if detailed {
                ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
                    .map(str::to_owned)
                    .to_vec()
            } else {
                ["Node", "ID", "Address", "DC"].map(str::to_owned).to_vec()
            }];
            for n in nodes {
                rows.push(if detailed {
                    vec![
                        n.node,
                        n.id,
                        n.address,
                        n.datacenter,
                        key_values(&n.tagged_addresses),
                        key_values(&n.meta),
                    ]
                } else {
                    // Consul shortens the ID to its first group outside -detailed.
                    let short = n.id.split('-').next().unwrap_or_default().to_owned();
                    vec![n.node, short, n.address, n.datacenter]
                });
            }
            out(columns(&rows))?;
            Ok(0)
        }
    }
}

/// `k1=v1, k2=v2`, sorted by key, as Consul's CLI prints maps.
fn key_values(map: &std::collections::BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `members`: the cluster's members as `consul members` lists them.
#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Show every member tag instead of the summary columns.
    #[arg(long)]
    detailed: bool,
}

pub fn members(args: MembersArgs) -> anyhow::Result<u8> {
    let mut members = args
        .http
        .client()
        .agent_members()
        .context("Error retrieving members")?;
    if members.is_empty() {
        return Ok(2);
    }
    // Servers first, then by name (Consul's order within the default partition).
    members.sort_by(|a, b| {
        let not_server = |m: &consul_client::agent::Member| {
            m.tags.get("role").map(String::as_str) != Some("consul")
        };
        (not_server(a), &a.name).cmp(&(not_server(b), &b.name))
    });
    let addr = |m: &consul_client::agent::Member| match m.addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", m.port),
        _ => format!("{}:{}", m.addr, m.port),
    };
    let mut rows = Vec::with_capacity(members.len() + 1);
    if args.detailed {
        rows.push(
            ["Node", "Address", "Status", "Tags"]
                .map(str::to_owned)
                .to_vec(),
        );
        for m in &members {
            rows.push(vec![
                m.name.clone(),
                addr(m),
                m.status_name().to_owned(),
                m.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
        }
    } else {
        rows.push(
            [
                "Node",
                "Address",
                "Status",
                "Type",
                "Build",
                "Protocol",
                "DC",
                "Partition",
                "Segment",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        for m in &members {
            let tag = |k: &str| m.tags.get(k).cloned().unwrap_or_default();
            let kind = match tag("role").as_str() {
                "consul" => "server",
                "node" => "client",
                _ => "unknown",
            };
            let build = tag("build");
            let build = build.split(':').next().unwrap_or_default().to_owned();
            let partition = Some(tag("ap")).filter(|p| !p.is_empty());
            let segment = match (kind, tag("segment")) {
                ("server", _) => "<all>".to_owned(),
                (_, s) if s.is_empty() => "<default>".to_owned(),
                (_, s) => s,
            };
            rows.push(vec![
                m.name.clone(),
                addr(m),
                m.status_name().to_owned(),
                kind.to_owned(),
                build,
                tag("vsn"),
                tag("dc"),
                partition.unwrap_or_else(|| "default".to_owned()),
                segment,
            ]);
        }
    }
    out(columns(&rows))?;
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write a config entry from an HCL or JSON file (`-` for stdin).
    Write {
        #[command(flatten)]
        http: HttpArgs,
        /// Only write if the entry's ModifyIndex equals -modify-index (0: only if absent).
        #[arg(long)]
        cas: bool,
        #[arg(long = "modify-index")]
        modify_index: Option<u64>,
        file: PathBuf,
    },
    /// Read one config entry.
    Read {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
    },
    /// List config entries of a kind.
    List {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long)]
        kind: String,
    },
    /// Delete a config entry.
    Delete {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
    },
}

pub fn config(cmd: ConfigCommand) -> anyhow::Result<u8> {
    match cmd {
        ConfigCommand::Write {
            http,
            cas,
            modify_index,
            file,
        } => {
            let entry =
                config_entry::decode_hcl_or_json(&read_file(&file)?).with_context(|| {
                    format!(
                        "Failed to decode config entry input from {}",
                        file.display()
                    )
                })?;
            entry.validate().context("Invalid config entry")?;
            let label = format!("{}/{}", entry.kind().as_str(), entry.name());
            let cas = if cas {
                Some(modify_index.context("-cas requires -modify-index")?)
            } else {
                None
            };
            let written = http
                .client()
                .put_config_entry(&entry.to_json(), &http.tenancy(), cas)
                .with_context(|| format!("Error writing config entry {label}"))?;
            if !written {
                bail!("Config entry not updated: {label} (the check-and-set index did not match)");
            }
            out(format!("Config entry written: {label}"))?;
            Ok(0)
        }
        ConfigCommand::Read { http, kind, name } => {
            let entry = http
                .client()
                .config_entry(&kind, &name, &http.tenancy())
                .with_context(|| format!("Error reading config entry {kind}/{name}"))?;
            out(serde_json::to_string_pretty(&entry.json).context("cannot format the entry")?)?;
            Ok(0)
        }
        ConfigCommand::List { http, kind } => {
            let entries = http
                .client()
                .config_entries(&kind, &http.tenancy())
                .with_context(|| format!("Error listing config entries for kind {kind:?}"))?;
            for e in entries {
                out(e.name)?;
            }
            Ok(0)
        }
        ConfigCommand::Delete { http, kind, name } => {
            http.client()
                .delete_config_entry(&kind, &name, &http.tenancy())
                .with_context(|| format!("Error deleting config entry {kind}/{name}"))?;
            out(format!("Config entry deleted: {kind}/{name}"))?;
            Ok(0)
        }
    }
}
