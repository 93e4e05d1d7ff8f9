//! The Lambda Extensions API (2020-01-01) as an external extension speaks it: register for
//! INVOKE and SHUTDOWN under the executable's file name, long-poll `event/next`, and report
//! `init/error` or `exit/error` with an `Extension.<Reason>` type. Plain HTTP on the sandbox's
//! `AWS_LAMBDA_RUNTIME_API`.

use std::time::Duration;

use serde_json::{Value, json};

/// Bound on the short calls (register, errors); `event/next` waits as long as the sandbox does.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// An event from `event/next`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Invoke {
        request_id: String,
        /// Epoch milliseconds.
        deadline_ms: u64,
    },
    Shutdown {
        reason: String,
        /// Epoch milliseconds.
        deadline_ms: u64,
    },
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{call}: {message}")]
    Transport { call: &'static str, message: String },
    #[error("{call}: HTTP {status}: {body}")]
    Status {
        call: &'static str,
        status: u16,
        body: String,
    },
    #[error("{call}: {reason}")]
    Protocol {
        call: &'static str,
        reason: &'static str,
    },
}

/// A registered extension.
pub struct ExtensionsApi {
    base: String,
    id: String,
    calls: ureq::Agent,
    next: ureq::Agent,
}

impl ExtensionsApi {
    /// Registers `name` (the executable's file name, as Lambda requires) for INVOKE and SHUTDOWN.
    ///
    /// # Errors
    /// The API cannot be reached, refuses, or gives no identifier.
    pub fn register(runtime_api: &str, name: &str) -> Result<Self, ApiError> {
        let agent = |timeout: Option<Duration>| {
            ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(timeout)
                    .build(),
            )
        };
        let calls = agent(Some(CALL_TIMEOUT));
        let base = format!("http://{runtime_api}/2020-01-01/extension");
        let call = "register";
        let mut resp = calls
            .post(&format!("{base}/register"))
            .header("Lambda-Extension-Name", name)
            .header("Content-Type", "application/json")
            .send(json!({"events": ["INVOKE", "SHUTDOWN"]}).to_string())
            .map_err(|e| transport(call, &e))?;
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("lambda-extension-identifier")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(ApiError::Status { call, status, body });
        }
        let id = id.ok_or(ApiError::Protocol {
            call,
            reason: "no Lambda-Extension-Identifier header",
        })?;
        Ok(ExtensionsApi {
            base,
            id,
            calls,
            next: agent(None),
        })
    }

    /// Waits for the next event. The first call ends this extension's INIT.
    ///
    /// # Errors
    /// The API cannot be reached, refuses, or sends an event this extension did not ask for.
    pub fn next(&self) -> Result<Event, ApiError> {
        let call = "event/next";
        let mut resp = self
            .next
            .get(&format!("{}/event/next", self.base))
            .header("Lambda-Extension-Identifier", &self.id)
            .call()
            .map_err(|e| transport(call, &e))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(ApiError::Status { call, status, body });
        }
        parse_event(&body).ok_or(ApiError::Protocol {
            call,
            reason: "not an INVOKE or SHUTDOWN event",
        })
    }

    /// Reports a failed INIT: the invoke fails with `error_type` and `message`.
    ///
    /// # Errors
    /// The API cannot be reached or refuses.
    pub fn init_error(&self, error_type: &str, message: &str) -> Result<(), ApiError> {
        self.post_error("init/error", error_type, message)
    }

    /// Reports that the extension is exiting because of an error.
    ///
    /// # Errors
    /// The API cannot be reached or refuses.
    pub fn exit_error(&self, error_type: &str, message: &str) -> Result<(), ApiError> {
        self.post_error("exit/error", error_type, message)
    }

    fn post_error(
        &self,
        call: &'static str,
        error_type: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let body = json!({"errorMessage": message, "errorType": error_type, "stackTrace": []});
        let mut resp = self
            .calls
            .post(&format!("{}/{call}", self.base))
            .header("Lambda-Extension-Identifier", &self.id)
            .header("Lambda-Extension-Function-Error-Type", error_type)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| transport(call, &e))?;
        let status = resp.status().as_u16();
        if status == 202 || status == 200 {
            return Ok(());
        }
        Err(ApiError::Status {
            call,
            status,
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        })
    }
}

fn transport(call: &'static str, e: &ureq::Error) -> ApiError {
    ApiError::Transport {
        call,
        message: e.to_string(),
    }
}

/// Decodes an `event/next` body.
pub fn parse_event(body: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(body).ok()?;
    let deadline_ms = v.get("deadlineMs").and_then(Value::as_u64).unwrap_or(0);
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match v.get("eventType").and_then(Value::as_str)? {
        "INVOKE" => Some(Event::Invoke {
            request_id: text("requestId"),
            deadline_ms,
        }),
        "SHUTDOWN" => Some(Event::Shutdown {
            reason: text("shutdownReason"),
            deadline_ms,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_as_lambda_sends_them() {
        assert_eq!(
            parse_event(
                r#"{"eventType":"INVOKE","deadlineMs":1700000000123,"requestId":"r1","invokedFunctionArn":"arn","tracing":{}}"#
            ),
            Some(Event::Invoke {
                request_id: "r1".into(),
                deadline_ms: 1_700_000_000_123
            })
        );
        assert_eq!(
            parse_event(r#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":5}"#),
            Some(Event::Shutdown {
                reason: "spindown".into(),
                deadline_ms: 5
            })
        );
        assert_eq!(parse_event(r#"{"eventType":"RESTORE"}"#), None);
        assert_eq!(parse_event("nope"), None);
    }
}
