//! The Lambda REST API (2015-03-31 and friends): each route decodes its path, query, headers
//! and body once into the functions service's typed request, calls the service
//! ([`crate::functions`]), and encodes the typed answer with AWS's status code and headers.
//! Nothing else happens here: checks, state, invokes and CloudTrail events are the service's,
//! and errors are rendered by `wire.rs`.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body_util::Full;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::Req;
use crate::{
    InvokeRequest, Platform,
    arn::{self, FunctionRef},
    decode,
    functions::{
        Caller, InvocationType, Invoked,
        requests::{ListAliasesQuery, ListFunctionsQuery, PageQuery},
    },
    wire::{ApiError, Protocol, empty_response, json_response},
};

type Resp = Result<Response<Full<Bytes>>, ApiError>;

/// The `requestParameters` of a call without a body.
static NO_BODY: Value = Value::Null;

pub(crate) async fn dispatch(p: &Platform, req: Req) -> Resp {
    // Invokes stay on the async runtime: they wait on the sandbox, and they are the latency path.
    if let (&Method::POST, [v, fns, f, inv]) = (&req.method, req.segs.as_slice())
        && (v.as_str(), fns.as_str(), inv.as_str()) == ("2015-03-31", "functions", "invocations")
    {
        return invoke(p, &req, f).await;
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
        let body = req.json().unwrap_or(Value::Null);
        p.functions()
            .record_failed_call(&caller(req, &body), name, e);
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
    let c = Call {
        p,
        req,
        svc: p.functions(),
    };
    let s = &c.svc;
    match (&req.method, segs.as_slice()) {
        (&Method::POST, ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
            let (body, typed) = c.body()?;
            ok(201, &s.create(&caller(req, &body), typed)?)
        }
        (&Method::GET, ["2015-03-31", "functions"] | ["2015-03-31", "functions", ""]) => {
            let query = ListFunctionsQuery {
                page: c.page(),
                function_version: c.query("FunctionVersion"),
            };
            ok(200, &s.list(&query)?)
        }
        (&Method::GET, ["2015-03-31", "functions", f]) => ok(200, &s.get(&c.function(f)?)?),
        (&Method::DELETE, ["2015-03-31", "functions", f]) => {
            let r = c.function(f)?;
            s.delete(&caller(req, &NO_BODY), f, &r)?;
            Ok(empty_response(204))
        }
        (&Method::GET, ["2015-03-31", "functions", f, "configuration"]) => {
            ok(200, &s.get_configuration(&c.function(f)?)?)
        }
        (&Method::PUT, ["2015-03-31", "functions", f, "configuration"]) => {
            let r = c.unqualified(f)?;
            let (body, typed) = c.body()?;
            ok(
                200,
                &s.update_configuration(&caller(req, &body), f, &r, typed)?,
            )
        }
        (&Method::PUT, ["2015-03-31", "functions", f, "code"]) => {
            let r = c.unqualified(f)?;
            let (body, typed) = c.body()?;
            ok(200, &s.update_code(&caller(req, &body), f, &r, typed)?)
        }
        (&Method::POST, ["2015-03-31", "functions", f, "versions"]) => {
            let r = c.unqualified(f)?;
            let (body, typed) = c.body()?;
            ok(201, &s.publish_version(&caller(req, &body), f, &r, typed)?)
        }
        (&Method::GET, ["2015-03-31", "functions", f, "versions"]) => {
            ok(200, &s.list_versions(&c.function(f)?, &c.page())?)
        }
        (&Method::POST, ["2015-03-31", "functions", f, "aliases"]) => {
            let r = c.function(f)?;
            let (body, typed) = c.body()?;
            ok(201, &s.create_alias(&caller(req, &body), f, &r, typed)?)
        }
        (&Method::GET, ["2015-03-31", "functions", f, "aliases"]) => {
            let query = ListAliasesQuery {
                page: c.page(),
                function_version: c.query("FunctionVersion"),
            };
            ok(200, &s.list_aliases(&c.function(f)?, &query)?)
        }
        (&Method::GET, ["2015-03-31", "functions", f, "aliases", a]) => {
            ok(200, &s.get_alias(&c.function(f)?, a)?)
        }
        (&Method::PUT, ["2015-03-31", "functions", f, "aliases", a]) => {
            let r = c.function(f)?;
            let (body, typed) = c.body()?;
            ok(200, &s.update_alias(&caller(req, &body), f, &r, a, typed)?)
        }
        (&Method::DELETE, ["2015-03-31", "functions", f, "aliases", a]) => {
            let r = c.function(f)?;
            s.delete_alias(&caller(req, &NO_BODY), f, &r, a)?;
            Ok(empty_response(204))
        }
        (&Method::POST, ["2017-03-31", "tags", resource]) => {
            let r = s.tag_target(resource)?;
            let (body, typed) = c.body()?;
            s.tag(&caller(req, &body), resource, &r, &typed)?;
            Ok(empty_response(204))
        }
        (&Method::DELETE, ["2017-03-31", "tags", resource]) => {
            let r = s.tag_target(resource)?;
            let keys: Vec<String> = req
                .query
                .iter()
                .filter(|(k, _)| k == "tagKeys")
                .map(|(_, v)| v.clone())
                .collect();
            s.untag(&caller(req, &NO_BODY), resource, &r, keys)?;
            Ok(empty_response(204))
        }
        (&Method::GET, ["2017-03-31", "tags", resource]) => {
            ok(200, &s.list_tags(&s.tag_target(resource)?)?)
        }
        (&Method::PUT, ["2017-10-31", "functions", f, "concurrency"]) => {
            let r = c.function(f)?;
            let (body, typed) = c.body()?;
            ok(200, &s.put_concurrency(&caller(req, &body), f, &r, &typed)?)
        }
        (&Method::DELETE, ["2017-10-31", "functions", f, "concurrency"]) => {
            s.delete_concurrency(&c.function(f)?)?;
            Ok(empty_response(204))
        }
        (&Method::GET, ["2019-09-30", "functions", f, "concurrency"]) => {
            ok(200, &s.get_concurrency(&c.function(f)?)?)
        }
        (&Method::POST, ["2018-10-31", "layers", l, "versions"]) => {
            layer_name(l)?;
            let (body, typed) = c.body()?;
            ok(201, &s.publish_layer(&caller(req, &body), l, typed)?)
        }
        (&Method::GET, ["2018-10-31", "layers", l, "versions"]) => {
            ok(200, &s.list_layer_versions(l, &c.page())?)
        }
        (&Method::GET, ["2018-10-31", "layers", l, "versions", v]) => {
            ok(200, &s.get_layer_version(l, layer_version(v)?)?)
        }
        (&Method::DELETE, ["2018-10-31", "layers", l, "versions", v]) => {
            s.delete_layer_version(l, layer_version(v)?)?;
            Ok(empty_response(204))
        }
        (&Method::PUT, ["2019-09-25", "functions", f, "event-invoke-config"]) => {
            let (_, typed) = c.body()?;
            ok(
                200,
                &s.put_event_invoke_config(&c.function(f)?, &typed, false)?,
            )
        }
        (&Method::POST, ["2019-09-25", "functions", f, "event-invoke-config"]) => {
            let (_, typed) = c.body()?;
            ok(
                200,
                &s.put_event_invoke_config(&c.function(f)?, &typed, true)?,
            )
        }
        (&Method::GET, ["2019-09-25", "functions", f, "event-invoke-config"]) => {
            ok(200, &s.get_event_invoke_config(&c.function(f)?)?)
        }
        (&Method::DELETE, ["2019-09-25", "functions", f, "event-invoke-config"]) => {
            s.delete_event_invoke_config(&c.function(f)?)?;
            Ok(empty_response(204))
        }
        (&Method::GET, ["2019-09-25", "functions", f, "event-invoke-config", "list"]) => {
            ok(200, &s.list_event_invoke_configs(&c.function(f)?)?)
        }
        (&Method::GET, ["2018-10-31", "layers"] | ["2018-10-31", "layers", ""]) => {
            ok(200, &s.list_layers(&c.page())?)
        }
        (
            &Method::GET,
            ["2016-08-19", "account-settings"] | ["2016-08-19", "account-settings", ""],
        ) => ok(200, &s.account_settings()),
        _ => Err(ApiError::new(
            404,
            "UnknownOperationException",
            "Unknown operation",
        )),
    }
}

fn ok<T: Serialize>(status: u16, body: &T) -> Resp {
    Ok(json_response(status, body, Protocol::RestJson))
}

/// Who made the call, for CloudTrail.
fn caller<'a>(req: &'a Req, body: &'a Value) -> Caller<'a> {
    Caller {
        request_id: &req.request_id,
        source_ip: req.peer.ip(),
        user_agent: req.header("user-agent").unwrap_or_default(),
        body,
    }
}

/// The `LayerName` path parameter.
fn layer_name(name: &str) -> Result<(), ApiError> {
    if arn::valid_layer_name(name) {
        return Ok(());
    }
    Err(ApiError::validation(
        "layerName",
        name,
        "Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+",
    ))
}

/// The `VersionNumber` path parameter of a layer.
fn layer_version(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::validation("versionNumber", raw, "Member must be a number"))
}

