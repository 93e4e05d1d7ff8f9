//! Feeds the ADS server: per connected proxy, a task that reads the store and the leaf cache into
//! [`xds::ProxyInputs`], compiles them, and publishes the result on a watch channel, then sleeps
//! until one of the store keys the proxy depends on (or one of its leaves) changes. The newest
//! snapshot wins; a proxy that falls behind never sees stale intermediate states.
//!
//! What a proxy depends on is discovered by `xds::deps` over the store's state, borrowed under
//! the read lock (`StoreView`); `watch_keys` is the one place that description becomes store
//! keys. So a write wakes only the proxies that read what it touched, and only the config
//! entries a proxy depends on are copied out of the store.
//!
//! Uses from `crate::api`: the health row JSON of an instance (`health::entry_json`, what subset
//! filters evaluate) and the CA's trust domain and bundle (`connect_ca::{trust_domain,
//! trust_bundle}`); the leaf cache is `AppState::leaves`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::Status;

use mesh_model::EntMeta;
use mesh_model::catalog::{CRITICAL, NodeService};
use mesh_model::config_entry::{ConfigEntrySet, Kind};
use mesh_model::names::ServiceName;
use store::{State, WatchKey};
use xds::compile::UpstreamChains;
use xds::deps::{Dependencies, Discovery, MeshState};
use xds::{CertPair, Endpoint, ProxyInputs, ProxyKind, Resources};

use crate::AppState;
use crate::api::connect_ca::{trust_bundle, trust_domain};
use crate::api::health::entry_json;

/// The snapshot source over this server's store.
pub struct StoreSource {
    app: AppState,
    recomputes: Arc<Recomputes>,
}

impl StoreSource {
    pub fn new(app: AppState) -> Self {
        Self {
            app,
            recomputes: Arc::default(),
        }
    }

    /// How many times the snapshot of the proxy `node_id` has been computed while it had a
    /// stream open (0 once its streams are gone): for tests that check which writes reach
    /// which proxies.
    pub fn recomputes(&self, node_id: &str) -> u64 {
        self.recomputes
            .0
            .lock()
            .get(node_id)
            .map_or(0, |c| c.computed)
    }
}

/// Per proxy with an open stream: snapshots computed, streams open.
#[derive(Default)]
struct Recomputes(Mutex<HashMap<String, Counter>>);

#[derive(Default)]
struct Counter {
    computed: u64,
    streams: usize,
}

impl Recomputes {
    fn opened(&self, node_id: &str) {
        self.0.lock().entry(node_id.to_owned()).or_default().streams += 1;
    }

    fn computed(&self, node_id: &str) {
        if let Some(c) = self.0.lock().get_mut(node_id) {
            c.computed += 1;
        }
    }

    fn closed(&self, node_id: &str) {
        let mut map = self.0.lock();
        if let Some(c) = map.get_mut(node_id) {
            c.streams -= 1;
            if c.streams == 0 {
                map.remove(node_id);
            }
        }
    }
}

/// The registration xDS configures for an ADS node ID (its service ID): the proxy, its kind and
/// its node's address.
fn find_proxy(st: &State, id: &str) -> Option<(NodeService, ProxyKind, String)> {
    st.nodes("default")
        .flat_map(|n| st.node_services("default", &n.node).map(move |s| (n, s)))
        .find_map(|(n, s)| {
            let kind = ProxyKind::of(s).filter(|_| s.id == id)?;
            Some((s.clone(), kind, n.address.clone()))
        })
}

impl xds::ads::SnapshotSource for StoreSource {
    fn subscribe(
        &self,
        node_id: &str,
        token: Option<&str>,
    ) -> Result<watch::Receiver<Arc<Resources>>, Status> {
        let found = self.app.store.read(|st| find_proxy(st, node_id));
        let Some((proxy, _, _)) = found else {
            return Err(Status::not_found(format!(
                "proxy {node_id:?} is not registered: register it (e.g. with a sidecar_service) before starting Envoy"
            )));
        };
        let ident = crate::authz::resolve_secret(&self.app, token)
            .map_err(|e| Status::permission_denied(e.message))?;
        let svc = xds::deps::identity(&proxy);
        if !ident.authorizer.service_write(&svc.name) {
            return Err(Status::permission_denied(format!(
                "Permission denied: token lacks permission 'service:write' on {:?}",
                svc.name
            )));
        }
        let (tx, rx) = watch::channel(Arc::new(Resources::default()));
        let app = self.app.clone();
        let node_id = node_id.to_owned();
        let recomputes = self.recomputes.clone();
        recomputes.opened(&node_id);
        tokio::spawn(async move {
            run(&app, &node_id, &tx, &recomputes).await;
            recomputes.closed(&node_id);
        });
        Ok(rx)
    }
}

