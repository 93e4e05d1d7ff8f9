//! The one engine behind every way to run: a full sync (list → desired → read actual → plan →
//! execute) and an event (one function → the same plan restricted to it). All I/O goes through
//! [`Aws`] and [`Consul`]; every call is retried with backoff when the error is transient, and
//! throttling slows every later call down (adaptive pacing) until calls succeed again.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rand::Rng;
use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::{debug, info, warn};

use crate::{
    aws::{Aws, AwsError},
    config::{Config, ListMode},
    consul::{Consul, ConsulError},
    event::{self, Event},
    metrics::{Metrics, add},
    plan::{self, Actual, Ca, Deletions, Inputs, Plan, ScopeState},
    tags::{self, Desired, Function, Scope, Service},
};

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

trait Retry {
    fn retryable(&self) -> bool;
    fn throttled(&self) -> bool;
}

impl Retry for AwsError {
    fn retryable(&self) -> bool {
        AwsError::retryable(self)
    }
    fn throttled(&self) -> bool {
        matches!(self, AwsError::Throttled(_))
    }
}

impl Retry for ConsulError {
    fn retryable(&self) -> bool {
        ConsulError::retryable(self)
    }
    fn throttled(&self) -> bool {
        false
    }
}

/// Adaptive pacing: throttling raises a shared delay every call waits first; successes shrink
/// it again (in the spirit of the AWS SDKs' adaptive retry mode).
#[derive(Debug, Default)]
struct Pace {
    delay_us: AtomicU64,
}

impl Pace {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
    fn throttled(&self) {
        // ×1.5 on a throttle and ×0.8 on a success: the delay grows only while more than
        // about a third of calls are throttled, and otherwise settles back to zero.
        let cur = self.delay_us.load(Ordering::Relaxed);
        let next = (cur * 3 / 2).clamp(20_000, MAX_BACKOFF.as_micros() as u64);
        self.delay_us.store(next, Ordering::Relaxed);
    }
    fn succeeded(&self) {
        let cur = self.delay_us.load(Ordering::Relaxed);
        if cur > 0 {
            let next = cur * 4 / 5;
            self.delay_us
                .store(if next < 1_000 { 0 } else { next }, Ordering::Relaxed);
        }
    }
}

fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return d;
    }
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
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

/// A function listing.
struct Listing {
    functions: Vec<Function>,
    complete: bool,
    /// Functions whose tags could not be read.
    unreadable: Vec<(String, String)>,
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

    async fn retry<T, E: Retry + std::fmt::Display, F, Fut>(
        &self,
        op: &str,
        counter: &AtomicU64,
        f: F,
    ) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let m = &self.inner.metrics;
        let mut attempt = 0;
        loop {
            let pause = self.inner.pace.delay();
            if !pause.is_zero() {
                tokio::time::sleep(jitter(pause)).await;
            }
            add(counter, 1);
            match f().await {
                Ok(v) => {
                    self.inner.pace.succeeded();
                    return Ok(v);
                }
                Err(e) if e.retryable() && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    add(&m.retries, 1);
                    let wait = if e.throttled() {
                        add(&m.aws_throttled, 1);
                        self.inner.pace.throttled();
                        self.inner.pace.delay()
                    } else {
                        (Duration::from_millis(10) * 2u32.pow(attempt)).min(MAX_BACKOFF)
                    };
                    debug!(op, attempt, error = %e, "retrying");
                    tokio::time::sleep(jitter(wait)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn aws_call<'a, T, F, Fut>(&'a self, op: &str, f: F) -> Result<T, AwsError>
    where
        F: Fn(&'a A) -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let aws = &self.inner.aws;
        self.retry(op, &self.inner.metrics.aws_calls, || f(aws))
            .await
    }

    async fn consul_call<'a, T, F, Fut>(&'a self, op: &str, f: F) -> Result<T, ConsulError>
    where
        F: Fn(&'a C) -> Fut,
        Fut: Future<Output = Result<T, ConsulError>>,
    {
        let consul = &self.inner.consul;
        self.retry(op, &self.inner.metrics.consul_calls, || f(consul))
            .await
    }

    // --- listing ---------------------------------------------------------------------------

    async fn list_tagging(&self) -> Result<Vec<Function>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let page = self
                .aws_call("GetResources", |a| a.get_resources(token.clone()))
                .await?;
            out.extend(page.items);
            match page.next {
                // A token seen before would loop forever: the listing is not trustworthy.
                Some(t) if !seen.insert(t.clone()) => {
                    return Err(AwsError::Failed(format!("GetResources repeated token {t}")));
                }
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    async fn list_functions(&self) -> Listing {
        let mut arns = Vec::new();
        let mut marker: Option<String> = None;
        let mut seen = BTreeSet::new();
        let page_size = self.inner.cfg.page_size;
        let mut complete = true;
        loop {
            match self
                .aws_call("ListFunctions", |a| {
                    a.list_functions(marker.clone(), page_size)
                })
                .await
            {
                Ok(page) => {
                    arns.extend(page.items);
                    match page.next {
                        Some(m) if !seen.insert(m.clone()) => {
                            warn!(marker = %m, "ListFunctions repeated a marker; listing incomplete");
                            complete = false;
                            break;
                        }
                        Some(m) => marker = Some(m),
                        None => break,
                    }
                }
                Err(e) => {
                    warn!(error = %e, "ListFunctions failed; listing incomplete, nothing will be deleted");
                    add(&self.inner.metrics.errors, 1);
                    complete = false;
                    break;
                }
            }
        }
        // Tags of each function at bounded concurrency.
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency));
        let mut set = JoinSet::new();
        for (arn, name) in arns {
            let me = self.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let tags = me.aws_call("ListTags", |a| a.list_tags(arn.clone())).await;
                (arn, name, tags)
            });
        }
        let mut functions = Vec::new();
        let mut unreadable = Vec::new();
        while let Some(r) = set.join_next().await {
            let Ok((arn, name, tags)) = r else { continue };
            match tags {
                Ok(tags) => functions.push(Function { arn, name, tags }),
                // Deleted between the listing and this call: simply gone.
                Err(AwsError::NotFound(_)) => {}
                Err(e) => unreadable.push((name, e.to_string())),
            }
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Listing {
            functions,
            complete,
            unreadable,
        }
    }

