//! AWS's checks of function settings (role, runtime, handler, limits, environment, description,
//! architectures, code, tags), each with AWS's exception and wording. Pure: no state, no I/O.

use std::collections::BTreeMap;

use base64::Engine;

use super::requests::{CodeInput, DeadLetterConfigInput, EnvironmentInput};
use crate::{
    arn,
    decode::{Map, Member, Object, StrList},
    wire::ApiError,
};

/// Runtimes this platform can run.
pub const RUNTIMES: &[&str] = &[
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "provided",
    "provided.al2",
    "provided.al2023",
];

/// Variables a function may not set: the runtime and the platform set them.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

pub(super) fn must_not_be_null(field: &str) -> ApiError {
    ApiError::validation(field, "null", "Member must not be null")
}

pub(super) fn valid_alias_name(s: &str) -> bool {
    arn::valid_name(s) && s.len() <= 128 && !s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn validate_role(role: &str) -> Result<(), ApiError> {
    let pattern = "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+";
    let ok = role
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .filter(|(part, _)| part.starts_with("aws"))
        .and_then(|(_, rest)| rest.split_once(":role/"))
        .is_some_and(|(acct, name)| {
            acct.len() == 12
                && acct.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_/".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation("role", role, pattern))
    }
}

pub(super) fn validate_runtime(rt: &str) -> Result<(), ApiError> {
    if RUNTIMES.contains(&rt) {
        return Ok(());
    }
    if rt.is_empty() {
        return Err(ApiError::invalid_parameter(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        ));
    }
    Err(ApiError::invalid_parameter(format!(
        "The runtime parameter of {rt} is not supported by this platform. Supported runtimes: {}",
        RUNTIMES.join(", ")
    )))
}

pub(super) fn validate_handler(runtime: &str, handler: &str) -> Result<(), ApiError> {
    if handler.len() > 128 || handler.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::validation(
            "handler",
            handler,
            "Member must satisfy regular expression pattern: [^\\s]+",
        ));
    }
    if handler.is_empty() && runtime.starts_with("python") {
        return Err(ApiError::invalid_parameter(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        ));
    }
    Ok(())
}

/// `Timeout` and `MemorySize`, or the defaults when not sent (0 for "unchanged").
pub(super) fn limits(
    timeout: &Member<i64>,
    memory: &Member<i64>,
    default_timeout: u32,
    default_memory: u32,
) -> Result<(u32, u32), ApiError> {
    let timeout = match timeout.get().copied() {
        None => default_timeout,
        Some(t) if !(1..=900).contains(&t) => {
            return Err(ApiError::validation(
                "timeout",
                &t.to_string(),
                if t < 1 {
                    "Member must have value greater than or equal to 1"
                } else {
                    "Member must have value less than or equal to 900"
                },
            ));
        }
        Some(t) => t as u32,
    };
    let memory = match memory.get().copied() {
        None => default_memory,
        Some(m) if !(128..=10240).contains(&m) => {
            return Err(ApiError::validation(
                "memorySize",
                &m.to_string(),
                if m < 128 {
                    "Member must have value greater than or equal to 128"
                } else {
                    "Member must have value less than or equal to 10240"
                },
            ));
        }
        Some(m) => m as u32,
    };
    Ok((timeout, memory))
}

/// `Environment.Variables`, checked as AWS does (names, reserved names, 4 KB in total).
pub(super) fn environment(
    env: &Member<Object<EnvironmentInput>>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let empty = BTreeMap::new();
    let vars = env
        .object()
        .and_then(|e| e.variables.get())
        .unwrap_or(&empty);
    let mut out = BTreeMap::new();
    let mut size = 0;
    for (k, v) in vars {
        let valid_key = k.len() >= 2
            && k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_key {
            return Err(ApiError::validation(
                "environment.variables",
                k,
                "Member must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            ));
        }
        size += k.len() + v.0.len();
        out.insert(k.clone(), v.0.clone());
    }
    let reserved: Vec<&str> = out
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(ApiError::invalid_parameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(",")
        )));
    }
    if size > 4096 {
        return Err(ApiError::invalid_parameter(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: (omitted)",
        ));
    }
    Ok(out)
}

/// `Description` (empty when not a string).
pub(super) fn description(d: &Member<String>) -> Result<String, ApiError> {
    let d = d.as_deref().unwrap_or_default();
    if d.chars().count() > 256 {
        return Err(ApiError::validation(
            "description",
            d,
            "Member must have length less than or equal to 256",
        ));
    }
    Ok(d.to_owned())
}

/// `Architectures` (`x86_64` when not sent).
pub(super) fn architectures(list: &Member<StrList>) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = list
        .strings()
        .map_or_else(|| vec!["x86_64".into()], <[String]>::to_vec);
    if list.len() != 1 || !matches!(list[0].as_str(), "x86_64" | "arm64") {
        return Err(ApiError::validation(
            "architectures",
            &list.join(","),
            "Member must satisfy enum value set: [x86_64, arm64]",
        ));
    }
    Ok(list)
}

