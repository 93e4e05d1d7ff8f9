//! The Lambda REST API (2015-03-31 and friends): functions, versions, aliases, layers, tags,
//! reserved concurrency and Invoke, with AWS's JSON shapes, statuses and exception names.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use super::Req;
use crate::{
    InvokeRequest, Platform,
    arn::{self, FunctionRef},
    code,
    sandbox::FunctionSpec,
    state::{Alias, FunctionRecord, LayerUse, LayerVersion, VersionConfig},
    wire::{ApiError, Protocol, empty_response, json_response},
};

type Resp = Result<Response<Full<Bytes>>, ApiError>;

/// Largest synchronous Invoke payload (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6_291_456;
/// Largest asynchronous Invoke payload (256 KB).
pub const MAX_ASYNC_PAYLOAD: usize = 262_144;
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
/// AWS's page size cap for list operations.
const PAGE_MAX: usize = 50;

pub(crate) async fn dispatch(p: &Platform, req: Req) -> Resp {
    // Invokes stay on the async runtime: they wait on the sandbox, and they are the latency path.
    if let (&Method::POST, [v, fns, f, inv]) = (&req.method, req.segs.as_slice())
        && (v.as_str(), fns.as_str(), inv.as_str()) == ("2015-03-31", "functions", "invocations")
    {
        return Api { p, req: &req }.invoke(f).await;
    }
    // Reads are in-memory and quick: answered in place, as a hand-off to another thread would
    // cost more than the read (measured: +50 % on a 10,560-call listing). Writes persist the
    // state and unpack code, so they run on the blocking pool and never stall an invoke.
    if req.method == Method::GET {
        return manage(p, &req);
    }
    let p = p.clone();
    tokio::task::spawn_blocking(move || manage(&p, &req))
        .await
        .map_err(|e| ApiError::internal(format!("management worker: {e}")))?
}

/// A management (non-invoke) operation.
fn manage(p: &Platform, req: &Req) -> Resp {
    let result = route(p, req);
    // CloudTrail records failed management calls too, with `errorCode`/`errorMessage` (the
    // registrator skips those); `requestParameters` is what the client sent.
    if let (Err(e), Some(name)) = (&result, trail_name(req)) {
        let request = req.json().unwrap_or(Value::Null);
        p.inner.bus.api_call_failed(p, name, request, e, req);
    }
    result
}

/// The CloudTrail event name of a mutating route.
fn trail_name(req: &Req) -> Option<&'static str> {
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    Some(match (&req.method, segs.as_slice()) {
        (&Method::POST, ["2015-03-31", "functions", ..]) if segs.len() <= 3 => {
            "CreateFunction20150331"
        }
        (&Method::DELETE, ["2015-03-31", "functions", _]) => "DeleteFunction20150331",
        (&Method::PUT, ["2015-03-31", "functions", _, "configuration"]) => {
            "UpdateFunctionConfiguration20150331v2"
        }
        (&Method::PUT, ["2015-03-31", "functions", _, "code"]) => "UpdateFunctionCode20150331v2",
        (&Method::POST, ["2015-03-31", "functions", _, "versions"]) => "PublishVersion20150331",
        (&Method::POST, ["2015-03-31", "functions", _, "aliases"]) => "CreateAlias20150331",
        (&Method::PUT, ["2015-03-31", "functions", _, "aliases", _]) => "UpdateAlias20150331",
        (&Method::DELETE, ["2015-03-31", "functions", _, "aliases", _]) => "DeleteAlias20150331",
        (&Method::POST, ["2017-03-31", "tags", _]) => "TagResource20170331v2",
        (&Method::DELETE, ["2017-03-31", "tags", _]) => "UntagResource20170331v2",
        _ => return None,
    })
}

fn route(p: &Platform, req: &Req) -> Resp {
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let api = Api { p, req };
    match (&req.method, segs.as_slice()) {
        (&Method::POST, ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
            api.create_function()
        }
        (&Method::GET, ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
            api.list_functions()
        }
        (&Method::GET, ["2015-03-31", "functions", f]) => api.get_function(f),
        (&Method::DELETE, ["2015-03-31", "functions", f]) => api.delete_function(f),
        (&Method::GET, ["2015-03-31", "functions", f, "configuration"]) => api.get_configuration(f),
        (&Method::PUT, ["2015-03-31", "functions", f, "configuration"]) => {
            api.update_configuration(f)
        }
        (&Method::PUT, ["2015-03-31", "functions", f, "code"]) => api.update_code(f),
        (&Method::POST, ["2015-03-31", "functions", f, "versions"]) => api.publish_version(f),
        (&Method::GET, ["2015-03-31", "functions", f, "versions"]) => api.list_versions(f),
        (&Method::POST, ["2015-03-31", "functions", f, "aliases"]) => api.create_alias(f),
        (&Method::GET, ["2015-03-31", "functions", f, "aliases"]) => api.list_aliases(f),
        (&Method::GET, ["2015-03-31", "functions", f, "aliases", a]) => api.get_alias(f, a),
        (&Method::PUT, ["2015-03-31", "functions", f, "aliases", a]) => api.update_alias(f, a),
        (&Method::DELETE, ["2015-03-31", "functions", f, "aliases", a]) => api.delete_alias(f, a),
        (&Method::POST, ["2017-03-31", "tags", r]) => api.tag_resource(r),
        (&Method::DELETE, ["2017-03-31", "tags", r]) => api.untag_resource(r),
        (&Method::GET, ["2017-03-31", "tags", r]) => api.list_tags(r),
        (&Method::PUT, ["2017-10-31", "functions", f, "concurrency"]) => api.put_concurrency(f),
        (&Method::DELETE, ["2017-10-31", "functions", f, "concurrency"]) => {
            api.delete_concurrency(f)
        }
        (&Method::GET, ["2019-09-30", "functions", f, "concurrency"]) => api.get_concurrency(f),
        (&Method::POST, ["2018-10-31", "layers", l, "versions"]) => api.publish_layer(l),
        (&Method::GET, ["2018-10-31", "layers", l, "versions"]) => api.list_layer_versions(l),
        (&Method::GET, ["2018-10-31", "layers", l, "versions", v]) => api.get_layer_version(l, v),
        (&Method::DELETE, ["2018-10-31", "layers", l, "versions", v]) => {
            api.delete_layer_version(l, v)
        }
        (&Method::GET, ["2018-10-31", "layers"] | ["2018-10-31", "layers", ""]) => {
            api.list_layers()
        }
        (
            &Method::GET,
            ["2016-08-19", "account-settings"] | ["2016-08-19", "account-settings", ""],
        ) => api.account_settings(),
        _ => Err(ApiError::new(
            404,
            "UnknownOperationException",
            "Unknown operation",
        )),
    }
}

