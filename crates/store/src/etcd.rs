//! The etcd backend: several control-plane replicas share one etcd cluster, which holds the
//! **replicated op log** (`docs/ha.md`).
//!
//! ```text
//!  writer ─▶ committer task: batch queued ops, validate them on a copy of the state at index H,
//!            txn { if head == H: put head = H+n, put log/<H+1> = sealed [{index, op}..] }
//!            ├─ committed: the copy becomes the state, watchers wake, writers get H+1..H+n
//!            └─ conflict (another replica appended): wait until the follower applied the new
//!               head, validate again (so check-and-set and graph checks stay linearizable)
//!  follower task: etcd watch on log/ from the last revision seen ─▶ State::apply in log order,
//!            wake watchers; a watch cancelled by compaction ─▶ resync from snapshot + log
//!  health task: a linearizable read each second (stale-read headers, known leader)
//!  election task: etcd election on a lease ─▶ `leadership()` (singleton work), snapshots
//! ```
//!
//! Indexes are log positions, one per op, exactly as the embedded log numbers them, so they are
//! monotonic across replicas and restarts; each log entry is one etcd revision. Values are
//! sealed with the operator's key (`crypt`).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue};
use parking_lot::RwLock;
use tokio::sync::{mpsc, watch};

use crate::state::{State, StateSnapshot};
use crate::wal::Record;
use crate::{Shared, StoreError, health, watch as waiters};

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
}

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
        }
    }
}

/// The key layout under the prefix.
#[derive(Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The last index in the log (decimal); every append compares and moves it.
    pub(crate) fn head(&self) -> String {
        format!("{}/head", self.prefix)
    }
    pub(crate) fn log_prefix(&self) -> String {
        format!("{}/log/", self.prefix)
    }
    /// One appended batch, named by its first index (zero-padded so keys sort as indexes).
    pub(crate) fn log(&self, first: u64) -> String {
        format!("{}/log/{first:020}", self.prefix)
    }
    pub(crate) fn log_first(&self, key: &[u8]) -> Option<u64> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.log_prefix())?
            .parse()
            .ok()
    }
    /// Which snapshot is current: `{"index", "parts"}` (plain: no secrets).
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
    pub parts: usize,
}

/// What every task of one replica shares.
pub(crate) struct Ctx {
    pub client: Client,
    pub keys: Keys,
    pub sealer: crypt::Sealer,
    pub shared: Arc<Shared>,
    pub opts: EtcdOptions,
    /// The index the state has reached (the committer waits on it after a conflict).
    pub applied: watch::Sender<u64>,
    /// The etcd revision the loaded state was read at (where the follower starts).
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
    let (mut state, revision) = loaded;
    state.set_floor();
    tracing::info!(index = state.index(), revision, endpoints = %endpoints, prefix = %keys.prefix, "store opened on etcd");
    let (applied, _) = watch::channel(state.index());
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
        applied,
        endpoints,
        metrics: metrics.clone(),
    });
    let (tx, rx) = mpsc::channel(crate::WRITE_QUEUE);
    let (leader_tx, leader) = watch::channel(false);
    let tasks = Tasks(vec![
        tokio::spawn(commit::run(ctx.clone(), rx)),
        tokio::spawn(follow::run(ctx.clone(), revision)),
        tokio::spawn(follow::health(ctx.clone())),
        tokio::spawn(election::run(ctx, leader_tx)),
    ]);
    Ok(Opened {
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

/// The state as etcd holds it now: the snapshot, then every log entry after it, all read at one
/// revision (returned: the follower watches from the next one).
pub(crate) async fn load(
    client: &mut Client,
    keys: &Keys,
    sealer: &crypt::Sealer,
) -> Result<(State, i64), String> {
    let resp = client
        .get(keys.snapshot(), None)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut state = State::default();
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
    }
    let from = keys.log(state.index() + 1).into_bytes();
    let (entries, _) = range(client, from, prefix_end(&keys.log_prefix()), revision, 256)
        .await
        .map_err(|e| format!("cannot read the log: {e}"))?;
    for kv in &entries {
        let records = decode_entry(sealer, kv)?;
        follow::apply_records(&mut state, &records);
    }
    Ok((state, revision))
}

fn wrong_key(name: &str) -> String {
    format!(
        "{name} does not decrypt with the configured encryption key (a different key, or not written by lambdamesh)"
    )
}

/// One record of a log entry: an op, or the index of one this version cannot read (skipped at
/// apply like the embedded log skips it, so one unreadable op does not stop a replica).
// Read once per record as it is applied; boxing the op would only add allocations.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded {
    Op(Record),
    Unreadable { index: u64, error: String },
}

#[derive(serde::Deserialize)]
struct IndexOnly {
    index: u64,
}

/// One log entry's records, opened and read.
pub(crate) fn decode_entry(sealer: &crypt::Sealer, kv: &KeyValue) -> Result<Vec<Decoded>, String> {
    let name = String::from_utf8_lossy(kv.key());
    let plain = sealer
        .open(kv.key(), kv.value())
        .map_err(|_| wrong_key(&name))?;
    let values: Vec<serde_json::Value> = serde_json::from_slice(&plain)
        .map_err(|e| format!("log entry {name} does not read: {e}"))?;
    values
        .into_iter()
        .map(|v| match serde_json::from_value::<Record>(v.clone()) {
            Ok(r) => Ok(Decoded::Op(r)),
            Err(e) => serde_json::from_value::<IndexOnly>(v)
                .map(|i| Decoded::Unreadable {
                    index: i.index,
                    error: e.to_string(),
                })
                .map_err(|_| format!("log entry {name} holds a record without an index")),
        })
        .collect()
}
