//! The Aggregated Discovery Service: state-of-the-world and delta streams over one snapshot
//! channel per proxy. Each type keeps its own version and nonce; a stale nonce is ignored; a NACK
//! is logged with Envoy's message and recorded in the [`NackLog`], and nothing is re-sent until
//! the content changes, so Envoy keeps serving the last configuration it accepted. Sessions,
//! pushes, NACKs and ACK latency are counted in [`AdsMetrics`].

mod metrics;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::{Any, discovery};
use crate::resources::{self, CLUSTER, LISTENER, PUSH_ORDER, Resources};

pub use metrics::{AdsMetrics, type_label};

/// Where snapshots come from (implemented by the control-plane server).
pub trait SnapshotSource: Send + Sync + 'static {
    /// Subscribes to proxy `node_id`'s resources; the receiver sees every new snapshot. Its
    /// initial value is a placeholder that is never served: the first snapshot must be *sent*.
    /// Errors are gRPC statuses for the client: unknown proxy, bad or insufficient token.
    fn subscribe(
        &self,
        node_id: &str,
        token: Option<&str>,
    ) -> Result<watch::Receiver<Arc<Resources>>, Status>;
}

/// A configuration Envoy rejected.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Nack {
    pub node: String,
    pub type_url: String,
    pub version: String,
    pub nonce: String,
    pub message: String,
    pub unix_ms: u64,
}

/// The most recent NACKs per proxy (bounded), for the HTTP API and the launcher's status.
#[derive(Default)]
pub struct NackLog {
    by_node: Mutex<HashMap<String, Vec<Nack>>>,
}

/// NACKs kept per proxy: enough to see a pattern, bounded against a misbehaving client.
const NACKS_PER_NODE: usize = 32;

impl NackLog {
    fn record(&self, nack: Nack) {
        tracing::warn!(node = %nack.node, type_url = %nack.type_url, version = %nack.version, message = %nack.message, "Envoy rejected configuration (NACK); it keeps serving its last accepted config");
        let mut map = self.by_node.lock();
        let list = map.entry(nack.node.clone()).or_default();
        list.push(nack);
        if list.len() > NACKS_PER_NODE {
            list.remove(0);
        }
    }

    /// All recorded NACKs, by proxy.
    pub fn all(&self) -> BTreeMap<String, Vec<Nack>> {
        self.by_node
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Connected proxies and what they last acknowledged (for status and benchmarks).
#[derive(Default)]
pub struct AckLog {
    acks: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl AckLog {
    fn record(&self, node: &str, type_url: &str, version: &str) {
        self.acks
            .lock()
            .entry(node.to_owned())
            .or_default()
            .insert(type_url.to_owned(), version.to_owned());
    }
    fn forget(&self, node: &str) {
        self.acks.lock().remove(node);
    }
    /// Node → type → last acknowledged version.
    pub fn all(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.acks
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The ADS service.
pub struct Ads<S> {
    source: Arc<S>,
    pub nacks: Arc<NackLog>,
    pub acks: Arc<AckLog>,
    metrics: Arc<AdsMetrics>,
    nonce: Arc<AtomicU64>,
    /// Flips to true on shutdown: every stream ends so the server can drain (Envoy never
    /// closes its ADS stream by itself, and reconnects when it ends).
    stopping: watch::Receiver<bool>,
    stop: Arc<watch::Sender<bool>>,
}

impl<S: SnapshotSource> Ads<S> {
    pub fn new(source: Arc<S>, nacks: Arc<NackLog>, acks: Arc<AckLog>) -> Self {
        let (stop, stopping) = watch::channel(false);
        Self {
            source,
            nacks,
            acks,
            metrics: Arc::default(),
            nonce: Arc::default(),
            stopping,
            stop: Arc::new(stop),
        }
    }

    /// Counts into `metrics` (each server has its own otherwise).
    pub fn with_metrics(mut self, metrics: Arc<AdsMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The tonic service to mount.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(16 * 1024 * 1024)
    }
}

fn token_of<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == CLUSTER || type_url == LISTENER
}

fn known_type(type_url: &str) -> Result<(), Status> {
    if PUSH_ORDER.contains(&type_url) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "unsupported resource type {type_url:?}"
        )))
    }
}

