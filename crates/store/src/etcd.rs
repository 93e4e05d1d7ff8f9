//! The etcd backend: several control-plane replicas share one etcd cluster, which holds the
//! **replicated op log** (`docs/ha.md`).
//!
//! ```text
//!  writer ─▶ committer task: batch queued ops, put log/<replica>-<seq> = sealed [op, ..]
//!            (no compare: appends from every replica never conflict; several in flight)
//!  follower task: etcd watch on log/ from the last revision seen ─▶ State::apply in etcd's
//!            revision order (the same order on every replica), wake watchers, and answer this
//!            replica's writers with the outcome their ops had at their place in the log
//!            ─ a watch cancelled by compaction ─▶ resync from snapshot + log
//!  health task: a linearizable read each second (stale-read headers, known leader)
//!  election task: etcd election on a lease ─▶ `leadership()` (singleton work), snapshots
//! ```
//!
//! Indexes are assigned as ops apply, one per op that changes the state, exactly as the
//! embedded log numbers them; every replica applies the same ops in the same (revision) order, so
//! indexes agree across replicas and never go backwards. Check-and-set, graph checks and every
//! other validation are decided at the op's place in the log, so they are linearizable. Values
//! are sealed with the operator's key (`crypt`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

use crate::state::{Op, State, StateSnapshot, WatchKey};
use crate::{Committed, Shared, StoreError, health, watch as waiters};

mod commit;
mod crypt;
mod election;
mod follow;

pub use crypt::EncryptionKey;

/// How to reach and use the etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `http://host:port` (or `https://` with `tls`), any member of the cluster.
    pub endpoints: Vec<String>,
    /// Every key the store writes is under this prefix (several meshes can share a cluster).
    pub prefix: String,
    /// etcd user and password (`--user` of etcdctl).
    pub user: Option<(String, String)>,
    /// TLS towards etcd (`--cacert`, `--cert`, `--key` of etcdctl).
    pub tls: Option<EtcdTls>,
    /// Seals every value the store puts in etcd.
    pub encryption_key: EncryptionKey,
    /// A write that etcd has not committed within this answers [`StoreError::Unavailable`].
    pub request_timeout: Duration,
    /// This replica's name (the value it campaigns with).
    pub replica: String,
    /// The elected replica writes a snapshot and drops the log before it after this many ops.
    pub snapshot_every: u64,
    /// Log appends this replica keeps in flight at once (1 to [`MAX_APPENDS_IN_FLIGHT`]); writes
    /// that arrive while every slot is taken join the next append as one batch.
    pub appends_in_flight: usize,
}

/// The most appends in flight a replica may be configured with.
pub const MAX_APPENDS_IN_FLIGHT: usize = 256;

/// PEM files for TLS towards etcd.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

impl EtcdOptions {
    /// Defaults for everything but where etcd is and the key.
    pub fn new(endpoints: Vec<String>, encryption_key: EncryptionKey) -> Self {
        Self {
            endpoints,
            prefix: "/lambdamesh".into(),
            user: None,
            tls: None,
            encryption_key,
            request_timeout: Duration::from_secs(5),
            replica: String::new(),
            snapshot_every: 10_000,
            appends_in_flight: commit::DEFAULT_IN_FLIGHT,
        }
    }
}

/// The key layout under the prefix.
#[derive(Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn log_prefix(&self) -> String {
        format!("{}/log/", self.prefix)
    }
    /// One appended batch: named by the replica that wrote it (a nonce drawn at start) and its
    /// sequence there, so names never collide; the log's order is etcd's revision order.
    pub(crate) fn log(&self, writer: &str, seq: u64) -> String {
        format!("{}/log/{writer}-{seq:020}", self.prefix)
    }
    pub(crate) fn is_log(&self, key: &[u8]) -> bool {
        key.starts_with(self.log_prefix().as_bytes())
    }
    /// Which snapshot is current: `{"index", "revision", "parts"}` (plain: no secrets).
    pub(crate) fn snapshot(&self) -> String {
        format!("{}/snapshot", self.prefix)
    }
    pub(crate) fn snapshot_parts(&self, index: u64) -> String {
        format!("{}/snap/{index:020}/", self.prefix)
    }
    pub(crate) fn snapshot_part(&self, index: u64, part: usize) -> String {
        format!("{}/snap/{index:020}/{part:06}", self.prefix)
    }
    pub(crate) fn election(&self) -> String {
        format!("{}/election", self.prefix)
    }
}

