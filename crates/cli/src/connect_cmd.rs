//! `lambdamesh connect envoy`: find (or register) the proxy, write Envoy's bootstrap and exec
//! Envoy, with the flags Consul uses. Envoy always runs with `--disable-hot-restart` (so it
//! survives its launcher) and `AWS_EC2_METADATA_DISABLED=true` (so its AWS credential chain never
//! probes the metadata address), unless told otherwise.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use consul_client::agent::AgentService;

use crate::client_cmd::HttpArgs;

#[derive(Subcommand, Debug)]
pub enum ConnectCommand {
    /// Run Envoy as a sidecar proxy or a gateway.
    Envoy(EnvoyArgs),
}

/// Envoy's drain time unless the user passes `--drain-*` flags: how long the connections of a
/// replaced filter chain (or listener) may finish before Envoy closes them. It bounds how long
/// a tcp connection that a new intention denies stays open (`docs/xds.md`, "Intentions").
pub const DRAIN_TIME_S: u64 = 2;

#[derive(Args, Debug)]
pub struct EnvoyArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The ID of the service whose sidecar proxy to run.
    #[arg(long = "sidecar-for")]
    pub sidecar_for: Option<String>,
    /// Run a gateway: `terminating` or `mesh`.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Register the gateway service before starting.
    #[arg(long)]
    pub register: bool,
    /// The gateway's service name (default: `terminating-gateway` / `mesh-gateway`).
    #[arg(long)]
    pub service: Option<String>,
    /// The gateway's listen address (HOST:PORT).
    #[arg(long)]
    pub address: Option<String>,
    /// With `-gateway mesh -register`: this gateway also carries the servers' traffic between
    /// datacenters (Meta `consul-wan-federation = "1"`, as Consul's `-expose-servers`).
    #[arg(long = "expose-servers")]
    pub expose_servers: bool,
    /// The proxy's own ID when registering (default: the service name).
    #[arg(long = "proxy-id")]
    pub proxy_id: Option<String>,
    /// Envoy's admin listener (HOST:PORT); always on loopback.
    #[arg(long = "admin-bind", default_value = "127.0.0.1:19000")]
    pub admin_bind: String,
    /// The control plane's xDS (gRPC) address, or several replicas' comma-separated
    /// (HOST:PORT,HOST:PORT): Envoy's ADS cluster gets them all and fails over (docs/ha.md).
    #[arg(
        long = "grpc-addr",
        env = "CONSUL_GRPC_ADDR",
        default_value = "127.0.0.1:8502"
    )]
    pub grpc_addr: String,
    /// Use state-of-the-world xDS instead of delta.
    #[arg(long = "sotw")]
    pub sotw: bool,
    /// Print the bootstrap instead of running Envoy.
    #[arg(long)]
    pub bootstrap: bool,
    /// Let Envoy probe EC2 instance metadata for AWS credentials (off by default).
    #[arg(long = "allow-ec2-metadata")]
    pub allow_ec2_metadata: bool,
    /// Extra arguments for Envoy (after `--`).
    #[arg(last = true)]
    pub envoy_args: Vec<String>,
}

fn split_host_port(s: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .with_context(|| format!("{what}: expected HOST:PORT, got {s:?}"))?;
    let port: u16 = p
        .parse()
        .with_context(|| format!("{what}: invalid port in {s:?}"))?;
    Ok((h.to_owned(), port))
}

/// Finds the sidecar proxy registered for service ID `id` on the local agent.
fn find_sidecar(
    client: &consul_client::Client,
    http: &HttpArgs,
    id: &str,
) -> anyhow::Result<AgentService> {
    let services = client
        .agent_services(&http.tenancy())
        .context("Error reading the agent's services")?;
    services
        .into_values()
        .find(|s| {
            s.kind == "connect-proxy"
                && s.proxy
                    .as_ref()
                    .is_some_and(|p| p.destination_service_id == id)
        })
        .with_context(|| format!("No sidecar proxy registered for {id:?}: register the service with a `sidecar_service` first"))
}

/// `envoy_prometheus_bind_addr` from the proxy's own `Config`, else from proxy-defaults' (as
/// Consul merges them).
fn prometheus_bind(
    client: &consul_client::Client,
    http: &HttpArgs,
    proxy_id: &str,
) -> anyhow::Result<Option<(String, u16)>> {
    let own = client
        .agent_services(&http.tenancy())
        .context("Error reading the agent's services")?
        .remove(proxy_id)
        .and_then(|s| s.proxy)
        .and_then(|p| p.config);
    let global = match client.config_entry("proxy-defaults", "global", &http.tenancy()) {
        Ok(e) => e.json.get("Config").cloned(),
        Err(consul_client::ClientError::Http { status: 404, .. }) => None,
        Err(e) => return Err(e).context("Error reading proxy-defaults"),
    };
    for config in [own, global].into_iter().flatten() {
        if let Some(addr) = xds::bootstrap::prometheus_bind_addr(&config)
            .map_err(|e| anyhow::anyhow!("proxy {proxy_id:?}: {e}"))?
        {
            return Ok(Some(addr));
        }
    }
    Ok(None)
}

