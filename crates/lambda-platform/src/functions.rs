//! The functions service: every operation on functions, their versions, aliases, tags, reserved
//! concurrency and layers, qualifier resolution (with aliases' weighted routing) in one place,
//! invokes (synchronous, asynchronous, and event deliveries), sandbox specs, and the
//! CloudTrail-shaped events of the calls that change something.
//!
//! Callers hand it typed requests (`requests.rs`) and get typed responses (`responses.rs`); the
//! Lambda API (`api/lambda.rs`), the event bus and its rule targets all call it. Errors are
//! [`ApiError`]s carrying AWS's exception names and wording; rendering them is `wire.rs`'s job.
//! Must not depend on `api` (no HTTP requests or responses here) nor parse JSON.

mod event_config;
mod invoke;
mod layers;
mod paging;
pub(crate) mod requests;
mod resolve;
pub(crate) mod responses;
mod tags;
mod trail;
mod validate;
mod versions;

use std::collections::BTreeMap;

use serde_json::Value;

pub(crate) use self::{invoke::InvocationType, invoke::Invoked, trail::Caller};
pub use self::{
    invoke::{MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD},
    paging::decode_marker,
    validate::{RUNTIMES, validate_tag},
};
use self::{
    requests::{
        CreateFunctionRequest, ListFunctionsQuery, PutConcurrencyRequest,
        UpdateFunctionCodeRequest, UpdateFunctionConfigurationRequest,
    },
    responses::{
        AccountLimit, AccountSettings, AccountUsage, CodeLocation, Concurrency, DeadLetterConfig,
        EnvironmentResponse, EphemeralStorage, FunctionConfiguration, GetFunctionResponse,
        LayerResponse, ListFunctionsResponse, LoggingConfig, SnapStart, TracingConfig,
    },
    validate::{
        architectures, description, environment, limits, must_not_be_null, tag_map,
        validate_handler, validate_role, validate_runtime, zip_from, zip_of,
    },
};
use crate::{
    Platform, PlatformConfig,
    arn::{self, FunctionRef},
    code,
    decode::Member,
    state::{FunctionRecord, VersionConfig},
    wire::ApiError,
};

/// The functions service of one platform.
pub(crate) struct Functions<'p> {
    p: &'p Platform,
}

impl Platform {
    /// The functions service.
    pub(crate) fn functions(&self) -> Functions<'_> {
        Functions { p: self }
    }
}

/// Current time as Lambda's `LastModified` (`2024-01-01T00:00:00.000+0000`).
pub(crate) fn iso_now() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_default()
}

/// Now in seconds since the epoch, with milliseconds (timestamps of the 2019-09-25 API).
pub(crate) fn iso_epoch_secs() -> f64 {
    (crate::sandbox::epoch_ms() as f64) / 1000.0
}

fn revision() -> String {
    crate::new_uuid().to_string()
}

fn version_sort_key(v: &str) -> u64 {
    v.parse().unwrap_or(0)
}

