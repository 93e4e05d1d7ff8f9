//! The replica's committer: group commit onto the shared log, without compare.
//!
//! Queued ops are taken as a batch and put as one new log entry under a name no other writer
//! uses; etcd orders the entries of every replica by revision, and that order is the log's.
//! Nothing is validated here: each op is applied (and so validated) by every replica's follower
//! at its place in the log, so a check-and-set, a config-entry graph check or an intention
//! `exact` write is decided against exactly the ops before it, whichever replica wrote them.
//! The follower answers this replica's writers when it applies their entry. Appends never
//! conflict, so several are in flight at once and replicas never wait for each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio::sync::{Semaphore, mpsc};

use super::{Ctx, Pending, Replies};
use crate::committer::Request;
use crate::{ApplyError, StoreError};

/// Ops per append, as the embedded committer.
const MAX_BATCH: usize = 512;
/// Bytes of ops per append: etcd refuses requests over 1.5 MiB by default.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Appends in flight per replica, by default: one, as the embedded committer has one fsync in
/// flight; writes that arrive meanwhile join the next append. On the shared 2-core machine,
/// where the run is CPU-bound, bigger batches cost less per write in etcd (one proposal and one
/// watch event per replica per batch) and in the replicas (one sealed entry): 1 in flight gave
/// 0.69 of etcd's raw put rate, 2 gave 0.63, 4 gave 0.52, 16 gave 0.50 (`docs/benchmarks.md`,
/// HA). `store { etcd { appends_in_flight = N } }` sets it.
pub(crate) const DEFAULT_IN_FLIGHT: usize = 1;
/// One attempt of an append waits this long at most: a proposal held by a member whose leader
/// just died is answered only after etcd's own request timeout (seconds), while a new leader is
/// usually elected within about one second; trying again (safe: put-if-absent) reaches it.
const ATTEMPT: Duration = Duration::from_secs(1);

pub(crate) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Request>) {
    let slots = Arc::new(Semaphore::new(ctx.opts.appends_in_flight.max(1)));
    // An op that did not fit the last entry starts the next one.
    let mut carried: Option<(Request, Vec<u8>)> = None;
    loop {
        let first = match carried.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(r) => match encode(r) {
                    Some(c) => c,
                    None => continue,
                },
                None => break,
            },
        };
        // Waiting for a free slot is when the batch grows: everything queued meanwhile joins it.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut body = Vec::from(b"[".as_slice());
        body.extend_from_slice(&first.1);
        let mut replies: Replies = vec![first.0.reply];
        while replies.len() < MAX_BATCH {
            let Ok(r) = rx.try_recv() else { break };
            let Some((req, op)) = encode(r) else { continue };
            if body.len() + 1 + op.len() > MAX_ENTRY_BYTES {
                carried = Some((req, op));
                break;
            }
            body.push(b',');
            body.extend_from_slice(&op);
            replies.push(req.reply);
        }
        body.push(b']');
        let ctx = ctx.clone();
        tokio::spawn(async move { append(&ctx, body, replies, slot).await });
    }
    tracing::debug!("etcd committer stopped");
}

/// The op as JSON, or `None` when it was refused for its size or its encoding (answered here).
fn encode(req: Request) -> Option<(Request, Vec<u8>)> {
    match serde_json::to_vec(&req.op) {
        Ok(op) if op.len() + 2 > MAX_ENTRY_BYTES => {
            let _ = req
                .reply
                .send(Err(StoreError::Rejected(ApplyError::Invalid(format!(
                    "the write is {} bytes; the etcd store takes at most {MAX_ENTRY_BYTES}",
                    op.len()
                )))));
            None
        }
        Ok(op) => Some((req, op)),
        Err(e) => {
            let _ = req
                .reply
                .send(Err(StoreError::Rejected(ApplyError::Invalid(format!(
                    "cannot encode the op: {e}"
                )))));
            None
        }
    }
}

/// Puts one entry. Its writers are answered by the follower once it applied the entry (with
/// each op's outcome), or here when the put failed or the follower did not get there in time.
async fn append(
    ctx: &Ctx,
    body: Vec<u8>,
    replies: Replies,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let key = ctx.keys.log(
        &ctx.writer,
        ctx.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    );
    let ops = replies.len();
    let sealed = match ctx.sealer.seal(key.as_bytes(), &body) {
        Ok(s) => s,
        Err(e) => {
            fail(replies, &ctx.unavailable("cannot seal the log entry", e));
            return;
        }
    };
    let key = key.into_bytes();
    // Registered before the put: the follower may see the entry before the put's answer.
    let (done, applied) = tokio::sync::oneshot::channel();
    ctx.pending
        .lock()
        .insert(key.clone(), Pending { replies, done });
    let started = Instant::now();
    let put = put_once(ctx, &key, sealed).await;
    drop(slot);
    let error = match put {
        Ok(()) => {
            ctx.shared.contact.ok();
            ctx.metrics.commit_seconds.observe_secs(started.elapsed());
            ctx.metrics.applied.add(ops as u64);
            // Committed: the follower answers once it applies the entry. If it cannot (its
            // watch is broken), the writers are not left hanging.
            if tokio::time::timeout(ctx.opts.request_timeout, applied)
                .await
                .is_ok()
            {
                return;
            }
            ctx.unavailable(
                "the write was committed to etcd but this replica has not applied it yet",
                "its outcome is unknown here; read it back to see",
            )
        }
        Err(e) => {
            ctx.shared.contact.failed();
            e
        }
    };
    // Still pending: the follower did not answer (and never will once this is removed).
    let left = ctx.pending.lock().remove(&key);
    if let Some(p) = left {
        fail(p.replies, &error);
    }
}

/// Puts the entry if its key is absent, trying again until the request timeout when etcd does
/// not answer: the client spreads requests over every endpoint, and one whose member is down
/// refuses connections until the client stops choosing it, while the others commit at once.
/// Only-if-absent makes a retry safe: an earlier attempt that committed without its answer
/// arriving makes the retry a no-op instead of a second copy of the entry.
async fn put_once(ctx: &Ctx, key: &[u8], sealed: Vec<u8>) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + ctx.opts.request_timeout;
    let mut client = ctx.client.clone();
    let mut pause = Duration::from_millis(20);
    loop {
        let txn = Txn::new()
            .when([Compare::version(key.to_vec(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.to_vec(), sealed.clone(), None)]);
        let attempt_ends = deadline.min(tokio::time::Instant::now() + ATTEMPT);
        let last_error = match tokio::time::timeout_at(attempt_ends, client.txn(txn)).await {
            // Not succeeded: the key exists, so an earlier attempt committed it.
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {ATTEMPT:?}"),
        };
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(ctx.unavailable("the write was not committed", last_error));
        }
        tracing::debug!(error = %last_error, "log append failed; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

fn fail(replies: Replies, e: &StoreError) {
    let reason = e.to_string();
    for reply in replies {
        // The requester may have gone away; nothing to undo.
        let _ = reply.send(Err(StoreError::Unavailable {
            reason: reason.clone(),
        }));
    }
}
