//! What a proxy's configuration depends on, discovered in one place over borrowed state.
//!
//! The server implements [`MeshState`] over its store's state (under the read lock) and calls
//! [`discover`] once per recompute. The answer holds the typed description of everything the
//! proxy's resources are computed from ([`Dependencies`]: the server turns it into the store
//! keys it waits on), the values the compiler reads (only the config entries the proxy depends
//! on, never a copy of the whole set; the endpoints of the services it reaches) and the
//! upstreams' discovery chains, compiled here once and handed to
//! [`crate::compile::compile_with_chains`].
//!
//! The rule that keeps this honest: compiling with only the discovered entries gives the same
//! resources as compiling with all of them (`deps/tests.rs` checks it). An entry the compiler
//! reads but discovery missed would make the proxy miss that entry's changes, and breaks that
//! rule.
//!
//! Must not depend on the store, the server or any I/O: state comes in through [`MeshState`].

use std::collections::{BTreeMap, BTreeSet};

use mesh_model::EntMeta;
use mesh_model::catalog::NodeService;
use mesh_model::config_entry::{ConfigEntry, ConfigEntrySet, EntryKey, Kind, MeshGatewayMode};
use mesh_model::intentions;
use mesh_model::names::{ServiceName, WILDCARD};

use crate::compile::{Endpoint, ProxyKind, UpstreamChains, sidecar};

/// The model state a proxy's configuration is read from, borrowed.
pub trait MeshState {
    /// Every config entry.
    fn config_entries(&self) -> &ConfigEntrySet;
    /// Names of the services registered in one tenancy, sorted.
    fn service_names(&self, meta: &EntMeta) -> Vec<String>;
    /// Mesh endpoints of a service, as `/v1/health/connect` lists them: its sidecars and native
    /// instances, or the instances of a terminating gateway linked to it.
    fn connect_endpoints(&self, svc: &ServiceName) -> Vec<Endpoint>;
    /// Instances of a service, as `/v1/health/service` lists them.
    fn service_endpoints(&self, svc: &ServiceName) -> Vec<Endpoint>;
    /// Every mesh gateway instance of one tenancy's partition, as `/v1/health/service` lists
    /// them, with the names of the services they are instances of.
    fn mesh_gateways(&self, meta: &EntMeta) -> (Vec<Endpoint>, BTreeSet<ServiceName>);
    /// Other datacenters' mesh gateways (HOST, PORT), by datacenter.
    fn remote_gateways(&self) -> BTreeMap<String, Vec<(String, u16)>>;
}

/// Everything a proxy's resources are computed from. Besides these, every proxy depends on the
/// Connect CA (its roots, and the trust domain that names SNIs and SPIFFE IDs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependencies {
    /// The proxy's own service: its registration is one of that service's instances.
    pub proxy: ServiceName,
    /// Config entries read, present or not (writing one that is absent changes the proxy).
    pub entries: BTreeSet<EntryKey>,
    /// Services whose mesh endpoints are read.
    pub connect: BTreeSet<ServiceName>,
    /// Services whose instances are read.
    pub instances: BTreeSet<ServiceName>,
    /// Tenancies whose list of service names is read (a mesh gateway's services, a
    /// terminating gateway's `*` link).
    pub service_lists: BTreeSet<EntMeta>,
    /// Services whose leaf certificate the proxy presents.
    pub leaves: BTreeSet<ServiceName>,
    /// Whether other datacenters' mesh gateways are read (the federation's map, which lives
    /// outside the store).
    pub remote_gateways: bool,
}

/// What [`discover`] found: the dependencies, and the values the compiler reads.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub deps: Dependencies,
    /// The entries among [`Dependencies::entries`] that exist (for `ProxyInputs::entries`).
    pub entries: ConfigEntrySet,
    /// For `ProxyInputs::connect_endpoints`.
    pub connect_endpoints: BTreeMap<ServiceName, Vec<Endpoint>>,
    /// For `ProxyInputs::service_endpoints`.
    pub service_endpoints: BTreeMap<ServiceName, Vec<Endpoint>>,
    /// A sidecar's chain per upstream destination (empty for gateways).
    pub chains: UpstreamChains,
    /// For `ProxyInputs::mesh_gateways` (read by sidecars with a target in another datacenter
    /// in mode `local`).
    pub mesh_gateways: Vec<Endpoint>,
    /// For `ProxyInputs::remote_gateways`.
    pub remote_gateways: BTreeMap<String, Vec<(String, u16)>>,
}

