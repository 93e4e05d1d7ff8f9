//! `lambdamesh registrator sync|run|lambda`: flags and environment merged into the Go
//! registrator's variables, then handed to the `registrator` crate. A flag overrides the
//! variable of the same meaning.

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tracing::info;

#[derive(Subcommand, Debug)]
pub enum RegistratorCommand {
    /// Run one full sync and exit (exit 1 when any error occurred).
    Sync(Flags),
    /// Run as a daemon: full sync every -sync-interval plus events from -queue-url.
    Run(Flags),
    /// Run as a Lambda function (a `provided.al2023` bootstrap; needs AWS_LAMBDA_RUNTIME_API).
    Lambda(Flags),
}

#[derive(Args, Debug, Default)]
pub struct Flags {
    /// Consul node the Lambda services are registered on [env NODE_NAME, default lambdas].
    #[arg(long)]
    node_name: Option<String>,
    /// Only handle functions whose datacenter tag equals this [env DATACENTER].
    #[arg(long)]
    datacenter: Option<String>,
    /// Consul Enterprise mode [env ENTERPRISE].
    #[arg(long)]
    enterprise: Option<String>,
    /// Comma-separated admin partitions to manage [env PARTITIONS].
    #[arg(long)]
    partitions: Option<String>,
    /// Consul HTTP address [env CONSUL_HTTP_ADDR].
    #[arg(long)]
    http_addr: Option<String>,
    /// Consul ACL token [env CONSUL_HTTP_TOKEN].
    #[arg(long)]
    token: Option<String>,
    /// Parameter Store name holding the Consul token [env CONSUL_HTTP_TOKEN_PATH].
    #[arg(long)]
    token_path: Option<String>,
    /// CA file for HTTPS to Consul [env CONSUL_CACERT].
    #[arg(long)]
    ca_file: Option<String>,
    /// Parameter Store name holding the Consul CA [env CONSUL_CACERT_PATH].
    #[arg(long)]
    ca_cert_path: Option<String>,
    /// Parameter Store prefix of the functions' mTLS material [env CONSUL_EXTENSION_DATA_PREFIX].
    #[arg(long)]
    extension_data_prefix: Option<String>,
    /// Parameter Store tier of that data [env CONSUL_EXTENSION_DATA_TIER].
    #[arg(long)]
    extension_data_tier: Option<String>,
    /// ListFunctions page size, 1-50 [env PAGE_SIZE].
    #[arg(long)]
    page_size: Option<String>,
    /// trace, debug, info, warn, error [env LOG_LEVEL].
    #[arg(long)]
    log_level: Option<String>,
    /// Also write the Consul ≤1.14 service-defaults Meta keys: true, or `only` for servers
    /// without EnvoyExtensions [env LEGACY_META].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    legacy_meta: Option<String>,
    /// auto, tagging or functions [env LIST_MODE].
    #[arg(long)]
    list_mode: Option<String>,
    /// Concurrent AWS/Consul calls [env CONCURRENCY, default 16].
    #[arg(long)]
    concurrency: Option<String>,
    /// Full-sync period of `run` [env SYNC_INTERVAL, default 5m].
    #[arg(long)]
    sync_interval: Option<String>,
    /// SQS queue URL the daemon takes events from [env QUEUE_URL].
    #[arg(long)]
    queue_url: Option<String>,
    /// AWS region [env AWS_REGION].
    #[arg(long)]
    region: Option<String>,
    /// AWS endpoint URL for every service [env AWS_ENDPOINT_URL].
    #[arg(long)]
    endpoint: Option<String>,
    /// Serve Prometheus counters on this address (`run` only), e.g. 127.0.0.1:9102.
    #[arg(long)]
    metrics_addr: Option<String>,
}

