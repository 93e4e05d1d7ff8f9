//! Reading an AWS error answer, whichever protocol gave it: the exception name from the
//! `x-amzn-ErrorType` header (REST) or the body's `__type`/`code` (JSON; a `namespace#` prefix
//! dropped), the message from `message` or `Message`.

use serde_json::Value;

/// An AWS error answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct ErrorAnswer {
    /// HTTP status.
    pub status: u16,
    /// Exception name, e.g. `ParameterNotFound`; `Unknown` when the answer names none.
    pub code: String,
    /// The message, empty when there is none.
    pub message: String,
}

impl ErrorAnswer {
    /// Reads an answer with an error status (the caller decides what counts as one).
    pub fn from_response(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Self {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let code = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned())
            .or_else(|| {
                json.get("__type")
                    .or_else(|| json.get("code"))
                    .and_then(Value::as_str)
                    .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            })
            .unwrap_or_else(|| "Unknown".into());
        let message = json
            .get("message")
            .or_else(|| json.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self {
            status,
            code,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_and_neither() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-amzn-ErrorType",
            http::HeaderValue::from_static("ResourceNotFoundException:http://internal"),
        );
        let a = ErrorAnswer::from_response(404, &h, br#"{"Type":"User","Message":"gone"}"#);
        assert_eq!(a.to_string(), "ResourceNotFoundException (404): gone");
        let a = ErrorAnswer::from_response(
            400,
            &http::HeaderMap::new(),
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no"}"#,
        );
        assert_eq!(
            (a.code.as_str(), a.message.as_str()),
            ("QueueDoesNotExist", "no")
        );
        let a = ErrorAnswer::from_response(502, &http::HeaderMap::new(), b"<html>");
        assert_eq!(a.to_string(), "Unknown (502): ");
    }
}
