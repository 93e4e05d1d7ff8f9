//! The single writer: batches queued ops, applies them, fsyncs once per batch (group commit),
//! then wakes watchers and acknowledges. Runs on its own OS thread because fsync blocks.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::state::Op;
use crate::wal::Wal;
use crate::{Committed, Shared, StoreError, StoreOptions};

pub(crate) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// What the committer measures (served by the server as `consul_raft_commitTime` and
/// `lambdamesh_store_commit_duration_seconds`; `docs/metrics.md`).
#[derive(Debug)]
pub struct CommitMetrics {
    /// Seconds from a batch's first op being applied to its fsync returning: what every write
    /// in the batch waited for once the committer took it. Batches that wrote nothing (only
    /// refused or no-op writes) are not commits and are not measured.
    pub commit_seconds: telemetry::Histogram,
    /// Ops written to the log (each one record, one index).
    pub applied: telemetry::Counter,
}

/// Bounds of the commit-time histogram, in seconds: an fsync takes from tens of microseconds
/// (a fast SSD, tmpfs) to tens of milliseconds (a slow or busy disk).
const COMMIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for CommitMetrics {
    fn default() -> Self {
        Self {
            commit_seconds: telemetry::Histogram::new(COMMIT_BUCKETS),
            applied: telemetry::Counter::default(),
        }
    }
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
    metrics: Arc<CommitMetrics>,
) -> Result<Handle, StoreError> {
    let thread = std::thread::Builder::new()
        .name("store-committer".into())
        .spawn(move || run(shared, wal, rx, opts, &metrics))
        .map_err(|source| StoreError::Io {
            path: "store-committer thread".into(),
            source,
        })?;
    Ok(Handle { _thread: thread })
}

fn run(
    shared: Arc<Shared>,
    mut wal: Wal,
    mut rx: mpsc::Receiver<Request>,
    opts: StoreOptions,
    metrics: &CommitMetrics,
) {
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
            let started = Instant::now();
            for req in batch.drain(..) {
                let index = state.index() + 1;
                let result = match state.apply(&req.op, index) {
                    Ok(Some(keys)) => match wal.append(index, &req.op) {
                        Ok(()) => {
                            metrics.applied.inc();
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
            if wal.has_pending() {
                if let Err(e) = wal.commit() {
                    fatal(e);
                }
                metrics.commit_seconds.observe_secs(started.elapsed());
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