impl Flags {
    fn vars(&self) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = std::env::vars().collect();
        let pairs: [(&str, &Option<String>); 20] = [
            ("NODE_NAME", &self.node_name),
            ("DATACENTER", &self.datacenter),
            ("ENTERPRISE", &self.enterprise),
            ("PARTITIONS", &self.partitions),
            ("CONSUL_HTTP_ADDR", &self.http_addr),
            ("CONSUL_HTTP_TOKEN", &self.token),
            ("CONSUL_HTTP_TOKEN_PATH", &self.token_path),
            ("CONSUL_CACERT", &self.ca_file),
            ("CONSUL_CACERT_PATH", &self.ca_cert_path),
            ("CONSUL_EXTENSION_DATA_PREFIX", &self.extension_data_prefix),
            ("CONSUL_EXTENSION_DATA_TIER", &self.extension_data_tier),
            ("PAGE_SIZE", &self.page_size),
            ("LOG_LEVEL", &self.log_level),
            ("LIST_MODE", &self.list_mode),
            ("CONCURRENCY", &self.concurrency),
            ("SYNC_INTERVAL", &self.sync_interval),
            ("QUEUE_URL", &self.queue_url),
            ("AWS_REGION", &self.region),
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("METRICS_ADDR", &self.metrics_addr),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                vars.insert(k.to_owned(), v.clone());
            }
        }
        if let Some(v) = &self.legacy_meta {
            vars.insert("LEGACY_META".into(), v.clone());
        }
        vars
    }
}

/// The binary installed as a Lambda `bootstrap` (no arguments, inside a sandbox) runs the
/// registrator's Lambda mode, so the binary itself can be the deployment package.
pub fn bootstrap_argv(
    argv: impl IntoIterator<Item = std::ffi::OsString>,
    runtime_api: Option<std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = argv.into_iter().collect();
    let is_bootstrap = argv.first().is_some_and(|p| {
        std::path::Path::new(p)
            .file_name()
            .is_some_and(|n| n == "bootstrap")
    });
    if argv.len() == 1 && is_bootstrap && runtime_api.is_some() {
        argv.extend(["registrator".into(), "lambda".into()]);
    }
    argv
}

pub async fn run(cmd: RegistratorCommand) -> anyhow::Result<u8> {
    match cmd {
        RegistratorCommand::Sync(flags) => {
            let engine = registrator::setup::engine(&flags.vars()).await?;
            let report = engine.full_sync().await;
            Ok(if report.errors == 0 { 0 } else { 1 })
        }
        RegistratorCommand::Run(flags) => {
            let vars = flags.vars();
            let engine = registrator::setup::engine(&vars).await?;
            let mut metrics = None;
            if let Some(addr) = vars.get("METRICS_ADDR").filter(|a| !a.is_empty()) {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on -metrics-addr {addr}"))?;
                info!(addr = %listener.local_addr()?, "metrics at /metrics");
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(registrator::metrics::serve(
                    listener,
                    engine.metrics(),
                    async {
                        let _ = stopped.await;
                    },
                ));
                metrics = Some((stop, server));
            }
            info!(
                interval = ?engine.config().sync_interval,
                queue = engine.config().queue_url.as_deref().unwrap_or("none"),
                "registrator running"
            );
            registrator::daemon::run(engine, crate::signals::shutdown_signal()).await;
            // The daemon has stopped; the metrics server drains after it.
            if let Some((stop, server)) = metrics {
                let _ = stop.send(());
                let _ = server.await;
            }
            Ok(0)
        }
        RegistratorCommand::Lambda(flags) => {
            let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
                .context("AWS_LAMBDA_RUNTIME_API is not set: `registrator lambda` runs only inside a Lambda sandbox")?;
            let engine = match registrator::setup::engine(&flags.vars()).await {
                Ok(e) => e,
                Err(e) => {
                    registrator::lambda_runtime::report_init_error(&api, &e.to_string());
                    return Err(e.into());
                }
            };
            registrator::lambda_runtime::run(engine, &api).await?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(std::ffi::OsString::from).collect()
    }

    #[test]
    fn a_bootstrap_in_a_sandbox_is_the_lambda_mode() {
        let api = Some("127.0.0.1:9".into());
        assert_eq!(
            bootstrap_argv(argv(&["/var/task/bootstrap"]), api.clone()),
            argv(&["/var/task/bootstrap", "registrator", "lambda"])
        );
        assert_eq!(
            bootstrap_argv(argv(&["bootstrap"]), None),
            argv(&["bootstrap"])
        );
        assert_eq!(
            bootstrap_argv(argv(&["lambdamesh"]), api.clone()),
            argv(&["lambdamesh"])
        );
        assert_eq!(
            bootstrap_argv(argv(&["bootstrap", "server"]), api),
            argv(&["bootstrap", "server"])
        );
    }
}
