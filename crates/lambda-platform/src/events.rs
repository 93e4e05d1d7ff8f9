//! EventBridge-style events on the default bus: rules (event patterns or `rate()`/`cron()`
//! schedules) and their targets (functions, SQS queues), published events matched against the
//! rules, scheduled events, and delivery to the targets. A function target is invoked through
//! the functions service ([`crate::functions`]), which resolves its qualifier (an alias's
//! weights included) and applies Lambda's async retry policy.
//!
//! The `AWSEvents.*` operations are in `rules.rs`, their typed requests and answers in
//! `operations.rs`. Must not depend on `api` (HTTP).

pub(crate) mod operations;
pub mod pattern;
mod rules;
pub mod schedule;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{Platform, PlatformError, journal::Durable, state::write_json_atomic, wire::ApiError};

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

/// A rule target (a function or queue ARN, optionally with a constant input).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Target {
    pub id: String,
    pub arn: String,
    pub input: Option<String>,
}

/// An event in EventBridge's envelope.
#[derive(Debug, Serialize)]
pub(crate) struct Envelope<'a, R, D> {
    pub version: &'static str,
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: &'a str,
    pub source: &'a str,
    pub account: &'a str,
    pub time: &'a str,
    pub region: &'a str,
    pub resources: R,
    pub detail: D,
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

    /// Publishes an event to the bus (matching and delivery happen asynchronously). Patterns
    /// match JSON, so the event travels as its JSON tree.
    pub(crate) fn publish<R: Serialize, D: Serialize>(&self, event: &Envelope<'_, R, D>) {
        if *self.closed.lock() {
            return;
        }
        match serde_json::to_value(event) {
            Ok(v) => {
                let _ = self.tx.send(v);
            }
            Err(e) => warn!(error = %e, "cannot encode an event"),
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

/// Now, as an event's `time` (`2024-01-01T00:00:00Z`).
pub(crate) fn rfc3339_now() -> String {
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
            // Events published inside the platform (CloudTrail-shaped ones) travel this way;
            // what a client puts is delivered before its answer (`deliver_value`).
            drop(deliver_value(&p, &event));
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
                    let time = rfc3339_now();
                    let event = Envelope {
                        version: "0",
                        id: crate::new_uuid().to_string(),
                        detail_type: "Scheduled Event",
                        source: "aws.events",
                        account: &cfg.account,
                        time: &time,
                        region: &cfg.region,
                        resources: [format!(
                            "arn:aws:events:{}:{}:rule/{}",
                            cfg.region, cfg.account, r.name
                        )],
                        detail: serde_json::Map::new(),
                    };
                    let Ok(event) = serde_json::to_value(&event) else {
                        continue;
                    };
                    for t in &r.targets {
                        drop(deliver(&p, t, &event));
                    }
                }
            }
        }
    });
}

/// Matches `event` against the rules and hands it to every matching target now; the answers
/// resolve once each target holds it durably.
pub(crate) fn deliver_value(p: &Platform, event: &Value) -> Vec<Durable> {
    p.inner
        .bus
        .matching_targets(event)
        .into_iter()
        .filter_map(|(rule, target)| {
            debug!(rule = %rule, target = %target.arn, "delivering event");
            deliver(p, &target, event)
        })
        .collect()
}

/// [`deliver_value`] of an envelope (Lambda destinations on an event bus).
pub(crate) fn deliver_now<R: Serialize, D: Serialize>(
    p: &Platform,
    event: &Envelope<'_, R, D>,
) -> Vec<Durable> {
    match serde_json::to_value(event) {
        Ok(v) => deliver_value(p, &v),
        Err(e) => {
            warn!(error = %e, "cannot encode an event");
            Vec::new()
        }
    }
}

/// Delivers `event` to one target: a queue gets it as a message, a function as an async invoke.
/// `None` when the target refused it (logged).
fn deliver(p: &Platform, target: &Target, event: &Value) -> Option<Durable> {
    let payload = match &target.input {
        Some(i) => i.clone().into_bytes(),
        None => serde_json::to_vec(event).unwrap_or_default(),
    };
    let result = if target.arn.starts_with("arn:aws:sqs:") {
        let body = String::from_utf8_lossy(&payload).into_owned();
        p.inner.sqs.send_to_arn(&target.arn, body, BTreeMap::new())
    } else {
        p.functions().deliver_event(&target.arn, payload.into())
    };
    result
        .inspect_err(|e| warn!(target = %target.arn, error = %e, "cannot deliver event"))
        .ok()
}