/// The service a proxy acts for: a sidecar's destination; a gateway itself.
pub fn identity(proxy: &NodeService) -> ServiceName {
    if proxy.is_connect_proxy() {
        ServiceName::new(&proxy.proxy.destination_service_name, proxy.ent_meta())
    } else {
        ServiceName::new(&proxy.service, proxy.ent_meta())
    }
}

/// The services whose leaves the proxy presents (signing them is the caller's business, before
/// [`discover`]; its [`Dependencies::leaves`] says whether they are still the ones needed).
pub fn leaves(
    state: &impl MeshState,
    proxy: &NodeService,
    kind: ProxyKind,
) -> BTreeSet<ServiceName> {
    match kind {
        ProxyKind::Sidecar => BTreeSet::from([identity(proxy)]),
        ProxyKind::TerminatingGateway => linked_services(state, proxy, &mut BTreeSet::new()),
        ProxyKind::MeshGateway => BTreeSet::new(),
    }
}

/// Reads what `proxy` (a registration of `kind`) depends on, and the values its compilation
/// needs, in a datacenter and trust domain.
pub fn discover(
    state: &impl MeshState,
    proxy: &NodeService,
    kind: ProxyKind,
    datacenter: &str,
    trust_domain: &str,
) -> Discovery {
    let mut found = Discovery {
        deps: Dependencies {
            proxy: ServiceName::new(&proxy.service, proxy.ent_meta()),
            entries: BTreeSet::new(),
            connect: BTreeSet::new(),
            instances: BTreeSet::new(),
            service_lists: BTreeSet::new(),
            leaves: BTreeSet::new(),
            remote_gateways: false,
        },
        entries: ConfigEntrySet::new(),
        connect_endpoints: BTreeMap::new(),
        service_endpoints: BTreeMap::new(),
        chains: UpstreamChains::new(),
        mesh_gateways: Vec::new(),
        remote_gateways: BTreeMap::new(),
    };
    match kind {
        ProxyKind::Sidecar => sidecar_deps(&mut found, state, proxy, datacenter, trust_domain),
        ProxyKind::TerminatingGateway => terminating_deps(&mut found, state, proxy),
        ProxyKind::MeshGateway => mesh_deps(&mut found, state, proxy),
    }
    let all = state.config_entries();
    for key in &found.deps.entries {
        if let Some(e) = all.get(key) {
            found.entries.insert(e.clone());
        }
    }
    found
}

/// The entry of `kind` named like `svc`, in its tenancy.
fn entry_key(kind: Kind, svc: &ServiceName) -> EntryKey {
    EntryKey {
        kind,
        meta: svc.meta.clone(),
        name: svc.name.clone(),
    }
}