/// The end of a prefix range (etcd's `prefix + 1` convention).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotMeta {
    pub index: u64,
    /// The etcd revision of the last log entry the snapshot holds: entries created at or before
    /// it are in the snapshot (and are deleted after it is written).
    pub revision: i64,
    pub parts: usize,
}

/// Each op's outcome in one entry, in the entry's order.
pub(crate) type Outcomes = Vec<Result<Committed, StoreError>>;

/// The writers of one entry waiting for their ops' outcomes, in the order of the entry's ops.
pub(crate) type Replies = Vec<oneshot::Sender<Result<Committed, StoreError>>>;

/// An entry this replica put and has not applied yet.
pub(crate) struct Pending {
    pub replies: Replies,
    /// Tells the committer that the follower answered (so it stops waiting).
    pub done: oneshot::Sender<()>,
}

impl Pending {
    /// Answers each writer with its op's outcome.
    pub(crate) fn answer(self, results: Outcomes) {
        for (reply, result) in self.replies.into_iter().zip(results) {
            // The requester may have gone away; the write stands.
            let _ = reply.send(result);
        }
        let _ = self.done.send(());
    }
}

/// What every task of one replica shares.
pub(crate) struct Ctx {
    pub client: Client,
    pub keys: Keys,
    pub sealer: crypt::Sealer,
    pub shared: Arc<Shared>,
    pub opts: EtcdOptions,
    /// The etcd revision up to which the state has applied the log; changed only under the
    /// state's write lock, so a reader holding the lock sees the pair (state, revision) agree.
    pub revision: AtomicI64,
    /// The same revision for waiters ([`Barrier`]); sent after `revision` is stored.
    pub revision_seen: watch::Sender<i64>,
    /// This replica's writes put in etcd and not yet applied, by log key: the follower answers
    /// them with the outcome each op had at its place in the log.
    pub pending: Mutex<HashMap<Vec<u8>, Pending>>,
    /// Names this replica's log entries (drawn at start, so a restarted replica never reuses a
    /// name), and their sequence.
    pub writer: String,
    pub seq: AtomicU64,
    pub endpoints: String,
    /// Commit time (the append transaction) and ops committed, as the embedded committer
    /// reports them (`/v1/agent/metrics`).
    pub metrics: Arc<crate::CommitMetrics>,
}

impl Ctx {
    pub(crate) fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            reason: format!("etcd ({}) is unavailable: {what}: {e}", self.endpoints),
        }
    }
}

/// Consul's `?consistent`: a read that reflects every write etcd had committed when it began.
pub(crate) struct Barrier {
    ctx: Arc<Ctx>,
}

impl Barrier {
    /// Reads, linearizably, the revision of the newest log entry (or of the snapshot, when the
    /// log it held is gone), then waits until this replica has applied up to it.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let ctx = &self.ctx;
        let newest = etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::get(ctx.keys.snapshot(), None),
            etcd_client::TxnOp::get(
                ctx.keys.log_prefix(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_limit(1)
                        .with_sort(
                            etcd_client::SortTarget::Mod,
                            etcd_client::SortOrder::Descend,
                        ),
                ),
            ),
        ]);
        let mut client = ctx.client.clone();
        let resp = tokio::time::timeout(ctx.opts.request_timeout, client.txn(newest))
            .await
            .map_err(|_| {
                ctx.unavailable(
                    "a consistent read could not be confirmed",
                    format!("no answer within {:?}", ctx.opts.request_timeout),
                )
            })?
            .map_err(|e| ctx.unavailable("a consistent read could not be confirmed", e))?;
        let mut target = 0;
        for r in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(g) = r {
                for kv in g.kvs() {
                    target = target.max(if kv.key() == ctx.keys.snapshot().as_bytes() {
                        serde_json::from_slice::<SnapshotMeta>(kv.value()).map_or(0, |m| m.revision)
                    } else {
                        kv.mod_revision()
                    });
                }
            }
        }
        let mut seen = ctx.revision_seen.subscribe();
        tokio::time::timeout(ctx.opts.request_timeout, seen.wait_for(|r| *r >= target))
            .await
            .map_err(|_| {
                ctx.unavailable(
                    "this replica has not caught up with the log for a consistent read",
                    format!("revision {target}"),
                )
            })?
            .map_err(|_| StoreError::Closed)?;
        Ok(())
    }
}