    async fn list(&self) -> Listing {
        match self.inner.cfg.list_mode {
            ListMode::Functions => self.list_functions().await,
            mode => match self.list_tagging().await {
                Ok(functions) => Listing {
                    functions,
                    complete: true,
                    unreadable: Vec::new(),
                },
                Err(e) if mode == ListMode::Auto => {
                    warn!(error = %e, "tagging API unavailable; listing with ListFunctions + ListTags");
                    self.list_functions().await
                }
                Err(e) => {
                    warn!(error = %e, "GetResources failed; listing incomplete, nothing will be deleted");
                    add(&self.inner.metrics.errors, 1);
                    Listing {
                        functions: Vec::new(),
                        complete: false,
                        unreadable: Vec::new(),
                    }
                }
            },
        }
    }

    // --- actual state ----------------------------------------------------------------------

    /// The scopes the registrator manages (OSS: one; Enterprise: partitions × namespaces).
    /// `false` when a namespace listing failed.
    async fn base_scopes(&self) -> (BTreeSet<Scope>, bool) {
        let cfg = &self.inner.cfg;
        if !cfg.enterprise {
            return (BTreeSet::from([Scope::default()]), true);
        }
        let mut out = BTreeSet::new();
        let mut ok = true;
        for p in &cfg.partitions {
            match self
                .consul_call("Namespaces", |c| c.namespaces(p.clone()))
                .await
            {
                Ok(list) => out.extend(list.into_iter().map(|ns| Scope {
                    dc: String::new(),
                    partition: p.clone(),
                    namespace: ns,
                })),
                Err(e) => {
                    warn!(partition = %p, error = %e, "cannot list namespaces");
                    add(&self.inner.metrics.errors, 1);
                    ok = false;
                }
            }
        }
        (out, ok)
    }

    async fn read_scopes(&self, scopes: &BTreeSet<Scope>) -> (BTreeMap<Scope, ScopeState>, usize) {
        let node = self.inner.cfg.node_name.clone();
        let mut out = BTreeMap::new();
        let mut errors = 0;
        for scope in scopes {
            let services = self
                .consul_call("CatalogNode", |c| {
                    c.node_services(scope.clone(), node.clone())
                })
                .await;
            let entries = self
                .consul_call("ListServiceDefaults", |c| c.service_defaults(scope.clone()))
                .await;
            match (services, entries) {
                (Ok(s), Ok(entries)) => {
                    out.insert(
                        scope.clone(),
                        ScopeState {
                            owned: s.owned,
                            foreign: s.foreign,
                            entries,
                        },
                    );
                }
                (Err(e), _) | (_, Err(e)) => {
                    warn!(?scope, error = %e, "cannot read Consul state of scope; skipped");
                    errors += 1;
                }
            }
        }
        add(&self.inner.metrics.errors, errors as u64);
        (out, errors)
    }

