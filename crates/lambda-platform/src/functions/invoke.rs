//! Invokes: the Lambda API's (`RequestResponse`, `Event`, `DryRun`) and the event bus's
//! deliveries to rule targets. Both resolve their qualifier with [`Functions::route`], so an
//! alias's weights apply to every invoke, then build the version's sandbox spec and hand the
//! invoke to the pools. The payload stays the bytes the caller sent. Must not depend on HTTP
//! (the Lambda API encodes `Invoked` into headers) nor look inside the payload.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use super::{Functions, resolve::Routed};
use crate::{
    InvokeRequest, InvokeResult, arn,
    async_invoke::{self, Event, Policy, Target},
    code,
    journal::Durable,
    sandbox::FunctionSpec,
    state::VersionConfig,
    wire::ApiError,
};

/// Largest synchronous Invoke payload (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6_291_456;
/// Largest asynchronous Invoke payload (256 KB).
pub const MAX_ASYNC_PAYLOAD: usize = 262_144;

/// Invoke's `X-Amz-Invocation-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InvocationType {
    /// Synchronous: the caller waits for the function's answer.
    RequestResponse,
    /// Asynchronous: queued, retried after function errors.
    Event,
    /// Checks the call (function, qualifier, payload) without running anything.
    DryRun,
}

impl InvocationType {
    /// Decodes the header's value (`RequestResponse` when there is none).
    ///
    /// # Errors
    /// AWS's `ValidationException` for any other value.
    pub(crate) fn decode(header: Option<&str>) -> Result<Self, ApiError> {
        match header.unwrap_or("RequestResponse") {
            "RequestResponse" => Ok(Self::RequestResponse),
            "Event" => Ok(Self::Event),
            "DryRun" => Ok(Self::DryRun),
            other => Err(ApiError::validation(
                "invocationType",
                other,
                "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
            )),
        }
    }

    /// The largest payload an invoke of this type takes.
    pub(crate) fn max_payload(self) -> usize {
        match self {
            Self::Event => MAX_ASYNC_PAYLOAD,
            Self::RequestResponse | Self::DryRun => MAX_SYNC_PAYLOAD,
        }
    }
}

/// What an invoke did.
#[derive(Debug)]
pub(crate) enum Invoked {
    /// `DryRun`: the function and qualifier exist.
    Checked,
    /// `Event`: queued durably.
    Queued,
    /// `RequestResponse`: the function's answer, and the version that gave it.
    Answered {
        executed_version: String,
        result: InvokeResult,
    },
}

/// The sandbox spec of one version of function `name` (assembling its layers' `/opt`).
fn spec_of(
    data_dir: &std::path::Path,
    name: String,
    v: VersionConfig,
) -> Result<Arc<FunctionSpec>, ApiError> {
    let keys: Vec<String> = v.layers.into_iter().map(|l| l.code_key).collect();
    let opt_dir = code::assemble_opt(data_dir, &keys)
        .map_err(|e| ApiError::internal(format!("cannot assemble layers: {e}")))?;
    // External extensions may listen on the loopback, which every sandbox shares: such a
    // function gets one sandbox at a time (see `Pools::invoke`).
    let one_sandbox = opt_dir.as_ref().is_some_and(|d| {
        std::fs::read_dir(d.join("extensions")).is_ok_and(|mut entries| entries.next().is_some())
    });
    Ok(Arc::new(FunctionSpec {
        name,
        one_sandbox,
        version: v.version,
        runtime: v.runtime,
        handler: v.handler,
        code_dir: code::code_dir(data_dir, &v.code_key),
        opt_dir,
        environment: v.environment,
        timeout: Duration::from_secs(u64::from(v.timeout)),
        memory_size: v.memory_size,
        revision: v.revision_id,
    }))
}

// === impl Functions ===

