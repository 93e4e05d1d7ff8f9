//! Following the log: an etcd watch on `log/` from the last revision this replica has seen
//! applies every entry in index order to the replica's state and wakes the blocking queries whose
//! keys it touched, whichever replica wrote it. A watch that fell behind a compaction (or was
//! cancelled, or saw a gap) is replaced by a resync from the snapshot and the log, logged as such:
//! never a missed change.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};

use super::{Ctx, Decoded, decode_entry, load};
use crate::state::{State, WatchKey};

/// Applies one entry's records above the state's index; returns the keys they touched.
pub(crate) fn apply_records(state: &mut State, records: &[Decoded]) -> Vec<WatchKey> {
    let mut touched = Vec::new();
    for r in records {
        match r {
            Decoded::Op(rec) if rec.index > state.index() => {
                match state.apply(&rec.op, rec.index) {
                    Ok(Some(keys)) => touched.extend(keys),
                    Ok(None) => {}
                    // Ops are validated before they are appended and apply deterministically;
                    // keep going so one bad record does not hide the rest.
                    Err(e) => {
                        tracing::error!(index = rec.index, error = %e, "log record no longer applies; skipped")
                    }
                }
                state.force_index(rec.index);
            }
            Decoded::Unreadable { index, error } if *index > state.index() => {
                tracing::error!(index, error = %error, "log record does not read; skipped");
                state.force_index(*index);
            }
            _ => {}
        }
    }
    touched
}

enum Step {
    /// Keep watching from this revision.
    Continue(i64),
    /// Load again from etcd (compaction, cancellation, a gap).
    Resync(String),
}

pub(crate) async fn run(ctx: Arc<Ctx>, revision: i64) {
    let mut next = revision + 1;
    let mut backoff = Duration::from_millis(100);
    loop {
        match watch_once(&ctx, next).await {
            Step::Continue(rev) => {
                next = rev;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Step::Resync(why) => {
                tracing::warn!(reason = %why, from_revision = next, "etcd log watch lost its place; resyncing from the snapshot and the log");
                match resync(&ctx).await {
                    Ok(rev) => {
                        next = rev + 1;
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        ctx.shared.contact.failed();
                        tracing::warn!(error = %e, "resync from etcd failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }
}

async fn watch_once(ctx: &Ctx, mut next: i64) -> Step {
    let mut client = ctx.client.clone();
    let opts = WatchOptions::new().with_prefix().with_start_revision(next);
    let mut stream = match client.watch(ctx.keys.log_prefix(), Some(opts)).await {
        Ok(s) => s,
        Err(e) => {
            if ctx.shared.contact.failed() {
                tracing::warn!(error = %e, "etcd watch cannot start; serving the last known state");
            }
            return Step::Continue(next);
        }
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Step::Continue(next),
            Err(e) => {
                if ctx.shared.contact.failed() {
                    tracing::warn!(error = %e, "etcd watch broke; serving the last known state");
                }
                return Step::Continue(next);
            }
        };
        if resp.compact_revision() > 0 {
            return Step::Resync(format!(
                "etcd compacted its history past revision {next} (now from {})",
                resp.compact_revision()
            ));
        }
        if resp.canceled() {
            return Step::Resync(format!(
                "etcd cancelled the watch: {}",
                resp.cancel_reason()
            ));
        }
        ctx.shared.contact.ok();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            next = next.max(kv.mod_revision() + 1);
            if ev.event_type() != EventType::Put {
                // Log entries below a snapshot are deleted by the elected replica.
                continue;
            }
            let Some(first) = ctx.keys.log_first(kv.key()) else {
                continue;
            };
            let records = match decode_entry(&ctx.sealer, kv) {
                Ok(r) => r,
                Err(e) => return Step::Resync(e),
            };
            let touched = {
                let mut state = ctx.shared.state.write();
                let index = state.index();
                let last = records.last().map_or(first, |r| match r {
                    Decoded::Op(rec) => rec.index,
                    Decoded::Unreadable { index, .. } => *index,
                });
                if last <= index {
                    // This replica's own committer already installed it.
                    continue;
                }
                if first != index + 1 {
                    return Step::Resync(format!(
                        "log entry {first} follows index {index}: entries are missing"
                    ));
                }
                let touched = apply_records(&mut state, &records);
                ctx.applied.send_replace(state.index());
                touched
            };
            ctx.shared.watches.fire(&touched);
        }
    }
}

/// Loads the state again and installs it when it is ahead: the snapshot replaces the state
/// (every waiter wakes; indexes stay monotonic), log entries after the state's index apply.
async fn resync(ctx: &Ctx) -> Result<i64, String> {
    let mut client = ctx.client.clone();
    let (fresh, revision) = tokio::time::timeout(
        ctx.opts.request_timeout,
        load(&mut client, &ctx.keys, &ctx.sealer),
    )
    .await
    .map_err(|_| "no answer".to_owned())??;
    {
        let mut state = ctx.shared.state.write();
        if fresh.index() > state.index() {
            let mut fresh = fresh;
            fresh.set_floor();
            tracing::info!(
                from = state.index(),
                to = fresh.index(),
                revision,
                "resynced from etcd"
            );
            *state = fresh;
            ctx.applied.send_replace(state.index());
        } else {
            tracing::info!(index = state.index(), revision, "resync found nothing new");
        }
    }
    ctx.shared.contact.ok();
    ctx.shared
        .resyncs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ctx.shared.watches.fire_all();
    Ok(revision)
}

/// A linearizable read of the head each second: it keeps `contact` true while etcd has a quorum
/// and notices when it has not, for the stale-read headers.
pub(crate) async fn health(ctx: Arc<Ctx>) {
    let mut client = ctx.client.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(Duration::from_secs(1), client.get(ctx.keys.head(), None)).await
        {
            Ok(Ok(_)) => ctx.shared.contact.ok(),
            Ok(Err(e)) => {
                if ctx.shared.contact.failed() {
                    tracing::warn!(error = %e, "etcd does not answer; reads serve the last known state, writes answer 503");
                }
            }
            Err(_) => {
                if ctx.shared.contact.failed() {
                    tracing::warn!(
                        "etcd does not answer within 1s; reads serve the last known state, writes answer 503"
                    );
                }
            }
        }
    }
}
