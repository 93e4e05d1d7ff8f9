//! Decoding of the events the registrator is invoked with: EventBridge scheduled events
//! (`source: aws.events` → full sync) and CloudTrail "AWS API Call" events (`source:
//! aws.lambda`). Field names match case-insensitively, as the reference's mapstructure decoding
//! does. Pure; fuzzed.

use serde_json::Value;

/// What a CloudTrail event asks the registrator to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A scheduled event: run a full sync.
    FullSync,
    /// Reconcile one function (`function` is a name or ARN, possibly qualified).
    Function {
        /// The API call, without its version suffix (`CreateFunction`, `TagResource`, ...).
        call: Call,
        function: String,
    },
    /// Nothing to do (a failed API call or a call that cannot change the mesh).
    Skip(String),
}

/// The Lambda API calls that can change what the registrator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    CreateFunction,
    DeleteFunction,
    TagResource,
    UntagResource,
    CreateAlias,
    UpdateAlias,
    DeleteAlias,
    UpdateFunctionConfiguration,
}

impl Call {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::CreateFunction => "CreateFunction",
            Call::DeleteFunction => "DeleteFunction",
            Call::TagResource => "TagResource",
            Call::UntagResource => "UntagResource",
            Call::CreateAlias => "CreateAlias",
            Call::UpdateAlias => "UpdateAlias",
            Call::DeleteAlias => "DeleteAlias",
            Call::UpdateFunctionConfiguration => "UpdateFunctionConfiguration",
        }
    }
}

/// An event the registrator cannot process.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotObject,
    #[error("missing event source")]
    MissingSource,
    #[error("unprocessable event source {0:?}")]
    Source(String),
    #[error("unsupported event kind {0:?}")]
    Kind(String),
    #[error("{0} event: arn isn't populated")]
    NoArn(&'static str),
}

/// A member by case-insensitive name (mapstructure semantics).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = field(cur, p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// The base name of a CloudTrail `eventName`: the API version suffix (`20150331`,
/// `20170331v2`, ...) removed.
pub fn base_call_name(event_name: &str) -> &str {
    let digits = event_name
        .char_indices()
        .find(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i);
    match digits {
        Some(i) => {
            let suffix = &event_name[i..];
            let date = suffix.get(..8).unwrap_or("");
            let rest = suffix.get(8..).unwrap_or("x");
            let versioned = date.len() == 8
                && date.bytes().all(|b| b.is_ascii_digit())
                && (rest.is_empty()
                    || (rest.starts_with('v')
                        && rest.len() > 1
                        && rest[1..].bytes().all(|b| b.is_ascii_digit())));
            if versioned {
                &event_name[..i]
            } else {
                event_name
            }
        }
        None => event_name,
    }
}

