//! One replica at a time does the singleton work (TTL check expiry, CA rotation and pruning, log
//! snapshots): the one that holds etcd's election under `<prefix>/election`, on a lease it keeps
//! alive. It steps down as soon as it cannot renew the lease for half its TTL, before etcd can
//! expire it and elect another, so two replicas never both believe they lead for longer than the
//! clock skew between them; a replica that dies loses the lease after the TTL and another wins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{ResignOptions, TxnOp};
use tokio::sync::watch;

use super::{Ctx, SnapshotMeta, prefix_end};

/// Lease TTL: how long a dead leader's work stays undone.
const LEASE_TTL: i64 = 4;
/// etcd refuses requests over 1.5 MiB by default.
const SNAPSHOT_PART: usize = 1024 * 1024;

pub(crate) async fn run(ctx: Arc<Ctx>, leader: watch::Sender<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match lead_once(&ctx, &leader).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::debug!(error = %e, "election round ended");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        leader.send_replace(false);
    }
}

async fn lead_once(ctx: &Ctx, leader: &watch::Sender<bool>) -> Result<(), String> {
    let mut client = ctx.client.clone();
    let lease = client
        .lease_grant(LEASE_TTL, None)
        .await
        .map_err(|e| e.to_string())?
        .id();
    let (mut keeper, mut acks) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| e.to_string())?;
    let renew_every = Duration::from_millis(u64::try_from(LEASE_TTL).unwrap_or(4) * 1000 / 4);
    let give_up = Duration::from_millis(u64::try_from(LEASE_TTL).unwrap_or(4) * 1000 / 2);
    let mut last_ack = Instant::now();
    // Keeps the lease alive; ends when it lapses (no answer for half the TTL, or etcd says so).
    let keep = async {
        let mut tick = tokio::time::interval(renew_every);
        loop {
            tick.tick().await;
            if keeper.keep_alive().await.is_err() {
                return "the lease keep-alive stream broke";
            }
            match tokio::time::timeout(renew_every, acks.message()).await {
                Ok(Ok(Some(ack))) if ack.ttl() > 0 => last_ack = Instant::now(),
                Ok(Ok(Some(_))) => return "etcd expired the lease",
                Ok(Ok(None)) | Ok(Err(_)) => return "the lease keep-alive stream broke",
                Err(_) => {}
            }
            if last_ack.elapsed() > give_up {
                return "the lease was not renewed for half its TTL";
            }
        }
    };
    tokio::pin!(keep);
    let mut campaigner = client.clone();
    let won = tokio::select! {
        why = &mut keep => return Err(why.to_owned()),
        won = campaigner.campaign(ctx.keys.election(), ctx.opts.replica.clone(), lease) => won.map_err(|e| e.to_string())?,
    };
    let leader_key = won.leader().cloned();
    tracing::info!(replica = %ctx.opts.replica, "elected: this replica runs the singleton work");
    leader.send_replace(true);
    let why = tokio::select! {
        why = &mut keep => why,
        () = snapshots(ctx) => "snapshots stopped",
    };
    leader.send_replace(false);
    tracing::warn!(replica = %ctx.opts.replica, reason = why, "stepped down from the singleton work");
    // Best effort: let another replica win at once rather than after the TTL.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if let Some(k) = leader_key {
            let _ = client
                .resign(Some(ResignOptions::new().with_leader(k)))
                .await;
        }
        let _ = client.lease_revoke(lease).await;
    })
    .await;
    Ok(())
}

/// While leading: after `snapshot_every` ops since the last snapshot, write one and drop the log
/// before it, so a new replica (or one past a compaction) loads a bounded amount.
async fn snapshots(ctx: &Ctx) {
    let mut last = ctx.shared.state.read().index();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let now = ctx.shared.state.read().index();
        if now.saturating_sub(last) < ctx.opts.snapshot_every {
            continue;
        }
        match write_snapshot(ctx).await {
            Ok(index) => last = index,
            Err(e) => tracing::warn!(error = %e, "snapshot into etcd failed; retried later"),
        }
    }
}

