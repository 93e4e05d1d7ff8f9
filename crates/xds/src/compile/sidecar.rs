//! A sidecar's resources: `local_app`, the mTLS public listener with intentions as RBAC, and one
//! listener per upstream with its discovery chain, SNI-named EDS clusters and their endpoints.
//! The chains come compiled (by dependency discovery, which needs them first).

use mesh_model::EntMeta;
use mesh_model::catalog::{NodeService, ServiceKind, Upstream};
use mesh_model::names::ServiceName;

use std::collections::BTreeSet;

use mesh_model::config_entry::{ConfigEntrySet, EntryKey, MeshGatewayMode};

use super::chain::{Chain, Dest, Origin, Target, compile_chain_from};
use super::{
    ProxyInputs, UpstreamChains, eds_cluster, hcm_filter, insert, intentions_for, is_http,
    listener, load_assignment, network_filter, route_config, route_to, static_cluster,
    target_endpoints, tcp_proxy, tls,
};
use crate::pb::{self, listener as lpb, pack_any};
use crate::resources::Resources;

pub const LOCAL_APP: &str = "local_app";

/// The service an upstream listener is for; `None` for upstreams that get no listener (prepared
/// queries, no local bind port).
pub(crate) fn upstream_service(p: &NodeService, u: &Upstream) -> Option<ServiceName> {
    if u.destination_type == "prepared_query" || u.local_bind_port == 0 {
        return None;
    }
    let meta = EntMeta::new(
        Some(if u.destination_partition.is_empty() {
            &p.partition
        } else {
            &u.destination_partition
        }),
        Some(if u.destination_namespace.is_empty() {
            &p.namespace
        } else {
            &u.destination_namespace
        }),
    );
    Some(ServiceName::new(&u.destination_name, meta))
}

/// What an upstream's chain depends on besides config entries: its service, the datacenter it
/// names (empty: the caller's) and the mesh gateway mode its upstream or proxy sets.
pub type UpstreamKey = (ServiceName, String, MeshGatewayMode);

/// The key of an upstream that gets a listener.
pub(crate) fn upstream_key(p: &NodeService, u: &Upstream) -> Option<UpstreamKey> {
    let svc = upstream_service(p, u)?;
    let datacenter = u.datacenter.clone();
    Some((
        svc,
        datacenter,
        MeshGatewayMode::parse(&u.mesh_gateway.mode)
            .or(MeshGatewayMode::parse(&p.proxy.mesh_gateway.mode)),
    ))
}

/// The chain of one upstream, with the config entries it read.
pub(crate) fn compile_upstream(
    entries: &ConfigEntrySet,
    key: &UpstreamKey,
    datacenter: &str,
    trust_domain: &str,
) -> (Chain, BTreeSet<EntryKey>) {
    let origin = Origin {
        datacenter,
        upstream_datacenter: &key.1,
        mesh_gateway: key.2,
    };
    compile_chain_from(entries, &key.0, origin, trust_domain)
}

/// The chain of every upstream of a sidecar, compiled from its inputs.
pub(super) fn chains_of(inputs: &ProxyInputs) -> UpstreamChains {
    inputs
        .proxy
        .proxy
        .upstreams
        .iter()
        .filter_map(|u| upstream_key(&inputs.proxy, u))
        .map(|key| {
            let (chain, _) = compile_upstream(
                &inputs.entries,
                &key,
                &inputs.datacenter,
                &inputs.trust_domain,
            );
            (key, chain)
        })
        .collect()
}