/// The tasks of one replica: stopped when the last store handle goes.
pub(crate) struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

pub(crate) struct Opened {
    pub barrier: Barrier,
    pub shared: Arc<Shared>,
    pub tx: mpsc::Sender<crate::committer::Request>,
    pub handle: Arc<dyn Send + Sync>,
    pub leader: watch::Receiver<bool>,
    pub metrics: Arc<crate::CommitMetrics>,
}

pub(crate) async fn open(opts: EtcdOptions) -> Result<Opened, StoreError> {
    let endpoints = opts.endpoints.join(",");
    let fail = |reason: String| StoreError::Etcd {
        endpoints: endpoints.clone(),
        reason,
    };
    if opts.endpoints.is_empty() {
        return Err(fail("no endpoints given".into()));
    }
    let client = connect(&opts).await.map_err(fail)?;
    let keys = Keys {
        prefix: opts.prefix.trim_end_matches('/').to_owned(),
    };
    let sealer = crypt::Sealer::new(&opts.encryption_key);
    let mut client_for_load = client.clone();
    let loaded = tokio::time::timeout(
        opts.request_timeout,
        load(&mut client_for_load, &keys, &sealer),
    )
    .await
    .map_err(|_| {
        fail(format!(
            "no answer within {:?} (is etcd running there?)",
            opts.request_timeout
        ))
    })?
    .map_err(fail)?;
    let Loaded {
        mut state,
        revision,
        ..
    } = loaded;
    state.set_floor();
    tracing::info!(index = state.index(), revision, endpoints = %endpoints, prefix = %keys.prefix, "store opened on etcd");
    let shared = Arc::new(Shared {
        state: RwLock::new(state),
        watches: waiters::Registry::default(),
        contact: health::Health::default(),
        resyncs: Default::default(),
    });
    let metrics = Arc::new(crate::CommitMetrics::default());
    let ctx = Arc::new(Ctx {
        client,
        keys,
        sealer,
        shared: shared.clone(),
        opts,
        revision: AtomicI64::new(revision),
        revision_seen: watch::channel(revision).0,
        pending: Mutex::default(),
        writer: crypt::nonce_hex().map_err(fail)?,
        seq: AtomicU64::new(0),
        endpoints,
        metrics: metrics.clone(),
    });
    let (tx, rx) = mpsc::channel(crate::WRITE_QUEUE);
    let (leader_tx, leader) = watch::channel(false);
    let tasks = Tasks(vec![
        tokio::spawn(commit::run(ctx.clone(), rx)),
        tokio::spawn(follow::run(ctx.clone(), revision)),
        tokio::spawn(follow::health(ctx.clone())),
        tokio::spawn(election::run(ctx.clone(), leader_tx)),
    ]);
    Ok(Opened {
        barrier: Barrier { ctx },
        shared,
        tx,
        handle: Arc::new(tasks),
        leader,
        metrics,
    })
}

async fn connect(opts: &EtcdOptions) -> Result<Client, String> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(opts.request_timeout)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    if let Some((user, password)) = &opts.user {
        co = co.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = &opts.tls {
        co = with_tls(co, tls)?;
    }
    tokio::time::timeout(
        opts.request_timeout,
        Client::connect(opts.endpoints.clone(), Some(co)),
    )
    .await
    .map_err(|_| format!("no connection within {:?}", opts.request_timeout))?
    .map_err(|e| format!("cannot connect: {e}"))
}

