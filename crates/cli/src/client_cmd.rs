//! Client subcommands shaped like Consul's CLI: `services`, `catalog`, `config`, `intention`,
//! `acl`. Each parses its input locally first (so a bad file is reported without a round trip),
//! then calls the HTTP API and prints the server's message on failure (exit code 1).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use consul_client::{Client, ClientError, Tenancy};
use mesh_model::catalog::ServiceFile;
use mesh_model::config_entry;

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
        CatalogCommand::Nodes { http } => {
            let nodes = http
                .client()
                .catalog_nodes()
                .context("Error listing nodes")?;
            out(format!("{:<24} {:<38} {:<16} DC", "Node", "ID", "Address"))?;
            for n in nodes {
                out(format!(
                    "{:<24} {:<38} {:<16} {}",
                    n.node, n.id, n.address, n.datacenter
                ))?;
            }
            Ok(0)
        }
    }
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

#[derive(Subcommand, Debug)]
pub enum IntentionCommand {
    /// Create an intention SRC => DST.
    Create {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, conflicts_with = "deny")]
        allow: bool,
        #[arg(long)]
        deny: bool,
        /// Replace an existing intention between the same pair.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        description: Option<String>,
        source: String,
        destination: String,
    },
    /// Check whether SRC may connect to DST (exit 0 allowed, 2 denied).
    Check {
        #[command(flatten)]
        http: HttpArgs,
        source: String,
        destination: String,
    },
    /// Delete the intention SRC => DST.
    Delete {
        #[command(flatten)]
        http: HttpArgs,
        source: String,
        destination: String,
    },
    /// Show the intention SRC => DST.
    Get {
        #[command(flatten)]
        http: HttpArgs,
        source: String,
        destination: String,
    },
}

pub fn intention(cmd: IntentionCommand) -> anyhow::Result<u8> {
    match cmd {
        IntentionCommand::Create {
            http,
            allow: _,
            deny,
            replace,
            description,
            source,
            destination,
        } => {
            let client = http.client();
            if !replace {
                match client.intention_exact(&source, &destination) {
                    Ok(_) => bail!(
                        "Error creating intention: an intention {source} => {destination} already exists; use -replace to overwrite it"
                    ),
                    Err(ClientError::Http { status: 404, .. }) => {}
                    Err(e) => return Err(e).context("Error checking for an existing intention"),
                }
            }
            let action = if deny { "deny" } else { "allow" };
            let mut body = json!({ "SourceType": "consul", "Action": action });
            if let Some(d) = description {
                body["Description"] = Value::from(d);
            }
            client
                .put_intention_exact(&source, &destination, &body)
                .context("Error creating intention")?;
            out(format!("Created: {source} => {destination} ({action})"))?;
            Ok(0)
        }
        IntentionCommand::Check {
            http,
            source,
            destination,
        } => {
            let allowed = http
                .client()
                .intention_check(&source, &destination)
                .context("Error checking the connection")?;
            if allowed {
                out("Allowed")?;
                Ok(0)
            } else {
                out("Denied")?;
                Ok(2)
            }
        }
        IntentionCommand::Delete {
            http,
            source,
            destination,
        } => {
            http.client()
                .delete_intention_exact(&source, &destination)
                .context("Error deleting intention")?;
            out("Intention deleted.")?;
            Ok(0)
        }
        IntentionCommand::Get {
            http,
            source,
            destination,
        } => {
            let intention = http
                .client()
                .intention_exact(&source, &destination)
                .context("Error reading intention")?;
            out(serde_json::to_string_pretty(&intention).context("cannot format the intention")?)?;
            Ok(0)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Bootstrap the ACL system and print the management token.
    Bootstrap {
        #[command(flatten)]
        http: HttpArgs,
    },
}

pub fn acl(cmd: AclCommand) -> anyhow::Result<u8> {
    match cmd {
        AclCommand::Bootstrap { http } => {
            let t = http
                .client()
                .acl_bootstrap()
                .context("Failed ACL bootstrapping")?;
            out(format!("AccessorID:       {}", t.accessor_id))?;
            out(format!("SecretID:         {}", t.secret_id))?;
            out(format!("Description:      {}", t.description))?;
            out(format!("Local:            {}", t.local))?;
            out(format!("Create Time:      {}", t.create_time))?;
            out("Policies:")?;
            for p in t.policies {
                out(format!("   {} - {}", p.id, p.name))?;
            }
            Ok(0)
        }
    }
}