/// A `RevisionId` precondition: when sent, it must be the current one.
fn check_revision(sent: &Member<String>, current: &str) -> Result<(), ApiError> {
    match sent.as_deref() {
        Some(rev) if rev != current => Err(ApiError::new(
            412,
            "PreconditionFailedException",
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

// === impl Functions ===

impl Functions<'_> {
    fn config(&self) -> &PlatformConfig {
        self.p.config()
    }

    /// `arn:aws:lambda:<region>:<account>:function:<name>`.
    pub(crate) fn function_arn(&self, name: &str) -> String {
        let cfg = self.config();
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            cfg.region, cfg.account
        )
    }

    /// AWS's `ResourceNotFoundException` for a function (or one of its qualifiers).
    pub(crate) fn not_found(&self, name: &str, qualifier: Option<&str>) -> ApiError {
        let arn = self.function_arn(name);
        match qualifier {
            Some(q) => ApiError::not_found(format!("Function not found: {arn}:{q}")),
            None => ApiError::not_found(format!("Function not found: {arn}")),
        }
    }

    fn record(&self, name: &str) -> Result<FunctionRecord, ApiError> {
        self.p
            .inner
            .state
            .get(name)
            .ok_or_else(|| self.not_found(name, None))
    }

    /// Applies `f` to the stored record of `name` and persists the result (a missing function
    /// is AWS's not-found error).
    fn update<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut FunctionRecord) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.p
            .inner
            .state
            .update(name, || self.not_found(name, None), f)
    }

    /// The `FunctionConfiguration` of version `v` (its ARN unqualified for `$LATEST` unless
    /// `qualified_latest`).
    fn configuration(
        &self,
        rec: &FunctionRecord,
        v: &VersionConfig,
        qualified_latest: bool,
    ) -> FunctionConfiguration {
        let function_arn = if v.version == "$LATEST" && !qualified_latest {
            self.function_arn(&rec.name)
        } else {
            format!("{}:{}", self.function_arn(&rec.name), v.version)
        };
        FunctionConfiguration {
            architectures: v.architectures.clone(),
            code_sha256: v.code_sha256.clone(),
            code_size: v.code_size,
            dead_letter_config: v
                .dead_letter_arn
                .clone()
                .map(|target_arn| DeadLetterConfig { target_arn }),
            description: v.description.clone(),
            environment: (!v.environment.is_empty()).then(|| EnvironmentResponse {
                variables: v.environment.clone(),
            }),
            ephemeral_storage: EphemeralStorage { size: 512 },
            function_arn,
            function_name: rec.name.clone(),
            handler: v.handler.clone(),
            last_modified: v.last_modified.clone(),
            last_update_status: "Successful",
            layers: (!v.layers.is_empty()).then(|| {
                v.layers
                    .iter()
                    .map(|l| LayerResponse {
                        arn: l.arn.clone(),
                        code_size: l.code_size,
                    })
                    .collect()
            }),
            logging_config: LoggingConfig {
                log_format: "Text",
                log_group: format!("/aws/lambda/{}", rec.name),
            },
            memory_size: v.memory_size,
            package_type: "Zip",
            revision_id: v.revision_id.clone(),
            role: v.role.clone(),
            runtime: v.runtime.clone(),
            snap_start: SnapStart {
                apply_on: "None",
                optimization_status: "Off",
            },
            state: "Active",
            timeout: v.timeout,
            tracing_config: TracingConfig {
                mode: "PassThrough",
            },
            version: v.version.clone(),
        }
    }

    // --- functions ---

    /// CreateFunction.
    pub(crate) fn create(
        &self,
        caller: &Caller<'_>,
        req: CreateFunctionRequest,
    ) -> Result<FunctionConfiguration, ApiError> {
        let name_raw = req
            .function_name
            .as_deref()
            .ok_or_else(|| must_not_be_null("functionName"))?;
        let fref =
            arn::parse_function_ref(name_raw).map_err(|_| arn::function_name_error(name_raw))?;
        if fref.qualifier.is_some() || fref.name.len() > 64 {
            return Err(arn::function_name_error(name_raw));
        }
        let role = req
            .role
            .as_deref()
            .ok_or_else(|| must_not_be_null("role"))?;
        validate_role(role)?;
        let runtime = req.runtime.as_deref().unwrap_or_default();
        validate_runtime(runtime)?;
        let handler = req.handler.as_deref().unwrap_or_default();
        validate_handler(runtime, handler)?;
        let zip = zip_of(&req.code)?;
        let (timeout, memory) = limits(&req.timeout, &req.memory_size, 3, 128)?;
        let environment = environment(&req.environment)?;
        let layers = self.layer_uses(&req.layers)?;
        let tags = tag_map(&req.tags)?;
        let description = description(&req.description)?;
        let architectures = architectures(&req.architectures)?;
        let installed = code::install_zip(self.p.inner.state.data_dir(), &zip)?;
        let latest = VersionConfig {
            version: "$LATEST".into(),
            runtime: runtime.to_owned(),
            role: role.to_owned(),
            handler: handler.to_owned(),
            description,
            timeout,
            memory_size: memory,
            environment,
            layers,
            code_sha256: installed.sha256_b64,
            code_size: installed.size,
            code_key: installed.key,
            last_modified: iso_now(),
            revision_id: revision(),
            architectures,
            dead_letter_arn: validate::dead_letter(&req.dead_letter_config)?.flatten(),
        };
        let mut rec = FunctionRecord {
            name: fref.name.clone(),
            latest,
            versions: BTreeMap::new(),
            last_version: 0,
            aliases: BTreeMap::new(),
            tags,
            reserved_concurrency: None,
            event_invoke: BTreeMap::new(),
        };
        let publish = req.publish.get().copied().unwrap_or(false);
        let shown = publish.then(|| versions::publish_latest(&mut rec, None));
        self.p.inner.state.insert(rec.clone())?;
        let cfg = self.configuration(&rec, shown.as_ref().unwrap_or(&rec.latest), false);
        let params = trail::sent_without(caller.body, &["Code", "Environment"]);
        self.record_call(caller, "CreateFunction20150331", params, &cfg);
        Ok(cfg)
    }

    /// ListFunctions.
    pub(crate) fn list(
        &self,
        query: &ListFunctionsQuery,
    ) -> Result<ListFunctionsResponse, ApiError> {
        let page = query.page.check()?;
        let all_versions = match query.function_version.as_deref() {
            None => false,
            Some("ALL") => true,
            Some(other) => {
                return Err(ApiError::validation(
                    "functionVersion",
                    other,
                    "Member must satisfy enum value set: [ALL]",
                ));
            }
        };
        let (functions, next_marker) = if all_versions {
            // Markers are (function, index) pairs encoded as "name\u{0}index".
            let all = self.p.inner.state.all();
            let flat: Vec<(String, FunctionConfiguration)> = all
                .iter()
                .flat_map(|rec| {
                    std::iter::once(&rec.latest)
                        .chain(rec.versions.values())
                        .map(|v| {
                            (
                                format!("{}\u{0}{:020}", rec.name, version_sort_key(&v.version)),
                                self.configuration(rec, v, true),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            paging::page_after(flat, &page)
        } else {
            let (items, more) = self
                .p
                .inner
                .state
                .page(page.after.as_deref(), page.max, |rec| {
                    (
                        rec.name.clone(),
                        self.configuration(rec, &rec.latest, false),
                    )
                });
            paging::finish(items, more)
        };
        Ok(ListFunctionsResponse {
            functions,
            next_marker,
        })
    }

    /// GetFunction.
    pub(crate) fn get(&self, r: &FunctionRef) -> Result<GetFunctionResponse, ApiError> {
        let rec = self.record(&r.name)?;
        let v = self.select(&rec, r.qualifier.as_deref())?;
        Ok(GetFunctionResponse {
            code: CodeLocation {
                location: format!("{}/code/{}", self.p.inner.endpoint, v.code_key),
                repository_type: "S3",
            },
            concurrency: rec.reserved_concurrency.map(|n| Concurrency {
                reserved_concurrent_executions: Some(n),
            }),
            configuration: self.configuration(&rec, v, r.qualifier.is_some()),
            tags: rec.tags.clone(),
        })
    }

    /// GetFunctionConfiguration.
    pub(crate) fn get_configuration(
        &self,
        r: &FunctionRef,
    ) -> Result<FunctionConfiguration, ApiError> {
        let rec = self.record(&r.name)?;
        let v = self.select(&rec, r.qualifier.as_deref())?;
        Ok(self.configuration(&rec, v, r.qualifier.is_some()))
    }

    /// DeleteFunction (of the function, or of one version); `raw` is `FunctionName` as sent.
    pub(crate) fn delete(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
    ) -> Result<(), ApiError> {
        match r.qualifier.as_deref() {
            None => {
                let removed = self.p.inner.state.remove(&r.name)?;
                if removed.is_none() {
                    return Err(self.not_found(&r.name, None));
                }
                self.p.inner.pools.flush(&r.name, None);
                let params = serde_json::json!({"functionName": raw});
                self.record_call(caller, "DeleteFunction20150331", params, &Value::Null);
                Ok(())
            }
            Some("$LATEST") => Err(ApiError::invalid_parameter(
                "$LATEST version cannot be deleted without deleting the function.",
            )),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u64 = q.parse().map_err(|_| self.not_found(&r.name, Some(q)))?;
                self.update(&r.name, |rec| {
                    let users: Vec<String> = rec
                        .aliases
                        .values()
                        .filter(|a| a.function_version == q)
                        .map(|a| a.name.clone())
                        .collect();
                    if !users.is_empty() {
                        return Err(ApiError::conflict(format!(
                            "Unable to delete version because the following aliases reference it: [{}]",
                            users.join(", ")
                        )));
                    }
                    rec.event_invoke.remove(q);
                    rec.versions
                        .remove(&n)
                        .map(|_| ())
                        .ok_or_else(|| self.not_found(&r.name, Some(q)))
                })?;
                self.p.inner.pools.flush(&r.name, Some(q));
                let params = serde_json::json!({"functionName": raw, "qualifier": q});
                self.record_call(caller, "DeleteFunction20150331", params, &Value::Null);
                Ok(())
            }
            Some(_) => Err(ApiError::invalid_parameter(
                "Deletion of aliases is not supported.",
            )),
        }
    }

    /// UpdateFunctionConfiguration; `raw` is `FunctionName` as sent.
    pub(crate) fn update_configuration(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        req: UpdateFunctionConfigurationRequest,
    ) -> Result<FunctionConfiguration, ApiError> {
        if let Some(role) = req.role.as_deref() {
            validate_role(role)?;
        }
        if let Some(rt) = req.runtime.as_deref() {
            validate_runtime(rt)?;
        }
        let layers = if req.layers.is_present() {
            Some(self.layer_uses(&req.layers)?)
        } else {
            None
        };
        let environment = if req.environment.is_present() {
            Some(environment(&req.environment)?)
        } else {
            None
        };
        let description = if req.description.is_present() {
            Some(description(&req.description)?)
        } else {
            None
        };
        let (timeout, memory) = limits(&req.timeout, &req.memory_size, 0, 0)?;
        let dead_letter = validate::dead_letter(&req.dead_letter_config)?;
        let rec = self.update(&r.name, |rec| {
            check_revision(&req.revision_id, &rec.latest.revision_id)?;
            let l = &mut rec.latest;
            if let Some(role) = req.role.as_deref() {
                l.role = role.to_owned();
            }
            if let Some(rt) = req.runtime.as_deref() {
                l.runtime = rt.to_owned();
            }
            if let Some(h) = req.handler.as_deref() {
                l.handler = h.to_owned();
            }
            validate_handler(&l.runtime, &l.handler)?;
            if timeout > 0 {
                l.timeout = timeout;
            }
            if memory > 0 {
                l.memory_size = memory;
            }
            if let Some(e) = environment {
                l.environment = e;
            }
            if let Some(ls) = layers {
                l.layers = ls;
            }
            if let Some(d) = description {
                l.description = d;
            }
            if let Some(dl) = dead_letter {
                l.dead_letter_arn = dl;
            }
            l.last_modified = iso_now();
            l.revision_id = revision();
            Ok(rec.clone())
        })?;
        self.p.inner.pools.flush(&r.name, Some("$LATEST"));
        let cfg = self.configuration(&rec, &rec.latest, false);
        let mut params = trail::sent_without(caller.body, &["Environment"]);
        if let Some(o) = params.as_object_mut() {
            o.insert("FunctionName".into(), Value::String(raw.to_owned()));
        }
        self.record_call(
            caller,
            "UpdateFunctionConfiguration20150331v2",
            params,
            &cfg,
        );
        Ok(cfg)
    }

    /// UpdateFunctionCode; `raw` is `FunctionName` as sent.
    pub(crate) fn update_code(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        req: UpdateFunctionCodeRequest,
    ) -> Result<FunctionConfiguration, ApiError> {
        let zip = zip_from(&req.code)?;
        let installed = code::install_zip(self.p.inner.state.data_dir(), &zip)?;
        let publish = req.publish.get().copied().unwrap_or(false);
        let (rec, shown) = self.update(&r.name, |rec| {
            check_revision(&req.revision_id, &rec.latest.revision_id)?;
            let l = &mut rec.latest;
            l.code_sha256 = installed.sha256_b64.clone();
            l.code_size = installed.size;
            l.code_key = installed.key.clone();
            l.last_modified = iso_now();
            l.revision_id = revision();
            let shown = publish.then(|| versions::publish_latest(rec, None));
            Ok((rec.clone(), shown))
        })?;
        self.p.inner.pools.flush(&r.name, Some("$LATEST"));
        let cfg = self.configuration(&rec, shown.as_ref().unwrap_or(&rec.latest), false);
        let params = serde_json::json!({"functionName": raw, "publish": publish});
        self.record_call(caller, "UpdateFunctionCode20150331v2", params, &cfg);
        Ok(cfg)
    }

    // --- concurrency ---

    /// PutFunctionConcurrency; `raw` is `FunctionName` as sent.
    pub(crate) fn put_concurrency(
        &self,
        caller: &Caller<'_>,
        raw: &str,
        r: &FunctionRef,
        req: &PutConcurrencyRequest,
    ) -> Result<Concurrency, ApiError> {
        let n = req
            .reserved_concurrent_executions
            .get()
            .copied()
            .ok_or_else(|| must_not_be_null("reservedConcurrentExecutions"))?;
        let n = u32::try_from(n).map_err(|_| {
            ApiError::validation(
                "reservedConcurrentExecutions",
                &n.to_string(),
                "Member must have value greater than or equal to 0",
            )
        })?;
        if n > 900 {
            return Err(ApiError::invalid_parameter(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100].",
            ));
        }
        self.update(&r.name, |rec| {
            rec.reserved_concurrency = Some(n);
            Ok(())
        })?;
        let params = serde_json::json!({"functionName": raw, "reservedConcurrentExecutions": n});
        self.record_call(
            caller,
            "PutFunctionConcurrency20171031",
            params,
            &Value::Null,
        );
        Ok(Concurrency {
            reserved_concurrent_executions: Some(n),
        })
    }

    /// DeleteFunctionConcurrency.
    pub(crate) fn delete_concurrency(&self, r: &FunctionRef) -> Result<(), ApiError> {
        self.update(&r.name, |rec| {
            rec.reserved_concurrency = None;
            Ok(())
        })
    }

    /// GetFunctionConcurrency.
    pub(crate) fn get_concurrency(&self, r: &FunctionRef) -> Result<Concurrency, ApiError> {
        let rec = self.record(&r.name)?;
        Ok(Concurrency {
            reserved_concurrent_executions: rec.reserved_concurrency,
        })
    }

    /// GetAccountSettings.
    pub(crate) fn account_settings(&self) -> AccountSettings {
        let all = self.p.inner.state.all();
        let total: u64 = all
            .iter()
            .map(|r| r.latest.code_size + r.versions.values().map(|v| v.code_size).sum::<u64>())
            .sum();
        AccountSettings {
            account_limit: AccountLimit {
                code_size_unzipped: 262_144_000,
                code_size_zipped: 52_428_800,
                concurrent_executions: 1000,
                total_code_size: 80_530_636_800,
                unreserved_concurrent_executions: 1000
                    - all
                        .iter()
                        .filter_map(|r| r.reserved_concurrency)
                        .sum::<u32>(),
            },
            account_usage: AccountUsage {
                function_count: all.len(),
                total_code_size: total,
            },
        }
    }
}
