//! Tags of functions: TagResource, UntagResource, ListTags (the resource is a function ARN).
//! Must not depend on HTTP.

use super::{
    Caller, Functions,
    requests::TagResourceRequest,
    responses::TagsResponse,
    validate::{must_not_be_null, tag_map},
};
use crate::{arn::FunctionRef, wire::ApiError};

/// AWS's pattern of a taggable function ARN, quoted in its validation message.
const RESOURCE_PATTERN: &str = "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\\d{1}:\\d{12}:function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?";

// === impl Functions ===

impl Functions<'_> {
    /// The function a tagging call's `Resource` ARN names (it must be a full ARN of this
    /// platform's region and account).
    pub(crate) fn tag_target(&self, raw: &str) -> Result<FunctionRef, ApiError> {
        if !raw.starts_with("arn:") {
            return Err(ApiError::validation("resource", raw, RESOURCE_PATTERN));
        }
        let r = crate::arn::parse_function_ref(raw)
            .map_err(|_| ApiError::validation("resource", raw, RESOURCE_PATTERN))?;
        let cfg = self.config();
        if r.region.as_deref() != Some(cfg.region.as_str())
            || r.account.as_deref() != Some(cfg.account.as_str())
        {
            return Err(self.not_found(&r.name, None));
        }
        Ok(r)
    }

    /// TagResource; `raw` is the resource ARN as sent.
    pub(crate) fn tag(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        req: &TagResourceRequest,
    ) -> Result<(), ApiError> {
        let tags = tag_map(&req.tags)?;
        if tags.is_empty() {
            return Err(ApiError::invalid_parameter("Tags cannot be empty."));
        }
        self.update(&r.name, |rec| {
            let mut merged = rec.tags.clone();
            merged.extend(tags.clone());
            if merged.len() > 50 {
                return Err(ApiError::invalid_parameter(
                    "Number of tags exceeds resource tag limit.",
                ));
            }
            rec.tags = merged;
            Ok(())
        })?;
        let params = serde_json::json!({"resource": raw, "tags": tags});
        self.record_call(
            caller,
            "TagResource20170331v2",
            params,
            &serde_json::Value::Null,
        );
        Ok(())
    }

    /// UntagResource; `raw` is the resource ARN as sent, `keys` the `tagKeys` query values.
    pub(crate) fn untag(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        keys: Vec<String>,
    ) -> Result<(), ApiError> {
        if keys.is_empty() {
            return Err(must_not_be_null("tagKeys"));
        }
        self.update(&r.name, |rec| {
            for k in &keys {
                rec.tags.remove(k);
            }
            Ok(())
        })?;
        let params = serde_json::json!({"resource": raw, "tagKeys": keys});
        self.record_call(
            caller,
            "UntagResource20170331v2",
            params,
            &serde_json::Value::Null,
        );
        Ok(())
    }

    /// ListTags.
    pub(crate) fn list_tags(&self, r: &FunctionRef) -> Result<TagsResponse, ApiError> {
        let rec = self.record(&r.name)?;
        Ok(TagsResponse { tags: rec.tags })
    }
}
