//! What Lambda sends about an asynchronous event, in AWS's shapes (the one place they are
//! mapped): the invocation record of a destination (`version`, `timestamp`, `requestContext`,
//! `requestPayload`, `responseContext`, `responsePayload`), its EventBridge envelope (`source:
//! lambda`, `detail-type: Lambda Function Invocation Result - Success|Failure`), and the
//! dead-letter message (the event as its body, attributes `RequestID`, `ErrorCode`,
//! `ErrorMessage`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tracing::warn;

use super::{Event, Policy};
use crate::{InvokeResult, Platform, events::Envelope, sqs::MessageAttribute};

/// Why a record is sent (`requestContext.condition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    request_id: &'a str,
    function_arn: &'a str,
    condition: Condition,
    approximate_invoke_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseContext<'a> {
    status_code: u16,
    executed_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_error: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvocationRecord<'a> {
    version: &'static str,
    timestamp: String,
    request_context: RequestContext<'a>,
    request_payload: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_context: Option<ResponseContext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_payload: Option<Value>,
}

/// JSON bytes as JSON; anything else as a string (a payload is JSON when it came through the
/// API, a function may answer anything).
fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Now as `2019-11-14T18:16:05.568Z`.
fn timestamp() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_default()
}

/// The invocation record of `event` after `attempts` runs; `response` is the last run's
/// answer and the version that gave it (none when the event expired before any run).
pub(super) fn invocation(
    event: &Event,
    policy: &Policy,
    condition: Condition,
    attempts: u32,
    response: Option<(&InvokeResult, &str)>,
) -> Vec<u8> {
    let rec = InvocationRecord {
        version: "1.0",
        timestamp: timestamp(),
        request_context: RequestContext {
            request_id: &event.id,
            function_arn: &policy.function_arn,
            condition,
            approximate_invoke_count: attempts,
        },
        request_payload: json_or_text(&event.payload()),
        response_context: response.map(|(r, v)| ResponseContext {
            status_code: 200,
            executed_version: v,
            function_error: r.function_error,
        }),
        response_payload: response.map(|(r, _)| json_or_text(&r.payload)),
    };
    serde_json::to_vec(&rec).unwrap_or_default()
}

/// Sends a record to a destination (an SQS queue, a function, an event bus) and waits until
/// the destination has it durably. A failure is logged (AWS counts `DestinationDeliveryFailures`).
pub(super) async fn send(
    p: &Platform,
    destination: &str,
    record: &[u8],
    condition: Condition,
    function_arn: &str,
) {
    let result = if destination.starts_with("arn:aws:sqs:") {
        let body = String::from_utf8_lossy(record).into_owned();
        match p.inner.sqs.send_to_arn(destination, body, BTreeMap::new()) {
            Ok(d) => d.wait().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        }
    } else if destination.starts_with("arn:aws:lambda:") {
        match p
            .functions()
            .deliver_event(destination, bytes::Bytes::copy_from_slice(record))
        {
            Ok(d) => d.wait().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
        }
    } else {
        let cfg = p.config();
        let detail: Value = serde_json::from_slice(record).unwrap_or(Value::Null);
        let time = crate::events::rfc3339_now();
        let detail_type = match condition {
            Condition::Success => "Lambda Function Invocation Result - Success",
            Condition::RetriesExhausted | Condition::EventAgeExceeded => {
                "Lambda Function Invocation Result - Failure"
            }
        };
        let envelope = Envelope {
            version: "0",
            id: crate::new_uuid().to_string(),
            detail_type,
            source: "lambda",
            account: &cfg.account,
            time: &time,
            region: &cfg.region,
            resources: [function_arn, destination],
            detail,
        };
        let mut errors = Vec::new();
        for d in crate::events::deliver_now(p, &envelope) {
            if let Err(e) = d.wait().await {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    };
    if let Err(e) = result {
        warn!(destination, error = %e, "cannot deliver an invocation record");
    }
}

/// Sends the event to the dead-letter queue: its payload as the body, AWS's three attributes.
pub(super) async fn dead_letter(
    p: &Platform,
    queue: &str,
    event: &Event,
    condition: Condition,
    response: Option<(&InvokeResult, &str)>,
) {
    let message = match response {
        Some((r, _)) => serde_json::from_slice::<Value>(&r.payload)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&r.payload).into_owned()),
        None => format!("{condition:?}"),
    };
    // AWS keeps the first kilobyte of the message.
    let mut message = message;
    if message.len() > 1024 {
        let mut cut = 1024;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let attributes = BTreeMap::from([
        ("RequestID".to_owned(), MessageAttribute::string(&event.id)),
        ("ErrorCode".to_owned(), MessageAttribute::number("200")),
        (
            "ErrorMessage".to_owned(),
            MessageAttribute::string(&message),
        ),
    ]);
    let body = String::from_utf8_lossy(&event.payload()).into_owned();
    let result = match p.inner.sqs.send_to_arn(queue, body, attributes) {
        Ok(d) => d.wait().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    if let Err(e) = result {
        warn!(queue, error = %e, "cannot deliver to the dead-letter queue");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_record_has_aws_members() {
        let event = Event {
            id: "req-1".into(),
            function: "f".into(),
            version: "$LATEST".into(),
            qualifier: "$LATEST".into(),
            invoked_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
            payload: "eyJrIjoxfQ==".into(),
            client_context: None,
            accepted_ms: 0,
        };
        let policy = Policy {
            max_retries: 2,
            max_age_secs: 60,
            on_success: None,
            on_failure: None,
            dead_letter: None,
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST".into(),
        };
        let result = InvokeResult {
            payload: bytes::Bytes::from_static(br#"{"errorMessage":"boom","errorType":"E"}"#),
            function_error: Some("Unhandled"),
            log_tail: Vec::new(),
            request_id: "req-1".into(),
        };
        let v: Value = serde_json::from_slice(&invocation(
            &event,
            &policy,
            Condition::RetriesExhausted,
            3,
            Some((&result, "$LATEST")),
        ))
        .unwrap();
        assert_eq!(v["version"], "1.0");
        assert_eq!(
            v["requestContext"],
            serde_json::json!({
                "requestId": "req-1",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            })
        );
        assert_eq!(v["requestPayload"], serde_json::json!({"k": 1}));
        assert_eq!(
            v["responseContext"],
            serde_json::json!({"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"})
        );
        assert_eq!(v["responsePayload"]["errorMessage"], "boom");
        let expired: Value = serde_json::from_slice(&invocation(
            &event,
            &policy,
            Condition::EventAgeExceeded,
            0,
            None,
        ))
        .unwrap();
        assert!(expired.get("responseContext").is_none());
        assert_eq!(expired["requestContext"]["condition"], "EventAgeExceeded");
    }
}