pub(super) fn compile(inputs: &ProxyInputs, chains: &UpstreamChains) -> Resources {
    let mut out = Resources::default();
    let p = &inputs.proxy;
    let meta = p.ent_meta();
    let dest = ServiceName::new(&p.proxy.destination_service_name, meta.clone());
    let protocol = inputs.entries.protocol_of(&dest);
    let http2 = matches!(protocol.as_str(), "http2" | "grpc");
    let local_host = if p.proxy.local_service_address.is_empty() {
        "127.0.0.1"
    } else {
        &p.proxy.local_service_address
    };
    insert(
        &mut out.clusters,
        LOCAL_APP,
        static_cluster(
            LOCAL_APP,
            local_host,
            p.proxy.local_service_port,
            5_000,
            http2,
        ),
    );

    if let Some(leaf) = &inputs.leaf {
        let bind = inputs.bind_address();
        let name = format!("public_listener:{bind}:{}", p.port);
        let ints = intentions_for(&inputs.entries, &dest);
        let filters = if is_http(&protocol) {
            let rules =
                super::rbac::compile_rbac(&ints, inputs.default_allow, &inputs.trust_domain, true);
            let sni = mesh_model::connect::service_sni(
                &dest,
                None,
                &inputs.datacenter,
                &inputs.trust_domain,
            );
            let rbac =
                super::rbac::http_rbac_filter(&super::rbac::http_rbac_name(&sni), rules, &mut out);
            vec![hcm_filter(
                "public_listener",
                route_config(LOCAL_APP, vec![route_to(LOCAL_APP)]),
                vec![rbac],
                true,
            )]
        } else {
            let rules =
                super::rbac::compile_rbac(&ints, inputs.default_allow, &inputs.trust_domain, false);
            vec![
                network_filter(
                    "envoy.filters.network.rbac",
                    pack_any(pb::net_rbac::Rbac {
                        rules: Some(rules),
                        stat_prefix: "connect_authz".into(),
                        ..Default::default()
                    }),
                ),
                tcp_proxy("public_listener", LOCAL_APP),
            ]
        };
        let chain = lpb::FilterChain {
            filters,
            transport_socket: Some(tls::downstream(leaf, &inputs.roots_pem)),
            ..Default::default()
        };
        insert(
            &mut out.listeners,
            &name,
            listener(&name, bind, p.port, vec![chain], vec![]),
        );
    }

    for u in &p.proxy.upstreams {
        let Some(key) = upstream_key(p, u) else {
            continue;
        };
        let svc = &key.0;
        let mut chain = match chains.get(&key) {
            Some(c) => c.clone(),
            // Callers pass every upstream's chain; compiling here keeps a missing one harmless.
            None => {
                compile_upstream(
                    &inputs.entries,
                    &key,
                    &inputs.datacenter,
                    &inputs.trust_domain,
                )
                .0
            }
        };
        let envoy_id = &u.destination_name;
        let bind = if u.local_bind_address.is_empty() {
            "127.0.0.1"
        } else {
            &u.local_bind_address
        };
        let name = format!("{envoy_id}:{bind}:{}", u.local_bind_port);
        // The Lambda patch (reference §2.1–§2.3): the caller's sidecar invokes a function itself
        // only when it is not linked to a terminating gateway (then the gateway does).
        // A function in another datacenter is that datacenter's to invoke (its terminating
        // gateway, reached through the mesh gateways).
        let lambdas = if is_http(&chain.protocol) {
            super::lambda::chain_lambdas(
                &inputs.entries,
                chain
                    .targets
                    .values()
                    .filter(|t| t.datacenter == inputs.datacenter)
                    .map(|t| (t.sni.clone(), t.service.clone())),
                |s| gateway_linked(inputs, s),
            )
        } else {
            Default::default()
        };
        super::lambda::resolve_lambda_failover(&mut chain, &lambdas, |t| {
            available(inputs, t, lambdas.contains_key(&t.sni))
        });
        let chain = with_failover(&chain);
        let own_sni =
            mesh_model::connect::service_sni(svc, None, &inputs.datacenter, &inputs.trust_domain);
        let filter_target = lambdas.get(&own_sni).or_else(|| lambdas.values().next());
        let filter = if is_http(&chain.protocol) {
            let mut routes = super::routes::envoy_routes(&chain.routes);
            let filters = match filter_target {
                Some(l) => {
                    super::lambda::per_route_configs(&mut routes, &lambdas, l);
                    vec![
                        super::lambda::function_error_filter(),
                        super::lambda::lambda_filter(l),
                    ]
                }
                None => vec![],
            };
            let mut h = super::http_connection_manager(
                &format!("upstream.{envoy_id}"),
                route_config(envoy_id, routes),
                filters,
                false,
            );
            if filter_target.is_some() {
                super::lambda::strip_any_host_port(&mut h);
            }
            super::hcm_network_filter(h)
        } else {
            let cluster = match chain.routes.last().map(|r| &r.dest) {
                Some(Dest::Cluster(c)) => c.clone(),
                _ => String::new(),
            };
            tcp_proxy(&format!("upstream.{envoy_id}"), &cluster)
        };
        insert(
            &mut out.listeners,
            &name,
            listener(
                &name,
                bind,
                u.local_bind_port,
                vec![lpb::FilterChain {
                    filters: vec![filter],
                    ..Default::default()
                }],
                vec![],
            ),
        );
        add_targets(inputs, &chain, &mut out);
        // Each patched cluster is replaced (mesh TLS and EDS dropped), as Consul does.
        for (sni, l) in &lambdas {
            insert(
                &mut out.clusters,
                sni,
                super::lambda::lambda_cluster(
                    sni,
                    super::chain::DEFAULT_CONNECT_TIMEOUT_MS,
                    l,
                    inputs.lambda_endpoint.as_ref(),
                ),
            );
            out.endpoints.remove(sni);
        }
    }
    out
}

/// Consul's name for the aggregate cluster of a target with failover.
pub fn failover_cluster_name(sni: &str) -> String {
    format!("failover-target~{sni}")
}