struct Api<'a> {
    p: &'a Platform,
    req: &'a Req,
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

fn ok(status: u16, body: &Value) -> Resp {
    Ok(json_response(status, body, Protocol::RestJson))
}

fn revision() -> String {
    crate::new_uuid().to_string()
}

// === impl Api ===

impl Api<'_> {
    fn region(&self) -> &str {
        &self.p.config().region
    }
    fn account(&self) -> &str {
        &self.p.config().account
    }
    fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region(),
            self.account()
        )
    }
    fn layer_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{name}",
            self.region(),
            self.account()
        )
    }

    fn not_found_fn(&self, name: &str, qualifier: Option<&str>) -> ApiError {
        let arn = self.function_arn(name);
        match qualifier {
            Some(q) => ApiError::not_found(format!("Function not found: {arn}:{q}")),
            None => ApiError::not_found(format!("Function not found: {arn}")),
        }
    }

    /// Parses the `FunctionName` path parameter and the `Qualifier` query parameter together.
    fn function_ref(&self, raw: &str) -> Result<FunctionRef, ApiError> {
        let mut r = arn::parse_function_ref(raw).map_err(|_| arn::function_name_error(raw))?;
        if let Some(q) = self.req.query("Qualifier") {
            if !arn::valid_qualifier(q) {
                return Err(ApiError::validation(
                    "qualifier",
                    q,
                    &format!(
                        "Member must satisfy regular expression pattern: {}",
                        arn::QUALIFIER_PATTERN
                    ),
                ));
            }
            match &r.qualifier {
                Some(existing) if existing != q => {
                    return Err(ApiError::invalid_parameter(
                        "The derived qualifier from the function name does not match the specified qualifier.",
                    ));
                }
                _ => r.qualifier = Some(q.to_owned()),
            }
        }
        if r.region.as_deref().is_some_and(|x| x != self.region())
            || r.account.as_deref().is_some_and(|x| x != self.account())
        {
            return Err(self.not_found_fn(&r.name, r.qualifier.as_deref()));
        }
        Ok(r)
    }

    fn record(&self, r: &FunctionRef) -> Result<FunctionRecord, ApiError> {
        self.p
            .inner
            .state
            .get(&r.name)
            .ok_or_else(|| self.not_found_fn(&r.name, None))
    }

    /// The version config a qualifier selects, and the executed version number.
    fn resolve<'r>(
        &self,
        rec: &'r FunctionRecord,
        qualifier: Option<&str>,
    ) -> Result<&'r VersionConfig, ApiError> {
        match qualifier {
            None | Some("$LATEST") => Ok(&rec.latest),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => q
                .parse::<u64>()
                .ok()
                .and_then(|n| rec.versions.get(&n))
                .ok_or_else(|| self.not_found_fn(&rec.name, Some(q))),
            Some(q) => {
                let alias = rec
                    .aliases
                    .get(q)
                    .ok_or_else(|| self.not_found_fn(&rec.name, Some(q)))?;
                self.resolve(rec, Some(alias.function_version.as_str()))
            }
        }
    }

    fn config_json(
        &self,
        rec: &FunctionRecord,
        v: &VersionConfig,
        qualified_latest: bool,
    ) -> Value {
        let arn = if v.version == "$LATEST" && !qualified_latest {
            self.function_arn(&rec.name)
        } else {
            format!("{}:{}", self.function_arn(&rec.name), v.version)
        };
        let mut out = json!({
            "FunctionName": rec.name,
            "FunctionArn": arn,
            "Runtime": v.runtime,
            "Role": v.role,
            "Handler": v.handler,
            "CodeSize": v.code_size,
            "Description": v.description,
            "Timeout": v.timeout,
            "MemorySize": v.memory_size,
            "LastModified": v.last_modified,
            "CodeSha256": v.code_sha256,
            "Version": v.version,
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": v.revision_id,
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": v.architectures,
            "EphemeralStorage": {"Size": 512},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", rec.name)},
        });
        if let Some(obj) = out.as_object_mut() {
            if !v.environment.is_empty() {
                obj.insert("Environment".into(), json!({"Variables": v.environment}));
            }
            if !v.layers.is_empty() {
                let layers: Vec<Value> = v
                    .layers
                    .iter()
                    .map(|l| json!({"Arn": l.arn, "CodeSize": l.code_size}))
                    .collect();
                obj.insert("Layers".into(), Value::Array(layers));
            }
        }
        out
    }

    pub(crate) fn spec(
        &self,
        rec: &FunctionRecord,
        v: &VersionConfig,
    ) -> Result<Arc<FunctionSpec>, ApiError> {
        spec_for(self.p, rec, v)
    }

    // --- functions ---

    fn create_function(&self) -> Resp {
        let body = self.req.json()?;
        let name_raw = str_field(&body, "FunctionName").ok_or_else(|| {
            ApiError::validation("functionName", "null", "Member must not be null")
        })?;
        let fref =
            arn::parse_function_ref(name_raw).map_err(|_| arn::function_name_error(name_raw))?;
        if fref.qualifier.is_some() || fref.name.len() > 64 {
            return Err(arn::function_name_error(name_raw));
        }
        let role = str_field(&body, "Role")
            .ok_or_else(|| ApiError::validation("role", "null", "Member must not be null"))?;
        validate_role(role)?;
        let runtime = str_field(&body, "Runtime").unwrap_or_default();
        validate_runtime(runtime)?;
        let handler = str_field(&body, "Handler").unwrap_or_default();
        validate_handler(runtime, handler)?;
        let zip = zip_from(body.get("Code"))?;
        let (timeout, memory) = limits(&body, 3, 128)?;
        let environment = environment(&body)?;
        let layers = self.layers(&body)?;
        let tags = tag_map(body.get("Tags"))?;
        let description = description(&body)?;
        let architectures = architectures(&body)?;
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
        };
        let mut rec = FunctionRecord {
            name: fref.name.clone(),
            latest,
            versions: BTreeMap::new(),
            last_version: 0,
            aliases: BTreeMap::new(),
            tags,
            reserved_concurrency: None,
        };
        let publish = body
            .get("Publish")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if publish {
            publish_latest(&mut rec, None);
        }
        let shown = if publish {
            rec.versions.values().next_back().cloned()
        } else {
            None
        };
        self.p.inner.state.insert(rec.clone())?;
        let cfg = self.config_json(&rec, shown.as_ref().unwrap_or(&rec.latest), false);
        let mut params = body.clone();
        if let Some(o) = params.as_object_mut() {
            o.remove("Code");
            o.remove("Environment");
        }
        self.trail("CreateFunction20150331", params, cfg.clone());
        ok(201, &cfg)
    }

    fn list_functions(&self) -> Resp {
        let max = max_items(self.req.query("MaxItems"))?;
        let after = decode_marker(self.req.query("Marker"))?;
        let all_versions = match self.req.query("FunctionVersion") {
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
        let (items, more) = if all_versions {
            // Markers are (function, index) pairs encoded as "name\u{0}index".
            let all = self.p.inner.state.all();
            let flat: Vec<(String, Value)> = all
                .iter()
                .flat_map(|rec| {
                    std::iter::once(&rec.latest)
                        .chain(rec.versions.values())
                        .map(|v| {
                            (
                                format!("{}\u{0}{:020}", rec.name, version_sort_key(&v.version)),
                                self.config_json(rec, v, true),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            page_after(flat, after.as_deref(), max)
        } else {
            let (items, more) = self.p.inner.state.page(after.as_deref(), max, |rec| {
                (rec.name.clone(), self.config_json(rec, &rec.latest, false))
            });
            (items, more)
        };
        let next = if more {
            items.last().map(|(k, _)| encode_marker(k))
        } else {
            None
        };
        let functions: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
        let mut out = json!({"Functions": functions});
        if let (Some(m), Some(o)) = (next, out.as_object_mut()) {
            o.insert("NextMarker".into(), Value::String(m));
        }
        ok(200, &out)
    }

    fn get_function(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let rec = self.record(&r)?;
        let v = self.resolve(&rec, r.qualifier.as_deref())?;
        let mut out = json!({
            "Configuration": self.config_json(&rec, v, r.qualifier.is_some()),
            "Code": {
                "RepositoryType": "S3",
                "Location": format!("{}/code/{}", self.p.inner.endpoint, v.code_key),
            },
            "Tags": rec.tags,
        });
        if let (Some(n), Some(o)) = (rec.reserved_concurrency, out.as_object_mut()) {
            o.insert(
                "Concurrency".into(),
                json!({"ReservedConcurrentExecutions": n}),
            );
        }
        ok(200, &out)
    }

    fn get_configuration(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let rec = self.record(&r)?;
        let v = self.resolve(&rec, r.qualifier.as_deref())?;
        ok(200, &self.config_json(&rec, v, r.qualifier.is_some()))
    }

    fn delete_function(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        match r.qualifier.as_deref() {
            None => {
                let removed = self.p.inner.state.remove(&r.name)?;
                if removed.is_none() {
                    return Err(self.not_found_fn(&r.name, None));
                }
                self.p.inner.pools.flush(&r.name, None);
                self.trail(
                    "DeleteFunction20150331",
                    json!({"functionName": raw}),
                    Value::Null,
                );
                Ok(empty_response(204))
            }
            Some("$LATEST") => Err(ApiError::invalid_parameter(
                "$LATEST version cannot be deleted without deleting the function.",
            )),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u64 = q.parse().map_err(|_| self.not_found_fn(&r.name, Some(q)))?;
                self.p.inner.state.update(
                    &r.name,
                    || self.not_found_fn(&r.name, None),
                    |rec| {
                        let users: Vec<String> =
                            rec.aliases.values().filter(|a| a.function_version == q).map(|a| a.name.clone()).collect();
                        if !users.is_empty() {
                            return Err(ApiError::conflict(format!(
                                "Unable to delete version because the following aliases reference it: [{}]",
                                users.join(", ")
                            )));
                        }
                        rec.versions.remove(&n).map(|_| ()).ok_or_else(|| self.not_found_fn(&r.name, Some(q)))
                    },
                )?;
                self.p.inner.pools.flush(&r.name, Some(q));
                self.trail(
                    "DeleteFunction20150331",
                    json!({"functionName": raw, "qualifier": q}),
                    Value::Null,
                );
                Ok(empty_response(204))
            }
            Some(_) => Err(ApiError::invalid_parameter(
                "Deletion of aliases is not supported.",
            )),
        }
    }

    fn check_revision(body: &Value, current: &str) -> Result<(), ApiError> {
        match str_field(body, "RevisionId") {
            Some(rev) if rev != current => Err(ApiError::new(
                412,
                "PreconditionFailedException",
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            )),
            _ => Ok(()),
        }
    }

    fn update_configuration(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        if r.qualifier.is_some() {
            return Err(arn::function_name_error(raw));
        }
        let body = self.req.json()?;
        if let Some(role) = str_field(&body, "Role") {
            validate_role(role)?;
        }
        if let Some(rt) = str_field(&body, "Runtime") {
            validate_runtime(rt)?;
        }
        let layers = if body.get("Layers").is_some() {
            Some(self.layers(&body)?)
        } else {
            None
        };
        let environment = if body.get("Environment").is_some() {
            Some(environment(&body)?)
        } else {
            None
        };
        let description = if body.get("Description").is_some() {
            Some(description(&body)?)
        } else {
            None
        };
        let (timeout, memory) = limits(&body, 0, 0)?;
        let rec = self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                Self::check_revision(&body, &rec.latest.revision_id)?;
                let l = &mut rec.latest;
                if let Some(role) = str_field(&body, "Role") {
                    l.role = role.to_owned();
                }
                if let Some(rt) = str_field(&body, "Runtime") {
                    l.runtime = rt.to_owned();
                }
                if let Some(h) = str_field(&body, "Handler") {
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
                l.last_modified = iso_now();
                l.revision_id = revision();
                Ok(rec.clone())
            },
        )?;
        self.p.inner.pools.flush(&r.name, Some("$LATEST"));
        let cfg = self.config_json(&rec, &rec.latest, false);
        let mut params = body.clone();
        if let Some(o) = params.as_object_mut() {
            o.remove("Environment");
            o.insert("FunctionName".into(), Value::String(raw.to_owned()));
        }
        self.trail("UpdateFunctionConfiguration20150331v2", params, cfg.clone());
        ok(200, &cfg)
    }

    fn update_code(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        if r.qualifier.is_some() {
            return Err(arn::function_name_error(raw));
        }
        let body = self.req.json()?;
        let zip = zip_from(Some(&body))?;
        let installed = code::install_zip(self.p.inner.state.data_dir(), &zip)?;
        let publish = body
            .get("Publish")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (rec, shown) = self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                Self::check_revision(&body, &rec.latest.revision_id)?;
                let l = &mut rec.latest;
                l.code_sha256 = installed.sha256_b64.clone();
                l.code_size = installed.size;
                l.code_key = installed.key.clone();
                l.last_modified = iso_now();
                l.revision_id = revision();
                let shown = if publish {
                    Some(publish_latest(rec, None))
                } else {
                    None
                };
                Ok((rec.clone(), shown))
            },
        )?;
        self.p.inner.pools.flush(&r.name, Some("$LATEST"));
        let cfg = self.config_json(&rec, shown.as_ref().unwrap_or(&rec.latest), false);
        self.trail(
            "UpdateFunctionCode20150331v2",
            json!({"functionName": raw, "publish": publish}),
            cfg.clone(),
        );
        ok(200, &cfg)
    }

    // --- invoke ---

    async fn invoke(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let kind = self
            .req
            .header("x-amz-invocation-type")
            .unwrap_or("RequestResponse");
        if !matches!(kind, "RequestResponse" | "Event" | "DryRun") {
            return Err(ApiError::validation(
                "invocationType",
                kind,
                "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
            ));
        }
        let limit = if kind == "Event" {
            MAX_ASYNC_PAYLOAD
        } else {
            MAX_SYNC_PAYLOAD
        };
        if self.req.body.len() > limit {
            return Err(ApiError::new(
                413,
                "RequestTooLargeException",
                format!(
                    "Request must be smaller than {limit} bytes for the InvokeFunction operation"
                ),
            ));
        }
        let payload = if self.req.body.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&self.req.body) {
                return Err(ApiError::bad_content(format!(
                    "Could not parse request body into json: Could not parse payload into json: {e}"
                )));
            }
            self.req.body.clone()
        };
        let rec = self.record(&r)?;
        let mut v = self.resolve(&rec, r.qualifier.as_deref())?;
        // Weighted alias routing: pick an additional version with its weight.
        if let Some(alias) = r.qualifier.as_deref().and_then(|q| rec.aliases.get(q)) {
            let roll: f64 = rand::random();
            let mut acc = 0.0;
            for (ver, w) in &alias.additional_weights {
                acc += w;
                if roll < acc {
                    v = self.resolve(&rec, Some(ver))?;
                    break;
                }
            }
        }
        let invoked_arn = match &r.qualifier {
            Some(q) => format!("{}:{q}", self.function_arn(&rec.name)),
            None => self.function_arn(&rec.name),
        };
        let version = v.version.clone();
        if kind == "DryRun" {
            return Ok(empty_response(204));
        }
        let spec = self.spec(&rec, v)?;
        let client_context = self.req.header("x-amz-client-context").map(str::to_owned);
        let ireq = InvokeRequest {
            payload,
            invoked_arn,
            client_context,
            log_tail: self.req.header("x-amz-log-type") == Some("Tail"),
        };
        if kind == "Event" {
            self.p
                .inner
                .pools
                .invoke_async(self.p, spec, rec.reserved_concurrency, ireq)?;
            return Ok(empty_response(202));
        }
        let result = self
            .p
            .inner
            .pools
            .invoke(spec, rec.reserved_concurrency, ireq)
            .await?;
        let mut resp = Response::new(Full::new(result.payload));
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&version) {
            h.insert("x-amz-executed-version", v);
        }
        if let Some(fe) = result.function_error {
            h.insert("x-amz-function-error", HeaderValue::from_static(fe));
        }
        if self.req.header("x-amz-log-type") == Some("Tail") {
            let tail = &result.log_tail[result
                .log_tail
                .len()
                .saturating_sub(crate::sandbox::LOG_TAIL)..];
            if let Ok(v) =
                HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(tail))
            {
                h.insert("x-amz-log-result", v);
            }
        }
        Ok(resp)
    }

    // --- versions ---

    fn publish_version(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        if r.qualifier.is_some() {
            return Err(arn::function_name_error(raw));
        }
        let body = self.req.json()?;
        let desc = str_field(&body, "Description").map(str::to_owned);
        let (rec, v) = self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                Self::check_revision(&body, &rec.latest.revision_id)?;
                if let Some(sha) = str_field(&body, "CodeSha256")
                    && sha != rec.latest.code_sha256 {
                        return Err(ApiError::invalid_parameter(format!(
                            "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                            rec.latest.code_sha256
                        )));
                    }
                let v = publish_latest(rec, desc);
                Ok((rec.clone(), v))
            },
        )?;
        let cfg = self.config_json(&rec, &v, true);
        self.trail(
            "PublishVersion20150331",
            json!({"functionName": raw}),
            cfg.clone(),
        );
        ok(201, &cfg)
    }

    fn list_versions(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let rec = self.record(&r)?;
        let max = max_items(self.req.query("MaxItems"))?;
        let after = decode_marker(self.req.query("Marker"))?;
        let items: Vec<(String, Value)> = std::iter::once(&rec.latest)
            .chain(rec.versions.values())
            .map(|v| {
                (
                    format!("{:020}", version_sort_key(&v.version)),
                    self.config_json(&rec, v, true),
                )
            })
            .collect();
        let (page, more) = page_after(items, after.as_deref(), max);
        paged_response("Versions", page, more)
    }

    // --- aliases ---

    fn alias_json(&self, fname: &str, a: &Alias) -> Value {
        let mut out = json!({
            "AliasArn": format!("{}:{}", self.function_arn(fname), a.name),
            "Name": a.name,
            "FunctionVersion": a.function_version,
            "Description": a.description,
            "RevisionId": a.revision_id,
        });
        if let (false, Some(o)) = (a.additional_weights.is_empty(), out.as_object_mut()) {
            o.insert(
                "RoutingConfig".into(),
                json!({"AdditionalVersionWeights": a.additional_weights}),
            );
        }
        out
    }

    fn alias_fields(
        &self,
        rec: &FunctionRecord,
        body: &Value,
        alias: &mut Alias,
    ) -> Result<(), ApiError> {
        if let Some(v) = str_field(body, "FunctionVersion") {
            if v != "$LATEST" && !rec.versions.keys().any(|n| n.to_string() == v) {
                return Err(self.not_found_fn(&rec.name, Some(v)));
            }
            alias.function_version = v.to_owned();
        }
        if body.get("Description").is_some() {
            alias.description = description(body)?;
        }
        if let Some(rc) = body.get("RoutingConfig") {
            let weights = rc
                .get("AdditionalVersionWeights")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut out = BTreeMap::new();
            for (ver, w) in weights {
                let w = w
                    .as_f64()
                    .filter(|w| (0.0..=1.0).contains(w))
                    .ok_or_else(|| {
                        ApiError::validation(
                            "routingConfig.additionalVersionWeights",
                            &ver,
                            "Member must have value between 0.0 and 1.0",
                        )
                    })?;
                let n: u64 = ver.parse().map_err(|_| {
                    ApiError::invalid_parameter(format!("Invalid function version {ver}."))
                })?;
                if !rec.versions.contains_key(&n) {
                    return Err(self.not_found_fn(&rec.name, Some(&ver)));
                }
                out.insert(ver, w);
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

    fn create_alias(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let body = self.req.json()?;
        let name = str_field(&body, "Name")
            .ok_or_else(|| ApiError::validation("name", "null", "Member must not be null"))?;
        if !valid_alias_name(name) {
            return Err(ApiError::validation(
                "name",
                name,
                "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)",
            ));
        }
        if str_field(&body, "FunctionVersion").is_none() {
            return Err(ApiError::validation(
                "functionVersion",
                "null",
                "Member must not be null",
            ));
        }
        let alias = self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
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
                self.alias_fields(rec, &body, &mut alias)?;
                rec.aliases.insert(name.to_owned(), alias.clone());
                Ok(alias)
            },
        )?;
        let out = self.alias_json(&r.name, &alias);
        let mut params = body.clone();
        if let Some(o) = params.as_object_mut() {
            o.insert("functionName".into(), Value::String(raw.to_owned()));
        }
        self.trail("CreateAlias20150331", params, out.clone());
        ok(201, &out)
    }

    fn get_alias(&self, raw: &str, name: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let rec = self.record(&r)?;
        let a = rec.aliases.get(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "Alias not found: {}:{name}",
                self.function_arn(&rec.name)
            ))
        })?;
        ok(200, &self.alias_json(&rec.name, a))
    }

    fn update_alias(&self, raw: &str, name: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let body = self.req.json()?;
        let alias = self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                let mut alias = rec.aliases.get(name).cloned().ok_or_else(|| {
                    ApiError::not_found(format!(
                        "Alias not found: {}:{name}",
                        self.function_arn(&rec.name)
                    ))
                })?;
                Self::check_revision(&body, &alias.revision_id)?;
                self.alias_fields(rec, &body, &mut alias)?;
                alias.revision_id = revision();
                rec.aliases.insert(name.to_owned(), alias.clone());
                Ok(alias)
            },
        )?;
        let out = self.alias_json(&r.name, &alias);
        self.trail(
            "UpdateAlias20150331",
            json!({"functionName": raw, "name": name}),
            out.clone(),
        );
        ok(200, &out)
    }

    fn delete_alias(&self, raw: &str, name: &str) -> Resp {
        let r = self.function_ref(raw)?;
        self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                // AWS answers 204 whether or not the alias existed.
                rec.aliases.remove(name);
                Ok(())
            },
        )?;
        self.trail(
            "DeleteAlias20150331",
            json!({"functionName": raw, "name": name}),
            Value::Null,
        );
        Ok(empty_response(204))
    }

    fn list_aliases(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let rec = self.record(&r)?;
        let max = max_items(self.req.query("MaxItems"))?;
        let after = decode_marker(self.req.query("Marker"))?;
        let want = self.req.query("FunctionVersion");
        let items: Vec<(String, Value)> = rec
            .aliases
            .values()
            .filter(|a| want.is_none_or(|w| a.function_version == w))
            .map(|a| (a.name.clone(), self.alias_json(&rec.name, a)))
            .collect();
        let (page, more) = page_after(items, after.as_deref(), max);
        paged_response("Aliases", page, more)
    }

    // --- tags ---

    fn tag_target(&self, raw: &str) -> Result<FunctionRef, ApiError> {
        let pattern = "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\\d{1}:\\d{12}:function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?";
        if !raw.starts_with("arn:") {
            return Err(ApiError::validation("resource", raw, pattern));
        }
        let r = arn::parse_function_ref(raw)
            .map_err(|_| ApiError::validation("resource", raw, pattern))?;
        if r.region.as_deref() != Some(self.region())
            || r.account.as_deref() != Some(self.account())
        {
            return Err(self.not_found_fn(&r.name, None));
        }
        Ok(r)
    }

    fn tag_resource(&self, raw: &str) -> Resp {
        let r = self.tag_target(raw)?;
        let body = self.req.json()?;
        let tags = tag_map(body.get("Tags"))?;
        if tags.is_empty() {
            return Err(ApiError::invalid_parameter("Tags cannot be empty."));
        }
        self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                let mut merged = rec.tags.clone();
                merged.extend(tags.clone());
                if merged.len() > 50 {
                    return Err(ApiError::invalid_parameter(
                        "Number of tags exceeds resource tag limit.",
                    ));
                }
                rec.tags = merged;
                Ok(())
            },
        )?;
        self.trail(
            "TagResource20170331v2",
            json!({"resource": raw, "tags": tags}),
            Value::Null,
        );
        Ok(empty_response(204))
    }

    fn untag_resource(&self, raw: &str) -> Resp {
        let r = self.tag_target(raw)?;
        let keys: Vec<String> = self
            .req
            .query
            .iter()
            .filter(|(k, _)| k == "tagKeys")
            .map(|(_, v)| v.clone())
            .collect();
        if keys.is_empty() {
            return Err(ApiError::validation(
                "tagKeys",
                "null",
                "Member must not be null",
            ));
        }
        self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                for k in &keys {
                    rec.tags.remove(k);
                }
                Ok(())
            },
        )?;
        self.trail(
            "UntagResource20170331v2",
            json!({"resource": raw, "tagKeys": keys}),
            Value::Null,
        );
        Ok(empty_response(204))
    }

    fn list_tags(&self, raw: &str) -> Resp {
        let r = self.tag_target(raw)?;
        let rec = self.record(&r)?;
        ok(200, &json!({"Tags": rec.tags}))
    }

    // --- concurrency ---

    fn put_concurrency(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let body = self.req.json()?;
        let n = body
            .get("ReservedConcurrentExecutions")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                ApiError::validation(
                    "reservedConcurrentExecutions",
                    "null",
                    "Member must not be null",
                )
            })?;
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
        self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                rec.reserved_concurrency = Some(n);
                Ok(())
            },
        )?;
        self.trail(
            "PutFunctionConcurrency20171031",
            json!({"functionName": raw, "reservedConcurrentExecutions": n}),
            Value::Null,
        );
        ok(200, &json!({"ReservedConcurrentExecutions": n}))
    }

    fn delete_concurrency(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        self.p.inner.state.update(
            &r.name,
            || self.not_found_fn(&r.name, None),
            |rec| {
                rec.reserved_concurrency = None;
                Ok(())
            },
        )?;
        Ok(empty_response(204))
    }

    fn get_concurrency(&self, raw: &str) -> Resp {
        let r = self.function_ref(raw)?;
        let rec = self.record(&r)?;
        match rec.reserved_concurrency {
            Some(n) => ok(200, &json!({"ReservedConcurrentExecutions": n})),
            None => ok(200, &json!({})),
        }
    }

    // --- layers ---

    fn layers(&self, body: &Value) -> Result<Vec<LayerUse>, ApiError> {
        let Some(list) = body.get("Layers") else {
            return Ok(Vec::new());
        };
        let list = list
            .as_array()
            .ok_or_else(|| ApiError::validation("layers", "", "Member must be a list"))?;
        if list.len() > 5 {
            return Err(ApiError::invalid_parameter(
                "Cannot reference more than 5 layers.",
            ));
        }
        let mut out = Vec::new();
        for l in list {
            let s = l.as_str().unwrap_or_default();
            let lr = arn::parse_layer_version_arn(s).map_err(|_| {
                ApiError::validation(
                    "layers",
                    s,
                    "Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+",
                )
            })?;
            let lv = (lr.region == self.region() && lr.account == self.account())
                .then(|| self.p.inner.state.layer_version(&lr.name, lr.version))
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid_parameter(format!("Layer version {s} does not exist."))
                })?;
            out.push(LayerUse {
                arn: s.to_owned(),
                code_size: lv.code_size,
                code_key: lv.code_key,
            });
        }
        Ok(out)
    }

    fn layer_version_json(&self, lv: &LayerVersion) -> Value {
        let mut out = json!({
            "Content": {
                "Location": format!("{}/code/{}", self.p.inner.endpoint, lv.code_key),
                "CodeSha256": lv.code_sha256,
                "CodeSize": lv.code_size,
            },
            "LayerArn": self.layer_arn(&lv.name),
            "LayerVersionArn": format!("{}:{}", self.layer_arn(&lv.name), lv.version),
            "Description": lv.description,
            "CreatedDate": lv.created,
            "Version": lv.version,
            "CompatibleRuntimes": lv.compatible_runtimes,
            "CompatibleArchitectures": lv.compatible_architectures,
        });
        if let (Some(li), Some(o)) = (&lv.license_info, out.as_object_mut()) {
            o.insert("LicenseInfo".into(), Value::String(li.clone()));
        }
        out
    }

    fn publish_layer(&self, name: &str) -> Resp {
        if !arn::valid_layer_name(name) {
            return Err(ApiError::validation(
                "layerName",
                name,
                "Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+",
            ));
        }
        let body = self.req.json()?;
        let zip = zip_from(body.get("Content"))?;
        let installed = code::install_zip(self.p.inner.state.data_dir(), &zip)?;
        let strings = |k: &str| crate::wire::str_list(&body, k).unwrap_or_default();
        let description = description(&body)?;
        let lv = self
            .p
            .inner
            .state
            .publish_layer(name, |version| LayerVersion {
                name: name.to_owned(),
                version,
                description,
                created: iso_now(),
                code_sha256: installed.sha256_b64,
                code_size: installed.size,
                code_key: installed.key,
                compatible_runtimes: strings("CompatibleRuntimes"),
                compatible_architectures: strings("CompatibleArchitectures"),
                license_info: str_field(&body, "LicenseInfo").map(str::to_owned),
            })?;
        let out = self.layer_version_json(&lv);
        self.trail(
            "PublishLayerVersion20181031",
            json!({"layerName": name}),
            out.clone(),
        );
        ok(201, &out)
    }

    fn layer_not_found(&self) -> ApiError {
        ApiError::not_found("The resource you requested does not exist.")
    }

    fn get_layer_version(&self, name: &str, version: &str) -> Resp {
        let v: u64 = version.parse().map_err(|_| {
            ApiError::validation("versionNumber", version, "Member must be a number")
        })?;
        let lv = self
            .p
            .inner
            .state
            .layer_version(name, v)
            .ok_or_else(|| self.layer_not_found())?;
        ok(200, &self.layer_version_json(&lv))
    }

    fn delete_layer_version(&self, name: &str, version: &str) -> Resp {
        let v: u64 = version.parse().map_err(|_| {
            ApiError::validation("versionNumber", version, "Member must be a number")
        })?;
        self.p.inner.state.delete_layer_version(name, v)?;
        Ok(empty_response(204))
    }

    fn list_layer_versions(&self, name: &str) -> Resp {
        let max = max_items(self.req.query("MaxItems"))?;
        let after = decode_marker(self.req.query("Marker"))?;
        let mut versions = self.p.inner.state.layer_versions(name);
        // AWS lists the newest version first.
        versions.reverse();
        let items: Vec<(String, Value)> = versions
            .iter()
            .map(|lv| {
                (
                    format!("{:020}", u64::MAX - lv.version),
                    self.layer_version_json(lv),
                )
            })
            .collect();
        let (page, more) = page_after(items, after.as_deref(), max);
        paged_response("LayerVersions", page, more)
    }

    fn list_layers(&self) -> Resp {
        let max = max_items(self.req.query("MaxItems"))?;
        let after = decode_marker(self.req.query("Marker"))?;
        let items: Vec<(String, Value)> = self
            .p
            .inner
            .state
            .layer_names()
            .into_iter()
            .filter_map(|n| {
                let latest = self.p.inner.state.layer_versions(&n).pop()?;
                Some((
                    n.clone(),
                    json!({
                        "LayerName": n,
                        "LayerArn": self.layer_arn(&n),
                        "LatestMatchingVersion": self.layer_version_json(&latest),
                    }),
                ))
            })
            .collect();
        let (page, more) = page_after(items, after.as_deref(), max);
        paged_response("Layers", page, more)
    }

    fn account_settings(&self) -> Resp {
        let all = self.p.inner.state.all();
        let total: u64 = all
            .iter()
            .map(|r| r.latest.code_size + r.versions.values().map(|v| v.code_size).sum::<u64>())
            .sum();
        ok(
            200,
            &json!({
                "AccountLimit": {
                    "TotalCodeSize": 80_530_636_800u64,
                    "CodeSizeUnzipped": 262_144_000u64,
                    "CodeSizeZipped": 52_428_800u64,
                    "ConcurrentExecutions": 1000,
                    "UnreservedConcurrentExecutions": 1000 - all.iter().filter_map(|r| r.reserved_concurrency).sum::<u32>(),
                },
                "AccountUsage": {"TotalCodeSize": total, "FunctionCount": all.len()},
            }),
        )
    }

    fn trail(&self, event_name: &str, request: Value, response: Value) {
        self.p
            .inner
            .bus
            .api_call(self.p, event_name, request, response, self.req);
    }
}

