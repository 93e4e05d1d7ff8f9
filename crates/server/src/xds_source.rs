//! Feeds the ADS server: per connected proxy, a task that reads the store and the leaf cache into
//! [`xds::ProxyInputs`], compiles them, and publishes the result on a watch channel, then sleeps
//! until one of the store keys the proxy depends on (or a leaf) changes. The newest snapshot
//! wins; a proxy that falls behind never sees stale intermediate states.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Status;

use mesh_model::catalog::{
    CRITICAL, KIND_CONNECT_PROXY, KIND_MESH_GATEWAY, KIND_TERMINATING_GATEWAY, Node, NodeService,
};
use mesh_model::config_entry::{ConfigEntry, Kind};
use mesh_model::names::ServiceName;
use store::{State, WatchKey};
use xds::compile::chain::compile_chain;
use xds::{CertPair, Endpoint, ProxyInputs, ProxyKind, Resources};

use crate::AppState;
use crate::connect::{trust_bundle, trust_domain};
use crate::rows::health_entry;

/// The snapshot source over this server's store.
pub struct StoreSource {
    app: AppState,
}

impl StoreSource {
    pub fn new(app: AppState) -> Self {
        Self { app }
    }
}

/// The proxy registration for an ADS node ID (its service ID), with its node.
fn find_proxy(st: &State, id: &str) -> Option<(Node, NodeService)> {
    st.nodes("default")
        .flat_map(|n| st.node_services("default", &n.node).map(move |s| (n, s)))
        .find(|(_, s)| {
            s.id == id
                && [
                    KIND_CONNECT_PROXY,
                    KIND_TERMINATING_GATEWAY,
                    KIND_MESH_GATEWAY,
                ]
                .contains(&s.kind.as_str())
        })
        .map(|(n, s)| (n.clone(), s.clone()))
}

/// The service a proxy acts for (sidecar: its destination; gateways: themselves).
fn identity_of(p: &NodeService) -> ServiceName {
    if p.is_connect_proxy() {
        ServiceName::new(&p.proxy.destination_service_name, p.ent_meta())
    } else {
        ServiceName::new(&p.service, p.ent_meta())
    }
}

impl xds::ads::SnapshotSource for StoreSource {
    fn subscribe(
        &self,
        node_id: &str,
        token: Option<&str>,
    ) -> Result<watch::Receiver<Arc<Resources>>, Status> {
        let found = self.app.store.read(|st| find_proxy(st, node_id));
        let Some((_, proxy)) = found else {
            return Err(Status::not_found(format!(
                "proxy {node_id:?} is not registered: register it (e.g. with a sidecar_service) before starting Envoy"
            )));
        };
        let ident = crate::authz::resolve_secret(&self.app, token)
            .map_err(|e| Status::permission_denied(e.message))?;
        let svc = identity_of(&proxy);
        if !ident.authorizer.service_write(&svc.name) {
            return Err(Status::permission_denied(format!(
                "Permission denied: token lacks permission 'service:write' on {:?}",
                svc.name
            )));
        }
        let (tx, rx) = watch::channel(Arc::new(Resources::default()));
        let app = self.app.clone();
        let node_id = node_id.to_owned();
        tokio::spawn(async move { run(app, node_id, tx).await });
        Ok(rx)
    }
}

/// Longest sleep between recomputations when nothing signals (a safety net, not the mechanism).
const MAX_IDLE: Duration = Duration::from_secs(300);

async fn run(app: AppState, node_id: String, tx: watch::Sender<Arc<Resources>>) {
    let mut leaf_rx = app.leaves.subscribe();
    let mut first = true;
    loop {
        let Some((inputs, keys, index, leaf_ids)) = gather(&app, &node_id).await else {
            tracing::info!(node = %node_id, "proxy deregistered; closing its xDS stream");
            return; // dropping tx ends the stream
        };
        let resources = Arc::new(xds::compile(&inputs));
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
                healthy: i.status() != CRITICAL,
                row,
            }
        })
        .collect()
}

/// Reads everything a proxy's config depends on. Returns `None` when the proxy is gone.
/// What a proxy's snapshot was built from: inputs, the store keys and index it read, and the
/// serial of each leaf it used.
type Gathered = (ProxyInputs, Vec<WatchKey>, u64, Vec<(ServiceName, u64)>);