/// A sidecar: its service's protocol and intentions (the public listener), and per upstream
/// the entries its chain read, and each target's Lambda marking and mesh endpoints.
fn sidecar_deps(
    found: &mut Discovery,
    state: &impl MeshState,
    proxy: &NodeService,
    datacenter: &str,
    trust_domain: &str,
) {
    let deps = &mut found.deps;
    let dest = identity(proxy);
    deps.entries.extend(ConfigEntrySet::protocol_keys(&dest));
    deps.entries
        .extend(intentions::destination_entry_keys(&dest));
    deps.leaves.insert(dest);
    let mut local_gateways = false;
    for u in &proxy.proxy.upstreams {
        let Some(key) = sidecar::upstream_key(proxy, u) else {
            continue;
        };
        if found.chains.contains_key(&key) {
            continue;
        }
        let (chain, read) =
            sidecar::compile_upstream(state.config_entries(), &key, datacenter, trust_domain);
        deps.entries.extend(read);
        for t in chain
            .targets
            .values()
            .flat_map(|t| std::iter::once(t).chain(t.failover.iter()))
        {
            if t.datacenter != datacenter {
                // Reached through mesh gateways: this datacenter's or the other's.
                match t.mesh_gateway {
                    MeshGatewayMode::Local => local_gateways = true,
                    _ => deps.remote_gateways = true,
                }
                continue;
            }
            // Its service-defaults carry the Lambda marking (among `protocol_keys`).
            if deps.connect.insert(t.service.clone()) {
                deps.entries
                    .extend(ConfigEntrySet::protocol_keys(&t.service));
            }
            // A function this sidecar invokes (one not behind a terminating gateway): its
            // instances' health decides failover that involves it.
            if crate::compile::lambda::lambda_of(state.config_entries(), &t.service).is_some()
                && !sidecar::terminating_gateway_endpoints(&state.connect_endpoints(&t.service))
                && deps.instances.insert(t.service.clone())
            {
                found
                    .service_endpoints
                    .insert(t.service.clone(), state.service_endpoints(&t.service));
            }
        }
        found.chains.insert(key, chain);
    }
    for svc in &deps.connect {
        found
            .connect_endpoints
            .insert(svc.clone(), state.connect_endpoints(svc));
    }
    if local_gateways {
        let meta = proxy.ent_meta();
        let (eps, services) = state.mesh_gateways(&meta);
        found.mesh_gateways = eps;
        deps.instances.extend(services);
        deps.service_lists.insert(meta);
    }
    if deps.remote_gateways {
        found.remote_gateways = state.remote_gateways();
    }
}

/// A terminating gateway: its entry, and per linked service the protocol (and Lambda marking),
/// intentions, resolver (subsets), instances and leaf.
fn terminating_deps(found: &mut Discovery, state: &impl MeshState, proxy: &NodeService) {
    let deps = &mut found.deps;
    deps.entries.insert(EntryKey {
        kind: Kind::TerminatingGateway,
        meta: proxy.ent_meta(),
        name: proxy.service.clone(),
    });
    for svc in linked_services(state, proxy, &mut deps.service_lists) {
        deps.entries.extend(ConfigEntrySet::protocol_keys(&svc));
        deps.entries
            .extend(intentions::destination_entry_keys(&svc));
        deps.entries.insert(entry_key(Kind::ServiceResolver, &svc));
        found
            .service_endpoints
            .insert(svc.clone(), state.service_endpoints(&svc));
        deps.instances.insert(svc.clone());
        deps.leaves.insert(svc);
    }
}

/// A mesh gateway: every service of its tenancy, the mesh endpoints of each, and the resolver
/// (subsets) of each that has any.
fn mesh_deps(found: &mut Discovery, state: &impl MeshState, proxy: &NodeService) {
    let deps = &mut found.deps;
    let meta = proxy.ent_meta();
    for name in state.service_names(&meta) {
        let svc = ServiceName::new(name, meta.clone());
        let eps = state.connect_endpoints(&svc);
        if !eps.is_empty() {
            deps.entries.insert(entry_key(Kind::ServiceResolver, &svc));
            found.connect_endpoints.insert(svc.clone(), eps);
        }
        deps.connect.insert(svc);
    }
    deps.service_lists.insert(meta);
    // Other datacenters' SNI goes on to their gateways.
    deps.remote_gateways = true;
    found.remote_gateways = state.remote_gateways();
}

/// Services linked to a terminating gateway by its config entry, `*` expanded to every service
/// of that tenancy (whose list is then recorded in `lists`).
fn linked_services(
    state: &impl MeshState,
    gw: &NodeService,
    lists: &mut BTreeSet<EntMeta>,
) -> BTreeSet<ServiceName> {
    let key = EntryKey {
        kind: Kind::TerminatingGateway,
        meta: gw.ent_meta(),
        name: gw.service.clone(),
    };
    let Some(ConfigEntry::TerminatingGateway(tg)) = state.config_entries().get(&key) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for s in &tg.services {
        let meta = s.ent_meta_within(&gw.ent_meta());
        if s.name == WILDCARD {
            out.extend(
                state
                    .service_names(&meta)
                    .into_iter()
                    .map(|n| ServiceName::new(n, meta.clone())),
            );
            lists.insert(meta);
        } else {
            out.insert(ServiceName::new(&s.name, meta));
        }
    }
    out
}

#[cfg(test)]
mod tests;