/// Builds the sandbox spec of a function version (assembling its layers' `/opt`).
pub(crate) fn spec_for(
    p: &Platform,
    rec: &FunctionRecord,
    v: &VersionConfig,
) -> Result<Arc<FunctionSpec>, ApiError> {
    let data_dir = p.inner.state.data_dir();
    let keys: Vec<String> = v.layers.iter().map(|l| l.code_key.clone()).collect();
    let opt_dir = code::assemble_opt(data_dir, &keys)
        .map_err(|e| ApiError::internal(format!("cannot assemble layers: {e}")))?;
    Ok(Arc::new(FunctionSpec {
        name: rec.name.clone(),
        version: v.version.clone(),
        runtime: v.runtime.clone(),
        handler: v.handler.clone(),
        code_dir: code::code_dir(data_dir, &v.code_key),
        opt_dir,
        environment: v.environment.clone(),
        timeout: Duration::from_secs(u64::from(v.timeout)),
        memory_size: v.memory_size,
        revision: v.revision_id.clone(),
    }))
}

/// Publishes `$LATEST` as a new version unless it is unchanged since the last one (AWS then
/// returns the existing version).
fn publish_latest(rec: &mut FunctionRecord, description: Option<String>) -> VersionConfig {
    if let Some(last) = rec.versions.values().next_back() {
        let same = last.code_sha256 == rec.latest.code_sha256
            && last.runtime == rec.latest.runtime
            && last.handler == rec.latest.handler
            && last.environment == rec.latest.environment
            && last.layers == rec.latest.layers
            && last.timeout == rec.latest.timeout
            && last.memory_size == rec.latest.memory_size
            && last.role == rec.latest.role;
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

fn version_sort_key(v: &str) -> u64 {
    v.parse().unwrap_or(0)
}

fn str_field<'v>(body: &'v Value, key: &str) -> Option<&'v str> {
    body.get(key).and_then(Value::as_str)
}

