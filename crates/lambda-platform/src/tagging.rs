//! The Resource Groups Tagging API (`ResourceGroupsTaggingAPI_20170126.*`): `GetResources`
//! over Lambda functions, filtered by tag keys (and values), 100 per page at most. Typed request
//! decoded once at the edge, typed answer (members in sorted order, as the platform has always
//! answered).
//!
//! Must not depend on `api` (HTTP).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Platform,
    decode::{self, Member, Object, StrList},
    wire::ApiError,
};

/// One tagging call.
#[derive(Debug)]
pub(crate) enum TaggingRequest {
    GetResources(GetResourcesRequest),
}

impl TaggingRequest {
    /// Decodes operation `op` (the part of `X-Amz-Target` after the dot) from its body.
    ///
    /// # Errors
    /// `UnknownOperationException` for any operation but `GetResources`,
    /// `SerializationException` for a body that is not an object.
    pub(crate) fn decode(op: &str, body: &Value) -> Result<Self, ApiError> {
        match op {
            "GetResources" => Ok(Self::GetResources(
                decode::from_object(body).map_err(|_| ApiError::not_a_structure())?,
            )),
            _ => Err(ApiError::new(400, "UnknownOperationException", "")),
        }
    }
}

/// A tag filter (one that is not an object has no members).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TagFilterInput {
    pub key: Member<String>,
    pub values: Member<StrList>,
}

/// GetResources.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct GetResourcesRequest {
    pub resources_per_page: Member<i64>,
    pub resource_type_filters: Member<StrList>,
    pub tag_filters: Member<Vec<Member<Object<TagFilterInput>>>>,
    pub pagination_token: Member<String>,
}

/// A tag of a resource.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Tag {
    pub key: String,
    pub value: String,
}

/// A tagged resource.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ResourceTagMapping {
    #[serde(rename = "ResourceARN")]
    pub resource_arn: String,
    pub tags: Vec<Tag>,
}

/// GetResources (`PaginationToken` is empty on the last page).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetResourcesResponse {
    pub pagination_token: String,
    pub resource_tag_mapping_list: Vec<ResourceTagMapping>,
}

/// Runs one tagging call (a read of in-memory state).
pub(crate) fn handle(p: &Platform, req: TaggingRequest) -> Result<GetResourcesResponse, ApiError> {
    match req {
        TaggingRequest::GetResources(r) => get_resources(p, &r),
    }
}

fn get_resources(
    p: &Platform,
    req: &GetResourcesRequest,
) -> Result<GetResourcesResponse, ApiError> {
    let invalid = |m: &str| ApiError::new(400, "InvalidParameterException", m.to_owned());
    let per_page = match req.resources_per_page.get().copied() {
        None => 100,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => return Err(invalid("ResourcesPerPage must be between 1 and 100.")),
    };
    let types = req.resource_type_filters.strings().unwrap_or_default();
    let wants_lambda = types.is_empty()
        || types
            .iter()
            .any(|t| t == "lambda" || t == "lambda:function");
    let filters: Vec<(&str, &[String])> = req
        .tag_filters
        .get()
        .map(|a| {
            a.iter()
                .map(|f| match f.object() {
                    Some(f) => (
                        f.key.as_deref().unwrap_or_default(),
                        f.values.strings().unwrap_or_default(),
                    ),
                    None => ("", &[][..]),
                })
                .collect()
        })
        .unwrap_or_default();
    if filters.len() > 50 || filters.iter().any(|(k, _)| k.is_empty() || k.len() > 128) {
        return Err(invalid("TagFilters are not valid."));
    }
    let after = match req.pagination_token.as_deref().filter(|t| !t.is_empty()) {
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
                    .get(*k)
                    .is_some_and(|v| values.is_empty() || values.contains(v))
            });
            if !keep {
                continue;
            }
            if page.len() == per_page {
                more = true;
                break;
            }
            page.push(ResourceTagMapping {
                resource_arn: format!(
                    "arn:aws:lambda:{}:{}:function:{}",
                    cfg.region, cfg.account, rec.name
                ),
                tags: rec
                    .tags
                    .iter()
                    .map(|(k, v)| Tag {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            });
            last = Some(rec.name.clone());
        }
    }
    let token = match (more, last) {
        (true, Some(l)) => base64::engine::general_purpose::STANDARD.encode(l),
        _ => String::new(),
    };
    Ok(GetResourcesResponse {
        pagination_token: token,
        resource_tag_mapping_list: page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::responses::tests::assert_sorted;

    #[test]
    fn answers_keep_sorted_members() {
        assert_sorted(&GetResourcesResponse {
            pagination_token: "t".into(),
            resource_tag_mapping_list: vec![ResourceTagMapping {
                resource_arn: "a".into(),
                tags: vec![Tag {
                    key: "k".into(),
                    value: "v".into(),
                }],
            }],
        });
    }
}
