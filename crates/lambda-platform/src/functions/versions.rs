//! Published versions and aliases: PublishVersion, ListVersionsByFunction and the alias
//! operations (with `RoutingConfig` checked as AWS checks it). Must not depend on HTTP; which
//! version an alias runs is `resolve.rs`'s answer, not this module's.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    Caller, Functions, check_revision, paging,
    requests::{AliasRequest, ListAliasesQuery, PageQuery, PublishVersionRequest},
    responses::{
        AliasConfiguration, FunctionConfiguration, ListAliasesResponse, ListVersionsResponse,
        RoutingConfig,
    },
    revision, trail,
    validate::{description, must_not_be_null, valid_alias_name},
    version_sort_key,
};
use crate::{
    arn::FunctionRef,
    decode::Member,
    state::{Alias, FunctionRecord, VersionConfig},
    wire::ApiError,
};

/// Publishes `$LATEST` as a new version unless it is unchanged since the last one (AWS then
/// returns the existing version).
pub(super) fn publish_latest(
    rec: &mut FunctionRecord,
    description: Option<String>,
) -> VersionConfig {
    if let Some(last) = rec.versions.values().next_back() {
        let same = last.code_sha256 == rec.latest.code_sha256
            && last.runtime == rec.latest.runtime
            && last.handler == rec.latest.handler
            && last.environment == rec.latest.environment
            && last.layers == rec.latest.layers
            && last.timeout == rec.latest.timeout
            && last.memory_size == rec.latest.memory_size
            && last.role == rec.latest.role
            && last.dead_letter_arn == rec.latest.dead_letter_arn;
        if same {
            return last.clone();
        }
    }
    rec.last_version += 1;
    let mut v = rec.latest.clone();
    v.version = rec.last_version.to_string();
    v.revision_id = revision();
    if let Some(d) = description {
        v.description = d;
    }
    rec.versions.insert(rec.last_version, v.clone());
    v
}

// === impl Functions ===