fn with_tls(co: ConnectOptions, tls: &EtcdTls) -> Result<ConnectOptions, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let mut t = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        t = t.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            t = t.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
        }
        (None, None) => {}
        _ => return Err("a client certificate needs both its cert and key file".into()),
    }
    Ok(co.with_tls(t))
}

/// Every key in `[start, end)` at `revision` (0 = now), in key order, a page at a time (a
/// single answer is capped at 4 MiB by the gRPC client).
pub(crate) async fn range(
    client: &mut Client,
    start: Vec<u8>,
    end: Vec<u8>,
    revision: i64,
    page: i64,
) -> Result<(Vec<KeyValue>, i64), etcd_client::Error> {
    let mut out = Vec::new();
    let mut from = start;
    let mut rev = revision;
    loop {
        let mut o = GetOptions::new().with_range(end.clone()).with_limit(page);
        if rev > 0 {
            o = o.with_revision(rev);
        }
        let resp = client.get(from.clone(), Some(o)).await?;
        if rev == 0 {
            rev = resp.header().map_or(0, |h| h.revision());
        }
        let kvs = resp.kvs();
        if let Some(last) = kvs.last() {
            from = last.key().to_vec();
            from.push(0);
        }
        out.extend_from_slice(kvs);
        if !resp.more() || kvs.is_empty() {
            return Ok((out, rev));
        }
    }
}

/// What [`load`] read: the state, the revision it was read at, and the outcome of each log
/// entry applied after the snapshot (a resync answers this replica's writers from them).
pub(crate) struct Loaded {
    pub state: State,
    pub revision: i64,
    pub outcomes: Vec<(Vec<u8>, Outcomes)>,
}

/// The state as etcd holds it now: the snapshot, then every log entry created after it in
/// revision order, all read at one revision (the follower watches from the next one).
pub(crate) async fn load(
    client: &mut Client,
    keys: &Keys,
    sealer: &crypt::Sealer,
) -> Result<Loaded, String> {
    let resp = client
        .get(keys.snapshot(), None)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut state = State::default();
    let mut covered = 0;
    if let Some(kv) = resp.kvs().first() {
        let meta: SnapshotMeta = serde_json::from_slice(kv.value())
            .map_err(|e| format!("{} does not read: {e}", keys.snapshot()))?;
        let prefix = keys.snapshot_parts(meta.index);
        let (parts, _) = range(
            client,
            prefix.clone().into_bytes(),
            prefix_end(&prefix),
            revision,
            2,
        )
        .await
        .map_err(|e| format!("cannot read the snapshot: {e}"))?;
        if parts.len() != meta.parts {
            return Err(format!(
                "snapshot at index {} has {} of its {} parts",
                meta.index,
                parts.len(),
                meta.parts
            ));
        }
        let sealed: Vec<u8> = parts.iter().flat_map(|kv| kv.value().to_vec()).collect();
        let plain = sealer
            .open(prefix.as_bytes(), &sealed)
            .map_err(|_| wrong_key(&prefix))?;
        let snap: StateSnapshot = serde_json::from_slice(&plain)
            .map_err(|e| format!("the snapshot at index {} does not read: {e}", meta.index))?;
        state = State::from_snapshot(snap);
        covered = meta.revision;
    }
    let prefix = keys.log_prefix();
    let (mut entries, _) = range(
        client,
        prefix.clone().into_bytes(),
        prefix_end(&prefix),
        revision,
        256,
    )
    .await
    .map_err(|e| format!("cannot read the log: {e}"))?;
    // Entries the snapshot holds may still be there (they are deleted after it is written).
    entries.retain(|kv| kv.create_revision() > covered);
    entries.sort_by_key(KeyValue::create_revision);
    let mut outcomes = Vec::with_capacity(entries.len());
    for kv in &entries {
        let ops = decode_entry(sealer, kv)?;
        let (_, results) = apply_entry(&mut state, &ops, kv.key());
        outcomes.push((kv.key().to_vec(), results));
    }
    Ok(Loaded {
        state,
        revision,
        outcomes,
    })
}

