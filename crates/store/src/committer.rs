//! The single writer: batches queued ops, applies them, fsyncs once per batch (group commit),
//! then wakes watchers and acknowledges. Runs on its own OS thread because fsync blocks.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::state::Op;
use crate::wal::Wal;
use crate::{Committed, Shared, StoreError, StoreOptions};

pub(crate) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Committed, StoreError>>,
}

pub(crate) struct Handle {
    _thread: std::thread::JoinHandle<()>,
}

/// Upper bound of ops per fsync: bounds the time readers wait on the lock for one batch.
const MAX_BATCH: usize = 512;

pub(crate) fn spawn(
    shared: Arc<Shared>,
    wal: Wal,
    rx: mpsc::Receiver<Request>,
    opts: StoreOptions,
) -> Result<Handle, StoreError> {
    let thread = std::thread::Builder::new()
        .name("store-committer".into())
        .spawn(move || run(shared, wal, rx, opts))
        .map_err(|source| StoreError::Io {
            path: "store-committer thread".into(),
            source,
        })?;
    Ok(Handle { _thread: thread })
}

fn run(shared: Arc<Shared>, mut wal: Wal, mut rx: mpsc::Receiver<Request>, opts: StoreOptions) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut touched = Vec::new();
        {
            // The write lock is held through the fsync so that no reader ever sees a write
            // before it is durable (a blocking query must not return data a crash could lose).
            let mut state = shared.state.write();
            for req in batch.drain(..) {
                let index = state.index() + 1;
                let result = match state.apply(&req.op, index) {
                    Ok(Some(keys)) => match wal.append(index, &req.op) {
                        Ok(()) => {
                            touched.extend(keys);
                            Ok(Committed {
                                index,
                                applied: true,
                            })
                        }
                        Err(e) => fatal(e),
                    },
                    Ok(None) => Ok(Committed {
                        index: state.index(),
                        applied: false,
                    }),
                    Err(e) => Err(StoreError::Rejected(e)),
                };
                replies.push((req.reply, result));
            }
            if wal.has_pending()
                && let Err(e) = wal.commit()
            {
                fatal(e);
            }
            if wal.size() > opts.snapshot_threshold_bytes
                && let Err(e) = wal.snapshot(&state)
            {
                // The log is still intact and durable; compaction is retried next batch.
                tracing::error!(error = %e, "snapshot failed; the log keeps growing until it succeeds");
            }
        }
        shared.watches.fire(&touched);
        for (reply, result) in replies {
            // The requester may have gone away (client disconnected); the write stands.
            let _ = reply.send(result);
        }
    }
    tracing::debug!("store committer stopped");
}

/// The in-memory state now holds a change the disk may not: continuing would acknowledge or
/// serve writes a restart loses. Stop the process; restart recovers exactly the durable state.
fn fatal(e: StoreError) -> ! {
    tracing::error!(error = %e, "store write failed; aborting so that a restart recovers the durable state");
    std::process::abort()
}
