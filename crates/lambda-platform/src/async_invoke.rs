//! The asynchronous invocation queue: `InvocationType=Event` invokes, EventBridge deliveries to
//! function targets and Lambda destinations. An event is written to a journal (`journal.rs`)
//! and fsynced before it is acknowledged (the 202, the PutEvents answer), survives `kill -9`
//! and is run after a restart: at least once, as on AWS.
//!
//! Each event is run with AWS's semantics (`docs/lambda-platform.md`, "Asynchronous
//! invocation"): function errors are retried `MaximumRetryAttempts` times (default 2), one and
//! then two minutes apart; throttles and platform errors go back to the queue with exponential
//! back-off (1 s to 5 min) without using up attempts; an event older than
//! `MaximumEventAgeInSeconds` (default 6 h) is not run again. A success goes to the
//! `OnSuccess` destination, a failure to the `OnFailure` destination and the dead-letter queue
//! (`record.rs` builds what they receive). [`PlatformConfig::minute`](crate::PlatformConfig)
//! scales every delay and age (tests shrink it).
//!
//! Must not depend on HTTP; the functions service resolves the function for each attempt.

mod record;

use std::{
    collections::HashMap,
    path::Path,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

pub(crate) use self::record::Condition;
use crate::{
    InvokeRequest, InvokeResult, Platform, PlatformError,
    journal::{Durable, Journal},
    sandbox::epoch_ms,
    wire::ApiError,
};

/// Most events waiting for delivery before `Event` invokes are throttled.
const MAX_PENDING: usize = 10_000;
/// The journal is rewritten with the live events once it holds this much more than they need.
const COMPACT_AFTER: usize = 8 << 20;

/// One accepted asynchronous event, as journaled.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Event {
    /// The request id: the 202's `x-amzn-RequestId`, the runtime's request id on every attempt,
    /// `requestContext.requestId` of the destination record.
    pub id: String,
    pub function: String,
    /// The version chosen when the event was accepted (an alias's weights are rolled once).
    pub version: String,
    /// Whose `FunctionEventInvokeConfig` applies: the qualifier invoked (`$LATEST` when none).
    pub qualifier: String,
    pub invoked_arn: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    #[serde(default)]
    pub client_context: Option<String>,
    pub accepted_ms: u64,
}

impl Event {
    pub(crate) fn new(
        id: String,
        function: String,
        version: String,
        qualifier: Option<&str>,
        req: &InvokeRequest,
    ) -> Self {
        Self {
            id,
            function,
            version,
            qualifier: qualifier.unwrap_or("$LATEST").to_owned(),
            invoked_arn: req.invoked_arn.clone(),
            payload: base64::engine::general_purpose::STANDARD.encode(&req.payload),
            client_context: req.client_context.clone(),
            accepted_ms: epoch_ms(),
        }
    }

    fn payload(&self) -> Bytes {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

/// A journal record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    Accepted(Event),
    /// `attempts` runs ended in a function error so far.
    Failed {
        id: String,
        attempts: u32,
    },
    /// Succeeded, or handed to its destinations, or dropped: never run again.
    Done {
        id: String,
    },
}

fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

/// What an attempt needs from the functions service, read afresh for each attempt.
pub(crate) struct Policy {
    pub max_retries: u32,
    pub max_age_secs: u32,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub dead_letter: Option<String>,
    /// `arn:...:function:<name>:<qualifier>`, the record's `functionArn`.
    pub function_arn: String,
}

struct Live {
    events: HashMap<String, (Event, u32)>,
    /// Bytes appended since the journal was last rewritten.
    journal_bytes: usize,
}

/// The queue of one platform.
pub(crate) struct AsyncQueue {
    journal: Journal,
    live: Mutex<Live>,
    pending: AtomicUsize,
    closed: AtomicBool,
}

impl AsyncQueue {
    /// Opens the queue in `<data_dir>/async/`, returning the events still to run (with the
    /// attempts they have used), and rewrites the journal with only those.
    pub(crate) async fn open(data_dir: &Path) -> Result<(Self, Vec<(Event, u32)>), PlatformError> {
        let path = data_dir.join("async").join("journal.log");
        let io = |source| PlatformError::DataDir {
            path: path.clone(),
            source,
        };
        let (journal, records) = Journal::open(&path).map_err(io)?;
        let mut events: HashMap<String, (Event, u32)> = HashMap::new();
        let mut order = Vec::new();
        for bytes in records {
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(Record::Accepted(e)) => {
                    order.push(e.id.clone());
                    events.insert(e.id.clone(), (e, 0));
                }
                Ok(Record::Failed { id, attempts }) => {
                    if let Some(e) = events.get_mut(&id) {
                        e.1 = e.1.max(attempts);
                    }
                }
                Ok(Record::Done { id }) => {
                    events.remove(&id);
                }
                // A whole record this version cannot read is skipped, as the store does.
                Err(e) => warn!(error = %e, "skipping an unreadable async journal record"),
            }
        }
        let pending: Vec<(Event, u32)> = order
            .iter()
            .filter_map(|id| events.get(id).cloned())
            .collect();
        journal
            .rewrite(live_records(pending.iter()))
            .wait()
            .await
            .map_err(io)?;
        if !pending.is_empty() {
            info!(
                events = pending.len(),
                "asynchronous events to run after a restart"
            );
        }
        let queue = Self {
            journal,
            pending: AtomicUsize::new(pending.len()),
            live: Mutex::new(Live {
                events,
                journal_bytes: 0,
            }),
            closed: AtomicBool::new(false),
        };
        Ok((queue, pending))
    }