impl Functions<'_> {
    /// PublishVersion; `raw` is `FunctionName` as sent.
    pub(crate) fn publish_version(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        req: PublishVersionRequest,
    ) -> Result<FunctionConfiguration, ApiError> {
        let desc = req.description.into_option();
        let (rec, v) = self.update(&r.name, |rec| {
            check_revision(&req.revision_id, &rec.latest.revision_id)?;
            if let Some(sha) = req.code_sha256.as_deref()
                && sha != rec.latest.code_sha256
            {
                return Err(ApiError::invalid_parameter(format!(
                    "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                    rec.latest.code_sha256
                )));
            }
            let v = publish_latest(rec, desc);
            Ok((rec.clone(), v))
        })?;
        let cfg = self.configuration(&rec, &v, true);
        let params = serde_json::json!({"functionName": raw});
        self.record_call(caller, "PublishVersion20150331", params, &cfg);
        Ok(cfg)
    }

    /// ListVersionsByFunction.
    pub(crate) fn list_versions(
        &self,
        r: &FunctionRef,
        query: &PageQuery,
    ) -> Result<ListVersionsResponse, ApiError> {
        let rec = self.record(&r.name)?;
        let page = query.check()?;
        let items: Vec<(String, FunctionConfiguration)> = std::iter::once(&rec.latest)
            .chain(rec.versions.values())
            .map(|v| {
                (
                    format!("{:020}", version_sort_key(&v.version)),
                    self.configuration(&rec, v, true),
                )
            })
            .collect();
        let (versions, next_marker) = paging::page_after(items, &page);
        Ok(ListVersionsResponse {
            next_marker,
            versions,
        })
    }

    fn alias_configuration(&self, fname: &str, a: &Alias) -> AliasConfiguration {
        AliasConfiguration {
            alias_arn: format!("{}:{}", self.function_arn(fname), a.name),
            description: a.description.clone(),
            function_version: a.function_version.clone(),
            name: a.name.clone(),
            revision_id: a.revision_id.clone(),
            routing_config: (!a.additional_weights.is_empty()).then(|| RoutingConfig {
                additional_version_weights: a.additional_weights.clone(),
            }),
        }
    }

    fn alias_not_found(&self, rec: &FunctionRecord, name: &str) -> ApiError {
        ApiError::not_found(format!(
            "Alias not found: {}:{name}",
            self.function_arn(&rec.name)
        ))
    }

    /// Applies the members of CreateAlias / UpdateAlias that were sent.
    fn alias_fields(
        &self,
        rec: &FunctionRecord,
        req: &AliasRequest,
        alias: &mut Alias,
    ) -> Result<(), ApiError> {
        if let Some(v) = req.function_version.as_deref() {
            if v != "$LATEST" && !rec.versions.keys().any(|n| n.to_string() == v) {
                return Err(self.not_found(&rec.name, Some(v)));
            }
            alias.function_version = v.to_owned();
        }
        if req.description.is_present() {
            alias.description = description(&req.description)?;
        }
        if req.routing_config.is_present() {
            let empty = BTreeMap::new();
            let weights = req
                .routing_config
                .object()
                .and_then(|rc| rc.additional_version_weights.get())
                .unwrap_or(&empty);
            let mut out = BTreeMap::new();
            for (ver, w) in weights {
                let w = w
                    .get()
                    .copied()
                    .filter(|w| (0.0..=1.0).contains(w))
                    .ok_or_else(|| {
                        ApiError::validation(
                            "routingConfig.additionalVersionWeights",
                            ver,
                            "Member must have value between 0.0 and 1.0",
                        )
                    })?;
                let n: u64 = ver.parse().map_err(|_| {
                    ApiError::invalid_parameter(format!("Invalid function version {ver}."))
                })?;
                if !rec.versions.contains_key(&n) {
                    return Err(self.not_found(&rec.name, Some(ver)));
                }
                out.insert(ver.clone(), w);
            }
            if out.len() > 1 {
                return Err(ApiError::invalid_parameter(
                    "Number of items in AdditionalVersionWeights cannot be greater than 1",
                ));
            }
            alias.additional_weights = out;
        }
        Ok(())
    }

    /// CreateAlias; `raw` is `FunctionName` as sent.
    pub(crate) fn create_alias(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        req: AliasRequest,
    ) -> Result<AliasConfiguration, ApiError> {
        let name = req
            .name
            .as_deref()
            .ok_or_else(|| must_not_be_null("name"))?;
        if !valid_alias_name(name) {
            return Err(ApiError::validation(
                "name",
                name,
                "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
            ));
        }
        if !matches!(req.function_version, Member::Valid(_)) {
            return Err(must_not_be_null("functionVersion"));
        }
        let alias = self.update(&r.name, |rec| {
            if rec.aliases.contains_key(name) {
                return Err(ApiError::conflict(format!(
                    "Alias already exists: {}:{name}",
                    self.function_arn(&rec.name)
                )));
            }
            let mut alias = Alias {
                name: name.to_owned(),
                function_version: String::new(),
                description: String::new(),
                revision_id: revision(),
                additional_weights: BTreeMap::new(),
            };
            self.alias_fields(rec, &req, &mut alias)?;
            rec.aliases.insert(name.to_owned(), alias.clone());
            Ok(alias)
        })?;
        let out = self.alias_configuration(&r.name, &alias);
        let mut params = trail::sent_without(caller.body, &[]);
        if let Some(o) = params.as_object_mut() {
            o.insert("functionName".into(), Value::String(raw.to_owned()));
        }
        self.record_call(caller, "CreateAlias20150331", params, &out);
        Ok(out)
    }

    /// GetAlias.
    pub(crate) fn get_alias(
        &self,
        r: &FunctionRef,
        name: &str,
    ) -> Result<AliasConfiguration, ApiError> {
        let rec = self.record(&r.name)?;
        let a = rec
            .aliases
            .get(name)
            .ok_or_else(|| self.alias_not_found(&rec, name))?;
        Ok(self.alias_configuration(&rec.name, a))
    }

    /// UpdateAlias; `raw` is `FunctionName` as sent.
    pub(crate) fn update_alias(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        name: &str,
        req: AliasRequest,
    ) -> Result<AliasConfiguration, ApiError> {
        let alias = self.update(&r.name, |rec| {
            let mut alias = rec
                .aliases
                .get(name)
                .cloned()
                .ok_or_else(|| self.alias_not_found(rec, name))?;
            check_revision(&req.revision_id, &alias.revision_id)?;
            self.alias_fields(rec, &req, &mut alias)?;
            alias.revision_id = revision();
            rec.aliases.insert(name.to_owned(), alias.clone());
            Ok(alias)
        })?;
        let out = self.alias_configuration(&r.name, &alias);
        let params = serde_json::json!({"functionName": raw, "name": name});
        self.record_call(caller, "UpdateAlias20150331", params, &out);
        Ok(out)
    }

    /// DeleteAlias; `raw` is `FunctionName` as sent.
    pub(crate) fn delete_alias(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        name: &str,
    ) -> Result<(), ApiError> {
        self.update(&r.name, |rec| {
            // AWS answers 204 whether or not the alias existed.
            rec.aliases.remove(name);
            // Its asynchronous invocation settings go with it, as on AWS.
            rec.event_invoke.remove(name);
            Ok(())
        })?;
        let params = serde_json::json!({"functionName": raw, "name": name});
        self.record_call(caller, "DeleteAlias20150331", params, &Value::Null);
        Ok(())
    }

    /// ListAliases.
    pub(crate) fn list_aliases(
        &self,
        r: &FunctionRef,
        query: &ListAliasesQuery,
    ) -> Result<ListAliasesResponse, ApiError> {
        let rec = self.record(&r.name)?;
        let page = query.page.check()?;
        let want = query.function_version.as_deref();
        let items: Vec<(String, AliasConfiguration)> = rec
            .aliases
            .values()
            .filter(|a| want.is_none_or(|w| a.function_version == w))
            .map(|a| (a.name.clone(), self.alias_configuration(&rec.name, a)))
            .collect();
        let (aliases, next_marker) = paging::page_after(items, &page);
        Ok(ListAliasesResponse {
            aliases,
            next_marker,
        })
    }
}