    /// Like [`Self::read_scopes`] for one function's event: the node's services, but only the
    /// entries of names that can be that function's (its name, `<fn>-*`, and `extra`), so an
    /// event costs the same with 10 or 10,000 services.
    async fn read_scopes_for(
        &self,
        scopes: &BTreeSet<Scope>,
        function: &str,
        extra: &BTreeSet<String>,
    ) -> (BTreeMap<Scope, ScopeState>, usize) {
        let node = self.inner.cfg.node_name.clone();
        let mut out = BTreeMap::new();
        let mut errors = 0;
        let alias_prefix = format!("{function}-");
        for scope in scopes {
            let services = match self
                .consul_call("CatalogNode", |c| {
                    c.node_services(scope.clone(), node.clone())
                })
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    warn!(?scope, error = %e, "cannot read Consul state of scope; skipped");
                    errors += 1;
                    continue;
                }
            };
            let mut names: BTreeSet<String> = services
                .owned
                .iter()
                .filter(|n| *n == function || n.starts_with(&alias_prefix))
                .cloned()
                .collect();
            names.extend(extra.iter().cloned());
            let mut entries = BTreeMap::new();
            let mut ok = true;
            for name in names {
                match self
                    .consul_call("ReadServiceDefaults", |c| {
                        c.service_default(scope.clone(), name.clone())
                    })
                    .await
                {
                    Ok(Some(e)) => {
                        entries.insert(name, e);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(?scope, service = %name, error = %e, "cannot read service-defaults");
                        ok = false;
                    }
                }
            }
            if !ok {
                errors += 1;
                continue;
            }
            out.insert(
                scope.clone(),
                ScopeState {
                    owned: services.owned,
                    foreign: services.foreign,
                    entries,
                },
            );
        }
        add(&self.inner.metrics.errors, errors as u64);
        (out, errors)
    }

    async fn read_params(&self) -> Option<BTreeMap<String, String>> {
        let prefix = self.inner.cfg.extension_data_prefix.clone()?;
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let page = self
                .aws_call("GetParametersByPath", |a| {
                    a.parameters_by_path(format!("{prefix}/"), token.clone())
                })
                .await;
            match page {
                Ok(p) => {
                    out.extend(p.items);
                    match p.next {
                        Some(t) if seen.insert(t.clone()) => token = Some(t),
                        Some(_) | None => return Some(out),
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot read extension data; mTLS material left as is");
                    add(&self.inner.metrics.errors, 1);
                    return None;
                }
            }
        }
    }

    async fn read_ca(&self) -> Option<Ca> {
        if !self.inner.cfg.manages_tls() {
            return None;
        }
        match self.consul_call("CaRoots", |c| c.ca()).await {
            Ok(ca) => Some(ca),
            Err(e) => {
                warn!(error = %e, "cannot read CA roots; mTLS material left as is");
                add(&self.inner.metrics.errors, 1);
                None
            }
        }
    }

    /// Maps a `datacenter` tag equal to the agent's own datacenter to the local scope, so one
    /// catalog is never scanned under two names. `None` when the agent cannot tell.
    async fn normalise_dcs(&self, services: &mut [Service]) -> bool {
        if services.iter().all(|s| s.scope.dc.is_empty()) {
            return true;
        }
        match self
            .consul_call("AgentSelf", |c| c.local_datacenter())
            .await
        {
            Ok(local) => {
                for s in services.iter_mut().filter(|s| s.scope.dc == local) {
                    s.scope.dc.clear();
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot read the local datacenter");
                add(&self.inner.metrics.errors, 1);
                false
            }
        }
    }

    // --- execution -------------------------------------------------------------------------

    /// Runs a plan; returns (upserts, deletes, writes, errors).
    async fn execute(&self, plan: Plan, ca: Option<Ca>) -> (usize, usize, usize, usize) {
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency));
        let ca = Arc::new(ca);
        let mut set: JoinSet<(bool, bool, usize)> = JoinSet::new();
        for u in plan.upserts {
            let me = self.clone();
            let sem = sem.clone();
            let ca = ca.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let (ok, writes) = me.upsert(&u, ca.as_ref().as_ref()).await;
                (ok, true, writes)
            });
        }
        for d in plan.deletes {
            let me = self.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let (ok, writes) = me.delete(&d).await;
                (ok, false, writes)
            });
        }
        let mut errors = 0;
        for path in plan.orphan_params {
            match self
                .aws_call("DeleteParameter", |a| a.delete_parameter(path.clone()))
                .await
            {
                Ok(()) => info!(parameter = %path, "removed orphaned extension data"),
                Err(e) => {
                    warn!(parameter = %path, error = %e, "cannot remove orphaned extension data");
                    errors += 1;
                }
            }
        }
        let (mut upserts, mut deletes, mut writes) = (0, 0, 0);
        let total = set.len();
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            done += 1;
            if done % 500 == 0 {
                info!(done, total, "progress");
            }
            match r {
                Ok((true, true, w)) => {
                    upserts += 1;
                    writes += w;
                }
                Ok((true, false, w)) => {
                    deletes += 1;
                    writes += w;
                }
                Ok((false, _, w)) => {
                    errors += 1;
                    writes += w;
                }
                Err(_) => errors += 1,
            }
        }
        let m = &self.inner.metrics;
        add(&m.upserts, upserts as u64);
        add(&m.deletes, deletes as u64);
        add(&m.writes, writes as u64);
        add(&m.errors, errors as u64);
        (upserts, deletes, writes, errors)
    }

    async fn upsert(&self, u: &plan::Upsert, ca: Option<&Ca>) -> (bool, usize) {
        let s = &u.service;
        let cfg = &self.inner.cfg;
        let mut writes = 0;
        if u.config {
            let entry = plan::expected_entry(s, cfg.legacy_meta);
            if let Err(e) = self
                .consul_call("PutConfig", |c| {
                    c.put_config(s.scope.clone(), entry.clone())
                })
                .await
            {
                warn!(service = %s.name, function = %s.function, error = %e, "cannot write service-defaults");
                return (false, writes);
            }
            writes += 1;
        }
        if u.register {
            let body = plan::registration(&cfg.node_name, &s.name);
            if let Err(e) = self
                .consul_call("Register", |c| c.register(s.scope.clone(), body.clone()))
                .await
            {
                warn!(service = %s.name, function = %s.function, error = %e, "cannot register service");
                return (false, writes);
            }
            writes += 1;
        }
        if u.tls
            && let (Some(prefix), Some(ca)) = (&cfg.extension_data_prefix, ca)
        {
            match self.write_tls(prefix, s, ca).await {
                Ok(()) => writes += 1,
                Err(e) => {
                    warn!(service = %s.name, function = %s.function, error = %e, "cannot write mTLS material");
                    return (false, writes);
                }
            }
        }
        info!(service = %s.name, function = %s.function, config = u.config, register = u.register, tls = u.tls, "upserted");
        (true, writes)
    }

    async fn write_tls(&self, prefix: &str, s: &Service, ca: &Ca) -> Result<(), String> {
        let leaf = self
            .consul_call("Leaf", |c| c.leaf(s.name.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let value = json!({
            "privateKeyPEM": leaf.key_pem,
            "certPEM": leaf.cert_pem,
            "rootCertPEM": ca.root_pem,
            "trustDomain": ca.trust_domain,
        })
        .to_string();
        let path = plan::param_path(prefix, &s.scope, &s.name);
        let tier = self.inner.cfg.extension_data_tier;
        self.aws_call("PutParameter", |a| {
            a.put_parameter(path.clone(), value.clone(), tier)
        })
        .await
        .map_err(|e| e.to_string())
    }

    async fn delete(&self, d: &plan::Delete) -> (bool, usize) {
        let node = self.inner.cfg.node_name.clone();
        let mut writes = 0;
        if d.config {
            if let Err(e) = self
                .consul_call("DeleteConfig", |c| {
                    c.delete_config(d.scope.clone(), d.name.clone())
                })
                .await
            {
                warn!(service = %d.name, error = %e, "cannot delete service-defaults");
                return (false, writes);
            }
            writes += 1;
        }
        if let Err(e) = self
            .consul_call("Deregister", |c| {
                c.deregister(d.scope.clone(), node.clone(), d.name.clone())
            })
            .await
        {
            warn!(service = %d.name, error = %e, "cannot deregister service");
            return (false, writes);
        }
        writes += 1;
        if let Some(p) = &d.param {
            if let Err(e) = self
                .aws_call("DeleteParameter", |a| a.delete_parameter(p.clone()))
                .await
            {
                warn!(service = %d.name, parameter = %p, error = %e, "cannot delete mTLS material");
                return (false, writes);
            }
            writes += 1;
        }
        info!(service = %d.name, "deleted");
        (true, writes)
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