    /// Accepts `event`: journals it and starts running it. The answer resolves once the event
    /// is durable; acknowledge the caller only then.
    ///
    /// # Errors
    /// `TooManyRequestsException` when the queue is full.
    pub(crate) fn accept(&self, p: &Platform, event: Event) -> Result<Durable, ApiError> {
        if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::throttled("ConcurrentInvocationLimitExceeded"));
        }
        let record = encode(&Record::Accepted(event.clone()));
        let durable = {
            let mut live = self.live.lock();
            live.journal_bytes += record.len();
            live.events.insert(event.id.clone(), (event.clone(), 0));
            // Under the lock, so a rewrite's snapshot and the journal agree on the order.
            self.journal.append(record)
        };
        tokio::spawn(run(p.clone(), event, 0));
        Ok(durable)
    }

    /// Starts the events replayed at open.
    pub(crate) fn resume(p: &Platform, events: Vec<(Event, u32)>) {
        for (e, attempts) in events {
            tokio::spawn(run(p.clone(), e, attempts));
        }
    }

    /// Stops starting attempts: what is still queued stays in the journal for the next start,
    /// with the attempts it has used (on disk when this returns).
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Err(e) = self.journal.sync().wait().await {
            warn!(error = %e, "cannot sync the asynchronous invocation journal");
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn failed(&self, id: &str, attempts: u32) {
        let record = encode(&Record::Failed {
            id: id.to_owned(),
            attempts,
        });
        let mut live = self.live.lock();
        if let Some(e) = live.events.get_mut(id) {
            e.1 = attempts;
        }
        live.journal_bytes += record.len();
        self.journal.append_lazy(record);
    }

    /// The event will never run again. Not waited for: losing it in a crash runs the event
    /// once more (at least once).
    fn done(&self, id: &str) {
        let record = encode(&Record::Done { id: id.to_owned() });
        let mut live = self.live.lock();
        if live.events.remove(id).is_some() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        live.journal_bytes += record.len();
        if live.journal_bytes > COMPACT_AFTER {
            let records = live_records(live.events.values());
            let kept: usize = records.iter().map(Vec::len).sum();
            if live.journal_bytes > kept.saturating_mul(2) {
                live.journal_bytes = kept;
                drop(self.journal.rewrite(records));
                return;
            }
        }
        self.journal.append_lazy(record);
    }
}

fn live_records<'a>(events: impl Iterator<Item = &'a (Event, u32)>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (e, attempts) in events {
        out.push(encode(&Record::Accepted(e.clone())));
        if *attempts > 0 {
            out.push(encode(&Record::Failed {
                id: e.id.clone(),
                attempts: *attempts,
            }));
        }
    }
    out
}