fn wrong_key(name: &str) -> String {
    format!(
        "{name} does not decrypt with the configured encryption key (a different key, or not written by lambdamesh)"
    )
}

/// One op of a log entry, or why this version cannot read it (an op of a newer version).
// Read once per op as it is applied; boxing the op would only add allocations.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded {
    Op(Op),
    Unreadable(String),
}

/// One log entry's ops, opened and read.
pub(crate) fn decode_entry(sealer: &crypt::Sealer, kv: &KeyValue) -> Result<Vec<Decoded>, String> {
    let name = String::from_utf8_lossy(kv.key());
    let plain = sealer
        .open(kv.key(), kv.value())
        .map_err(|_| wrong_key(&name))?;
    let values: Vec<serde_json::Value> = serde_json::from_slice(&plain)
        .map_err(|e| format!("log entry {name} does not read: {e}"))?;
    Ok(values
        .into_iter()
        .map(|v| match serde_json::from_value::<Op>(v) {
            Ok(op) => Decoded::Op(op),
            Err(e) => Decoded::Unreadable(e.to_string()),
        })
        .collect())
}

/// Applies one entry's ops at the end of the state, each at the next index, exactly as the
/// embedded committer applies a batch: an op that changes the state takes the next index, a
/// no-op (a lost check-and-set) or a refused op takes none. Every replica runs this on the same
/// entries in the same order, so they reach the same state and the same indexes. Returns the
/// keys the entry touched and each op's outcome.
pub(crate) fn apply_entry(
    state: &mut State,
    ops: &[Decoded],
    key: &[u8],
) -> (Vec<WatchKey>, Outcomes) {
    let mut touched = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let result = match op {
            Decoded::Op(op) => {
                let index = state.index() + 1;
                match state.apply(op, index) {
                    Ok(Some(keys)) => {
                        touched.extend(keys);
                        Ok(Committed {
                            index,
                            applied: true,
                        })
                    }
                    Ok(None) => Ok(Committed {
                        index: state.index(),
                        applied: false,
                    }),
                    Err(e) => Err(StoreError::Rejected(e)),
                }
            }
            Decoded::Unreadable(error) => {
                tracing::error!(entry = %String::from_utf8_lossy(key), error = %error, "a log op does not read (written by a newer version?); skipped");
                Err(StoreError::Unavailable {
                    reason: format!("the op does not read on this replica: {error}"),
                })
            }
        };
        results.push(result);
    }
    (touched, results)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed step is a failed test

    use super::*;
    use crate::state::kv::KvOp;

    fn set(key: &str, cas: Option<u64>) -> Decoded {
        Decoded::Op(Op::Kv(KvOp::Set {
            key: key.into(),
            value: b"v".to_vec(),
            flags: 0,
            cas,
        }))
    }

    fn outcome(r: &Result<Committed, StoreError>) -> String {
        match r {
            Ok(c) => format!("{}:{}", c.index, c.applied),
            Err(e) => format!("err:{e}"),
        }
    }

    #[test]
    fn every_replica_applying_the_same_entries_reaches_the_same_state_and_indexes() {
        let entries = vec![
            vec![set("a", None), set("b", Some(0))],
            // A lost check-and-set takes no index; the op after it takes the next one.
            vec![set("b", Some(0)), set("c", None)],
            // An op this version cannot read is answered as such and takes no index.
            vec![
                Decoded::Unreadable("unknown variant `Future`".into()),
                set("d", None),
            ],
        ];
        let run = || {
            let mut state = State::default();
            let mut all = Vec::new();
            for ops in &entries {
                let (_, results) = apply_entry(&mut state, ops, b"log/x");
                all.extend(results.iter().map(outcome));
            }
            (state.index(), all)
        };
        let (index, outcomes) = run();
        assert_eq!(index, 4);
        assert_eq!(outcomes[..4], ["1:true", "2:true", "2:false", "3:true"]);
        assert!(
            outcomes[4].starts_with("err:the op does not read"),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[5], "4:true");
        assert_eq!(run(), (index, outcomes), "deterministic");
    }
}
