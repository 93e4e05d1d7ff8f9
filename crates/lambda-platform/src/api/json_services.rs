//! JSON-protocol services chosen by `X-Amz-Target`: SSM Parameter Store, the Resource Groups
//! Tagging API (`GetResources` for Lambda functions) and EventBridge.

use base64::Engine;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::{Value, json};

use super::Req;
use crate::{
    Platform,
    wire::{ApiError, Protocol, json_response},
};

pub(crate) async fn dispatch(
    p: &Platform,
    service: &str,
    target: &str,
    req: &Req,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let op = target.split_once('.').map(|(_, op)| op).unwrap_or_default();
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "SerializationException",
                    "Start of structure or map found where not expected.",
                )
            })?
    };
    let out = match service {
        // SQS receives long-poll; it waits on the async runtime.
        "sqs" => {
            let host = p.inner.endpoint.trim_start_matches("http://");
            p.inner.sqs.call(op, &body, host).await?
        }
        // A read of in-memory state: answered in place.
        "tagging" => match op {
            "GetResources" => get_resources(p, &body)?,
            _ => return Err(ApiError::new(400, "UnknownOperationException", "")),
        },
        // Synchronous and on the disk (parameter writes fsync, rules are persisted): on the
        // blocking pool, so they never stall the invoke path, and writes of different
        // parameters reach the disk concurrently.
        "ssm" | "events" => {
            let (p, name, op) = (p.clone(), service.to_owned(), op.to_owned());
            tokio::task::spawn_blocking(move || match name.as_str() {
                "ssm" => p.inner.ssm.call(&op, &body),
                _ => p.inner.bus.call(&p, &op, &body),
            })
            .await
            .map_err(|e| ApiError::internal(format!("{service} worker: {e}")))??
        }
        _ => return Err(ApiError::new(400, "UnknownOperationException", "")),
    };
    Ok(json_response(200, &out, Protocol::AwsJson))
}

/// `GetResources` over Lambda functions: filter by tag keys (and values), 100 per page at most.
fn get_resources(p: &Platform, body: &Value) -> Result<Value, ApiError> {
    let invalid = |m: &str| ApiError::new(400, "InvalidParameterException", m.to_owned());
    let per_page = match body.get("ResourcesPerPage").and_then(Value::as_i64) {
        None => 100,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => return Err(invalid("ResourcesPerPage must be between 1 and 100.")),
    };
    let types: Vec<String> = crate::wire::str_list(body, "ResourceTypeFilters").unwrap_or_default();
    let wants_lambda = types.is_empty()
        || types
            .iter()
            .any(|t| t == "lambda" || t == "lambda:function");
    let filters: Vec<(String, Vec<String>)> = body
        .get("TagFilters")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|f| {
                    let key = f
                        .get("Key")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let values = crate::wire::str_list(f, "Values").unwrap_or_default();
                    (key, values)
                })
                .collect()
        })
        .unwrap_or_default();
    if filters.len() > 50 || filters.iter().any(|(k, _)| k.is_empty() || k.len() > 128) {
        return Err(invalid("TagFilters are not valid."));
    }
    let after = match body
        .get("PaginationToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        None => None,
        Some(t) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "PaginationTokenExpiredException",
                        "The pagination token is not valid.",
                    )
                })?,
        ),
    };
    let cfg = p.config();
    let mut page = Vec::new();
    let mut last = None;
    let mut more = false;
    if wants_lambda {
        for rec in p.inner.state.all() {
            if after.as_deref().is_some_and(|a| rec.name.as_str() <= a) || rec.tags.is_empty() {
                continue;
            }
            let keep = filters.iter().all(|(k, values)| {
                rec.tags
                    .get(k)
                    .is_some_and(|v| values.is_empty() || values.contains(v))
            });
            if !keep {
                continue;
            }
            if page.len() == per_page {
                more = true;
                break;
            }
            let tags: Vec<Value> = rec
                .tags
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            page.push(json!({
                "ResourceARN": format!("arn:aws:lambda:{}:{}:function:{}", cfg.region, cfg.account, rec.name),
                "Tags": tags,
            }));
            last = Some(rec.name.clone());
        }
    }
    let token = match (more, last) {
        (true, Some(l)) => base64::engine::general_purpose::STANDARD.encode(l),
        _ => String::new(),
    };
    Ok(json!({"PaginationToken": token, "ResourceTagMappingList": page}))
}
