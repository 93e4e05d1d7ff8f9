//! The one engine behind every way to run: a full sync (list → desired → read actual → plan →
//! execute) and an event (one function → the same plan restricted to it). All I/O goes through
//! [`Aws`] and [`Consul`]; every call is retried with backoff when the error is transient, and
//! throttling slows every later call down (adaptive pacing) until calls succeed again.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracing::{debug, info, warn};

use crate::{
    aws::Aws,
    config::Config,
    consul::Consul,
    event::{self, Event},
    metrics::{Metrics, add},
    plan::{self, Actual, Deletions, Inputs, ScopeState},
    tags::{self, Desired, Scope},
};

mod execute;
mod read;
mod retry;

use retry::Pace;

/// Attempts per call before giving up (0.2⁸ ≈ 3·10⁻⁶ under 20 % failures).
const MAX_ATTEMPTS: u32 = 8;
/// Longest pause between attempts (the reference's SDK used 3 s too).
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// What a full sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub functions_seen: usize,
    pub services_desired: usize,
    pub upserts: usize,
    pub deletes: usize,
    pub writes: usize,
    pub errors: usize,
    /// The listing was complete (deletions were allowed).
    pub complete: bool,
    pub aws_calls: u64,
    pub consul_calls: u64,
    pub duration: Duration,
}

/// What handling one event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// A full sync ran.
    FullSync(SyncReport),
    /// One function was reconciled.
    Function {
        function: String,
        upserts: usize,
        deletes: usize,
    },
    /// Nothing to do, and why.
    Skipped(String),
}

/// Why an event failed (the invocation should fail so it is retried).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("bad event: {0}")]
    Event(#[from] event::EventError),
    #[error("function {function}: {reason}")]
    Function { function: String, reason: String },
    #[error("{errors} error(s) while syncing {what}")]
    Errors { what: String, errors: usize },
}

struct Inner<A, C> {
    cfg: Config,
    aws: A,
    consul: C,
    metrics: Arc<Metrics>,
    pace: Pace,
}

/// The registrator engine.
pub struct Engine<A, C> {
    inner: Arc<Inner<A, C>>,
}

