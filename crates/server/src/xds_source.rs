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
//! Uses from the rest of the server: the health row JSON of an instance (`rows::health_entry`,
//! what subset filters evaluate), the CA's trust domain and bundle (`connect::{trust_domain,
//! trust_bundle}`) and its leaf cache (`AppState::leaves`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::Status;

use mesh_model::EntMeta;
use mesh_model::catalog::{CheckStatus, Node, NodeService};
use mesh_model::config_entry::{ConfigEntrySet, Kind};
use mesh_model::names::ServiceName;
use store::{State, WatchKey};
use xds::compile::UpstreamChains;
use xds::deps::{Dependencies, Discovery, MeshState};
use xds::{CertPair, Endpoint, ProxyInputs, ProxyKind, Resources};

use crate::AppState;
use crate::config::ServerConfig;
use crate::connect::{trust_bundle, trust_domain};
use crate::rows::health_entry;

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
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// A counter of computed snapshots per proxy with an open stream (shared by its streams).
#[derive(Default)]
struct Recomputes(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Recomputes {
    fn opened(&self, node_id: &str) -> Arc<AtomicU64> {
        self.0.lock().entry(node_id.to_owned()).or_default().clone()
    }

    fn closed(&self, node_id: &str, counter: Arc<AtomicU64>) {
        let mut map = self.0.lock();
        drop(counter);
        // Only the map's reference left: no other stream of this proxy is open.
        if map.get(node_id).is_some_and(|c| Arc::strong_count(c) == 1) {
            map.remove(node_id);
        }
    }
}

/// The registration xDS configures for an ADS node ID (its service ID): the proxy, its kind and
/// its node.
fn find_proxy<'a>(st: &'a State, id: &'a str) -> Option<(&'a NodeService, ProxyKind, &'a Node)> {
    st.services_with_id("default", id)
        .find_map(|(n, s)| Some((s, ProxyKind::of(s)?, n)))
}

