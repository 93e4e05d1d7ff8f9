//! The replica's committer: group commit onto the shared log with optimistic concurrency.
//!
//! A batch is validated on a copy of the state at index H (the live state is untouched, so no
//! reader sees a write before etcd has it), then appended with one etcd transaction that holds
//! only if the log's head is still H. If another replica appended first, the follower brings the
//! state to the new head and the batch is validated again: a check-and-set, a config-entry graph
//! check or an intention `exact` write is always decided against the latest log, on any replica.
//! A batch whose ops all fail validation still confirms with a linearizable read that H is the
//! head before it answers, so a refusal is never based on a stale copy.

use std::collections::VecDeque;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tokio::sync::mpsc;

use super::Ctx;
use crate::committer::Request;
use crate::wal::RecordRef;
use crate::{Committed, StoreError};

/// Ops per append, as the embedded committer.
const MAX_BATCH: usize = 512;
/// Bytes of records per append: etcd refuses requests over 1.5 MiB by default.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;

pub(crate) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Request>) {
    let mut queue: VecDeque<Request> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(r) => queue.push_back(r),
                None => break,
            }
        }
        round(&ctx, &mut queue, &mut rx).await;
    }
    tracing::debug!("etcd committer stopped");
}

/// Commits a prefix of `queue` (answering those writers); the rest waits for the next round.
async fn round(ctx: &Ctx, queue: &mut VecDeque<Request>, rx: &mut mpsc::Receiver<Request>) {
    loop {
        // Everything queued meanwhile joins this attempt: under contention between replicas a
        // retry carries what arrived while the last one waited, so batches grow instead of the
        // queue.
        while queue.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => queue.push_back(r),
                Err(_) => break,
            }
        }
        let (head, mut scratch) = {
            let state = ctx.shared.state.read();
            (state.index(), state.clone())
        };
        let mut results = Vec::new();
        let mut touched = Vec::new();
        let mut body = Vec::from(b"[".as_slice());
        let mut records = 0usize;
        for req in queue.iter() {
            let index = scratch.index() + 1;
            // Encoded before it is applied: an op that does not fit this entry must leave the
            // copy untouched (it waits for the next round).
            let rec =
                match serde_json::to_vec(&RecordRef { index, op: &req.op }) {
                    Ok(rec) if records > 0 && body.len() + rec.len() > MAX_ENTRY_BYTES => break,
                    Ok(rec) if rec.len() > MAX_ENTRY_BYTES => {
                        results.push(Err(StoreError::Rejected(crate::ApplyError::Invalid(format!(
                        "the write is {} bytes; the etcd store takes at most {MAX_ENTRY_BYTES}",
                        rec.len()
                    )))));
                        continue;
                    }
                    Ok(rec) => rec,
                    Err(e) => {
                        results.push(Err(StoreError::Rejected(crate::ApplyError::Invalid(
                            format!("cannot encode the op: {e}"),
                        ))));
                        continue;
                    }
                };
            let result = match scratch.apply(&req.op, index) {
                Ok(Some(keys)) => {
                    if records > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&rec);
                    records += 1;
                    touched.extend(keys);
                    Ok(Committed {
                        index,
                        applied: true,
                    })
                }
                Ok(None) => Ok(Committed {
                    index: scratch.index(),
                    applied: false,
                }),
                Err(e) => Err(StoreError::Rejected(e)),
            };
            results.push(result);
        }
        body.push(b']');
        let taken = results.len();
        let outcome = if records == 0 {
            confirm_head(ctx, head).await
        } else {
            append(ctx, head, scratch.index(), &body).await
        };
        match outcome {
            Outcome::Committed => {
                if records > 0 {
                    {
                        let mut state = ctx.shared.state.write();
                        // The follower may have installed this very entry already.
                        if state.index() == head {
                            *state = scratch;
                            ctx.applied.send_replace(state.index());
                        }
                    }
                    ctx.shared.watches.fire(&touched);
                }
                for (req, result) in queue.drain(..taken).zip(results) {
                    // The requester may have gone away; the write stands.
                    let _ = req.reply.send(result);
                }
                return;
            }
            Outcome::Behind(new_head) if new_head <= head => {
                let e = ctx.unavailable(
                    "the log's head moved backwards",
                    format!("{new_head} after {head} (was the prefix deleted?)"),
                );
                fail(queue, taken, &e);
                return;
            }
            Outcome::Behind(new_head) => {
                // Another replica appended: wait for the follower, then validate again.
                let mut applied = ctx.applied.subscribe();
                let waited = tokio::time::timeout(
                    ctx.opts.request_timeout,
                    applied.wait_for(|i| *i >= new_head),
                )
                .await;
                if !matches!(waited, Ok(Ok(_))) {
                    fail(
                        queue,
                        taken,
                        &ctx.unavailable(
                            "this replica did not catch up with the log in time",
                            format!("head {new_head}"),
                        ),
                    );
                    return;
                }
            }
            Outcome::Failed(e) => {
                fail(queue, taken, &e);
                return;
            }
        }
    }
}

