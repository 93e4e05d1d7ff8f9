//! Reading the function's parameter: one SigV4-signed `AmazonSSM.GetParameter` with
//! `WithDecryption`, built and sent by `aws-wire` over ureq (HTTPS with rustls/ring on AWS,
//! plain HTTP to the local platform), and the parameter's value taken out of the answer.

use std::time::Duration;

use aws_wire::{JsonProtocol, Signer, blocking::CallError};
use serde_json::{Value, json};

use crate::{
    config::Config,
    material::{self, ExtensionData},
};

/// Bound on one read (connect, send, answer).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the parameter could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("parameter {name} not found (has the registrator written it?)")]
    NotFound { name: String },
    #[error("reading parameter {name}: {source}")]
    Call {
        name: String,
        #[source]
        source: CallError,
    },
    #[error("reading parameter {name}: {reason}")]
    Request { name: String, reason: String },
    #[error("parameter {name}: the answer has no Parameter.Value")]
    NoValue { name: String },
    #[error("parameter {name}: {source}")]
    Material {
        name: String,
        #[source]
        source: material::MaterialError,
    },
}

impl ReadError {
    /// Whether trying again soon may help (a transport problem or a throttle).
    pub fn transient(&self) -> bool {
        match self {
            ReadError::Call {
                source: CallError::Transport { .. },
                ..
            } => true,
            ReadError::Call {
                source: CallError::Answer(a),
                ..
            } => a.status >= 500 || a.code.contains("Throttl"),
            _ => false,
        }
    }
}

/// The function's parameter in Parameter Store.
pub struct ParameterStore {
    agent: ureq::Agent,
    signer: Signer,
    endpoint: aws_wire::Endpoint,
    name: String,
}

impl ParameterStore {
    pub fn new(config: &Config) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(READ_TIMEOUT))
                .build(),
        );
        ParameterStore {
            agent,
            signer: Signer::new(
                config.aws.credentials.clone(),
                config.aws.session_token.clone(),
                &config.aws.region,
            ),
            endpoint: config.aws.endpoint.clone(),
            name: config.parameter_name(),
        }
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads and decodes the material.
    ///
    /// # Errors
    /// The parameter is missing or unreadable, or its value is not the material's JSON.
    pub fn read(&self) -> Result<ExtensionData, ReadError> {
        let name = || self.name.clone();
        let body = json!({"Name": self.name, "WithDecryption": true}).to_string();
        let request = self
            .signer
            .json_request(
                &self.endpoint,
                "ssm",
                JsonProtocol::V1_1,
                "AmazonSSM.GetParameter",
                body.into_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| ReadError::Request {
                name: name(),
                reason: e.to_string(),
            })?;
        let answer = aws_wire::blocking::send(&self.agent, request).map_err(|e| match e {
            CallError::Answer(a) if a.code == "ParameterNotFound" => {
                ReadError::NotFound { name: name() }
            }
            source => ReadError::Call {
                name: name(),
                source,
            },
        })?;
        let value = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| {
                v.get("Parameter")
                    .and_then(|p| p.get("Value"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| ReadError::NoValue { name: name() })?;
        material::decode(value.as_bytes()).map_err(|source| ReadError::Material {
            name: name(),
            source,
        })
    }
}