#[derive(Default)]
struct SotwType {
    requested: bool,
    names: Option<BTreeSet<String>>,
    sent: Option<BTreeMap<String, Any>>,
    version: u64,
    nonce: String,
    /// When the response with `nonce` was sent, until the proxy answers it.
    sent_at: Option<Instant>,
}

fn select(
    current: &Resources,
    type_url: &str,
    names: &Option<BTreeSet<String>>,
) -> BTreeMap<String, Any> {
    let all = current.of_type(type_url).cloned().unwrap_or_default();
    match names {
        None => all,
        Some(n) => all.into_iter().filter(|(k, _)| n.contains(k)).collect(),
    }
}

/// The two request types, as far as opening a session needs: the proxy's node.
trait NodeRequest {
    fn node(&self) -> Option<&crate::pb::core::Node>;
}

impl NodeRequest for discovery::DiscoveryRequest {
    fn node(&self) -> Option<&crate::pb::core::Node> {
        self.node.as_ref()
    }
}

impl NodeRequest for discovery::DeltaDiscoveryRequest {
    fn node(&self) -> Option<&crate::pb::core::Node> {
        self.node.as_ref()
    }
}

/// What woke a session (both protocols share this loop head).
enum Wake<R> {
    Request(R),
    Snapshot(Arc<Resources>),
    End(Result<(), Status>),
}

/// A session's inputs: Envoy's requests (starting with the one already read), the proxy's
/// snapshots, and the control plane's shutdown.
struct Feed<R> {
    inbound: Streaming<R>,
    rx: watch::Receiver<Arc<Resources>>,
    stopping: watch::Receiver<bool>,
    pending: Option<R>,
}

impl<R> Feed<R> {
    /// The next request, a new snapshot, or the end: the stream closing, the proxy's
    /// registration going away, or the control plane shutting down.
    async fn next(&mut self, node: &str) -> Wake<R> {
        if let Some(r) = self.pending.take() {
            return Wake::Request(r);
        }
        tokio::select! {
            msg = self.inbound.message() => match msg {
                Ok(Some(r)) => Wake::Request(r),
                Ok(None) => Wake::End(Ok(())),
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "stream ended");
                    Wake::End(Ok(()))
                }
            },
            changed = self.rx.changed() => match changed {
                Ok(()) => Wake::Snapshot(self.rx.borrow_and_update().clone()),
                Err(_) => Wake::End(Err(Status::unavailable("the proxy's registration is gone"))),
            },
            _ = self.stopping.wait_for(|s| *s) => {
                Wake::End(Err(Status::unavailable("the control plane is shutting down")))
            }
        }
    }
}

struct Session<S> {
    source: Arc<S>,
    nacks: Arc<NackLog>,
    acks: Arc<AckLog>,
    metrics: Arc<AdsMetrics>,
    nonce: Arc<AtomicU64>,
    token: Option<String>,
    stopping: watch::Receiver<bool>,
}

