//! The migration loop: claim the record, apply a step's weight, judge it every interval from
//! the Envoys' figures since the step began, promote, wait, or roll back to 0 at once; stop
//! without writing when someone else changed the splitter or the record; on SIGINT/SIGTERM
//! leave the last healthy weight. Every state is written to the record (check-and-set) before
//! it is printed, so `--status`, the UI and a second operator see what the terminal sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use consul_client::Client;
use mesh_model::migration::record::{
    MigrationRecord, MigrationState, RecordThresholds, StepRecord,
};
use mesh_model::migration::{self as model, Verdict, Window};
use serde_json::Value;

use super::control::{self, Splitter};
use super::scrape::{self, Sources};
use super::{EXIT_INTERRUPTED, EXIT_STOPPED, Plan, age, me, ms, now_text, pct, say};

/// A running migration whose owner has not written for this long may be taken over.
pub fn stale_after(rec: &MigrationRecord) -> Duration {
    let interval =
        model::parse_duration("interval", &rec.interval).unwrap_or(Duration::from_secs(30));
    interval * 3
}

fn plan_of(rec: &MigrationRecord) -> Plan {
    Plan {
        service: rec.service.clone(),
        target: rec.target.clone(),
        steps: rec.steps.clone(),
        interval: model::parse_duration("interval", &rec.interval)
            .unwrap_or(Duration::from_secs(30)),
        interval_text: rec.interval.clone(),
        thresholds: model::Thresholds {
            max_error_rate: rec.thresholds.max_error_rate,
            max_p99_ms: rec.thresholds.max_p99_ms,
            min_requests: rec.thresholds.min_requests,
        },
    }
}