/// One management call being decoded.
struct Call<'a> {
    p: &'a Platform,
    req: &'a Req,
    svc: crate::functions::Functions<'a>,
}

impl Call<'_> {
    fn query(&self, key: &str) -> Option<String> {
        self.req.query(key).map(str::to_owned)
    }

    /// `MaxItems` and `Marker`.
    fn page(&self) -> PageQuery {
        PageQuery {
            max_items: self.query("MaxItems"),
            marker: self.query("Marker"),
        }
    }

    /// The body as sent and as the typed request.
    fn body<T: DeserializeOwned>(&self) -> Result<(Value, T), ApiError> {
        let body = self.req.json()?;
        let typed = decode::from_object(&body).map_err(|_| super::not_json())?;
        Ok((body, typed))
    }

    /// The `FunctionName` path parameter with the `Qualifier` query parameter.
    fn function(&self, raw: &str) -> Result<FunctionRef, ApiError> {
        function_ref(self.p, self.req, raw)
    }

    /// A `FunctionName` that must not be qualified.
    fn unqualified(&self, raw: &str) -> Result<FunctionRef, ApiError> {
        let r = self.function(raw)?;
        if r.qualifier.is_some() {
            return Err(arn::function_name_error(raw));
        }
        Ok(r)
    }
}