impl<S: SnapshotSource> Session<S> {
    fn next_nonce(&self) -> String {
        self.nonce.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// The proxy answered (ACK or NACK) the response of `type_url` sent at `sent_at`.
    fn answered(&self, type_url: &str, sent_at: Option<Instant>, nack: bool) {
        let label = [type_label(type_url)];
        if let Some(t) = sent_at {
            self.metrics
                .push_latency
                .get(&label)
                .observe_secs(t.elapsed());
        }
        if nack {
            self.metrics.nacks.get(&label).inc();
        }
    }

    /// Reads the first request (which names the proxy), subscribes the proxy and waits for its
    /// first real snapshot; `None` when the stream ends first. The channel's initial value is a
    /// placeholder: answering with it would tell a reconnecting Envoy to drop everything it has.
    async fn open<R: NodeRequest>(
        &self,
        mut inbound: Streaming<R>,
        mode: &str,
    ) -> Result<Option<(String, Arc<Resources>, Feed<R>)>, Status> {
        let Some(first) = inbound.message().await? else {
            return Ok(None);
        };
        let started = Instant::now();
        let node = first
            .node()
            .map(|n| n.id.clone())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument(
                    "the first request must carry node.id (the proxy's service ID)",
                )
            })?;
        let mut rx = self.source.subscribe(&node, self.token.as_deref())?;
        tracing::info!(node = %node, mode, "proxy connected");
        if rx.changed().await.is_err() {
            return Err(Status::unavailable("the proxy's registration is gone"));
        }
        let current = rx.borrow_and_update().clone();
        self.metrics.stream_start.observe_secs(started.elapsed());
        let feed = Feed {
            inbound,
            rx,
            stopping: self.stopping.clone(),
            pending: Some(first),
        };
        Ok(Some((node, current, feed)))
    }

    async fn sotw(
        self,
        inbound: Streaming<discovery::DiscoveryRequest>,
        tx: mpsc::Sender<Result<discovery::DiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        let Some((node, mut current, mut feed)) = self.open(inbound, "state of the world").await?
        else {
            return Ok(());
        };
        let open = self.metrics.streams.get(&["sotw"]);
        let _open = open.track();
        let mut types: HashMap<String, SotwType> = HashMap::new();
        let result = loop {
            match feed.next(&node).await {
                Wake::End(result) => break result,
                Wake::Request(req) => {
                    known_type(&req.type_url)?;
                    let st = types.entry(req.type_url.clone()).or_default();
                    if !req.response_nonce.is_empty() && req.response_nonce != st.nonce {
                        continue; // a reply to an older response: superseded
                    }
                    if !req.response_nonce.is_empty() {
                        let nack = req.error_detail.is_some();
                        self.answered(&req.type_url, st.sent_at.take(), nack);
                    }
                    if let Some(err) = &req.error_detail {
                        self.nacks.record(Nack {
                            node: node.clone(),
                            type_url: req.type_url.clone(),
                            version: st.version.to_string(),
                            nonce: req.response_nonce.clone(),
                            message: err.message.clone(),
                            unix_ms: now_ms(),
                        });
                        continue;
                    }
                    let names = if is_wildcard_type(&req.type_url)
                        && (req.resource_names.is_empty()
                            || req.resource_names.iter().any(|n| n == "*"))
                    {
                        None
                    } else {
                        Some(req.resource_names.iter().cloned().collect::<BTreeSet<_>>())
                    };
                    let first_request = !st.requested;
                    let names_changed = names != st.names;
                    st.requested = true;
                    st.names = names;
                    if !req.response_nonce.is_empty() {
                        self.acks.record(&node, &req.type_url, &req.version_info);
                    }
                    if first_request || names_changed {
                        let res = select(&current, &req.type_url, &st.names);
                        self.send_sotw(&tx, &req.type_url, st, res).await?;
                    }
                }
                Wake::Snapshot(snapshot) => {
                    current = snapshot;
                    // Envoy keeps an updated cluster warming until it gets that cluster's
                    // endpoints again, so a cluster change always re-sends EDS.
                    let mut clusters_changed = false;
                    for t in PUSH_ORDER {
                        let Some(st) = types.get_mut(t) else { continue };
                        if !st.requested {
                            continue;
                        }
                        let res = select(&current, t, &st.names);
                        let force = t == resources::ENDPOINT && clusters_changed;
                        if st.sent.as_ref() != Some(&res) || force {
                            self.send_sotw(&tx, t, st, res).await?;
                            if t == CLUSTER {
                                clusters_changed = true;
                            }
                        }
                    }
                }
            }
        };
        self.acks.forget(&node);
        tracing::info!(node = %node, "proxy disconnected");
        result
    }

    async fn send_sotw(
        &self,
        tx: &mpsc::Sender<Result<discovery::DiscoveryResponse, Status>>,
        type_url: &str,
        st: &mut SotwType,
        res: BTreeMap<String, Any>,
    ) -> Result<(), Status> {
        st.version += 1;
        st.nonce = self.next_nonce();
        st.sent_at = Some(Instant::now());
        self.metrics.pushes.get(&[type_label(type_url)]).inc();
        let resp = discovery::DiscoveryResponse {
            version_info: st.version.to_string(),
            resources: res.values().cloned().collect(),
            type_url: type_url.to_owned(),
            nonce: st.nonce.clone(),
            ..Default::default()
        };
        st.sent = Some(res);
        tx.send(Ok(resp))
            .await
            .map_err(|_| Status::cancelled("client gone"))
    }

    async fn delta(
        self,
        inbound: Streaming<discovery::DeltaDiscoveryRequest>,
        tx: mpsc::Sender<Result<discovery::DeltaDiscoveryResponse, Status>>,
    ) -> Result<(), Status> {
        let Some((node, mut current, mut feed)) = self.open(inbound, "delta").await? else {
            return Ok(());
        };
        let open = self.metrics.streams.get(&["delta"]);
        let _open = open.track();
        let mut types: HashMap<String, DeltaType> = HashMap::new();
        let result = loop {
            match feed.next(&node).await {
                Wake::End(result) => break result,
                Wake::Request(req) => {
                    known_type(&req.type_url)?;
                    let st = types.entry(req.type_url.clone()).or_default();
                    if !st.started {
                        st.started = true;
                        st.wildcard = is_wildcard_type(&req.type_url)
                            && (req.resource_names_subscribe.is_empty()
                                || req.resource_names_subscribe.iter().any(|n| n == "*"));
                        st.client = req.initial_resource_versions.clone().into_iter().collect();
                    }
                    let mut force = false;
                    for n in &req.resource_names_subscribe {
                        if n == "*" {
                            st.wildcard = true;
                        } else if st.subscribed.insert(n.clone()) {
                            force = true;
                        }
                    }
                    for n in &req.resource_names_unsubscribe {
                        if n == "*" {
                            st.wildcard = false;
                        }
                        st.subscribed.remove(n);
                        st.client.remove(n);
                    }
                    if !req.response_nonce.is_empty() {
                        if req.response_nonce != st.nonce {
                            continue;
                        }
                        let nack = req.error_detail.is_some();
                        self.answered(&req.type_url, st.sent_at.take(), nack);
                        if let Some(err) = &req.error_detail {
                            self.nacks.record(Nack {
                                node: node.clone(),
                                type_url: req.type_url.clone(),
                                version: st.nonce.clone(),
                                nonce: req.response_nonce.clone(),
                                message: err.message.clone(),
                                unix_ms: now_ms(),
                            });
                            // Envoy did not take the last response: it still has the previous versions.
                            st.client = std::mem::take(&mut st.before_last);
                            st.awaiting_ack = false;
                            continue;
                        }
                        st.awaiting_ack = false;
                        self.acks.record(&node, &req.type_url, &st.nonce);
                    }
                    let first_response = !st.responded;
                    let sent = self
                        .send_delta(&tx, &req.type_url, st, &current, first_response || force)
                        .await?;
                    // Clusters sent in answer to a request warm like pushed ones (after a
                    // reconnect, Envoy's versions may differ from a restarted server's).
                    if req.type_url == CLUSTER
                        && forget_endpoints_of(&mut types, &sent)
                        && let Some(eds) = types.get_mut(resources::ENDPOINT)
                    {
                        self.send_delta(&tx, resources::ENDPOINT, eds, &current, false)
                            .await?;
                    }
                }
                Wake::Snapshot(snapshot) => {
                    current = snapshot;
                    // Endpoints come after clusters in the push order, so those of the clusters
                    // just sent go out in the same push.
                    for t in PUSH_ORDER {
                        if let Some(st) = types.get_mut(t) {
                            if !st.started {
                                continue;
                            }
                            let sent = self.send_delta(&tx, t, st, &current, false).await?;
                            if t == CLUSTER {
                                forget_endpoints_of(&mut types, &sent);
                            }
                        }
                    }
                }
            }
        };
        self.acks.forget(&node);
        tracing::info!(node = %node, "proxy disconnected");
        result
    }

    /// Sends what Envoy lacks of one type; returns the names of resources sent.
    async fn send_delta(
        &self,
        tx: &mpsc::Sender<Result<discovery::DeltaDiscoveryResponse, Status>>,
        type_url: &str,
        st: &mut DeltaType,
        current: &Resources,
        always: bool,
    ) -> Result<Vec<String>, Status> {
        let all = current.of_type(type_url).cloned().unwrap_or_default();
        let in_scope = |name: &str| st.wildcard || st.subscribed.contains(name);
        let mut resources = Vec::new();
        let mut versions = BTreeMap::new();
        for (name, any) in all.iter().filter(|(n, _)| in_scope(n)) {
            let v = resources::version_of(any);
            if st.client.get(name) != Some(&v) {
                resources.push(discovery::Resource {
                    name: name.clone(),
                    version: v.clone(),
                    resource: Some(any.clone()),
                    ..Default::default()
                });
            }
            versions.insert(name.clone(), v);
        }
        let removed: Vec<String> = st
            .client
            .keys()
            .filter(|n| !versions.contains_key(*n))
            .cloned()
            .collect();
        if resources.is_empty() && removed.is_empty() && !always {
            return Ok(Vec::new());
        }
        st.before_last = st.client.clone();
        for n in &removed {
            st.client.remove(n);
        }
        for r in &resources {
            st.client.insert(r.name.clone(), r.version.clone());
        }
        st.nonce = self.next_nonce();
        st.sent_at = Some(Instant::now());
        self.metrics.pushes.get(&[type_label(type_url)]).inc();
        st.responded = true;
        st.awaiting_ack = true;
        let resp = discovery::DeltaDiscoveryResponse {
            system_version_info: st.nonce.clone(),
            resources,
            type_url: type_url.to_owned(),
            removed_resources: removed,
            nonce: st.nonce.clone(),
            ..Default::default()
        };
        let sent = resp.resources.iter().map(|r| r.name.clone()).collect();
        tx.send(Ok(resp))
            .await
            .map_err(|_| Status::cancelled("client gone"))?;
        Ok(sent)
    }
}