fn valid_alias_name(s: &str) -> bool {
    arn::valid_name(s) && s.len() <= 128 && !s.bytes().all(|b| b.is_ascii_digit())
}

fn validate_role(role: &str) -> Result<(), ApiError> {
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

fn validate_runtime(rt: &str) -> Result<(), ApiError> {
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

fn validate_handler(runtime: &str, handler: &str) -> Result<(), ApiError> {
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

fn limits(body: &Value, default_timeout: u32, default_memory: u32) -> Result<(u32, u32), ApiError> {
    let timeout = match body.get("Timeout").and_then(Value::as_i64) {
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
    let memory = match body.get("MemorySize").and_then(Value::as_i64) {
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

fn environment(body: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let vars = body
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut size = 0;
    for (k, v) in vars {
        let valid_key = k.len() >= 2
            && k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_key {
            return Err(ApiError::validation(
                "environment.variables",
                &k,
                "Member must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            ));
        }
        let v = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        size += k.len() + v.len();
        out.insert(k, v);
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

fn description(body: &Value) -> Result<String, ApiError> {
    let d = str_field(body, "Description").unwrap_or_default();
    if d.chars().count() > 256 {
        return Err(ApiError::validation(
            "description",
            d,
            "Member must have length less than or equal to 256",
        ));
    }
    Ok(d.to_owned())
}

fn architectures(body: &Value) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> =
        crate::wire::str_list(body, "Architectures").unwrap_or_else(|| vec!["x86_64".into()]);
    if list.len() != 1 || !matches!(list[0].as_str(), "x86_64" | "arm64") {
        return Err(ApiError::validation(
            "architectures",
            &list.join(","),
            "Member must satisfy enum value set: [x86_64, arm64]",
        ));
    }
    Ok(list)
}

/// Decodes `Code.ZipFile` / `Content.ZipFile` (base64). S3 and image code are not supported.
fn zip_from(code: Option<&Value>) -> Result<Vec<u8>, ApiError> {
    let code =
        code.ok_or_else(|| ApiError::validation("code", "null", "Member must not be null"))?;
    if code.get("S3Bucket").is_some() || code.get("ImageUri").is_some() {
        return Err(ApiError::invalid_parameter(
            "Only ZipFile code is supported by the local platform (use `lambdamesh lambda create --dir` for a directory).",
        ));
    }
    let b64 = code
        .get("ZipFile")
        .and_then(Value::as_str)
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
pub(crate) fn tag_map(tags: Option<&Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(tags) = tags else {
        return Ok(BTreeMap::new());
    };
    let obj = tags
        .as_object()
        .ok_or_else(|| ApiError::invalid_parameter("Tags must be a map."))?;
    if obj.len() > 50 {
        return Err(ApiError::invalid_parameter(
            "Number of tags exceeds resource tag limit.",
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let v = v.as_str().ok_or_else(|| {
            ApiError::invalid_parameter(format!("Tag value for key {k} must be a string."))
        })?;
        validate_tag(k, v)?;
        out.insert(k.clone(), v.to_owned());
    }
    Ok(out)
}

/// AWS's tag rules: key 1–128, value 0–256 characters of letters, digits, spaces and
/// `_.:/=+-@`; the `aws:` prefix is reserved.
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

fn max_items(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None => Ok(PAGE_MAX),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 1 => Err(ApiError::validation(
                "maxItems",
                s,
                "Member must have value greater than or equal to 1",
            )),
            Ok(n) if n > 10_000 => Err(ApiError::validation(
                "maxItems",
                s,
                "Member must have value less than or equal to 10000",
            )),
            // AWS returns at most 50 items per page whatever MaxItems says.
            Ok(n) => Ok((n as usize).min(PAGE_MAX)),
            Err(_) => Err(ApiError::validation(
                "maxItems",
                s,
                "Member must be a number",
            )),
        },
    }
}

/// Markers are opaque to clients: base64 of the last key returned.
fn encode_marker(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Decodes a `Marker`. Pure; fuzzed.
///
/// # Errors
/// `InvalidParameterValueException` for a marker this platform did not issue.
pub fn decode_marker(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| ApiError::invalid_parameter("Invalid marker"))
}

fn page_after(
    items: Vec<(String, Value)>,
    after: Option<&str>,
    max: usize,
) -> (Vec<(String, Value)>, bool) {
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a));
    let page: Vec<_> = rest.by_ref().take(max).collect();
    let more = rest.next().is_some();
    (page, more)
}

fn paged_response(key: &str, page: Vec<(String, Value)>, more: bool) -> Resp {
    let next = if more {
        page.last().map(|(k, _)| encode_marker(k))
    } else {
        None
    };
    let mut out = Map::new();
    out.insert(
        key.into(),
        Value::Array(page.into_iter().map(|(_, v)| v).collect()),
    );
    if let Some(m) = next {
        out.insert("NextMarker".into(), Value::String(m));
    }
    ok(200, &Value::Object(out))
}

/// Invokes the function named by `arn` asynchronously (event delivery).
///
/// # Errors
/// AWS errors for unknown functions or qualifiers, or a full async queue.
pub(crate) fn invoke_async_arn(p: &Platform, arn: &str, payload: Bytes) -> Result<(), ApiError> {
    let r = arn::parse_function_ref(arn).map_err(|_| arn::function_name_error(arn))?;
    let rec = p
        .inner
        .state
        .get(&r.name)
        .ok_or_else(|| ApiError::not_found(format!("Function not found: {arn}")))?;
    let version = match r.qualifier.as_deref() {
        None | Some("$LATEST") => rec.latest.clone(),
        Some(q) => {
            let v = rec
                .aliases
                .get(q)
                .map_or(q, |a| a.function_version.as_str());
            match v.parse::<u64>().ok().and_then(|n| rec.versions.get(&n)) {
                Some(cfg) => cfg.clone(),
                None if v == "$LATEST" => rec.latest.clone(),
                None => return Err(ApiError::not_found(format!("Function not found: {arn}"))),
            }
        }
    };
    let spec = spec_for(p, &rec, &version)?;
    let req = InvokeRequest {
        payload,
        invoked_arn: arn.to_owned(),
        client_context: None,
        log_tail: false,
    };
    p.inner
        .pools
        .invoke_async(p, spec, rec.reserved_concurrency, req)
}