impl xds::ads::SnapshotSource for StoreSource {
    fn subscribe(
        &self,
        node_id: &str,
        token: Option<&str>,
    ) -> Result<watch::Receiver<Arc<Resources>>, Status> {
        let found = self
            .app
            .store
            .read(|st| find_proxy(st, node_id).map(|(p, _, _)| xds::deps::identity(p)));
        let Some(svc) = found else {
            return Err(Status::not_found(format!(
                "proxy {node_id:?} is not registered: register it (e.g. with a sidecar_service) before starting Envoy"
            )));
        };
        let ident = crate::authz::resolve_secret(&self.app, token)
            .map_err(|e| Status::permission_denied(e.message))?;
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
        let counter = recomputes.opened(&node_id);
        tokio::spawn(async move {
            run(&app, &node_id, &tx, &counter).await;
            recomputes.closed(&node_id, counter);
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
    recomputes: &AtomicU64,
) {
    let mut leaf_rx = app.leaves.subscribe();
    let mut first = true;
    loop {
        let Some(g) = gather(app, node_id).await else {
            tracing::info!(node = %node_id, "proxy deregistered; closing its xDS stream");
            return; // dropping tx ends the stream
        };
        recomputes.fetch_add(1, Ordering::Relaxed);
        // Only what the wait needs outlives the compile: a thousand idle proxies should not each
        // hold a copy of their inputs.
        let Gathered {
            inputs,
            chains,
            keys,
            index,
            leaf_ids,
        } = g;
        let resources = Arc::new(xds::compile_with_chains(&inputs, &chains));
        drop((inputs, chains));
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
                _ = app.store.wait_for_change(&keys, index, MAX_IDLE) => break,
                changed = leaf_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let mine_changed = leaf_ids.iter().any(|(svc, id)| app.leaves.peek(svc).map(|l| l.modify_index) != Some(*id));
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
    config: &'a ServerConfig,
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

    fn mesh_gateways(&self, meta: &EntMeta) -> (Vec<Endpoint>, BTreeSet<ServiceName>) {
        // Gateways are registered in a partition's default namespace, as Consul has them.
        let gateway_meta = EntMeta::new(Some(&meta.partition), None);
        let mut eps = Vec::new();
        let mut names = BTreeSet::new();
        for name in self.st.service_tags(&gateway_meta).into_keys() {
            let svc = ServiceName::new(name, gateway_meta.clone());
            let instances: Vec<_> = self
                .st
                .instances(&svc)
                .into_iter()
                .filter(|i| i.service.kind == mesh_model::catalog::ServiceKind::MeshGateway)
                .collect();
            if !instances.is_empty() {
                eps.extend(endpoints_from(instances, self.datacenter));
                names.insert(svc);
            }
        }
        (eps, names)
    }

    fn remote_gateways(&self) -> BTreeMap<String, Vec<(String, u16)>> {
        crate::federation::gateway_map_of(self.st, self.config)
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
            let row = health_entry(&i, dc);
            Endpoint {
                address,
                port: i.service.port,
                healthy: i.status() != CheckStatus::Critical,
                row,
            }
        })
        .collect()
}

/// The store keys whose writes can change what `deps` describes: the one place where xDS
/// dependencies meet the store's keys.
fn watch_keys(st: &State, deps: Dependencies) -> Vec<WatchKey> {
    let mut keys = vec![WatchKey::CaRoots, WatchKey::Service(deps.proxy)];
    keys.extend(deps.entries.into_iter().map(WatchKey::ConfigEntry));
    keys.extend(deps.instances.into_iter().map(WatchKey::Service));
    keys.extend(deps.service_lists.into_iter().map(WatchKey::Services));
    if deps.remote_gateways {
        keys.push(WatchKey::FederationStates);
    }
    if !deps.connect.is_empty() {
        // A service's mesh endpoints include the instances of the terminating gateways linked
        // to it, and any gateway's entry may link it.
        let gateways: BTreeSet<ServiceName> = deps
            .connect
            .iter()
            .flat_map(|s| st.gateways_for(s))
            .collect();
        keys.extend(gateways.into_iter().map(WatchKey::Service));
        keys.push(WatchKey::ConfigKind(Kind::TerminatingGateway));
    }
    keys.extend(deps.connect.into_iter().map(WatchKey::Connect));
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

/// Reads what the proxy `node_id` depends on, under the read lock; the leaves are left for the
/// caller, who signed them. `None`: the proxy is gone; `Some(Err(leaves))`: it now needs other
/// leaves than the `signed` ones.
fn read_state(
    st: &State,
    config: &ServerConfig,
    node_id: &str,
    signed: &BTreeSet<ServiceName>,
) -> Option<Result<Gathered, BTreeSet<ServiceName>>> {
    let datacenter = config.datacenter.as_str();
    let (proxy, kind, node) = find_proxy(st, node_id)?;
    let trust_domain = trust_domain(st);
    let view = StoreView {
        st,
        datacenter,
        config,
    };
    let Discovery {
        deps,
        entries,
        connect_endpoints,
        service_endpoints,
        chains,
        mesh_gateways,
        remote_gateways,
    } = xds::deps::discover(&view, proxy, kind, datacenter, &trust_domain);
    if deps.leaves != *signed {
        return Some(Err(deps.leaves));
    }
    let keys = watch_keys(st, deps);
    Some(Ok(Gathered {
        index: st.index_of(&keys),
        inputs: ProxyInputs {
            kind,
            proxy: proxy.clone(),
            node_address: node.address.clone(),
            datacenter: datacenter.to_owned(),
            trust_domain,
            roots_pem: trust_bundle(st),
            leaf: None,
            service_leaves: BTreeMap::new(),
            entries,
            connect_endpoints,
            service_endpoints,
            default_allow: !config.acl.enabled || config.acl.default_allow,
            lambda_endpoint: config.lambda_endpoint.clone(),
            local_servers: Vec::new(),
            mesh_gateways,
            remote_gateways,
        },
        chains,
        keys,
        leaf_ids: Vec::new(),
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
                tracing::warn!(service = %svc.name, error = %e, "cannot issue a leaf certificate; the proxy waits for it")
            }
        }
    }
    (leaves, leaf_ids)
}

/// Reads everything a proxy's config depends on. Returns `None` when the proxy is gone.
async fn gather(app: &AppState, node_id: &str) -> Option<Gathered> {
    // Leaves are signed before the state is read (signing is async); if the state read then
    // needs other leaves (the proxy or a gateway's links changed in between), sign those and
    // read again.
    let mut wanted = app.store.read(|st| {
        let (proxy, kind, _) = find_proxy(st, node_id)?;
        let view = StoreView {
            st,
            datacenter: &app.config.datacenter,
            config: &app.config,
        };
        Some(xds::deps::leaves(&view, proxy, kind))
    })?;
    loop {
        let (mut leaves, leaf_ids) = sign_leaves(app, &wanted).await;
        match app
            .store
            .read(|st| read_state(st, &app.config, node_id, &wanted))?
        {
            Ok(mut g) => {
                let inputs = &mut g.inputs;
                match inputs.kind {
                    ProxyKind::Sidecar => {
                        inputs.leaf = leaves.remove(&xds::deps::identity(&inputs.proxy));
                    }
                    ProxyKind::TerminatingGateway => inputs.service_leaves = leaves,
                    ProxyKind::MeshGateway => {
                        inputs.local_servers = app.federation.local_servers();
                    }
                }
                g.leaf_ids = leaf_ids;
                return Some(g);
            }
            Err(now_wanted) => wanted = now_wanted,
        }
    }
}

#[cfg(test)]
mod tests;