/// Runs one event to its end: success, failure (to its destinations), or the platform closing.
async fn run(p: Platform, event: Event, mut attempts: u32) {
    let minute = p.config().minute;
    let second = minute / 60;
    let queue = &p.inner.async_queue;
    let mut backoff = second;
    let mut last: Option<(InvokeResult, String)> = None;
    loop {
        if queue.is_closed() {
            return;
        }
        let target = match p.functions().async_target(&event) {
            Ok(t) => t,
            Err(e) => {
                // The function (or the version) was deleted: AWS discards its events.
                warn!(function = %event.function, request_id = %event.id, error = %e, "dropping an asynchronous event");
                queue.done(&event.id);
                return;
            }
        };
        let policy = &target.policy;
        let age_ms = epoch_ms().saturating_sub(event.accepted_ms);
        let max_age = second * policy.max_age_secs;
        if u128::from(age_ms) > max_age.as_millis() {
            finish_failed(
                &p,
                &event,
                policy,
                Condition::EventAgeExceeded,
                attempts,
                last,
            )
            .await;
            return;
        }
        let req = InvokeRequest {
            payload: event.payload(),
            invoked_arn: event.invoked_arn.clone(),
            client_context: event.client_context.clone(),
            log_tail: false,
            request_id: Some(event.id.clone()),
        };
        let executed = target.spec.version.clone();
        // Registered before the attempt, so a slot freed while it is refused is not missed.
        let freed = p.inner.pools.freed.notified();
        let outcome = p
            .inner
            .pools
            .invoke(target.spec.clone(), target.reserved, req)
            .await;
        match outcome {
            Ok(r) if r.function_error.is_none() => {
                debug!(function = %event.function, request_id = %event.id, "asynchronous event done");
                if let Some(dest) = &policy.on_success {
                    let rec = record::invocation(
                        &event,
                        policy,
                        Condition::Success,
                        attempts + 1,
                        Some((&r, executed.as_str())),
                    );
                    record::send(&p, dest, &rec, Condition::Success, &policy.function_arn).await;
                }
                queue.done(&event.id);
                return;
            }
            Ok(r) => {
                if queue.is_closed() {
                    // Ended by the shutdown, not by the function: run it again after restart.
                    return;
                }
                attempts += 1;
                warn!(function = %event.function, request_id = %event.id, attempts, "asynchronous invoke failed");
                last = Some((r, executed));
                if attempts > policy.max_retries {
                    finish_failed(
                        &p,
                        &event,
                        policy,
                        Condition::RetriesExhausted,
                        attempts,
                        last,
                    )
                    .await;
                    return;
                }
                queue.failed(&event.id, attempts);
                // One minute after the first failure, two after the second, as on AWS.
                tokio::time::sleep(minute * attempts).await;
            }
            Err(e) => {
                // Throttled (or a platform fault): back to the queue, attempts unchanged, until
                // an invoke ends somewhere or the back-off (1 s doubling to 5 min, AWS's) passes.
                debug!(function = %event.function, error = %e, "asynchronous invoke throttled");
                let _ = tokio::time::timeout(backoff, freed).await;
                backoff = (backoff * 2).min(minute * 5);
            }
        }
    }
}

async fn finish_failed(
    p: &Platform,
    event: &Event,
    policy: &Policy,
    condition: Condition,
    attempts: u32,
    last: Option<(InvokeResult, String)>,
) {
    warn!(function = %event.function, request_id = %event.id, ?condition, attempts, "asynchronous event failed");
    let response = last.as_ref().map(|(r, v)| (r, v.as_str()));
    if let Some(dest) = &policy.on_failure {
        let rec = record::invocation(event, policy, condition, attempts, response);
        record::send(p, dest, &rec, condition, &policy.function_arn).await;
    }
    if let Some(dlq) = &policy.dead_letter {
        record::dead_letter(p, dlq, event, condition, response).await;
    }
    p.inner.async_queue.done(&event.id);
}

/// What [`crate::functions::Functions::async_target`] resolves for one attempt.
pub(crate) struct Target {
    pub spec: std::sync::Arc<crate::sandbox::FunctionSpec>,
    pub reserved: Option<u32>,
    pub policy: Policy,
}

/// Defaults of `FunctionEventInvokeConfig`.
pub(crate) const DEFAULT_RETRIES: u32 = 2;
pub(crate) const DEFAULT_MAX_AGE_SECS: u32 = 21_600;