async fn gather(app: &AppState, node_id: &str) -> Option<Gathered> {
    let dc = app.config.datacenter.clone();
    let default_allow = !app.config.acl.enabled || app.config.acl.default_allow;
    // First pass: what the proxy is and which leaves it needs (signing is async).
    let (node, proxy, leaf_services) = app.store.read(|st| {
        let (node, proxy) = find_proxy(st, node_id)?;
        let leaves: Vec<ServiceName> = match proxy.kind.as_str() {
            KIND_TERMINATING_GATEWAY => linked_services(st, &proxy),
            KIND_MESH_GATEWAY => vec![],
            _ => vec![identity_of(&proxy)],
        };
        Some((node, proxy, leaves))
    })?;
    let mut leaves = BTreeMap::new();
    let mut leaf_ids = Vec::new();
    for svc in leaf_services {
        match app.leaves.get(app, &svc).await {
            Ok(l) => {
                leaf_ids.push((svc.clone(), l.modify_index));
                leaves.insert(
                    svc,
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
    Some(app.store.read(|st| {
        let td = trust_domain(st);
        let entries = st.config_entries().clone();
        let mut keys = vec![
            WatchKey::Service(ServiceName::new(&proxy.service, proxy.ent_meta())),
            WatchKey::CaRoots,
        ];
        keys.extend(
            Kind::ALL
                .iter()
                .map(|k| WatchKey::ConfigKind(k.as_str().to_owned())),
        );
        let mut connect_endpoints = BTreeMap::new();
        let mut service_endpoints = BTreeMap::new();
        let kind = match proxy.kind.as_str() {
            KIND_TERMINATING_GATEWAY => ProxyKind::TerminatingGateway,
            KIND_MESH_GATEWAY => ProxyKind::MeshGateway,
            _ => ProxyKind::Sidecar,
        };
        match kind {
            ProxyKind::Sidecar => {
                for u in &proxy.proxy.upstreams {
                    let meta = mesh_model::EntMeta::new(
                        Some(if u.destination_partition.is_empty() {
                            &proxy.partition
                        } else {
                            &u.destination_partition
                        }),
                        Some(if u.destination_namespace.is_empty() {
                            &proxy.namespace
                        } else {
                            &u.destination_namespace
                        }),
                    );
                    let chain = compile_chain(
                        &entries,
                        &ServiceName::new(&u.destination_name, meta),
                        &dc,
                        &td,
                    );
                    for t in chain
                        .targets
                        .values()
                        .flat_map(|t| std::iter::once(t).chain(t.failover.iter()))
                    {
                        if !connect_endpoints.contains_key(&t.service) {
                            keys.push(WatchKey::Connect(t.service.clone()));
                            // A linked terminating gateway's instances stand in for the service.
                            keys.extend(
                                st.gateways_for(&t.service)
                                    .into_iter()
                                    .map(WatchKey::Service),
                            );
                            connect_endpoints.insert(
                                t.service.clone(),
                                endpoints_from(st.connect_instances(&t.service), &dc),
                            );
                        }
                    }
                }
            }
            ProxyKind::TerminatingGateway => {
                for svc in linked_services(st, &proxy) {
                    keys.push(WatchKey::Service(svc.clone()));
                    service_endpoints.insert(svc.clone(), endpoints_from(st.instances(&svc), &dc));
                }
            }
            ProxyKind::MeshGateway => {
                keys.push(WatchKey::Services(proxy.ent_meta()));
                for name in st.service_tags(&proxy.ent_meta()).keys() {
                    let svc = ServiceName::new(name, proxy.ent_meta());
                    let eps = endpoints_from(st.connect_instances(&svc), &dc);
                    keys.push(WatchKey::Connect(svc.clone()));
                    if !eps.is_empty() {
                        connect_endpoints.insert(svc, eps);
                    }
                }
            }
        }
        let index = st.index_of(&keys);
        let leaf = if kind == ProxyKind::Sidecar {
            leaves.get(&identity_of(&proxy)).cloned()
        } else {
            None
        };
        let inputs = ProxyInputs {
            kind,
            proxy: proxy.clone(),
            node_address: node.address.clone(),
            datacenter: dc.clone(),
            trust_domain: td,
            roots_pem: trust_bundle(st),
            leaf,
            service_leaves: if kind == ProxyKind::TerminatingGateway {
                leaves.clone()
            } else {
                BTreeMap::new()
            },
            entries,
            connect_endpoints,
            service_endpoints,
            default_allow,
            lambda_endpoint: app.config.lambda_endpoint.clone(),
        };
        (inputs, keys, index, leaf_ids)
    }))
}

/// Services linked to a terminating gateway (its config entry, `*` expanded to every service).
fn linked_services(st: &State, gw: &NodeService) -> Vec<ServiceName> {
    let key = mesh_model::config_entry::EntryKey {
        kind: Kind::TerminatingGateway,
        meta: gw.ent_meta(),
        name: gw.service.clone(),
    };
    let Some(ConfigEntry::TerminatingGateway(tg)) = st.config_entries().get(&key) else {
        return vec![];
    };
    let mut out = Vec::new();
    for s in &tg.services {
        let meta = s.ent_meta_within(&gw.ent_meta());
        if s.name == "*" {
            out.extend(
                st.service_tags(&meta)
                    .keys()
                    .map(|n| ServiceName::new(n, meta.clone())),
            );
        } else {
            out.push(ServiceName::new(&s.name, meta));
        }
    }
    out.sort();
    out.dedup();
    out
}
