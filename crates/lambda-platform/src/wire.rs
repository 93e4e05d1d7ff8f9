//! The one place where platform errors become AWS error responses.
//!
//! Two AWS protocols are spoken: the Lambda REST API (`restJson1`: status code, an
//! `x-amzn-ErrorType` header and `{"Type":"User","message":...}`), and the JSON protocol of SSM,
//! the Resource Groups Tagging API and EventBridge (`awsJson1_1`: HTTP 400 and
//! `{"__type":...,"message":...}`). botocore reads the error code from the header (REST) or from
//! `__type` (JSON), so both must carry AWS's exact exception names.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

/// Which wire protocol an error is rendered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Lambda's REST JSON API.
    RestJson,
    /// The `X-Amz-Target` JSON protocol (SSM, tagging, events).
    AwsJson,
}

/// An AWS-shaped client or service error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status used by the REST protocol.
    pub status: u16,
    /// AWS exception name, e.g. `ResourceNotFoundException`.
    pub code: &'static str,
    /// Human message, as AWS words it.
    pub message: String,
    /// Extra top-level fields (e.g. `Reason` of `TooManyRequestsException`).
    pub extra: Option<(&'static str, String)>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }
    /// 404 `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFoundException", message)
    }
    /// 400 `InvalidParameterValueException`.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterValueException", message)
    }
    /// 400 `ValidationException` with AWS's "1 validation error detected" wording.
    pub fn validation(field: &str, value: &str, constraint: &str) -> Self {
        Self::new(
            400,
            "ValidationException",
            format!(
                "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
            ),
        )
    }
    /// 409 `ResourceConflictException`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "ResourceConflictException", message)
    }
    /// 400 `InvalidRequestContentException` (undecodable JSON body).
    pub fn bad_content(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequestContentException", message)
    }
    /// 429 `TooManyRequestsException` with AWS's `Reason`.
    pub fn throttled(reason: &str) -> Self {
        let mut e = Self::new(429, "TooManyRequestsException", "Rate Exceeded.");
        e.extra = Some(("Reason", reason.to_owned()));
        e
    }
    /// 400 `SerializationException` of the JSON protocol: the body is not a JSON object.
    pub fn not_a_structure() -> Self {
        Self::new(
            400,
            "SerializationException",
            "Start of structure or map found where not expected.",
        )
    }
    /// 500 `ServiceException` for platform faults (never for client mistakes).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "ServiceException", message)
    }

    /// Renders the error in `protocol`'s shape.
    pub fn into_response(self, protocol: Protocol, request_id: &str) -> Response<Full<Bytes>> {
        let (status, body) = match protocol {
            Protocol::RestJson => {
                let mut body = json!({"Type": if self.status >= 500 { "Service" } else { "User" }, "message": self.message});
                if let (Some((k, v)), Some(obj)) = (&self.extra, body.as_object_mut()) {
                    obj.insert((*k).to_owned(), Value::String(v.clone()));
                }
                (self.status, body)
            }
            // The JSON protocol answers every client error with 400; only faults are 5xx.
            Protocol::AwsJson => {
                let status = if self.status >= 500 { self.status } else { 400 };
                (
                    status,
                    json!({"__type": self.code, "message": self.message}),
                )
            }
        };
        let mut resp = json_response(status, &body, protocol);
        if let Ok(v) = HeaderValue::from_str(self.code) {
            resp.headers_mut().insert("x-amzn-ErrorType", v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-amzn-RequestId", v);
        }
        resp
    }
}

/// A JSON response with the content type of `protocol`.
pub fn json_response<T: serde::Serialize + ?Sized>(
    status: u16,
    body: &T,
    protocol: Protocol,
) -> Response<Full<Bytes>> {
    let ct = match protocol {
        Protocol::RestJson => "application/json",
        Protocol::AwsJson => "application/x-amz-json-1.1",
    };
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

/// An empty response with `status`.
pub fn empty_response(status: u16) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// The strings of the array field `key` of a JSON request (other elements skipped); `None`
/// when the field is missing or not an array. (The Extensions API's register call reads its
/// `events` with it.)
pub(crate) fn str_list(body: &serde_json::Value, key: &str) -> Option<Vec<String>> {
    body.get(key)
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(resp: Response<Full<Bytes>>) -> Value {
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn rest_errors_carry_the_type_header_and_user_shape() {
        let resp = ApiError::throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
            .into_response(Protocol::RestJson, "req-1");
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.headers()["x-amzn-ErrorType"],
            "TooManyRequestsException"
        );
        assert_eq!(resp.headers()["x-amzn-RequestId"], "req-1");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v = body(resp).await;
        assert_eq!(
            v,
            json!({"Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})
        );
    }

    #[tokio::test]
    async fn json_protocol_errors_are_400_with_type_field() {
        let resp = ApiError::not_found("x").into_response(Protocol::AwsJson, "r");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["content-type"], "application/x-amz-json-1.1");
        assert_eq!(
            body(resp).await,
            json!({"__type": "ResourceNotFoundException", "message": "x"})
        );
        let resp = ApiError::internal("boom").into_response(Protocol::AwsJson, "r");
        assert_eq!(resp.status(), 500);
    }
}