impl Functions<'_> {
    fn spec(&self, routed: Routed) -> Result<(Arc<FunctionSpec>, Option<u32>), ApiError> {
        let spec = spec_of(self.p.inner.state.data_dir(), routed.name, routed.version)?;
        Ok((spec, routed.reserved))
    }

    /// Invokes `name` (qualified by `qualifier`) as `kind` says.
    ///
    /// # Errors
    /// AWS's errors for a missing function or qualifier, a throttled invoke, or a platform
    /// fault; a function's own failure is an answer ([`InvokeResult::function_error`]).
    pub(crate) async fn invoke(
        &self,
        name: &str,
        qualifier: Option<&str>,
        kind: InvocationType,
        req: InvokeRequest,
    ) -> Result<Invoked, ApiError> {
        let routed = self.route(name, qualifier)?;
        match kind {
            InvocationType::DryRun => Ok(Invoked::Checked),
            InvocationType::Event => {
                // Acknowledged (202) only once the event is on disk.
                self.enqueue(routed, qualifier, req)?
                    .wait()
                    .await
                    .map_err(|e| ApiError::internal(format!("cannot queue the event: {e}")))?;
                Ok(Invoked::Queued)
            }
            InvocationType::RequestResponse => {
                let executed_version = routed.version.version.clone();
                let (spec, reserved) = self.spec(routed)?;
                let result = self.p.inner.pools.invoke(spec, reserved, req).await?;
                Ok(Invoked::Answered {
                    executed_version,
                    result,
                })
            }
        }
    }

    /// Delivers an event to the function (version or alias) named by the target ARN `arn`, as
    /// an asynchronous invoke; the function sees `arn` as its invoked ARN. The answer resolves
    /// once the event is durable.
    ///
    /// # Errors
    /// AWS's errors for a malformed ARN, a missing function or qualifier, or a full async
    /// queue.
    pub(crate) fn deliver_event(&self, arn: &str, payload: Bytes) -> Result<Durable, ApiError> {
        let r = arn::parse_function_ref(arn).map_err(|_| arn::function_name_error(arn))?;
        let routed = self.route(&r.name, r.qualifier.as_deref())?;
        let req = InvokeRequest {
            payload,
            invoked_arn: arn.to_owned(),
            client_context: None,
            log_tail: false,
            request_id: None,
        };
        self.enqueue(routed, r.qualifier.as_deref(), req)
    }

    /// Hands an asynchronous invoke of the routed version to the queue.
    fn enqueue(
        &self,
        routed: Routed,
        qualifier: Option<&str>,
        req: InvokeRequest,
    ) -> Result<Durable, ApiError> {
        let id = req
            .request_id
            .clone()
            .unwrap_or_else(|| crate::new_uuid().to_string());
        let event = Event::new(id, routed.name, routed.version.version, qualifier, &req);
        self.p.inner.async_queue.accept(self.p, event)
    }

    /// What one attempt of `event` runs, and the policy of its qualifier, read now: a changed
    /// `FunctionEventInvokeConfig` applies to the next attempt.
    ///
    /// # Errors
    /// The function or the event's version no longer exists.
    pub(crate) fn async_target(&self, event: &Event) -> Result<Target, ApiError> {
        let (routed, config, dead_letter) = self
            .p
            .inner
            .state
            .read(&event.function, |rec| {
                let v = self.select(rec, Some(&event.version))?;
                let routed = Routed {
                    name: rec.name.clone(),
                    version: v.clone(),
                    reserved: rec.reserved_concurrency,
                };
                // The dead-letter queue is the configuration of the version that runs.
                let dead_letter = v.dead_letter_arn.clone();
                Ok((
                    routed,
                    rec.event_invoke.get(&event.qualifier).cloned(),
                    dead_letter,
                ))
            })
            .unwrap_or_else(|| Err(self.not_found(&event.function, None)))?;
        let config = config.unwrap_or_default();
        let policy = Policy {
            max_retries: config
                .maximum_retry_attempts
                .unwrap_or(async_invoke::DEFAULT_RETRIES),
            max_age_secs: config
                .maximum_event_age_secs
                .unwrap_or(async_invoke::DEFAULT_MAX_AGE_SECS),
            on_success: config.on_success,
            on_failure: config.on_failure,
            dead_letter,
            function_arn: format!("{}:{}", self.function_arn(&event.function), event.qualifier),
        };
        let (spec, reserved) = self.spec(routed)?;
        Ok(Target {
            spec,
            reserved,
            policy,
        })
    }
}