/// Checks the services, finds the Envoys, claims the record (or resumes it) and runs.
pub fn start(client: &Client, plan: Plan, dry_run: bool) -> anyhow::Result<u8> {
    for (role, name) in [("service", &plan.service), ("target", &plan.target)] {
        if control::instances(client, name)? == 0 {
            bail!("unknown {role} {name:?}: it has no instance in the catalog");
        }
    }
    for name in [&plan.target, &plan.service] {
        let protocol = control::protocol(client, name)?;
        if protocol != "http" {
            bail!(
                "{name:?} speaks {protocol:?}: a migration splits http traffic; set Protocol = \"http\" in its service-defaults"
            );
        }
    }
    let existing = control::record(client, &plan.service)?;
    let splitter = control::splitter(client, &plan.service)?;
    let mut resume = None;
    if let Some((rec, index)) = &existing {
        let resumable = match rec.state {
            MigrationState::Running => {
                let since = age(&rec.owner.heartbeat_at);
                if since.is_some_and(|a| a <= stale_after(rec)) {
                    bail!(
                        "a migration of {:?} to {:?} is running (owner {} pid {}, heartbeat {}s ago): wait for it, see it with --status, or stop it with --abort",
                        rec.service,
                        rec.target,
                        rec.owner.host,
                        rec.owner.pid,
                        since.map_or(0, |a| a.as_secs())
                    );
                }
                true
            }
            MigrationState::Interrupted => true,
            _ => false,
        };
        if resumable {
            if rec.target != plan.target {
                bail!(
                    "the unfinished migration of {:?} goes to {:?}, not {:?}: resume it with --to {:?}, or --abort it first",
                    rec.service,
                    rec.target,
                    plan.target,
                    rec.target
                );
            }
            let now = splitter.as_ref().map_or(0, |s| s.modify_index);
            if now != rec.splitter_modify_index {
                bail!(
                    "the service-splitter {:?} changed since the migration stopped (ModifyIndex {} → {now}): --abort it, then start again",
                    rec.service,
                    rec.splitter_modify_index
                );
            }
            resume = Some((rec.clone(), *index));
        }
    }
    let plan = match &resume {
        Some((rec, _)) => plan_of(rec),
        None => plan,
    };
    let sources = scrape::discover(client, &plan.service, &plan.target)?;
    if dry_run {
        return dry(
            &plan,
            splitter.as_ref(),
            &sources,
            resume.as_ref().map(|r| &r.0),
        );
    }
    if sources.callers.is_empty() && sources.gateways.is_empty() {
        bail!(
            "no Envoy that sees {:?}'s traffic exposes metrics: give its callers' sidecars (or the terminating gateway of {:?}) envoy_prometheus_bind_addr in their proxy Config",
            plan.service,
            plan.target
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    crate::up::watch_signals(stop.clone());
    let (rec, rec_cas) = match resume {
        Some((mut rec, index)) => {
            say(format!(
                "resuming the migration of {} to {} at step {}/{} ({}%), from its record",
                rec.service,
                rec.target,
                rec.step_index + 1,
                rec.steps.len(),
                rec.steps[rec.step_index.min(rec.steps.len() - 1)]
            ))?;
            rec.state = MigrationState::Running;
            rec.reason.clear();
            rec.owner = me();
            (rec, index)
        }
        None => {
            let now = now_text();
            let current = splitter
                .as_ref()
                .map_or(0.0, |s| model::weight_in(&s.json, &plan.target));
            let rec = MigrationRecord {
                service: plan.service.clone(),
                target: plan.target.clone(),
                steps: plan.steps.clone(),
                interval: plan.interval_text.clone(),
                thresholds: RecordThresholds {
                    max_error_rate: plan.thresholds.max_error_rate,
                    max_p99_ms: plan.thresholds.max_p99_ms,
                    min_requests: plan.thresholds.min_requests,
                },
                state: MigrationState::Running,
                step_index: 0,
                weight: current.round().clamp(0.0, 100.0) as u8,
                last_healthy_weight: 0,
                reason: String::new(),
                owner: me(),
                splitter_modify_index: splitter.as_ref().map_or(0, |s| s.modify_index),
                started_at: now.clone(),
                updated_at: now,
                history: Vec::new(),
            };
            (rec, existing.as_ref().map_or(0, |(_, i)| *i))
        }
    };
    let Some(rec_index) = control::put_record(client, &rec, rec_cas)? else {
        bail!(
            "another migrate of {:?} wrote its record at the same moment: see it with --status",
            plan.service
        );
    };
    let mut m = Migration {
        client,
        plan,
        splitter_json: splitter.map(|s| s.json),
        rec,
        rec_index,
        sources,
        stop,
    };
    m.run()
}

fn dry(
    plan: &Plan,
    splitter: Option<&Splitter>,
    sources: &Sources,
    resume: Option<&MigrationRecord>,
) -> anyhow::Result<u8> {
    say(format!(
        "dry run: {} → {}, steps {:?}, every {}; roll back when the target's error rate > {} or p99 > {:.0}ms; a step needs {} requests at the target",
        plan.service,
        plan.target,
        plan.steps,
        plan.interval_text,
        pct(plan.thresholds.max_error_rate),
        plan.thresholds.max_p99_ms,
        plan.thresholds.min_requests
    ))?;
    if let Some(rec) = resume {
        say(format!(
            "would resume the {} migration at step {}/{}",
            rec.state.as_str(),
            rec.step_index + 1,
            rec.steps.len()
        ))?;
    }
    match splitter {
        Some(s) => say(format!(
            "service-splitter {:?} now: {}% to {} (ModifyIndex {})",
            plan.service,
            model::weight_in(&s.json, &plan.target),
            plan.target,
            s.modify_index
        ))?,
        None => say(format!(
            "no service-splitter {:?} yet: the first step creates it",
            plan.service
        ))?,
    }
    for s in &sources.callers {
        say(format!("caller Envoy {}: {}", s.proxy, s.url))?;
    }
    for s in &sources.gateways {
        say(format!("gateway Envoy {}: {}", s.proxy, s.url))?;
    }
    if sources.callers.is_empty() && sources.gateways.is_empty() {
        say("no Envoy exposes metrics for this traffic: the migration would be refused")?;
        return Ok(1);
    }
    let first = model::splitter(
        &plan.service,
        &plan.target,
        plan.steps[0],
        splitter.map(|s| &s.json),
    );
    say(format!("first write (check-and-set): {first}"))?;
    say("nothing was written")?;
    Ok(0)
}

/// Aborts SERVICE's migration: the record `aborted` first (a running owner sees it and stops
/// before writing again), then the splitter back to 0 (check-and-set on what was just read).
pub fn abort(client: &Client, service: &str) -> anyhow::Result<u8> {
    let (mut rec, index) = loop_record(client, service, |rec| {
        if rec.state.is_finished() && rec.state != MigrationState::Interrupted {
            return None;
        }
        let me = me();
        let mut rec = rec.clone();
        rec.state = MigrationState::Aborted;
        rec.reason = format!("aborted by {} pid {} at {}%", me.host, me.pid, rec.weight);
        rec.updated_at = now_text();
        Some(rec)
    })?;
    if rec.state != MigrationState::Aborted {
        say(format!(
            "the migration of {service} is already {}; nothing to abort",
            rec.state.as_str()
        ))?;
        return Ok(0);
    }
    let mut modify = 0;
    for attempt in 0.. {
        let Some(s) = control::splitter(client, service)? else {
            break;
        };
        let entry = model::splitter(service, &rec.target, 0, Some(&s.json));
        if let Some(i) =
            control::put_splitter(client, service, &rec.target, &entry, s.modify_index)?
        {
            modify = i;
            break;
        }
        if attempt == 4 {
            bail!(
                "the service-splitter {service:?} kept changing; the record says aborted, the splitter was not written"
            );
        }
    }
    rec.weight = 0;
    rec.splitter_modify_index = modify;
    // The record said `aborted` already; this only adds the splitter's new index.
    let _ = control::put_record(client, &rec, index)?;
    say(format!(
        "aborted: {service} sends 0% to {} (service-splitter ModifyIndex {modify})",
        rec.target
    ))?;
    Ok(0)
}

/// Reads the record and writes `change(record)` with check-and-set, retrying on a race. The
/// record as written (or as found, when `change` declines) and its index.
fn loop_record(
    client: &Client,
    service: &str,
    change: impl Fn(&MigrationRecord) -> Option<MigrationRecord>,
) -> anyhow::Result<(MigrationRecord, u64)> {
    for _ in 0..5 {
        let Some((rec, index)) = control::record(client, service)? else {
            bail!("no migration of {service:?} recorded: nothing to abort");
        };
        let Some(new) = change(&rec) else {
            return Ok((rec, index));
        };
        if let Some(i) = control::put_record(client, &new, index)? {
            return Ok((new, i));
        }
    }
    bail!("the record of {service:?} kept changing; try again")
}

struct Migration<'a> {
    client: &'a Client,
    plan: Plan,
    splitter_json: Option<Value>,
    rec: MigrationRecord,
    rec_index: u64,
    sources: Sources,
    stop: Arc<AtomicBool>,
}

/// How an interval ended, beyond its verdict.
enum Interrupt {
    Signal,
    SplitterChanged(u64),
    RecordChanged(Option<Box<MigrationRecord>>),
}

impl Migration<'_> {
    fn run(&mut self) -> anyhow::Result<u8> {
        say(format!(
            "migrating {} → {}: steps {:?}, every {}, roll back when the target's error rate > {} or p99 > {:.0}ms, {} requests per step; Envoys: {} caller(s), {} gateway(s)",
            self.plan.service,
            self.plan.target,
            self.plan.steps,
            self.plan.interval_text,
            pct(self.plan.thresholds.max_error_rate),
            self.plan.thresholds.max_p99_ms,
            self.plan.thresholds.min_requests,
            self.sources.callers.len(),
            self.sources.gateways.len()
        ))?;
        while self.rec.step_index < self.plan.steps.len() {
            let i = self.rec.step_index;
            let weight = self.plan.steps[i];
            if !self.set_weight(weight)? {
                return self.stopped(None);
            }
            let baseline = scrape::scrape(&self.sources, &self.plan.service, &self.plan.target);
            self.rec.history.push(StepRecord {
                weight,
                started_at: now_text(),
                outcome: "waiting".into(),
                ..StepRecord::default()
            });
            if !self.save()? {
                return self.record_lost();
            }
            say(format!(
                "step {}/{}: {}% to {} (splitter ModifyIndex {})",
                i + 1,
                self.plan.steps.len(),
                weight,
                self.plan.target,
                self.rec.splitter_modify_index
            ))?;
            loop {
                if let Some(why) = self.sleep_interval()? {
                    return self.interrupted(why);
                }
                let now = scrape::scrape(&self.sources, &self.plan.service, &self.plan.target);
                for f in &now.failed {
                    say(format!("  warning: no metrics from {f}"))?;
                }
                let verdict = self.record_figures(&now, &baseline);
                let target = self.target_window(&now, &baseline);
                match verdict {
                    Verdict::Promote => {
                        self.rec.last_healthy_weight = weight;
                        self.end_step("promoted");
                        say(format!("  → healthy at {weight}%"))?;
                        if weight == 100 {
                            self.rec.state = MigrationState::Succeeded;
                            self.rec.reason = format!("{} receives 100%", self.plan.target);
                            if !self.save()? {
                                return self.record_lost();
                            }
                            say(format!(
                                "done: {} receives 100% of {}'s traffic",
                                self.plan.target, self.plan.service
                            ))?;
                            return Ok(0);
                        }
                        self.rec.step_index += 1;
                        break;
                    }
                    Verdict::Wait { reason } => {
                        if !self.save()? {
                            return self.record_lost();
                        }
                        say(format!(
                            "  → waiting: {reason}; next check in {}",
                            self.plan.interval_text
                        ))?;
                    }
                    Verdict::Rollback(breach) => {
                        let started = Instant::now();
                        if !self.set_weight(0)? {
                            return self.stopped(Some(format!("{breach}")));
                        }
                        let took = started.elapsed();
                        self.end_step("rolled_back");
                        self.rec.state = MigrationState::RolledBack;
                        self.rec.reason = breach.to_string();
                        // The record is the second write: the traffic is safe already.
                        if !self.save()? {
                            return self.record_lost();
                        }
                        say(format!(
                            "rolled back to 0%: {} crossed: {breach} (target p99 {}); splitter written in {} ms",
                            breach.threshold(),
                            ms(target.p99_ms),
                            took.as_millis()
                        ))?;
                        return Ok(1);
                    }
                }
            }
        }
        Ok(0)
    }

    fn target_window(&self, now: &scrape::Scrape, baseline: &scrape::Scrape) -> Window {
        let callers = scrape::window(&now.callers, &baseline.callers);
        if self.sources.callers.is_empty() {
            scrape::window(&now.gateways, &baseline.gateways)
                .target
                .window()
        } else {
            callers.target.window()
        }
    }

    /// Puts the step's figures so far into the record's history, prints them, and judges.
    fn record_figures(&mut self, now: &scrape::Scrape, baseline: &scrape::Scrape) -> Verdict {
        let callers = scrape::window(&now.callers, &baseline.callers);
        let gateways = scrape::window(&now.gateways, &baseline.gateways);
        let target = self.target_window(now, baseline);
        let mut all = callers.target.clone();
        all.merge(&callers.rest);
        let all = if self.sources.callers.is_empty() {
            target
        } else {
            all.window()
        };
        let rest = callers.rest.window();
        let verdict = model::judge(&target, &self.plan.thresholds);
        if let Some(step) = self.rec.history.last_mut() {
            step.requests = all.requests;
            step.errors = all.errors;
            step.error_rate = all.error_rate();
            step.p99_ms = all.p99_ms;
            step.target_requests = target.requests;
            step.target_errors = target.errors;
            step.target_error_rate = target.error_rate();
            step.target_p99_ms = target.p99_ms;
        }
        let gw = gateways.target.window();
        let gateway = if self.sources.gateways.is_empty() {
            String::new()
        } else {
            format!(" | gateway {} req {} err", gw.requests, gw.errors)
        };
        let line = format!(
            "  step {}/{} {:>3}%  {}: {} req, {} errors ({}), p99 {} | {}: {} req, {} errors, p99 {}{gateway}",
            self.rec.step_index + 1,
            self.plan.steps.len(),
            self.rec.weight,
            self.plan.target,
            target.requests,
            target.errors,
            pct(target.error_rate()),
            ms(target.p99_ms),
            self.plan.service,
            rest.requests,
            rest.errors,
            ms(rest.p99_ms),
        );
        // A closed stdout must not stop a migration halfway: the record has the figures.
        let _ = say(line);
        verdict
    }

    fn end_step(&mut self, outcome: &str) {
        if let Some(step) = self.rec.history.last_mut() {
            step.outcome = outcome.into();
            step.ended_at = now_text();
        }
    }

    /// Writes TARGET's weight with check-and-set on the splitter we last wrote (or found).
    /// `false`: someone else changed it; nothing was written.
    fn set_weight(&mut self, weight: u8) -> anyhow::Result<bool> {
        let entry = model::splitter(
            &self.plan.service,
            &self.plan.target,
            weight,
            self.splitter_json.as_ref(),
        );
        if self.splitter_json.is_some()
            && self.rec.weight == weight
            && self
                .splitter_json
                .as_ref()
                .is_some_and(|j| model::weight_in(j, &self.plan.target) == f64::from(weight))
        {
            return Ok(true);
        }
        match control::put_splitter(
            self.client,
            &self.plan.service,
            &self.plan.target,
            &entry,
            self.rec.splitter_modify_index,
        )? {
            Some(index) => {
                self.rec.splitter_modify_index = index;
                self.rec.weight = weight;
                self.splitter_json = Some(entry);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes the record with a fresh heartbeat; `false` when someone else wrote it.
    fn save(&mut self) -> anyhow::Result<bool> {
        self.rec.owner.heartbeat_at = now_text();
        self.rec.updated_at = self.rec.owner.heartbeat_at.clone();
        match control::put_record(self.client, &self.rec, self.rec_index)? {
            Some(i) => {
                self.rec_index = i;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Sleeps one interval, watching the signal flag, the splitter and the record (a blocking
    /// read would be quicker to notice; polling every 250 ms bounds it well below an interval).
    fn sleep_interval(&mut self) -> anyhow::Result<Option<Interrupt>> {
        let deadline = Instant::now() + self.plan.interval;
        let mut next_check = Instant::now();
        while Instant::now() < deadline {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(Some(Interrupt::Signal));
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + Duration::from_millis(250);
                match control::record(self.client, &self.plan.service)? {
                    Some((_, i)) if i == self.rec_index => {}
                    other => {
                        return Ok(Some(Interrupt::RecordChanged(
                            other.map(|(r, _)| Box::new(r)),
                        )));
                    }
                }
                let now = control::splitter(self.client, &self.plan.service)?
                    .map_or(0, |s| s.modify_index);
                if now != self.rec.splitter_modify_index {
                    return Ok(Some(Interrupt::SplitterChanged(now)));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    fn interrupted(&mut self, why: Interrupt) -> anyhow::Result<u8> {
        match why {
            Interrupt::Signal => {
                let healthy = self.rec.last_healthy_weight;
                let left = if self.rec.weight != healthy && self.set_weight(healthy)? {
                    format!("set back to the last healthy weight, {healthy}%")
                } else if self.rec.weight == healthy {
                    format!("left at the last healthy weight, {healthy}%")
                } else {
                    return self.stopped(None);
                };
                self.end_step("interrupted");
                self.rec.state = MigrationState::Interrupted;
                self.rec.reason = format!(
                    "interrupted at step {}/{}; {} receives {healthy}%",
                    self.rec.step_index + 1,
                    self.plan.steps.len(),
                    self.plan.target
                );
                let saved = self.save()?;
                say(format!(
                    "interrupted: {} {left}; run the same command to resume, or --abort{}",
                    self.plan.target,
                    if saved {
                        ""
                    } else {
                        " (the record could not be updated: someone else wrote it)"
                    }
                ))?;
                Ok(EXIT_INTERRUPTED)
            }
            Interrupt::SplitterChanged(now) => {
                say(format!(
                    "stopped: the service-splitter {:?} was changed by someone else (ModifyIndex {} → {now}); nothing was overwritten",
                    self.plan.service, self.rec.splitter_modify_index
                ))?;
                self.stopped_record(format!(
                    "the service-splitter was changed by someone else (ModifyIndex {} → {now})",
                    self.rec.splitter_modify_index
                ))
            }
            Interrupt::RecordChanged(rec) => self.record_changed(rec.map(|r| *r)),
        }
    }

    fn record_lost(&mut self) -> anyhow::Result<u8> {
        let rec = control::record(self.client, &self.plan.service)?.map(|(r, _)| r);
        self.record_changed(rec)
    }

    fn record_changed(&mut self, rec: Option<MigrationRecord>) -> anyhow::Result<u8> {
        match rec {
            Some(r) if r.state == MigrationState::Aborted => {
                say(format!("stopped: {}", r.reason))?;
                Ok(1)
            }
            Some(r) => {
                say(format!(
                    "stopped: the migration record was written by someone else ({} pid {}, {}); this run leaves it to them",
                    r.owner.host,
                    r.owner.pid,
                    r.state.as_str()
                ))?;
                Ok(EXIT_STOPPED)
            }
            None => {
                say("stopped: the migration record was deleted by someone else")?;
                Ok(EXIT_STOPPED)
            }
        }
    }

    /// The splitter moved under us: write nothing to it, say so in the record.
    fn stopped(&mut self, breach: Option<String>) -> anyhow::Result<u8> {
        let now = control::splitter(self.client, &self.plan.service)?.map_or(0, |s| s.modify_index);
        let mut reason = format!(
            "the service-splitter was changed by someone else (ModifyIndex {} → {now})",
            self.rec.splitter_modify_index
        );
        if let Some(b) = breach {
            reason.push_str(&format!(" while rolling back for {b}"));
        }
        say(format!("stopped: {reason}; nothing was overwritten"))?;
        self.stopped_record(reason)
    }

    fn stopped_record(&mut self, reason: String) -> anyhow::Result<u8> {
        self.end_step("stopped");
        self.rec.state = MigrationState::Stopped;
        self.rec.reason = reason;
        if !self.save()? {
            say("  (the record could not be updated: someone else wrote it)")?;
        }
        Ok(EXIT_STOPPED)
    }
}