#[derive(Default)]
struct DeltaType {
    started: bool,
    responded: bool,
    awaiting_ack: bool,
    wildcard: bool,
    subscribed: BTreeSet<String>,
    /// What Envoy has: name → version.
    client: BTreeMap<String, String>,
    before_last: BTreeMap<String, String>,
    nonce: String,
    /// When the response with `nonce` was sent, until the proxy answers it.
    sent_at: Option<Instant>,
}

/// Envoy keeps a cluster it was sent warming until it gets that cluster's endpoints again, even
/// unchanged and even where it reported having them: forget what Envoy has of the EDS resources
/// of `clusters`, so the next EDS send includes them. Whether there is something to send on a
/// started EDS stream.
fn forget_endpoints_of(types: &mut HashMap<String, DeltaType>, clusters: &[String]) -> bool {
    match types.get_mut(resources::ENDPOINT) {
        Some(eds) if eds.started => {
            for name in clusters {
                eds.client.remove(name);
            }
            !clusters.is_empty()
        }
        _ => false,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Messages buffered per stream towards Envoy; a slow proxy only holds up its own stream.
const STREAM_BUFFER: usize = 16;

#[tonic::async_trait]
impl<S: SnapshotSource> AggregatedDiscoveryService for Ads<S> {
    type StreamAggregatedResourcesStream =
        ReceiverStream<Result<discovery::DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        ReceiverStream<Result<discovery::DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<discovery::DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(self.serve_stream(req, "ADS", |session, inbound, tx| session.sotw(inbound, tx)))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<discovery::DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(self.serve_stream(req, "delta ADS", |session, inbound, tx| {
            session.delta(inbound, tx)
        }))
    }
}

impl<S: SnapshotSource> Ads<S> {
    /// Runs one stream's session in its own task; a refused stream ends with its status.
    fn serve_stream<Rq, Rs, F, Fut>(
        &self,
        req: Request<Streaming<Rq>>,
        kind: &'static str,
        run: F,
    ) -> Response<ReceiverStream<Result<Rs, Status>>>
    where
        Rs: Send + 'static,
        F: FnOnce(Session<S>, Streaming<Rq>, mpsc::Sender<Result<Rs, Status>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
    {
        let session = Session {
            source: self.source.clone(),
            nacks: self.nacks.clone(),
            acks: self.acks.clone(),
            metrics: self.metrics.clone(),
            nonce: self.nonce.clone(),
            token: token_of(&req),
            stopping: self.stopping.clone(),
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let session_run = run(session, req.into_inner(), tx.clone());
        tokio::spawn(async move {
            if let Err(status) = session_run.await {
                tracing::info!(stream = kind, code = ?status.code(), message = %status.message(), "ADS stream refused");
                let _ = tx.send(Err(status)).await;
            }
        });
        Response::new(ReceiverStream::new(rx))
    }
}

/// Serves ADS on `listener` until `shutdown` resolves.
///
/// # Errors
/// The gRPC server fails.
pub async fn serve<S: SnapshotSource>(
    listener: tokio::net::TcpListener,
    ads: Ads<S>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let stop = ads.stop.clone();
    let mut stopped = ads.stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    tonic::transport::Server::builder()
        .add_service(ads.into_service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )
        .await
}
