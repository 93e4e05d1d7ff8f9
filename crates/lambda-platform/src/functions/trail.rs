//! CloudTrail-shaped "AWS API Call via CloudTrail" events for the Lambda API calls that change
//! something, successful or not, published on the event bus (the registrator consumes them).
//!
//! CloudTrail records what the client sent, so a few calls record their request body whole:
//! that is the one JSON document the service keeps ([`Caller::body`]). Code and environment
//! values are never recorded, as on AWS. Must not depend on HTTP: the Lambda API hands over the
//! caller's identity as a [`Caller`].

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::Functions;
use crate::{events::Envelope, wire::ApiError};

/// Who made a Lambda API call, as CloudTrail records it.
pub(crate) struct Caller<'a> {
    /// The call's `x-amzn-RequestId`.
    pub request_id: &'a str,
    /// The client's address.
    pub source_ip: IpAddr,
    /// The client's `User-Agent`.
    pub user_agent: &'a str,
    /// The request body as the client sent it (`Null` when the call has none).
    pub body: &'a Value,
}

/// `body` without the top-level members `skip`.
pub(super) fn sent_without(body: &Value, skip: &[&str]) -> Value {
    match body {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    principal_id: &'static str,
    arn: String,
    account_id: &'a str,
    access_key_id: &'a str,
    user_name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiCall<'a> {
    event_version: &'static str,
    user_identity: UserIdentity<'a>,
    event_time: &'a str,
    event_source: &'static str,
    event_name: &'a str,
    aws_region: &'a str,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: String,
    user_agent: &'a str,
    request_parameters: Value,
    response_elements: Value,
    #[serde(rename = "requestID")]
    request_id: &'a str,
    #[serde(rename = "eventID")]
    event_id: String,
    read_only: bool,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: &'a str,
    event_category: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

/// CloudTrail writes request and response members in camelCase; user-supplied maps (tags,
/// environment variables) keep their keys.
fn camel(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let user_map = matches!(
                        k.as_str(),
                        "Tags" | "tags" | "Variables" | "AdditionalVersionWeights"
                    );
                    let mut key = k.clone();
                    if let Some(first) = key.get(..1) {
                        key = format!("{}{}", first.to_ascii_lowercase(), &key[1..]);
                    }
                    (key, if user_map { v } else { camel(v) })
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camel).collect()),
        other => other,
    }
}

// === impl Functions ===

impl Functions<'_> {
    /// Records a successful call: `request` is its `requestParameters`, `response` its
    /// `responseElements` (`Null` for calls without an answer body).
    pub(super) fn record_call<R: Serialize>(
        &self,
        caller: &Caller<'_>,
        event_name: &str,
        request: Value,
        response: &R,
    ) {
        let response = serde_json::to_value(response).unwrap_or(Value::Null);
        self.emit(caller, event_name, request, response, None);
    }

    /// Records a failed call (`errorCode`, `errorMessage`, no `responseElements`); `request` is
    /// the body as sent.
    pub(crate) fn record_failed_call(
        &self,
        caller: &Caller<'_>,
        event_name: &str,
        error: &ApiError,
    ) {
        self.emit(
            caller,
            event_name,
            caller.body.clone(),
            Value::Null,
            Some(error),
        );
    }

    fn emit(
        &self,
        caller: &Caller<'_>,
        event_name: &str,
        mut request: Value,
        response: Value,
        error: Option<&ApiError>,
    ) {
        if let Some(o) = request.as_object_mut() {
            o.remove("Code");
            o.remove("ZipFile");
            o.remove("Environment");
        }
        let cfg = self.config();
        let time = crate::events::rfc3339_now();
        let detail = ApiCall {
            event_version: "1.08",
            user_identity: UserIdentity {
                kind: "IAMUser",
                principal_id: "AIDALOCAL",
                arn: format!("arn:aws:iam::{}:user/local", cfg.account),
                account_id: &cfg.account,
                access_key_id: &cfg.credentials.access_key,
                user_name: "local",
            },
            event_time: &time,
            event_source: "lambda.amazonaws.com",
            event_name,
            aws_region: &cfg.region,
            source_ip_address: caller.source_ip.to_string(),
            user_agent: caller.user_agent,
            request_parameters: camel(request),
            response_elements: camel(response),
            request_id: caller.request_id,
            event_id: crate::new_uuid().to_string(),
            read_only: false,
            event_type: "AwsApiCall",
            management_event: true,
            recipient_account_id: &cfg.account,
            event_category: "Management",
            error_code: error.map(|e| e.code),
            error_message: error.map(|e| e.message.as_str()),
        };
        self.p.inner.bus.publish(&Envelope {
            version: "0",
            id: crate::new_uuid().to_string(),
            detail_type: "AWS API Call via CloudTrail",
            source: "aws.lambda",
            account: &cfg.account,
            time: &time,
            region: &cfg.region,
            resources: Vec::<String>::new(),
            detail,
        });
    }
}
