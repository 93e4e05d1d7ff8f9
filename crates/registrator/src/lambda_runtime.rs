//! The Lambda-function mode: the same binary as a `provided.al2023` `bootstrap`, speaking the
//! Lambda Runtime API. `source: aws.events` runs a full sync, `source: aws.lambda` handles the
//! CloudTrail event. A failed reconciliation fails the invocation so Lambda's async retries
//! apply; an event that can never be handled succeeds (with a log line) so it is not retried.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{
    aws::Aws,
    consul::Consul,
    engine::{Engine, EngineError, EventOutcome},
};

/// Errors talking to the Runtime API itself.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime API {url}: {message}")]
    Api { url: String, message: String },
}

struct RuntimeApi {
    agent: ureq::Agent,
    base: String,
}

impl RuntimeApi {
    fn next(&self) -> Result<(String, Vec<u8>), RuntimeError> {
        let url = format!("{}/2018-06-01/runtime/invocation/next", self.base);
        let err = |m: String| RuntimeError::Api {
            url: url.clone(),
            message: m,
        };
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| err(e.to_string()))?;
        let id = resp
            .headers()
            .get("Lambda-Runtime-Aws-Request-Id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| err("no Lambda-Runtime-Aws-Request-Id".into()))?
            .to_owned();
        let body = resp
            .body_mut()
            .read_to_vec()
            .map_err(|e| err(e.to_string()))?;
        Ok((id, body))
    }

    fn post(&self, path: &str, body: &Value) -> Result<(), RuntimeError> {
        let url = format!("{}/2018-06-01/runtime/{path}", self.base);
        self.agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map(drop)
            .map_err(|e| RuntimeError::Api {
                url,
                message: e.to_string(),
            })
    }
}

/// Serves invocations forever from the Runtime API at `api` (`AWS_LAMBDA_RUNTIME_API`).
///
/// # Errors
/// Only when the Runtime API itself fails.
pub async fn run<A: Aws, C: Consul>(engine: Engine<A, C>, api: &str) -> Result<(), RuntimeError> {
    let rt = std::sync::Arc::new(RuntimeApi {
        agent: ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(None::<Duration>)
                .build(),
        ),
        base: format!("http://{}", api.trim_end_matches('/')),
    });
    loop {
        let r = rt.clone();
        let (id, body) = tokio::task::spawn_blocking(move || r.next())
            .await
            .map_err(|e| RuntimeError::Api {
                url: api.to_owned(),
                message: e.to_string(),
            })??;
        let (path, answer) = match serde_json::from_slice::<Value>(&body) {
            Err(e) => {
                warn!(request_id = %id, error = %e, "payload is not JSON; ignored");
                (
                    format!("invocation/{id}/response"),
                    json!({"skipped": "payload is not JSON"}),
                )
            }
            Ok(event) => match engine.handle(&event).await {
                Ok(outcome) => {
                    info!(request_id = %id, ?outcome, "invocation done");
                    (format!("invocation/{id}/response"), outcome_json(&outcome))
                }
                Err(EngineError::Event(e)) => (
                    format!("invocation/{id}/response"),
                    json!({"skipped": e.to_string()}),
                ),
                Err(e) => (
                    format!("invocation/{id}/error"),
                    json!({"errorMessage": e.to_string(), "errorType": "Registrator.SyncError"}),
                ),
            },
        };
        let r = rt.clone();
        tokio::task::spawn_blocking(move || r.post(&path, &answer))
            .await
            .map_err(|e| RuntimeError::Api {
                url: api.to_owned(),
                message: e.to_string(),
            })??;
    }
}

/// Tells the Runtime API why INIT failed (bad configuration), so invocations report it.
pub fn report_init_error(api: &str, message: &str) {
    let body = json!({"errorMessage": message, "errorType": "Registrator.ConfigError"});
    let url = format!(
        "http://{}/2018-06-01/runtime/init/error",
        api.trim_end_matches('/')
    );
    if let Err(e) = ureq::post(&url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
    {
        warn!(error = %e, "cannot report the init error");
    }
}

fn outcome_json(o: &EventOutcome) -> Value {
    match o {
        EventOutcome::FullSync(r) => json!({
            "fullSync": {"functions": r.functions_seen, "upserts": r.upserts, "deletes": r.deletes,
                          "errors": r.errors, "complete": r.complete, "durationMs": r.duration.as_millis() as u64}
        }),
        EventOutcome::Function {
            function,
            upserts,
            deletes,
        } => json!({"function": function, "upserts": upserts, "deletes": deletes}),
        EventOutcome::Skipped(why) => json!({"skipped": why}),
    }
}