impl<A, C> Clone for Engine<A, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Aws, C: Consul> Engine<A, C> {
    /// An engine over these clients.
    pub fn new(cfg: Config, aws: A, consul: C) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                aws,
                consul,
                metrics: Arc::new(Metrics::default()),
                pace: Pace::default(),
            }),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// The AWS client (the daemon reads its queue through it).
    pub fn aws(&self) -> &A {
        &self.inner.aws
    }

    // --- entry points ----------------------------------------------------------------------

    /// One full reconciliation of every function against Consul and Parameter Store.
    pub async fn full_sync(&self) -> SyncReport {
        let started = Instant::now();
        let m = self.inner.metrics.clone();
        let (aws0, consul0) = (
            m.aws_calls.load(Ordering::Relaxed),
            m.consul_calls.load(Ordering::Relaxed),
        );
        let errors0 = m.errors.load(Ordering::Relaxed);
        add(&m.full_syncs, 1);
        let listing = self.list().await;
        info!(
            functions = listing.functions.len(),
            unreadable = listing.unreadable.len(),
            complete = listing.complete,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "functions listed"
        );
        let mut complete = listing.complete;
        let mut protect: BTreeSet<String> = BTreeSet::new();
        for (name, reason) in &listing.unreadable {
            warn!(function = %name, reason = %reason, "cannot read function; its services are kept");
            protect.insert(name.clone());
        }
        add(&m.errors, listing.unreadable.len() as u64);
        let mut desired = Vec::new();
        for f in &listing.functions {
            match tags::desired(f, &self.inner.cfg) {
                Ok(Desired::Enabled(s)) => desired.extend(s),
                Ok(Desired::Disabled { .. }) => {}
                Ok(Desired::Ignored(why)) => debug!(function = %f.name, why, "ignored"),
                Err(e) => {
                    warn!(function = %f.name, reason = %e, "bad tag; function skipped, its services are kept");
                    add(&m.errors, 1);
                    protect.insert(f.name.clone());
                }
            }
        }
        complete &= self.normalise_dcs(&mut desired).await;
        let (mut scopes, scopes_ok) = self.base_scopes().await;
        complete &= scopes_ok;
        scopes.extend(desired.iter().map(|s| s.scope.clone()));
        let (states, _) = self.read_scopes(&scopes).await;
        let ca = self.read_ca().await;
        let params = match ca {
            Some(_) => self.read_params().await,
            None => None,
        };
        let actual = Actual {
            scopes: states,
            params,
        };
        let p = plan::plan(
            &Inputs {
                desired: &desired,
                protect: &protect,
                deletions: if complete {
                    Deletions::All
                } else {
                    Deletions::None
                },
                prefix: self.inner.cfg.extension_data_prefix.as_deref(),
                ca: ca.as_ref(),
                legacy_meta: self.inner.cfg.legacy_meta,
                now: time::OffsetDateTime::now_utc(),
            },
            &actual,
        );
        for (scope, name) in &p.conflicts {
            warn!(service = %name, ?scope, "name taken by a service the registrator does not own (or by another function); skipped");
        }
        add(&m.errors, (p.conflicts.len() + p.unreadable.len()) as u64);
        if !complete {
            add(&m.incomplete_syncs, 1);
        }
        info!(
            upserts = p.upserts.len(),
            deletes = p.deletes.len(),
            orphan_parameters = p.orphan_params.len(),
            deletions_allowed = complete,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plan ready"
        );
        let (upserts, deletes, writes, _) = self.execute(p, ca).await;
        add(&m.functions_seen, listing.functions.len() as u64);
        let report = SyncReport {
            functions_seen: listing.functions.len() + listing.unreadable.len(),
            services_desired: desired.len(),
            upserts,
            deletes,
            writes,
            errors: (m.errors.load(Ordering::Relaxed) - errors0) as usize,
            complete,
            aws_calls: m.aws_calls.load(Ordering::Relaxed) - aws0,
            consul_calls: m.consul_calls.load(Ordering::Relaxed) - consul0,
            duration: started.elapsed(),
        };
        info!(
            functions = report.functions_seen,
            services = report.services_desired,
            upserts = report.upserts,
            deletes = report.deletes,
            writes = report.writes,
            errors = report.errors,
            complete = report.complete,
            aws_calls = report.aws_calls,
            consul_calls = report.consul_calls,
            duration_ms = report.duration.as_millis() as u64,
            "full sync done"
        );
        report
    }

    /// Reconciles one function (by name or ARN) after an API call on it.
    ///
    /// # Errors
    /// The function cannot be read or its tags are bad (nothing is deleted then), or a write
    /// failed after retries.
    pub async fn reconcile_function(&self, reference: &str) -> Result<EventOutcome, EngineError> {
        let fail = |reason: String| EngineError::Function {
            function: reference.to_owned(),
            reason,
        };
        // Tags belong to the function, not to a version or alias: read it unqualified.
        let unqualified = tags::unqualified(reference);
        let found = self
            .aws_call("GetFunction", |a| a.get_function(unqualified.clone()))
            .await
            .map_err(|e| fail(format!("cannot read it (nothing deleted): {e}")))?;
        let name = found.as_ref().map_or_else(
            || tags::function_name(reference).to_owned(),
            |f| f.name.clone(),
        );
        let mut desired = Vec::new();
        let mut names = BTreeSet::new();
        match &found {
            None => info!(function = %name, "function is gone"),
            Some(f) => match tags::desired(f, &self.inner.cfg).map_err(|e| fail(e.to_string()))? {
                Desired::Enabled(s) => desired = s,
                Desired::Disabled { scope, names: n } => {
                    names.extend(n.into_iter().map(|n| (scope.clone(), n)));
                }
                Desired::Ignored(why) => return Ok(EventOutcome::Skipped(why)),
            },
        }
        if !self.normalise_dcs(&mut desired).await {
            return Err(fail("cannot read the local datacenter".into()));
        }
        let (mut scopes, _) = self.base_scopes().await;
        scopes.extend(desired.iter().map(|s| s.scope.clone()));
        scopes.extend(names.iter().map(|(s, _)| s.clone()));
        let mut candidates: BTreeSet<String> = desired.iter().map(|s| s.name.clone()).collect();
        candidates.extend(names.iter().map(|(_, n)| n.clone()));
        let (states, scope_errors) = self.read_scopes_for(&scopes, &name, &candidates).await;
        let ca = self.read_ca().await;
        // Only this function's parameters are read; deletions remove theirs unconditionally.
        let params = match (&ca, &self.inner.cfg.extension_data_prefix) {
            (Some(_), Some(prefix)) => {
                let mut map = BTreeMap::new();
                let mut ok = true;
                for s in &desired {
                    let path = plan::param_path(prefix, &s.scope, &s.name);
                    match self
                        .aws_call("GetParameter", |a| a.get_parameter(path.clone()))
                        .await
                    {
                        Ok(Some(v)) => {
                            map.insert(path, v);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(parameter = %path, error = %e, "cannot read extension data");
                            ok = false;
                        }
                    }
                }
                ok.then_some(map)
            }
            _ => None,
        };
        let protect = BTreeSet::new();
        let mut p = plan::plan(
            &Inputs {
                desired: &desired,
                protect: &protect,
                deletions: Deletions::Only {
                    functions: BTreeSet::from([name.clone()]),
                    names,
                },
                prefix: self.inner.cfg.extension_data_prefix.as_deref(),
                ca: ca.as_ref(),
                legacy_meta: self.inner.cfg.legacy_meta,
                now: time::OffsetDateTime::now_utc(),
            },
            &actual_of(states, params),
        );
        if let Some(prefix) = &self.inner.cfg.extension_data_prefix {
            for d in &mut p.deletes {
                d.param = Some(plan::param_path(prefix, &d.scope, &d.name));
            }
        }
        let conflicts = p.conflicts.len() + p.unreadable.len();
        for (scope, svc) in &p.conflicts {
            warn!(service = %svc, ?scope, "name taken by a service the registrator does not own; skipped");
        }
        let (upserts, deletes, _, errors) = self.execute(p, ca).await;
        let errors = errors + conflicts + scope_errors;
        if errors > 0 {
            return Err(EngineError::Errors {
                what: format!("function {name}"),
                errors,
            });
        }
        Ok(EventOutcome::Function {
            function: name,
            upserts,
            deletes,
        })
    }

    /// Handles one invocation payload (scheduled event or CloudTrail event).
    ///
    /// # Errors
    /// See [`EngineError`]; unknown or failed API calls are skipped, not errors.
    pub async fn handle(&self, payload: &Value) -> Result<EventOutcome, EngineError> {
        let m = self.inner.metrics.clone();
        add(&m.events, 1);
        let result = match event::decode(payload) {
            Ok(Event::FullSync) => {
                let r = self.full_sync().await;
                // Only an incomplete listing is worth an immediate retry; per-function errors
                // (a bad tag) would fail every retry too and wait for the next schedule.
                if !r.complete {
                    Err(EngineError::Errors {
                        what: "the full sync (incomplete listing)".into(),
                        errors: r.errors,
                    })
                } else {
                    Ok(EventOutcome::FullSync(r))
                }
            }
            Ok(Event::Skip(why)) => {
                info!(why, "event skipped");
                Ok(EventOutcome::Skipped(why))
            }
            Ok(Event::Function { call, function }) => {
                info!(call = call.as_str(), function = %function, "event");
                self.reconcile_function(&function).await
            }
            Err(e) => Err(e.into()),
        };
        match &result {
            Ok(EventOutcome::Skipped(_)) => add(&m.events_skipped, 1),
            Ok(_) => {}
            Err(e) => {
                add(&m.events_failed, 1);
                warn!(error = %e, "event failed");
            }
        }
        result
    }
}

fn actual_of(
    scopes: BTreeMap<Scope, ScopeState>,
    params: Option<BTreeMap<String, String>>,
) -> Actual {
    Actual { scopes, params }
}
