//! `lambdamesh server` and `lambdamesh agent`: load config, open the store, serve until SIGINT or
//! SIGTERM, then drain.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use server::config::{ConfigFile, Overrides, ServerConfig};

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Directory for the durable state (required unless -dev).
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Config file in HCL or JSON (repeatable; later files override earlier ones).
    #[arg(long = "config-file")]
    pub config_file: Vec<PathBuf>,
    /// Directory whose *.hcl and *.json files are loaded in name order.
    #[arg(long = "config-dir")]
    pub config_dir: Option<PathBuf>,
    #[arg(long)]
    pub datacenter: Option<String>,
    /// The primary datacenter, whose CA is the root of trust (docs/multi-dc.md).
    #[arg(long = "primary-datacenter")]
    pub primary_datacenter: Option<String>,
    /// A mesh gateway of the primary datacenter, HOST:PORT (repeatable; replaces
    /// `primary_gateways`).
    #[arg(long = "primary-gateway")]
    pub primary_gateway: Vec<String>,
    /// Port of the inter-server protocol (Consul's server RPC port, 8300).
    #[arg(long = "server-port")]
    pub server_port: Option<u16>,
    /// Node name of this agent.
    #[arg(long = "node")]
    pub node: Option<String>,
    /// Address of the HTTP API (HOST:PORT).
    #[arg(long = "http-addr")]
    pub http_addr: Option<String>,
    /// Client address the HTTP and gRPC listeners bind to (Consul's -client).
    #[arg(long = "client")]
    pub client: Option<String>,
    #[arg(long = "http-port")]
    pub http_port: Option<u16>,
    #[arg(long = "grpc-port")]
    pub grpc_port: Option<u16>,
    /// Address of the xDS (gRPC) listener (HOST:PORT); overrides -client/-grpc-port.
    #[arg(long = "grpc-addr")]
    pub grpc_addr: Option<String>,
    /// Lambda endpoint used for Lambda services instead of AWS (e.g. http://127.0.0.1:9001).
    #[arg(long = "lambda-endpoint")]
    pub lambda_endpoint: Option<String>,
    /// Development mode: throw-away data dir, everything on 127.0.0.1.
    #[arg(long)]
    pub dev: bool,
    /// Accepted for compatibility with `consul agent -server`.
    #[arg(long)]
    pub server: bool,
    /// Accepted for compatibility with `consul agent -bootstrap-expect=1`.
    #[arg(long = "bootstrap-expect")]
    pub bootstrap_expect: Option<u32>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where the state lives (`docs/ha.md`): the embedded log, or etcd shared by several replicas.
#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// `embedded` (default: the log in -data-dir) or `etcd` (several replicas, docs/ha.md).
    #[arg(long = "store")]
    pub store: Option<String>,
    /// etcd client URLs, comma-separated (implies -store etcd).
    #[arg(long = "etcd-endpoints")]
    pub etcd_endpoints: Option<String>,
    /// Key prefix in etcd (default /lambdamesh).
    #[arg(long = "etcd-prefix")]
    pub etcd_prefix: Option<String>,
    /// etcd credentials as user:password (as `etcdctl --user`).
    #[arg(long = "etcd-user")]
    pub etcd_user: Option<String>,
    /// CA bundle that verifies etcd's TLS certificate.
    #[arg(long = "etcd-cacert")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long = "etcd-cert")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long = "etcd-key")]
    pub etcd_key: Option<PathBuf>,
    /// File with the 64-hex-digit key that seals everything put in etcd (or set
    /// LAMBDAMESH_ETCD_ENCRYPTION_KEY).
    #[arg(long = "etcd-encryption-key-file")]
    pub etcd_encryption_key_file: Option<PathBuf>,
}

impl StoreArgs {
    fn flags(&self) -> server::config::StoreFlags {
        server::config::StoreFlags {
            store: self.store.clone(),
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            user: self.etcd_user.clone(),
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            encryption_key_file: self.etcd_encryption_key_file.clone(),
        }
    }
}

fn load_files(args: &ServerArgs) -> anyhow::Result<Vec<ConfigFile>> {
    let mut paths = args.config_file.clone();
    if let Some(dir) = &args.config_dir {
        let mut in_dir: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read -config-dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "hcl" || e == "json"))
            .collect();
        in_dir.sort();
        paths.extend(in_dir);
    }
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in &paths {
        match ConfigFile::load(p) {
            Ok(f) => files.push(f),
            Err(e) => problems.extend(e.problems),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    Ok(files)
}

pub async fn run(args: ServerArgs) -> anyhow::Result<u8> {
    let files = load_files(&args)?;
    let http_addr = args.http_addr.clone().or_else(|| {
        (args.client.is_some() || args.http_port.is_some()).then(|| {
            format!(
                "{}:{}",
                args.client.as_deref().unwrap_or("127.0.0.1"),
                args.http_port.unwrap_or(8500)
            )
        })
    });
    let grpc_addr = args.grpc_addr.clone().or_else(|| {
        (args.client.is_some() || args.grpc_port.is_some()).then(|| {
            format!(
                "{}:{}",
                args.client.as_deref().unwrap_or("127.0.0.1"),
                args.grpc_port.unwrap_or(8502)
            )
        })
    });
    let overrides = Overrides {
        datacenter: args.datacenter.clone(),
        node_name: args.node.clone(),
        data_dir: args.data_dir.clone(),
        http_addr,
        grpc_addr,
        lambda_endpoint: args.lambda_endpoint.clone(),
        dev: args.dev,
        store: args.store.flags(),
        primary_datacenter: args.primary_datacenter.clone(),
        primary_gateways: args.primary_gateway.clone(),
        server_port: args.server_port,
    };
    let mut config = ServerConfig::build(&files, &overrides)?;
    // -dev without a data dir: a throw-away directory removed at exit.
    let _dev_dir = if args.dev && args.data_dir.is_none() {
        let d = tempfile::Builder::new()
            .prefix("lambdamesh-dev-")
            .tempdir()
            .context("cannot create the -dev data dir")?;
        config.data_dir = d.path().to_owned();
        Some(d)
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot bind the HTTP API to {}", config.http_addr))?;
    let http = listener.local_addr().context("listener has no address")?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot bind the xDS (gRPC) port to {}", config.grpc_addr))?;
    let grpc = grpc_listener
        .local_addr()
        .context("listener has no address")?;
    // The inter-server protocol listens only where datacenters are joined.
    let server_listener = if config.federation.wan_federation {
        let addr = config.federation.server_addr;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the server port to {addr}"))?;
        tracing::info!(
            server = %l.local_addr().context("listener has no address")?,
            datacenter = %config.datacenter,
            primary = %config.federation.primary_datacenter,
            "inter-server protocol listening (docs/multi-dc.md)"
        );
        Some(l)
    } else {
        None
    };
    let app = server::AppState::open(config.clone())
        .await
        .context("cannot start the server")?;
    tracing::info!(
        http = %http,
        datacenter = %config.datacenter,
        node = %config.node_name,
        data_dir = %config.data_dir.display(),
        acl = config.acl.enabled,
        dev = config.dev,
        "lambdamesh server ready: HTTP API at http://{http}/v1/ , xDS (gRPC) at {grpc} (try: curl http://{http}/v1/catalog/services)"
    );
    server::serve_federated(
        app,
        listener,
        Some(grpc_listener),
        server_listener,
        crate::signals::shutdown_signal(),
    )
    .await?;
    tracing::info!("lambdamesh server stopped");
    Ok(0)
}