/// The zip of a `Code` / `Content` member; one that is not an object has no source.
pub(super) fn zip_of(code: &Member<Object<CodeInput>>) -> Result<Vec<u8>, ApiError> {
    match code {
        Member::Missing => Err(must_not_be_null("code")),
        Member::Invalid => zip_from(&CodeInput::default()),
        Member::Valid(c) => zip_from(&c.0),
    }
}

/// Decodes `ZipFile` (base64). S3 and image code are not supported.
pub(super) fn zip_from(code: &CodeInput) -> Result<Vec<u8>, ApiError> {
    if code.s3_bucket.is_present() || code.image_uri.is_present() {
        return Err(ApiError::invalid_parameter(
            "Only ZipFile code is supported by the local platform (use `lambdamesh lambda create --dir` for a directory).",
        ));
    }
    let b64 = code
        .zip_file
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("Please provide a source for function code."))?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| {
            ApiError::invalid_parameter(
                "Could not unzip uploaded file. Please check your file, then try to upload again.",
            )
        })
}

/// Validates Lambda tags (`{"key": "value"}`), as TagResource and CreateFunction accept them.
pub(super) fn tag_map(tags: &Map<Member<String>>) -> Result<BTreeMap<String, String>, ApiError> {
    let obj = match tags {
        Member::Missing => return Ok(BTreeMap::new()),
        Member::Invalid => return Err(ApiError::invalid_parameter("Tags must be a map.")),
        Member::Valid(obj) => obj,
    };
    if obj.len() > 50 {
        return Err(ApiError::invalid_parameter(
            "Number of tags exceeds resource tag limit.",
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let v = v.as_deref().ok_or_else(|| {
            ApiError::invalid_parameter(format!("Tag value for key {k} must be a string."))
        })?;
        validate_tag(k, v)?;
        out.insert(k.clone(), v.to_owned());
    }
    Ok(out)
}

/// AWS's tag rules: key 1–128, value 0–256 characters of letters, digits, spaces and
/// `_.:/=+-@`; the `aws:` prefix is reserved.
///
/// # Errors
/// `InvalidParameterValueException` naming the key.
pub fn validate_tag(k: &str, v: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    if k.is_empty() || k.chars().count() > 128 || !k.chars().all(allowed) {
        return Err(ApiError::invalid_parameter(format!(
            "Tag key {k} is invalid: keys must be 1-128 characters of letters, digits, spaces and _.:/=+-@."
        )));
    }
    if k.to_ascii_lowercase().starts_with("aws:") {
        return Err(ApiError::invalid_parameter(format!(
            "Tag key {k} is invalid: the aws: prefix is reserved for AWS use."
        )));
    }
    if v.chars().count() > 256 || !v.chars().all(allowed) {
        return Err(ApiError::invalid_parameter(format!(
            "Tag value for key {k} is invalid: values must be 0-256 characters of letters, digits, spaces and _.:/=+-@."
        )));
    }
    Ok(())
}

/// `DeadLetterConfig`: `None` when not sent, `Some(None)` when it removes the queue (no or an
/// empty `TargetArn`), `Some(Some(arn))` for an SQS queue. SNS topics, which AWS also takes, are
/// refused: this platform has no SNS.
///
/// # Errors
/// `InvalidParameterValueException` naming the ARN.
pub(super) fn dead_letter(
    member: &Member<Object<DeadLetterConfigInput>>,
) -> Result<Option<Option<String>>, ApiError> {
    if !member.is_present() {
        return Ok(None);
    }
    match member.object().and_then(|d| d.target_arn.as_deref()) {
        None | Some("") => Ok(Some(None)),
        Some(a) if is_sqs_arn(a) => Ok(Some(Some(a.to_owned()))),
        Some(a) => Err(ApiError::invalid_parameter(format!(
            "The DeadLetterConfig.TargetArn {a} is not supported: it must be an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>); SNS topics are not supported by this platform"
        ))),
    }
}

/// An asynchronous invocation destination (`DestinationConfig.OnSuccess/OnFailure`): an SQS
/// queue, a Lambda function (or version or alias), or an EventBridge bus.
///
/// # Errors
/// `InvalidParameterValueException` naming the ARN.
pub(super) fn destination(a: &str) -> Result<(), ApiError> {
    let ok = is_sqs_arn(a)
        || (a.starts_with("arn:aws:lambda:") && arn::parse_function_ref(a).is_ok())
        || (a.starts_with("arn:aws:events:") && a.contains(":event-bus/"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "The destination ARN {a} is not supported: use an SQS queue, a Lambda function or an EventBridge event bus ARN (SNS topics and S3 buckets are not supported by this platform)"
        )))
    }
}

fn is_sqs_arn(a: &str) -> bool {
    let parts: Vec<&str> = a.split(':').collect();
    parts.len() == 6 && parts[..3] == ["arn", "aws", "sqs"] && !parts[5].is_empty()
}