/// Decodes one invocation payload.
///
/// # Errors
/// An [`EventError`] naming what is missing or unsupported.
pub fn decode(v: &Value) -> Result<Event, EventError> {
    if !v.is_object() {
        return Err(EventError::NotObject);
    }
    let source = field(v, "source")
        .and_then(Value::as_str)
        .ok_or(EventError::MissingSource)?;
    match source {
        "aws.events" => return Ok(Event::FullSync),
        "aws.lambda" => {}
        other => return Err(EventError::Source(other.to_owned())),
    }
    let detail = field(v, "detail").unwrap_or(&Value::Null);
    if let Some(code) = text(detail, &["errorCode"]) {
        return Ok(Event::Skip(format!("the API call failed with {code}")));
    }
    let name = text(detail, &["eventName"]).unwrap_or_default();
    let call = match base_call_name(name) {
        "CreateFunction" => Call::CreateFunction,
        "DeleteFunction" => Call::DeleteFunction,
        "TagResource" => Call::TagResource,
        "UntagResource" => Call::UntagResource,
        "CreateAlias" => Call::CreateAlias,
        "UpdateAlias" => Call::UpdateAlias,
        "DeleteAlias" => Call::DeleteAlias,
        "UpdateFunctionConfiguration" => Call::UpdateFunctionConfiguration,
        // Calls that cannot change tags, names or aliases: nothing to reconcile.
        "UpdateFunctionCode"
        | "PublishVersion"
        | "PutFunctionConcurrency"
        | "DeleteFunctionConcurrency"
        | "PublishLayerVersion"
        | "Invoke" => {
            return Ok(Event::Skip(format!("{name} does not change the mesh")));
        }
        _ => return Err(EventError::Kind(name.to_owned())),
    };
    let function = match call {
        Call::CreateFunction => text(detail, &["responseElements", "functionArn"])
            .or_else(|| text(detail, &["requestParameters", "functionName"])),
        Call::TagResource | Call::UntagResource => text(detail, &["requestParameters", "resource"]),
        _ => text(detail, &["requestParameters", "functionName"]),
    }
    .ok_or(EventError::NoArn(call.as_str()))?;
    Ok(Event::Function {
        call,
        function: function.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn trail(name: &str, req: Value, resp: Value) -> Value {
        json!({"source": "aws.lambda", "detail-type": "AWS API Call via CloudTrail",
               "detail": {"eventName": name, "requestParameters": req, "responseElements": resp}})
    }

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:pay";

    #[test]
    fn every_name_variant() {
        for (name, call) in [
            ("CreateFunction20150331", Call::CreateFunction),
            ("CreateFunction", Call::CreateFunction),
            ("DeleteFunction20150331", Call::DeleteFunction),
            ("TagResource20170331v2", Call::TagResource),
            ("TagResource20170331", Call::TagResource),
            ("UntagResource", Call::UntagResource),
            ("CreateAlias20150331", Call::CreateAlias),
            ("UpdateAlias20150331", Call::UpdateAlias),
            ("DeleteAlias20150331", Call::DeleteAlias),
            (
                "UpdateFunctionConfiguration20150331v2",
                Call::UpdateFunctionConfiguration,
            ),
        ] {
            let e = decode(&trail(
                name,
                json!({"functionName": ARN, "resource": ARN}),
                json!({"functionArn": ARN}),
            ))
            .unwrap();
            assert_eq!(
                e,
                Event::Function {
                    call,
                    function: ARN.into()
                },
                "{name}"
            );
        }
    }

    #[test]
    fn reference_fields_and_case_insensitivity() {
        let e = decode(
            &json!({"Source": "aws.lambda", "Detail": {"EventName": "TagResource20170331v2",
            "RequestParameters": {"Resource": ARN}}}),
        )
        .unwrap();
        assert_eq!(
            e,
            Event::Function {
                call: Call::TagResource,
                function: ARN.into()
            }
        );
        // CreateFunction takes the ARN from the response.
        let e = decode(&trail(
            "CreateFunction20150331",
            json!({"functionName": "pay"}),
            json!({"functionArn": ARN}),
        ))
        .unwrap();
        assert!(matches!(e, Event::Function { function, .. } if function == ARN));
    }

    #[test]
    fn schedules_failures_and_errors() {
        assert_eq!(
            decode(&json!({"source": "aws.events"})).unwrap(),
            Event::FullSync
        );
        let failed = json!({"source": "aws.lambda", "detail": {"eventName": "CreateFunction20150331", "errorCode": "ResourceConflictException"}});
        assert!(matches!(decode(&failed).unwrap(), Event::Skip(_)));
        assert!(matches!(
            decode(&trail("UpdateFunctionCode20150331v2", json!({}), json!({}))).unwrap(),
            Event::Skip(_)
        ));
        assert_eq!(decode(&json!({})), Err(EventError::MissingSource));
        assert_eq!(
            decode(&json!({"source": 3})),
            Err(EventError::MissingSource)
        );
        assert_eq!(decode(&json!([])), Err(EventError::NotObject));
        assert_eq!(
            decode(&json!({"source": "aws.s3"})),
            Err(EventError::Source("aws.s3".into()))
        );
        assert_eq!(
            decode(&trail("GetFunction", json!({}), json!({}))),
            Err(EventError::Kind("GetFunction".into()))
        );
        assert_eq!(
            decode(&trail(
                "TagResource20170331v2",
                json!({"resource": ""}),
                json!({})
            )),
            Err(EventError::NoArn("TagResource"))
        );
    }

    #[test]
    fn version_suffixes() {
        assert_eq!(base_call_name("TagResource20170331v2"), "TagResource");
        assert_eq!(base_call_name("CreateFunction20150331"), "CreateFunction");
        assert_eq!(base_call_name("Create2Things"), "Create2Things");
        assert_eq!(base_call_name("Foo20150331x"), "Foo20150331x");
        assert_eq!(base_call_name("Foo2015033"), "Foo2015033");
        assert_eq!(base_call_name("é20150331v"), "é20150331v");
    }
}
