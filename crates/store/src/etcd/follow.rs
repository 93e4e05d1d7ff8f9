//! Following the log: an etcd watch on `log/` from the last revision this replica has seen
//! applies every entry in revision order to the replica's state, wakes the blocking queries
//! whose keys it touched (whichever replica wrote it) and answers this replica's writers with
//! their ops' outcomes. A watch that fell behind a compaction (or was cancelled) is replaced by
//! a resync from the snapshot and the log, logged as such: never a missed change.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use etcd_client::{EventType, WatchFilterType, WatchOptions};

use super::{Ctx, Loaded, apply_entry, decode_entry, load};

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
    // Deletes are the elected replica dropping log entries a snapshot holds: nothing to apply,
    // and each entry's delete would cost etcd a second event to every replica.
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(next)
        .with_filters([WatchFilterType::NoDelete]);
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
            // Log entries below a snapshot are deleted by the elected replica.
            if ev.event_type() != EventType::Put || !ctx.keys.is_log(kv.key()) {
                continue;
            }
            let ops = match decode_entry(&ctx.sealer, kv) {
                Ok(ops) => ops,
                Err(e) => return Step::Resync(e),
            };
            let (touched, answered) = {
                let mut state = ctx.shared.state.write();
                if kv.mod_revision() <= ctx.revision.load(Ordering::Acquire) {
                    // Already applied (a resync read it, or a watch restarted before it).
                    continue;
                }
                let (touched, results) = apply_entry(&mut state, &ops, kv.key());
                ctx.revision.store(kv.mod_revision(), Ordering::Release);
                ctx.revision_seen.send_replace(kv.mod_revision());
                let pending = ctx.pending.lock().remove(kv.key());
                (touched, pending.map(|p| (p, results)))
            };
            ctx.shared.watches.fire(&touched);
            if let Some((pending, results)) = answered {
                pending.answer(results);
            }
        }
    }
}

/// Loads the state again and installs it when it is ahead: the snapshot replaces the state
/// (every waiter wakes; indexes stay monotonic), log entries after it apply, and this replica's
/// writers whose entries were among them are answered.
async fn resync(ctx: &Ctx) -> Result<i64, String> {
    let mut client = ctx.client.clone();
    let Loaded {
        state: fresh,
        revision,
        outcomes,
    } = tokio::time::timeout(
        ctx.opts.request_timeout,
        load(&mut client, &ctx.keys, &ctx.sealer),
    )
    .await
    .map_err(|_| "no answer".to_owned())??;
    let mut answered = Vec::new();
    {
        let mut state = ctx.shared.state.write();
        if revision > ctx.revision.load(Ordering::Acquire) {
            let mut fresh = fresh;
            fresh.set_floor();
            tracing::info!(
                from = state.index(),
                to = fresh.index(),
                revision,
                "resynced from etcd"
            );
            // Never backwards: a replica that had applied more than a lagging member shows
            // keeps its state (the watch brings the member's view up to it).
            if fresh.index() >= state.index() {
                *state = fresh;
                ctx.revision.store(revision, Ordering::Release);
                ctx.revision_seen.send_replace(revision);
                let mut pending = ctx.pending.lock();
                for (key, results) in outcomes {
                    if let Some(p) = pending.remove(&key) {
                        answered.push((p, results));
                    }
                }
            }
        } else {
            tracing::info!(index = state.index(), revision, "resync found nothing new");
        }
    }
    for (p, results) in answered {
        p.answer(results);
    }
    ctx.shared.contact.ok();
    ctx.shared.resyncs.fetch_add(1, Ordering::Relaxed);
    ctx.shared.watches.fire_all();
    // The watch goes on after what the state holds (the fresh load's revision if installed).
    Ok(ctx.revision.load(Ordering::Acquire))
}

/// A linearizable read each second: it keeps `contact` true while etcd has a quorum
/// and notices when it has not, for the stale-read headers.
pub(crate) async fn health(ctx: Arc<Ctx>) {
    let mut client = ctx.client.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(
            Duration::from_secs(1),
            client.get(ctx.keys.snapshot(), None),
        )
        .await
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
