//! The JSON-protocol services chosen by `X-Amz-Target`: SSM Parameter Store, the Resource
//! Groups Tagging API, EventBridge and SQS. The body is checked to be a JSON object and decoded,
//! with the operation named by the target, into the service's typed request; the service's
//! typed answer is the response body. Must not hold any service logic.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::Value;

use super::Req;
use crate::{
    Platform,
    events::operations::EventsRequest,
    sqs::operations::SqsRequest,
    ssm::operations::SsmRequest,
    tagging::{self, TaggingRequest},
    wire::{ApiError, Protocol, json_response},
};

/// A service of the JSON protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonService {
    Ssm,
    Tagging,
    Events,
    Sqs,
}

impl JsonService {
    /// The service an `X-Amz-Target` prefix names.
    pub(crate) fn of_target(target: &str) -> Option<Self> {
        match target.split_once('.').map(|(prefix, _)| prefix) {
            Some("AmazonSSM") => Some(Self::Ssm),
            Some("ResourceGroupsTaggingAPI_20170126") => Some(Self::Tagging),
            Some("AWSEvents") => Some(Self::Events),
            Some("AmazonSQS") => Some(Self::Sqs),
            _ => None,
        }
    }

    /// The service name in the SigV4 credential scope.
    pub(crate) fn signing_name(self) -> &'static str {
        match self {
            Self::Ssm => "ssm",
            Self::Tagging => "tagging",
            Self::Events => "events",
            Self::Sqs => "sqs",
        }
    }
}

pub(crate) async fn dispatch(
    p: &Platform,
    service: JsonService,
    target: &str,
    req: &Req,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let op = target.split_once('.').map(|(_, op)| op).unwrap_or_default();
    let body: Value = if req.body.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&req.body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(ApiError::not_a_structure)?
    };
    match service {
        // SQS receives long-poll; it waits on the async runtime.
        JsonService::Sqs => {
            let call = SqsRequest::decode(op, &body)?;
            let host = p.inner.endpoint.trim_start_matches("http://");
            ok(&p.inner.sqs.handle(call, host).await?)
        }
        // A read of in-memory state: answered in place.
        JsonService::Tagging => ok(&tagging::handle(p, TaggingRequest::decode(op, &body)?)?),
        // Synchronous and on the disk (parameter writes fsync, rules are persisted): on the
        // blocking pool, so they never stall the invoke path, and writes of different
        // parameters reach the disk concurrently.
        JsonService::Ssm => {
            let call = SsmRequest::decode(op, &body)?;
            let p = p.clone();
            let out = blocking("ssm", move || p.inner.ssm.handle(call)).await?;
            ok(&out)
        }
        JsonService::Events => {
            let call = EventsRequest::decode(op, &body)?;
            let p = p.clone();
            let out = blocking("events", move || {
                let deliver = |event: &serde_json::Value| {
                    crate::events::deliver_value(&p, event)
                        .into_iter()
                        .try_for_each(crate::journal::Durable::wait_blocking)
                };
                p.inner.bus.handle(p.config(), call, &deliver)
            })
            .await?;
            ok(&out)
        }
    }
}

async fn blocking<T: Send + 'static>(
    service: &str,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("{service} worker: {e}")))?
}

fn ok<T: serde::Serialize>(out: &T) -> Result<Response<Full<Bytes>>, ApiError> {
    Ok(json_response(200, out, Protocol::AwsJson))
}
