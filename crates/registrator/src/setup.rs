//! Building the real engine from the environment: the Go registrator's variables, the Consul
//! token and CA read from Parameter Store when their `_PATH` variables are set.

use std::{collections::BTreeMap, path::PathBuf};

use tracing::info;

use crate::{
    aws::{Aws, AwsSetupError, HttpAws},
    config::{Config, ConfigErrors},
    consul::{ConsulSetupError, HttpConsul},
    engine::Engine,
};

/// Why the registrator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Aws(#[from] AwsSetupError),
    #[error(transparent)]
    Consul(#[from] ConsulSetupError),
    /// The Consul server's certificate is not trusted (or ours refused): configuration.
    #[error("cannot talk to Consul over TLS: {0}")]
    ConsulTrust(String),
    #[error("cannot read {var} parameter {name}: {reason}")]
    Parameter {
        var: &'static str,
        name: String,
        reason: String,
    },
    #[error("cannot write the Consul CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The engine over real AWS and Consul clients.
pub type HttpEngine = Engine<HttpAws, HttpConsul>;

async fn parameter(aws: &HttpAws, var: &'static str, name: &str) -> Result<String, SetupError> {
    let err = |reason: String| SetupError::Parameter {
        var,
        name: name.to_owned(),
        reason,
    };
    aws.get_parameter(name.to_owned())
        .await
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no such parameter".into()))
}

/// Parses `vars` (environment merged with flags) and builds the engine.
///
/// # Errors
/// Every bad setting at once, missing AWS credentials, or an unreadable token/CA parameter.
pub async fn engine(vars: &BTreeMap<String, String>) -> Result<HttpEngine, SetupError> {
    let mut cfg = Config::from_vars(vars)?;
    let aws = HttpAws::from_vars(vars, &cfg.region)?;
    if let Some(name) = cfg.consul_token_path.clone() {
        cfg.consul_token = Some(parameter(&aws, "CONSUL_HTTP_TOKEN_PATH", &name).await?);
        info!(parameter = %name, "Consul token read from Parameter Store");
    }
    if let Some(name) = cfg.consul_cacert_path.clone() {
        let pem = parameter(&aws, "CONSUL_CACERT_PATH", &name).await?;
        // As the reference: the CA goes to a file in the temp directory, which CONSUL_CACERT names.
        let path = std::env::temp_dir().join("consul-ca-cert.pem");
        std::fs::write(&path, pem).map_err(|source| SetupError::CaFile {
            path: path.clone(),
            source,
        })?;
        cfg.consul_cacert = Some(path.to_string_lossy().into_owned());
    }
    let consul = HttpConsul::new(
        &cfg.consul_url(),
        cfg.consul_token.clone(),
        cfg.consul_cacert.as_deref(),
    )?;
    consul
        .check_trust()
        .await
        .map_err(|e| SetupError::ConsulTrust(e.to_string()))?;
    Ok(Engine::new(cfg, aws, consul))
}