pub fn run(cmd: ConnectCommand) -> anyhow::Result<u8> {
    let ConnectCommand::Envoy(args) = cmd;
    let client = args.http.client();
    let (node_id, service, namespace) = match (&args.sidecar_for, &args.gateway) {
        (Some(id), None) => {
            let proxy = find_sidecar(&client, &args.http, id)?;
            (
                proxy.id,
                proxy.service,
                proxy.namespace.unwrap_or_else(|| "default".into()),
            )
        }
        (None, Some(kind)) => {
            let kind_name = match kind.as_str() {
                "terminating" => "terminating-gateway",
                "mesh" => "mesh-gateway",
                other => bail!(
                    "-gateway: unknown gateway kind {other:?}: use \"terminating\" or \"mesh\""
                ),
            };
            let service = args.service.clone().unwrap_or_else(|| kind_name.to_owned());
            let id = args.proxy_id.clone().unwrap_or_else(|| service.clone());
            if args.expose_servers && !args.register {
                bail!("-expose-servers needs -register (it sets the gateway's Meta)");
            }
            if args.register {
                let addr = args
                    .address
                    .as_deref()
                    .context("-register needs -address HOST:PORT for the gateway's listener")?;
                let (host, port) = split_host_port(addr, "-address")?;
                let mut body = json!({"Kind": kind_name, "ID": id, "Name": service, "Address": host, "Port": port});
                if args.expose_servers {
                    if kind_name != "mesh-gateway" {
                        bail!("-expose-servers is only for -gateway mesh");
                    }
                    body["Meta"] = json!({mesh_model::federation::WAN_FEDERATION_META: "1"});
                }
                client
                    .agent_service_register(&body, &args.http.tenancy())
                    .with_context(|| format!("Error registering the {kind_name} {service:?}"))?;
            }
            (
                id,
                service,
                args.http
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            )
        }
        _ => bail!("exactly one of -sidecar-for ID or -gateway terminating|mesh must be given"),
    };
    let prometheus = prometheus_bind(&client, &args.http, &node_id)?;
    let datacenter = client
        .agent_self()
        .ok()
        .and_then(|a| a.config.datacenter)
        .unwrap_or_else(|| "dc1".into());
    let (admin_host, admin_port) = split_host_port(&args.admin_bind, "-admin-bind")?;
    if admin_host != "127.0.0.1" && admin_host != "localhost" && admin_host != "::1" {
        bail!(
            "-admin-bind: the admin listener must be on loopback (Envoy's admin API is unauthenticated), got {admin_host:?}"
        );
    }
    let xds = args
        .grpc_addr
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| split_host_port(a.trim_start_matches("http://"), "-grpc-addr"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if xds.is_empty() {
        bail!("-grpc-addr: expected HOST:PORT (or several, comma-separated)");
    }
    let params = xds::bootstrap::BootstrapParams {
        node_id,
        service,
        namespace,
        partition: args
            .http
            .partition
            .clone()
            .unwrap_or_else(|| "default".into()),
        datacenter,
        xds,
        admin_host,
        admin_port,
        token: args.http.token.clone(),
        delta: !args.sotw,
        prometheus,
    };
    let bootstrap = xds::bootstrap::bootstrap_json(&params);
    if args.bootstrap {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&bootstrap)?)
            .context("cannot write to stdout")?;
        return Ok(0);
    }
    let envoy = std::env::var("ENVOY_BIN").unwrap_or_else(|_| "envoy".into());
    let mut command = std::process::Command::new(&envoy);
    command
        .arg("--config-yaml")
        .arg(bootstrap.to_string())
        .arg("--disable-hot-restart");
    // A change replaces a listener's filter chain when it touches routing or a tcp service's
    // intentions (http intentions update in place over ECDS); connections accepted under the old
    // chain keep it while they drain, by default gradually over 600 s. So a tcp connection the
    // new rules deny, or a pooled keep-alive connection on an old route, would live for minutes.
    // Drain at once (HTTP/1 answers carry `Connection: close`, HTTP/2 gets GOAWAY) and close
    // what is left after DRAIN_TIME_S. Consul leaves Envoy's defaults; the user's own flags win.
    if !args.envoy_args.iter().any(|a| a.starts_with("--drain-")) {
        command
            .arg("--drain-time-s")
            .arg(DRAIN_TIME_S.to_string())
            .args(["--drain-strategy", "immediate"]);
    }
    command.args(&args.envoy_args);
    if !args.allow_ec2_metadata {
        command.env("AWS_EC2_METADATA_DISABLED", "true");
    }
    exec(command, &envoy)
}

#[cfg(unix)]
fn exec(mut command: std::process::Command, envoy: &str) -> anyhow::Result<u8> {
    use std::os::unix::process::CommandExt;
    let err = command.exec();
    bail!("cannot run Envoy {envoy:?} (set ENVOY_BIN or put envoy on PATH): {err}")
}

#[cfg(not(unix))]
fn exec(mut command: std::process::Command, envoy: &str) -> anyhow::Result<u8> {
    let status = command
        .status()
        .with_context(|| format!("cannot run Envoy {envoy:?}"))?;
    Ok(status.code().unwrap_or(1) as u8)
}