fn fail(queue: &mut VecDeque<Request>, taken: usize, e: &StoreError) {
    let reason = e.to_string();
    for req in queue.drain(..taken) {
        let _ = req.reply.send(Err(StoreError::Unavailable {
            reason: reason.clone(),
        }));
    }
}

enum Outcome {
    Committed,
    /// The log's head is this, past the state the batch was validated on.
    Behind(u64),
    Failed(StoreError),
}

fn head_compare(ctx: &Ctx, head: u64) -> Compare {
    if head == 0 {
        Compare::version(ctx.keys.head(), CompareOp::Equal, 0)
    } else {
        Compare::value(ctx.keys.head(), CompareOp::Equal, head.to_string())
    }
}

fn head_of(resp: &etcd_client::TxnResponse) -> Option<u64> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => Some(
            g.kvs()
                .first()
                .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
                .unwrap_or(0),
        ),
        _ => None,
    })
}

async fn append(ctx: &Ctx, head: u64, last: u64, body: &[u8]) -> Outcome {
    let key = ctx.keys.log(head + 1);
    let sealed = match ctx.sealer.seal(key.as_bytes(), body) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(ctx.unavailable("cannot seal the log entry", e)),
    };
    let txn = Txn::new()
        .when([head_compare(ctx, head)])
        .and_then([
            TxnOp::put(ctx.keys.head(), last.to_string(), None),
            TxnOp::put(key, sealed, None),
        ])
        .or_else([TxnOp::get(ctx.keys.head(), None)]);
    let started = std::time::Instant::now();
    let outcome = transact(ctx, txn, "the write was not committed").await;
    if matches!(outcome, Outcome::Committed) {
        ctx.metrics.commit_seconds.observe_secs(started.elapsed());
        ctx.metrics.applied.add(last.saturating_sub(head));
    }
    outcome
}

/// A linearizable check that `head` is still the log's head.
async fn confirm_head(ctx: &Ctx, head: u64) -> Outcome {
    let txn = Txn::new()
        .when([head_compare(ctx, head)])
        .or_else([TxnOp::get(ctx.keys.head(), None)]);
    transact(ctx, txn, "the check could not be confirmed").await
}

async fn transact(ctx: &Ctx, txn: Txn, what: &str) -> Outcome {
    let mut client = ctx.client.clone();
    match tokio::time::timeout(ctx.opts.request_timeout, client.txn(txn)).await {
        Ok(Ok(resp)) => {
            ctx.shared.contact.ok();
            if resp.succeeded() {
                Outcome::Committed
            } else {
                Outcome::Behind(head_of(&resp).unwrap_or(0))
            }
        }
        Ok(Err(e)) => {
            ctx.shared.contact.failed();
            Outcome::Failed(ctx.unavailable(what, e))
        }
        Err(_) => {
            ctx.shared.contact.failed();
            Outcome::Failed(ctx.unavailable(
                what,
                format!("no answer within {:?}", ctx.opts.request_timeout),
            ))
        }
    }
}