/// Writes the state as a snapshot and makes it current (in one transaction that also drops the
/// previous snapshot), then deletes the log entries it holds. Returns its index.
pub(crate) async fn write_snapshot(ctx: &Ctx) -> Result<u64, String> {
    let (index, revision, json) = {
        let state = ctx.shared.state.read();
        let json = serde_json::to_vec(&state.to_snapshot()).map_err(|e| e.to_string())?;
        // Read under the state's lock: the follower moves both together.
        let revision = ctx.revision.load(std::sync::atomic::Ordering::Acquire);
        (state.index(), revision, json)
    };
    let prefix = ctx.keys.snapshot_parts(index);
    let sealed = ctx.sealer.seal(prefix.as_bytes(), &json)?;
    let mut client = ctx.client.clone();
    let current = client
        .get(ctx.keys.snapshot(), None)
        .await
        .map_err(|e| e.to_string())?;
    let current = current.kvs().first();
    let seen = current.map_or(0, etcd_client::KeyValue::mod_revision);
    let previous = current.and_then(|kv| serde_json::from_slice::<SnapshotMeta>(kv.value()).ok());
    if previous.as_ref().is_some_and(|p| p.index >= index) {
        return Ok(index);
    }
    let parts: Vec<&[u8]> = sealed.chunks(SNAPSHOT_PART).collect();
    for (i, part) in parts.iter().enumerate() {
        client
            .put(ctx.keys.snapshot_part(index, i), part.to_vec(), None)
            .await
            .map_err(|e| e.to_string())?;
    }
    let meta = serde_json::to_vec(&SnapshotMeta {
        index,
        revision,
        parts: parts.len(),
    })
    .map_err(|e| e.to_string())?;
    let mut ops = vec![TxnOp::put(ctx.keys.snapshot(), meta, None)];
    if let Some(p) = previous {
        let old = ctx.keys.snapshot_parts(p.index);
        ops.push(TxnOp::delete(
            old.clone(),
            Some(etcd_client::DeleteOptions::new().with_range(prefix_end(&old))),
        ));
    }
    let made = client
        // Only over the snapshot read above: a replica that led a moment ago cannot put an
        // older one back.
        .txn(
            etcd_client::Txn::new()
                .when([etcd_client::Compare::mod_revision(
                    ctx.keys.snapshot(),
                    etcd_client::CompareOp::Equal,
                    seen,
                )])
                .and_then(ops),
        )
        .await
        .map_err(|e| e.to_string())?;
    if !made.succeeded() {
        return Err("another replica wrote a snapshot meanwhile".into());
    }
    let dropped = drop_log_before(ctx, &mut client, revision).await?;
    tracing::info!(
        index,
        revision,
        bytes = sealed.len(),
        parts = parts.len(),
        dropped,
        "wrote a snapshot into etcd and dropped the log it holds"
    );
    Ok(index)
}

/// Deletes the log entries created at or before `revision` (a snapshot holds them; loaders skip
/// them already, so this is only garbage collection and may stop half way: the next snapshot
/// finishes it). Entry names do not sort by revision, so the log's keys are listed and the old
/// ones deleted a transaction of them at a time.
async fn drop_log_before(
    ctx: &Ctx,
    client: &mut etcd_client::Client,
    revision: i64,
) -> Result<usize, String> {
    /// etcd allows 128 operations per transaction by default.
    const PER_TXN: usize = 100;
    let prefix = ctx.keys.log_prefix();
    let listed = client
        .get(
            prefix.clone(),
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_max_create_revision(revision),
            ),
        )
        .await
        .map_err(|e| e.to_string())?;
    let old: Vec<Vec<u8>> = listed.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    for chunk in old.chunks(PER_TXN) {
        let deletes: Vec<TxnOp> = chunk
            .iter()
            .map(|k| TxnOp::delete(k.clone(), None))
            .collect();
        client
            .txn(etcd_client::Txn::new().and_then(deletes))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(old.len())
}