/// Longest sleep between recomputations when nothing signals (a safety net, not the mechanism).
const MAX_IDLE: Duration = Duration::from_secs(300);

async fn run(
    app: &AppState,
    node_id: &str,
    tx: &watch::Sender<Arc<Resources>>,
    recomputes: &Recomputes,
) {
    let mut leaf_rx = app.leaves.subscribe();
    let mut first = true;
    loop {
        let Some(g) = gather(app, node_id).await else {
            tracing::info!(node = %node_id, "proxy deregistered; closing its xDS stream");
            return; // dropping tx ends the stream
        };
        recomputes.computed(node_id);
        let resources = Arc::new(xds::compile_with_chains(&g.inputs, &g.chains));
        if first || **tx.borrow() != *resources {
            first = false;
            if tx.send(resources).is_err() {
                return;
            }
        }
        // Leaves of *other* services change all the time (every new proxy gets one); only a
        // change to one of this proxy's leaves is a reason to recompute.
        loop {
            tokio::select! {
                _ = app.store.wait_for_change(&g.keys, g.index, MAX_IDLE) => break,
                changed = leaf_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let mine_changed = g.leaf_ids.iter().any(|(svc, id)| app.leaves.peek(svc).map(|l| l.modify_index) != Some(*id));
                    if mine_changed {
                        break;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    }
}

/// The store's state as xDS dependency discovery reads it, borrowed under the read lock.
struct StoreView<'a> {
    st: &'a State,
    datacenter: &'a str,
}

impl MeshState for StoreView<'_> {
    fn config_entries(&self) -> &ConfigEntrySet {
        self.st.config_entries()
    }

    fn service_names(&self, meta: &EntMeta) -> Vec<String> {
        self.st.service_tags(meta).into_keys().collect()
    }

    fn connect_endpoints(&self, svc: &ServiceName) -> Vec<Endpoint> {
        endpoints_from(self.st.connect_instances(svc), self.datacenter)
    }

    fn service_endpoints(&self, svc: &ServiceName) -> Vec<Endpoint> {
        endpoints_from(self.st.instances(svc), self.datacenter)
    }
}

/// Endpoints with their health/connect rows (the same JSON `/v1/health/*` serves, so subset
/// filters see exactly what a client of the API would).
fn endpoints_from(instances: Vec<store::state::catalog::Instance<'_>>, dc: &str) -> Vec<Endpoint> {
    instances
        .into_iter()
        .map(|i| {
            let address = if i.service.address.is_empty() {
                i.node.address.clone()
            } else {
                i.service.address.clone()
            };
            let row = entry_json(&i, dc);
            Endpoint {
                address,
                port: i.service.port,
                healthy: i.status() != CRITICAL,
                row,
            }
        })
        .collect()
}

/// The store keys whose writes can change what `deps` describes: the one place where xDS
/// dependencies meet the store's keys.
fn watch_keys(st: &State, deps: &Dependencies) -> Vec<WatchKey> {
    let mut keys = vec![WatchKey::CaRoots, WatchKey::Service(deps.proxy.clone())];
    keys.extend(deps.entries.iter().map(|k| WatchKey::ConfigEntry {
        kind: k.kind.as_str().to_owned(),
        meta: k.meta.clone(),
        name: k.name.clone(),
    }));
    keys.extend(deps.instances.iter().cloned().map(WatchKey::Service));
    keys.extend(deps.service_lists.iter().cloned().map(WatchKey::Services));
    keys.extend(deps.connect.iter().cloned().map(WatchKey::Connect));
    if !deps.connect.is_empty() {
        // A service's mesh endpoints include the instances of the terminating gateways linked
        // to it, and any gateway's entry may link it.
        let gateways: BTreeSet<ServiceName> = deps
            .connect
            .iter()
            .flat_map(|s| st.gateways_for(s))
            .collect();
        keys.extend(gateways.into_iter().map(WatchKey::Service));
        keys.push(WatchKey::ConfigKind(
            Kind::TerminatingGateway.as_str().to_owned(),
        ));
    }
    keys
}

/// What a proxy's snapshot is built from: the compiler's inputs and chains, the store keys and
/// index they were read at, and the serial of each leaf used.
struct Gathered {
    inputs: ProxyInputs,
    chains: UpstreamChains,
    keys: Vec<WatchKey>,
    index: u64,
    leaf_ids: Vec<(ServiceName, u64)>,
}

/// One read of the state for a proxy, under the read lock.
struct StateRead {
    proxy: NodeService,
    kind: ProxyKind,
    node_address: String,
    trust_domain: String,
    roots_pem: Vec<String>,
    found: Discovery,
    keys: Vec<WatchKey>,
    index: u64,
}

/// Reads what the proxy `node_id` depends on. `None`: the proxy is gone; `Some(Err(leaves))`:
/// it now needs other leaves than the `signed` ones.
fn read_state(
    st: &State,
    node_id: &str,
    datacenter: &str,
    signed: &BTreeSet<ServiceName>,
) -> Option<Result<StateRead, BTreeSet<ServiceName>>> {
    let (proxy, kind, node_address) = find_proxy(st, node_id)?;
    let trust_domain = trust_domain(st);
    let view = StoreView { st, datacenter };
    let found = xds::deps::discover(&view, &proxy, kind, datacenter, &trust_domain);
    if found.deps.leaves != *signed {
        return Some(Err(found.deps.leaves));
    }
    let keys = watch_keys(st, &found.deps);
    Some(Ok(StateRead {
        index: st.index_of(&keys),
        roots_pem: trust_bundle(st),
        proxy,
        kind,
        node_address,
        trust_domain,
        found,
        keys,
    }))
}

/// Leaves of `services` from the leaf cache (signed when missing or due), with their serials.
async fn sign_leaves(
    app: &AppState,
    services: &BTreeSet<ServiceName>,
) -> (BTreeMap<ServiceName, CertPair>, Vec<(ServiceName, u64)>) {
    let mut leaves = BTreeMap::new();
    let mut leaf_ids = Vec::new();
    for svc in services {
        match app.leaves.get(app, svc).await {
            Ok(l) => {
                leaf_ids.push((svc.clone(), l.modify_index));
                leaves.insert(
                    svc.clone(),
                    CertPair {
                        cert_pem: l.cert_pem.clone(),
                        key_pem: l.key_pem.clone(),
                    },
                );
            }
            Err(e) => {
                tracing::warn!(service = %svc.name, error = %e.message, "cannot issue a leaf certificate; the proxy waits for it")
            }
        }
    }
    (leaves, leaf_ids)
}

/// Reads everything a proxy's config depends on. Returns `None` when the proxy is gone.
async fn gather(app: &AppState, node_id: &str) -> Option<Gathered> {
    let dc = app.config.datacenter.as_str();
    // Leaves are signed before the state is read (signing is async); if the state read then
    // needs other leaves (the proxy or a gateway's links changed in between), sign those and
    // read again.
    let mut wanted = app.store.read(|st| {
        let (proxy, kind, _) = find_proxy(st, node_id)?;
        let view = StoreView { st, datacenter: dc };
        Some(xds::deps::leaves(&view, &proxy, kind))
    })?;
    let (mut leaves, leaf_ids, read) = loop {
        let (leaves, leaf_ids) = sign_leaves(app, &wanted).await;
        match app.store.read(|st| read_state(st, node_id, dc, &wanted))? {
            Ok(read) => break (leaves, leaf_ids, read),
            Err(now_wanted) => wanted = now_wanted,
        }
    };
    let kind = read.kind;
    let leaf = match kind {
        ProxyKind::Sidecar => leaves.remove(&xds::deps::identity(&read.proxy)),
        ProxyKind::TerminatingGateway | ProxyKind::MeshGateway => None,
    };
    let inputs = ProxyInputs {
        kind,
        proxy: read.proxy,
        node_address: read.node_address,
        datacenter: dc.to_owned(),
        trust_domain: read.trust_domain,
        roots_pem: read.roots_pem,
        leaf,
        service_leaves: match kind {
            ProxyKind::TerminatingGateway => leaves,
            ProxyKind::Sidecar | ProxyKind::MeshGateway => BTreeMap::new(),
        },
        entries: read.found.entries,
        connect_endpoints: read.found.connect_endpoints,
        service_endpoints: read.found.service_endpoints,
        default_allow: !app.config.acl.enabled || app.config.acl.default_allow,
        lambda_endpoint: app.config.lambda_endpoint.clone(),
    };
    Some(Gathered {
        inputs,
        chains: read.found.chains,
        keys: read.keys,
        index: read.index,
        leaf_ids,
    })
}

#[cfg(test)]
mod tests;