/// Routes of a chain pointed at aggregate clusters where a target has failover targets.
pub(super) fn with_failover(chain: &Chain) -> Chain {
    let rename = |c: &String| match chain.targets.get(c) {
        Some(t) if !t.failover.is_empty() => failover_cluster_name(c),
        _ => c.clone(),
    };
    let mut out = chain.clone();
    for r in &mut out.routes {
        r.dest = match &r.dest {
            Dest::Cluster(c) => Dest::Cluster(rename(c)),
            Dest::Weighted(ws) => Dest::Weighted(ws.iter().map(|(c, w)| (rename(c), *w)).collect()),
        };
    }
    out
}

/// Clusters (mesh mTLS to the target's SPIFFE ID) and endpoints of every target of a chain, plus
/// an aggregate cluster (primary first, then each failover target) for targets with failover.
pub(super) fn add_targets(inputs: &ProxyInputs, chain: &Chain, out: &mut Resources) {
    let http2 = matches!(chain.protocol.as_str(), "http2" | "grpc");
    for t in chain.targets.values() {
        let tls = inputs
            .leaf
            .as_ref()
            .map(|leaf| tls::upstream(leaf, &inputs.roots_pem, &t.sni, &t.spiffe_id));
        insert(
            &mut out.clusters,
            &t.sni,
            eds_cluster(&t.sni, t.connect_timeout_ms, http2, tls),
        );
        insert(
            &mut out.endpoints,
            &t.sni,
            load_assignment(&t.sni, &endpoints_of(inputs, t)),
        );
        if !t.failover.is_empty() {
            let name = failover_cluster_name(&t.sni);
            let clusters = std::iter::once(t.sni.clone())
                .chain(t.failover.iter().map(|f| f.sni.clone()))
                .collect();
            let agg = pb::cluster::Cluster {
                name: name.clone(),
                connect_timeout: Some(pb::millis(t.connect_timeout_ms)),
                lb_policy: pb::cluster::cluster::LbPolicy::ClusterProvided as i32,
                cluster_discovery_type: Some(
                    pb::cluster::cluster::ClusterDiscoveryType::ClusterType(
                        pb::cluster::cluster::CustomClusterType {
                            name: "envoy.clusters.aggregate".into(),
                            typed_config: Some(pack_any(pb::aggregate::ClusterConfig { clusters })),
                        },
                    ),
                ),
                ..Default::default()
            };
            insert(&mut out.clusters, &name, agg);
        }
    }
}

/// Where a target's traffic goes: its mesh endpoints in this datacenter; for a target in
/// another datacenter, this datacenter's mesh gateways (mode `local`) or that datacenter's
/// (`remote`, and `none`: no direct reachability between datacenters is assumed, see
/// `docs/multi-dc.md`). The gateways forward the caller's TLS by its SNI.
pub(super) fn endpoints_of(inputs: &ProxyInputs, t: &Target) -> Vec<(String, u16, bool)> {
    if t.datacenter == inputs.datacenter {
        let eps = inputs
            .connect_endpoints
            .get(&t.service)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        return target_endpoints(eps, &t.filter, t.only_passing);
    }
    match t.mesh_gateway {
        MeshGatewayMode::Local => target_endpoints(&inputs.mesh_gateways, "", false),
        MeshGatewayMode::Remote | MeshGatewayMode::None | MeshGatewayMode::Default => inputs
            .remote_gateways
            .get(&t.datacenter)
            .map(|gws| gws.iter().map(|(h, p)| (h.clone(), *p, true)).collect())
            .unwrap_or_default(),
    }
}

/// Whether a target can take traffic, as the catalog says: a function this proxy invokes has
/// an instance that is not critical (passing, with the subset's `OnlyPassing`) and matches
/// the subset; any other target has a healthy endpoint.
fn available(inputs: &ProxyInputs, t: &Target, invoked_here: bool) -> bool {
    if invoked_here {
        let eps = inputs
            .service_endpoints
            .get(&t.service)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        return target_endpoints(eps, &t.filter, t.only_passing)
            .iter()
            .any(|e| e.2);
    }
    endpoints_of(inputs, t).iter().any(|e| e.2)
}

/// Whether `svc`'s mesh endpoints are a terminating gateway's (the service is linked to one).
fn gateway_linked(inputs: &ProxyInputs, svc: &ServiceName) -> bool {
    inputs
        .connect_endpoints
        .get(svc)
        .is_some_and(|eps| terminating_gateway_endpoints(eps))
}

/// Whether mesh endpoints are a terminating gateway's.
pub(crate) fn terminating_gateway_endpoints(eps: &[super::Endpoint]) -> bool {
    eps.iter()
        .any(|e| e.row["Service"]["Kind"] == ServiceKind::TerminatingGateway.as_str())
}
