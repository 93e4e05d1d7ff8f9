//! The extension's life in a sandbox:
//!
//! 1. read the configuration; register with the Extensions API for INVOKE and SHUTDOWN;
//!    configuration problems are reported with `init/error` (`Extension.ConfigInvalid`), every
//!    problem named, so the invoke fails with a readable error instead of a silent exit;
//! 2. read the mTLS material **before** any listener accepts (the reference raced here); a
//!    material that cannot be read or used is reported the same way;
//! 3. bind the listeners on 127.0.0.1, start the refresher, then call `event/next` (which
//!    completes this extension's INIT);
//! 4. on INVOKE, ask for a refresh if one is due; on SHUTDOWN, stop accepting and let open
//!    connections finish until shortly before the event's deadline, then exit.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tracing::{error, info, warn};

use crate::{
    config::{Config, ConfigErrors},
    extensions_api::{Event, ExtensionsApi},
    material::Material,
    proxy::{Context, Proxy},
    ssm::{ParameterStore, ReadError},
    state::Shared,
};

/// Error type reported for configuration problems.
pub const CONFIG_INVALID: &str = "Extension.ConfigInvalid";
/// Error type reported when the material cannot be read or used at start.
pub const MATERIAL_UNAVAILABLE: &str = "Extension.MaterialUnavailable";
/// Error type reported when the extension has to exit after INIT.
pub const FATAL: &str = "Extension.Fatal";
/// Time kept in hand before a SHUTDOWN deadline.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);
/// Reads of the material at start (transient failures only are retried).
const START_READS: u32 = 3;

/// How the process should end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SHUTDOWN handled.
    Done,
    /// Something failed (already logged and, where possible, reported).
    Failed,
}

/// Runs the extension named `name` (the executable's file name) with environment `vars`.
pub fn run(name: &str, vars: &BTreeMap<String, String>) -> Exit {
    let config = Config::from_vars(vars);
    let level = config
        .as_ref()
        .map_or(tracing::level_filters::LevelFilter::INFO, |c| c.log_level);
    crate::logging::init(level);
    let Some(runtime_api) = vars
        .get("AWS_LAMBDA_RUNTIME_API")
        .filter(|v| !v.trim().is_empty())
    else {
        error!("AWS_LAMBDA_RUNTIME_API is not set: not running as a Lambda extension");
        return Exit::Failed;
    };
    let api = match ExtensionsApi::register(runtime_api.trim(), name) {
        Ok(api) => api,
        Err(e) => {
            error!(error = %e, "cannot register with the Extensions API");
            return Exit::Failed;
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(ConfigErrors(problems)) => {
            for p in &problems {
                error!(problem = %p, "invalid configuration");
            }
            let message = ConfigErrors(problems).to_string();
            report_init_error(&api, CONFIG_INVALID, &format!("{name}: {message}"));
            return Exit::Failed;
        }
    };
    if let Some(level) = &config.unknown_log_level {
        warn!(LOG_LEVEL = %level, "unknown log level; using info");
    }
    match start(&config) {
        Ok((shared, proxy)) => event_loop(&api, &shared, proxy),
        Err(message) => {
            error!(error = %message, "cannot start");
            report_init_error(&api, MATERIAL_UNAVAILABLE, &format!("{name}: {message}"));
            Exit::Failed
        }
    }
}

/// Steps 2 and 3: material, state, listeners, refresher.
fn start(config: &Config) -> Result<(Arc<Shared>, Proxy), String> {
    let store = ParameterStore::new(config);
    let data = read_at_start(&store).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let material = Material::from_data(data, &provider)
        .map_err(|e| format!("parameter {}: {e}", store.name()))?;
    info!(
        parameter = %store.name(),
        leaf_sha256 = %material.leaf_sha256,
        leaf_not_after = material.leaf_not_after,
        trust_domain = %material.trust_domain,
        "mTLS material read"
    );
    let shared = Shared::new(
        material,
        config.upstreams.clone(),
        provider,
        config.refresh,
        config.tls_resumption,
    )
    .map_err(|e| e.to_string())?;
    let proxy = Proxy::start(Context {
        shared: shared.clone(),
        upstreams: config.upstreams.clone(),
        gateway: config.gateway.clone(),
        connect_timeout: config.proxy_timeout,
    })
    .map_err(|e| format!("cannot start the listeners: {e}"))?;
    let refresher = shared.clone();
    std::thread::Builder::new()
        .name("refresher".into())
        .spawn(move || refresher.run_refresher(|| store.read().map_err(|e| e.to_string())))
        .map_err(|e| format!("cannot start the refresher: {e}"))?;
    if config.upstreams.is_empty() {
        warn!("CONSUL_SERVICE_UPSTREAMS is empty: nothing to proxy");
    }
    info!(
        upstreams = config.upstreams.len(),
        gateway = %config.gateway,
        refresh = ?config.refresh,
        "ready"
    );
    Ok((shared, proxy))
}

fn read_at_start(store: &ParameterStore) -> Result<crate::material::ExtensionData, ReadError> {
    let mut attempt = 1;
    loop {
        match store.read() {
            Err(e) if e.transient() && attempt < START_READS => {
                warn!(error = %e, attempt, "cannot read the mTLS material yet; retrying");
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn event_loop(api: &ExtensionsApi, shared: &Arc<Shared>, mut proxy: Proxy) -> Exit {
    loop {
        match api.next() {
            Ok(Event::Invoke { .. }) => shared.on_invoke(),
            Ok(Event::Shutdown {
                reason,
                deadline_ms,
            }) => {
                info!(reason = %reason, "shutting down");
                proxy.stop_accepting();
                shared.stop();
                let left = open_until(deadline_ms);
                let open = proxy.drain(Instant::now() + left);
                if open > 0 {
                    warn!(open, "connections still open at the shutdown deadline");
                }
                return Exit::Done;
            }
            Err(e) => {
                error!(error = %e, "the Extensions API failed; exiting");
                if let Err(e2) = api.exit_error(FATAL, &e.to_string()) {
                    warn!(error = %e2, "cannot report exit/error");
                }
                return Exit::Failed;
            }
        }
    }
}

/// Time until `deadline_ms` (epoch milliseconds) less a margin; none when it has passed.
fn open_until(deadline_ms: u64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(SHUTDOWN_MARGIN)
}

fn report_init_error(api: &ExtensionsApi, error_type: &str, message: &str) {
    if let Err(e) = api.init_error(error_type, message) {
        error!(error = %e, "cannot report init/error");
    }
}
