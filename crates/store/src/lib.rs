//! The control plane's state store: one in-memory [`State`] changed only by [`Op`]s, made durable
//! by a write-ahead log, with one monotonic index and per-key indexes for blocking queries.
//!
//! ```text
//!  HTTP handlers ──write(op)──▶ mpsc ──▶ committer thread ──┬─ validate + apply op to State (write lock)
//!        ▲                                                 ├─ append record to the WAL
//!        │ oneshot reply after fsync                        ├─ one fsync for the whole batch (group commit)
//!        └─────────────────────────────────────────────────┴─ release lock, wake watchers of touched keys
//!  readers ──read(|state| ..)──▶ read lock (never see a write before it is durable)
//!  blocking queries ──watch(keys, index)──▶ woken only when one of their keys is touched
//! ```
//!
//! Why a hand-written log rather than an embedded database: every write must be fsynced before it
//! is acknowledged, and with one fsync per write no engine reaches the target throughput on an
//! ordinary disk. A log with group commit amortises one fsync over every write waiting at that
//! moment, and the state it replays into is the same in-memory structure that serves reads and
//! blocking queries, so there is no second copy to keep consistent. Records are length-prefixed
//! and CRC-checked; a torn tail left by a crash is cut off at restart; a record is one whole
//! client write, so nothing is ever half-applied. See `docs/store.md`.
//!
//! This crate must not depend on HTTP, xDS or anything async beyond tokio's channels.

mod committer;
pub mod etcd;
mod health;
pub mod state;
mod wal;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

pub use committer::CommitMetrics;
pub use etcd::EtcdOptions;
pub use health::Contact;
pub use state::{ApplyError, Op, State, WatchKey};
pub use watch::WatchOutcome;

/// Errors of the store. Client mistakes come back as [`StoreError::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The op was refused by the state machine (validation against current state).
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    #[error("store i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt store file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("the store is shut down or failed; no more writes are accepted")]
    Closed,
    /// The shared store (etcd) did not commit the write in time: the write was not acknowledged
    /// (it may still commit; a retry of a check-and-set write tells).
    #[error("{reason}")]
    Unavailable { reason: String },
    /// The etcd cluster cannot be used at start (unreachable, refused credentials, bad key).
    #[error("etcd at {endpoints}: {reason}")]
    Etcd { endpoints: String, reason: String },
}

/// What a successful write returns: the index it was committed at, and whether it changed
/// anything (`false` for a failed check-and-set, which is not logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub index: u64,
    pub applied: bool,
}

pub(crate) struct Shared {
    pub state: RwLock<State>,
    pub watches: watch::Registry,
    /// Whether the backing store answers (always for the embedded log).
    pub contact: health::Health,
    /// Times an etcd replica reloaded its state after losing its place in the log.
    pub resyncs: std::sync::atomic::AtomicU64,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<committer::Request>,
    _committer: Arc<dyn Send + Sync>,
    /// `Some` on etcd: the read barrier behind [`Store::sync`].
    barrier: Option<Arc<etcd::Barrier>>,
    metrics: Arc<CommitMetrics>,
    /// `true` while this process should run the singleton work (TTL expiry, CA rotation): always
    /// for the embedded store, while it holds the etcd election for the etcd store.
    leader: tokio::sync::watch::Receiver<bool>,
}

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Compact the log into a snapshot once it grows past this many bytes.
    pub snapshot_threshold_bytes: u64,
    /// Skip fsync (tests of logic only; never for a real server).
    pub unsafe_no_fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            snapshot_threshold_bytes: 64 * 1024 * 1024,
            unsafe_no_fsync: false,
        }
    }
}

/// Queue depth of pending writes: enough for hundreds of concurrent HTTP writers while bounding
/// memory; senders wait when it is full (back-pressure instead of unbounded growth).
const WRITE_QUEUE: usize = 4096;

impl Store {
    /// Opens (or creates) the store in `dir`, replaying the snapshot and the log.
    ///
    /// # Errors
    /// I/O errors, or a snapshot that cannot be read (a torn log tail is repaired, not an error).
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let (state, wal) = wal::Wal::open(dir, &opts)?;
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            watches: watch::Registry::default(),
            contact: health::Health::default(),
            resyncs: Default::default(),
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let metrics = Arc::new(CommitMetrics::default());
        let handle = committer::spawn(shared.clone(), wal, rx, opts, metrics.clone())?;
        let (_, leader) = tokio::sync::watch::channel(true);
        Ok(Self {
            shared,
            tx,
            _committer: Arc::new(handle),
            barrier: None,
            metrics,
            leader,
        })
    }

    /// Opens the store on an etcd cluster shared by several replicas (`docs/ha.md`): loads the
    /// latest snapshot and the log after it, then follows the log. Must run inside a tokio
    /// runtime; the tasks it starts stop when the last handle is dropped.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] naming the endpoints when etcd cannot be reached or read.
    pub async fn open_etcd(opts: EtcdOptions) -> Result<Self, StoreError> {
        let opened = etcd::open(opts).await?;
        Ok(Self {
            shared: opened.shared,
            tx: opened.tx,
            _committer: opened.handle,
            barrier: Some(Arc::new(opened.barrier)),
            metrics: opened.metrics,
            leader: opened.leader,
        })
    }

    /// Returns once this replica's state holds every write committed anywhere before the call
    /// (Consul's `?consistent`): immediate for the embedded store, which is the only writer; on
    /// etcd, a linearizable read of the log's newest entry and a wait until it is applied here.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when etcd does not confirm it, or the replica does not catch
    /// up, within the request timeout.
    pub async fn sync(&self) -> Result<(), StoreError> {
        match &self.barrier {
            Some(b) => b.sync().await,
            None => Ok(()),
        }
    }

    /// Whether the backing store answers now, and when it last did (for Consul's
    /// `X-Consul-KnownLeader` and `X-Consul-LastContact`).
    pub fn contact(&self) -> Contact {
        self.shared.contact.get()
    }

    /// How often this replica resynced from etcd after its watch lost its place (compaction,
    /// cancellation); each is also logged.
    pub fn resyncs(&self) -> u64 {
        self.shared
            .resyncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Follows whether this replica should run the singleton work (see [`Store::open_etcd`]).
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Commits one op durably. Returns after the record is fsynced and applied.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when the op is invalid against the current state.
    pub async fn write(&self, op: Op) -> Result<Committed, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(committer::Request { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on the current state (read lock held for the duration: keep it short).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.state.read())
    }

    /// The highest committed index.
    pub fn index(&self) -> u64 {
        self.shared.state.read().index()
    }

    /// Blocking-query support: waits until the max index of `keys` exceeds `min_index` or
    /// `timeout` passes. Only writes that touch one of `keys` wake this waiter.
    pub async fn wait_for_change(
        &self,
        keys: &[WatchKey],
        min_index: u64,
        timeout: Duration,
    ) -> WatchOutcome {
        watch::wait(&self.shared, keys, min_index, timeout).await
    }

    /// The committer's measurements (commit time, ops written).
    pub fn commit_metrics(&self) -> &CommitMetrics {
        &self.metrics
    }

    /// Number of registered blocking-query waiters (for metrics and tests).
    pub fn waiter_count(&self) -> usize {
        self.shared.watches.len()
    }
}