/// Decodes the `FunctionName` path parameter and the `Qualifier` query parameter together; a
/// function of another region or account is not found.
fn function_ref(p: &Platform, req: &Req, raw: &str) -> Result<FunctionRef, ApiError> {
    let mut r = arn::parse_function_ref(raw).map_err(|_| arn::function_name_error(raw))?;
    if let Some(q) = req.query("Qualifier") {
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
    let cfg = p.config();
    if r.region.as_deref().is_some_and(|x| x != cfg.region)
        || r.account.as_deref().is_some_and(|x| x != cfg.account)
    {
        return Err(p.functions().not_found(&r.name, r.qualifier.as_deref()));
    }
    Ok(r)
}

/// Invoke: the payload stays the bytes the client sent (checked to be JSON, never decoded).
async fn invoke(p: &Platform, req: &Req, raw: &str) -> Resp {
    let r = function_ref(p, req, raw)?;
    let kind = InvocationType::decode(req.header("x-amz-invocation-type"))?;
    let limit = kind.max_payload();
    if req.body.len() > limit {
        return Err(ApiError::new(
            413,
            "RequestTooLargeException",
            format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
        ));
    }
    let payload = if req.body.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&req.body) {
            return Err(ApiError::bad_content(format!(
                "Could not parse request body into json: Could not parse payload into json: {e}"
            )));
        }
        req.body.clone()
    };
    let svc = p.functions();
    let invoked_arn = match &r.qualifier {
        Some(q) => format!("{}:{q}", svc.function_arn(&r.name)),
        None => svc.function_arn(&r.name),
    };
    let log_tail = req.header("x-amz-log-type") == Some("Tail");
    let ireq = InvokeRequest {
        payload,
        invoked_arn,
        client_context: req.header("x-amz-client-context").map(str::to_owned),
        log_tail,
        // An `Event` invoke runs under the id its 202 carries.
        request_id: Some(req.request_id.clone()),
    };
    let (executed_version, result) = match svc
        .invoke(&r.name, r.qualifier.as_deref(), kind, ireq)
        .await?
    {
        Invoked::Checked => return Ok(empty_response(204)),
        Invoked::Queued => return Ok(empty_response(202)),
        Invoked::Answered {
            executed_version,
            result,
        } => (executed_version, result),
    };
    let mut resp = Response::new(Full::new(result.payload));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&executed_version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Some(fe) = result.function_error {
        h.insert("x-amz-function-error", HeaderValue::from_static(fe));
    }
    if log_tail {
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
