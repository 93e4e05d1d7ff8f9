//! EventBridge-style events: rules (event patterns or `rate()`/`cron()` schedules) that target
//! functions, CloudTrail-shaped "AWS API Call via CloudTrail" events for the platform's own
//! Lambda API calls, and asynchronous delivery with Lambda's async retry policy.

pub mod pattern;
pub mod schedule;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{Platform, PlatformError, api::Req, state::write_json_atomic, wire::ApiError};

pub use pattern::{EventPattern, PatternError};
pub use schedule::{Schedule, ScheduleError};

/// A rule as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Rule {
    pub name: String,
    pub event_pattern: Option<String>,
    pub schedule: Option<String>,
    pub state: String,
    pub description: String,
    pub targets: Vec<Target>,
}

/// A rule target (a function ARN, optionally with a constant input).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Target {
    pub id: String,
    pub arn: String,
    pub input: Option<String>,
}

/// The default event bus.
pub(crate) struct Bus {
    path: PathBuf,
    rules: Mutex<BTreeMap<String, Rule>>,
    tx: mpsc::UnboundedSender<Value>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Value>>>,
    closed: Mutex<bool>,
}

// === impl Bus ===

impl Bus {
    pub(crate) fn open(data_dir: &Path) -> Result<Self, PlatformError> {
        let path = data_dir.join("events").join("rules.json");
        let rules = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PlatformError::CorruptState {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(PlatformError::DataDir { path, source }),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            path,
            rules: Mutex::new(rules),
            tx,
            rx: Mutex::new(Some(rx)),
            closed: Mutex::new(false),
        })
    }

    pub(crate) fn close(&self) {
        *self.closed.lock() = true;
    }

    fn persist(&self, rules: &BTreeMap<String, Rule>) -> Result<(), ApiError> {
        write_json_atomic(&self.path, rules)
            .map_err(|e| ApiError::internal(format!("cannot persist rules: {e}")))
    }

    /// Publishes an event to the bus (matching and delivery happen asynchronously).
    pub(crate) fn publish(&self, event: Value) {
        if !*self.closed.lock() {
            let _ = self.tx.send(event);
        }
    }

    /// Emits the CloudTrail event of a failed Lambda API call (`errorCode`, no response).
    pub(crate) fn api_call_failed(
        &self,
        p: &Platform,
        event_name: &str,
        request: Value,
        error: &ApiError,
        req: &Req,
    ) {
        self.emit(p, event_name, request, Value::Null, Some(error), req);
    }

    /// Emits the CloudTrail event of a successful Lambda API call.
    pub(crate) fn api_call(
        &self,
        p: &Platform,
        event_name: &str,
        request: Value,
        response: Value,
        req: &Req,
    ) {
        self.emit(p, event_name, request, response, None, req);
    }

    fn emit(
        &self,
        p: &Platform,
        event_name: &str,
        mut request: Value,
        response: Value,
        error: Option<&ApiError>,
        req: &Req,
    ) {
        // Code and environment values never go into the trail, as on AWS.
        if let Some(o) = request.as_object_mut() {
            o.remove("Code");
            o.remove("ZipFile");
            o.remove("Environment");
        }
        let cfg = p.config();
        let time = rfc3339_now();
        let user_agent = req.header("user-agent").unwrap_or_default().to_owned();
        let detail = json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDALOCAL",
                "arn": format!("arn:aws:iam::{}:user/local", cfg.account),
                "accountId": cfg.account,
                "accessKeyId": cfg.credentials.access_key,
                "userName": "local",
            },
            "eventTime": time,
            "eventSource": "lambda.amazonaws.com",
            "eventName": event_name,
            "awsRegion": cfg.region,
            "sourceIPAddress": req.peer.ip().to_string(),
            "userAgent": user_agent,
            "requestParameters": camel(request),
            "responseElements": camel(response),
            "requestID": req.request_id,
            "eventID": crate::new_uuid().to_string(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": cfg.account,
            "eventCategory": "Management",
        });
        let mut detail = detail;
        if let (Some(e), Some(o)) = (error, detail.as_object_mut()) {
            o.insert("errorCode".into(), Value::String(e.code.to_owned()));
            o.insert("errorMessage".into(), Value::String(e.message.clone()));
        }
        self.publish(json!({
            "version": "0",
            "id": crate::new_uuid().to_string(),
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.lambda",
            "account": cfg.account,
            "time": time,
            "region": cfg.region,
            "resources": [],
            "detail": detail,
        }));
    }

    /// Runs one `AWSEvents.*` operation.
    pub(crate) fn call(&self, p: &Platform, op: &str, body: &Value) -> Result<Value, ApiError> {
        let cfg = p.config();
        let rule_arn = |n: &str| format!("arn:aws:events:{}:{}:rule/{n}", cfg.region, cfg.account);
        let name = || -> Result<String, ApiError> {
            let n = body
                .get("Name")
                .or_else(|| body.get("Rule"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if n.is_empty()
                || n.len() > 64
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(ApiError::validation(
                    "name",
                    n,
                    "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
                ));
            }
            Ok(n.to_owned())
        };
        let missing_rule = |n: &str| {
            ApiError::new(
                400,
                "ResourceNotFoundException",
                format!("Rule {n} does not exist on EventBus default."),
            )
        };
        match op {
            "PutRule" => {
                let n = name()?;
                let pattern = body
                    .get("EventPattern")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let schedule = body
                    .get("ScheduleExpression")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if pattern.is_none() && schedule.is_none() {
                    return Err(ApiError::new(
                        400,
                        "ValidationException",
                        "Parameter(s) EventPattern or ScheduleExpression must be specified.",
                    ));
                }
                if let Some(pt) = &pattern {
                    EventPattern::parse(pt).map_err(|e| {
                        ApiError::new(
                            400,
                            "InvalidEventPatternException",
                            format!("Event pattern is not valid. Reason: {e}"),
                        )
                    })?;
                }
                if let Some(s) = &schedule {
                    Schedule::parse(s).map_err(|_| {
                        ApiError::new(
                            400,
                            "ValidationException",
                            "Parameter ScheduleExpression is not valid.",
                        )
                    })?;
                }
                let state = body
                    .get("State")
                    .and_then(Value::as_str)
                    .unwrap_or("ENABLED")
                    .to_owned();
                let mut rules = self.rules.lock();
                let targets = rules.get(&n).map(|r| r.targets.clone()).unwrap_or_default();
                let mut next = rules.clone();
                next.insert(
                    n.clone(),
                    Rule {
                        name: n.clone(),
                        event_pattern: pattern,
                        schedule,
                        state,
                        description: body
                            .get("Description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        targets,
                    },
                );
                self.persist(&next)?;
                *rules = next;
                Ok(json!({"RuleArn": rule_arn(&n)}))
            }
            "DeleteRule" => {
                let n = name()?;
                let mut rules = self.rules.lock();
                if rules.get(&n).is_some_and(|r| !r.targets.is_empty()) {
                    return Err(ApiError::new(
                        400,
                        "ValidationException",
                        "Rule can't be deleted since it has targets.",
                    ));
                }
                let mut next = rules.clone();
                next.remove(&n);
                self.persist(&next)?;
                *rules = next;
                Ok(json!({}))
            }
            "DescribeRule" => {
                let n = name()?;
                let rules = self.rules.lock();
                let r = rules.get(&n).ok_or_else(|| missing_rule(&n))?;
                Ok(rule_json(r, &rule_arn(&r.name)))
            }
            "ListRules" => {
                let prefix = body
                    .get("NamePrefix")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let rules = self.rules.lock();
                let list: Vec<Value> = rules
                    .values()
                    .filter(|r| r.name.starts_with(prefix))
                    .map(|r| rule_json(r, &rule_arn(&r.name)))
                    .collect();
                Ok(json!({"Rules": list}))
            }
            "PutTargets" => {
                let n = name()?;
                let targets = body
                    .get("Targets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if targets.is_empty() || targets.len() > 10 {
                    return Err(ApiError::validation(
                        "targets",
                        "",
                        "Member must have length less than or equal to 10",
                    ));
                }
                let mut rules = self.rules.lock();
                let mut next = rules.clone();
                let rule = next.get_mut(&n).ok_or_else(|| missing_rule(&n))?;
                let mut failed = Vec::new();
                for t in targets {
                    let id = t
                        .get("Id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let arn = t
                        .get("Arn")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if !arn.starts_with("arn:aws:lambda:") && !arn.starts_with("arn:aws:sqs:") {
                        failed.push(json!({"TargetId": id, "ErrorCode": "ValidationException", "ErrorMessage": "Only Lambda function and SQS queue targets are supported by the local platform."}));
                        continue;
                    }
                    rule.targets.retain(|x| x.id != id);
                    rule.targets.push(Target {
                        id,
                        arn,
                        input: t.get("Input").and_then(Value::as_str).map(str::to_owned),
                    });
                }
                self.persist(&next)?;
                *rules = next;
                Ok(json!({"FailedEntryCount": failed.len(), "FailedEntries": failed}))
            }
            "RemoveTargets" => {
                let n = name()?;
                let ids: Vec<String> = crate::wire::str_list(body, "Ids").unwrap_or_default();
                let mut rules = self.rules.lock();
                let mut next = rules.clone();
                let rule = next.get_mut(&n).ok_or_else(|| missing_rule(&n))?;
                rule.targets.retain(|t| !ids.contains(&t.id));
                self.persist(&next)?;
                *rules = next;
                Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
            }
            "ListTargetsByRule" => {
                let n = name()?;
                let rules = self.rules.lock();
                let r = rules.get(&n).ok_or_else(|| missing_rule(&n))?;
                let list: Vec<Value> = r
                    .targets
                    .iter()
                    .map(|t| {
                        let mut v = json!({"Id": t.id, "Arn": t.arn});
                        if let (Some(i), Some(o)) = (&t.input, v.as_object_mut()) {
                            o.insert("Input".into(), Value::String(i.clone()));
                        }
                        v
                    })
                    .collect();
                Ok(json!({"Targets": list}))
            }
            "PutEvents" => {
                let entries = body
                    .get("Entries")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if entries.is_empty() || entries.len() > 10 {
                    return Err(ApiError::validation(
                        "entries",
                        "",
                        "Member must have length less than or equal to 10",
                    ));
                }
                let mut out = Vec::new();
                let mut failed = 0;
                for e in entries {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
                    let detail = s("Detail")
                        .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                        .filter(Value::is_object);
                    match (s("Source"), s("DetailType"), detail) {
                        (Some(source), Some(dt), Some(detail)) => {
                            let id = crate::new_uuid().to_string();
                            self.publish(json!({
                                "version": "0", "id": id, "detail-type": dt, "source": source, "account": cfg.account,
                                "time": rfc3339_now(), "region": cfg.region,
                                "resources": e.get("Resources").cloned().unwrap_or_else(|| json!([])), "detail": detail,
                            }));
                            out.push(json!({"EventId": id}));
                        }
                        _ => {
                            failed += 1;
                            out.push(json!({"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}));
                        }
                    }
                }
                Ok(json!({"FailedEntryCount": failed, "Entries": out}))
            }
            "TestEventPattern" => {
                let pt = body
                    .get("EventPattern")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let pattern = EventPattern::parse(pt).map_err(|e| {
                    ApiError::new(
                        400,
                        "InvalidEventPatternException",
                        format!("Event pattern is not valid. Reason: {e}"),
                    )
                })?;
                let event: Value = body
                    .get("Event")
                    .and_then(Value::as_str)
                    .and_then(|e| serde_json::from_str(e).ok())
                    .ok_or_else(|| {
                        ApiError::new(400, "ValidationException", "Parameter Event is not valid.")
                    })?;
                Ok(json!({"Result": pattern.matches(&event)}))
            }
            _ => Err(ApiError::new(400, "UnknownOperationException", "")),
        }
    }

    fn matching_targets(&self, event: &Value) -> Vec<(String, Target)> {
        let rules = self.rules.lock();
        let mut out = Vec::new();
        for r in rules.values().filter(|r| r.state == "ENABLED") {
            let Some(pt) = &r.event_pattern else { continue };
            // Patterns were validated when the rule was stored.
            if EventPattern::parse(pt).is_ok_and(|p| p.matches(event)) {
                out.extend(r.targets.iter().map(|t| (r.name.clone(), t.clone())));
            }
        }
        out
    }
}

fn rule_json(r: &Rule, arn: &str) -> Value {
    let mut v = Map::new();
    v.insert("Name".into(), json!(r.name));
    v.insert("Arn".into(), json!(arn));
    v.insert("State".into(), json!(r.state));
    v.insert("EventBusName".into(), json!("default"));
    if !r.description.is_empty() {
        v.insert("Description".into(), json!(r.description));
    }
    if let Some(p) = &r.event_pattern {
        v.insert("EventPattern".into(), json!(p));
    }
    if let Some(s) = &r.schedule {
        v.insert("ScheduleExpression".into(), json!(s));
    }
    Value::Object(v)
}

/// CloudTrail writes request and response members in camelCase; user-supplied maps (tags,
/// environment variables) keep their keys.
fn camel(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let user_map = matches!(
                        k.as_str(),
                        "Tags" | "tags" | "Variables" | "AdditionalVersionWeights"
                    );
                    let mut key = k.clone();
                    if let Some(first) = key.get(..1) {
                        key = format!("{}{}", first.to_ascii_lowercase(), &key[1..]);
                    }
                    (key, if user_map { v } else { camel(v) })
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camel).collect()),
        other => other,
    }
}

fn rfc3339_now() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_default()
}

/// Starts the bus's delivery loop and the scheduler.
pub(crate) fn start(platform: Platform) {
    let Some(mut rx) = platform.inner.bus.rx.lock().take() else {
        return;
    };
    let weak = std::sync::Arc::downgrade(&platform.inner);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let Some(inner) = weak.upgrade() else { break };
            let p = Platform { inner };
            for (rule, target) in p.inner.bus.matching_targets(&event) {
                debug!(rule = %rule, target = %target.arn, "delivering event");
                deliver(&p, &target, &event);
            }
        }
    });
    let weak = std::sync::Arc::downgrade(&platform.inner);
    let minute = platform.config().minute;
    drop(platform);
    tokio::spawn(async move {
        let tick = (minute / 60).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut last_fire: BTreeMap<String, Instant> = BTreeMap::new();
        let mut last_cron_minute = time::OffsetDateTime::now_utc().unix_timestamp() / 60;
        loop {
            tokio::time::sleep(tick).await;
            let Some(inner) = weak.upgrade() else { break };
            let p = Platform { inner };
            if *p.inner.bus.closed.lock() {
                break;
            }
            let rules: Vec<Rule> = p
                .inner
                .bus
                .rules
                .lock()
                .values()
                .filter(|r| r.state == "ENABLED" && r.schedule.is_some())
                .cloned()
                .collect();
            let now = Instant::now();
            let wall_minute = time::OffsetDateTime::now_utc().unix_timestamp() / 60;
            let new_minute = wall_minute != last_cron_minute;
            last_cron_minute = wall_minute;
            last_fire.retain(|name, _| rules.iter().any(|r| &r.name == name));
            for r in rules {
                let Some(Ok(schedule)) = r.schedule.as_deref().map(Schedule::parse) else {
                    continue;
                };
                let due = match &schedule {
                    Schedule::Rate(minutes) => {
                        let period = minute * (*minutes as u32);
                        let last = *last_fire.entry(r.name.clone()).or_insert(now);
                        now.duration_since(last) >= period
                    }
                    Schedule::Cron(c) => new_minute && c.matches(&time::OffsetDateTime::now_utc()),
                };
                if due {
                    last_fire.insert(r.name.clone(), now);
                    let cfg = p.config();
                    let event = json!({
                        "version": "0", "id": crate::new_uuid().to_string(), "detail-type": "Scheduled Event",
                        "source": "aws.events", "account": cfg.account, "time": rfc3339_now(), "region": cfg.region,
                        "resources": [format!("arn:aws:events:{}:{}:rule/{}", cfg.region, cfg.account, r.name)],
                        "detail": {},
                    });
                    for t in &r.targets {
                        deliver(&p, t, &event);
                    }
                }
            }
        }
    });
}

fn deliver(p: &Platform, target: &Target, event: &Value) {
    let payload = match &target.input {
        Some(i) => i.clone().into_bytes(),
        None => serde_json::to_vec(event).unwrap_or_default(),
    };
    if target.arn.starts_with("arn:aws:sqs:") {
        let body = String::from_utf8_lossy(&payload).into_owned();
        if let Err(e) = p.inner.sqs.send_to_arn(&target.arn, body) {
            warn!(target = %target.arn, error = %e, "cannot deliver event");
        }
        return;
    }
    if let Err(e) = crate::api::lambda::invoke_async_arn(p, &target.arn, payload.into()) {
        warn!(target = %target.arn, error = %e, "cannot deliver event");
    }
}
