//! State → Envoy resources, as a pure function of [`ProxyInputs`]. Names follow Consul's so
//! that Consul-era tooling (and the Lambda patch) find what they expect: clusters for targets
//! are named by SNI, the local service cluster is `local_app`, the inbound listener is
//! `public_listener:<addr>:<port>`, upstream listeners are `<upstream>:<addr>:<port>`.

use std::collections::BTreeMap;

use mesh_model::catalog::{NodeService, ServiceKind};
use mesh_model::config_entry::ConfigEntrySet;
use mesh_model::intentions::{self, MatchBy};
use mesh_model::names::ServiceName;

use crate::pb::{self, cluster, core, endpoint, hcm, listener, pack_any, route};
use crate::resources::Resources;

pub mod chain;
mod gateway;
pub mod lambda;
pub mod rbac;
mod routes;
pub(crate) mod sidecar;
mod tls;

/// What kind of proxy is being configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Sidecar,
    TerminatingGateway,
    MeshGateway,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// One instance a cluster can send to.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub address: String,
    pub port: u16,
    pub healthy: bool,
    /// The health/connect row of the instance (`Node`, `Service`, `Checks`), for subset filters.
    pub row: serde_json::Value,
}

/// Everything the compiler needs, as values.
#[derive(Debug, Clone)]
pub struct ProxyInputs {
    pub kind: ProxyKind,
    /// The proxy's own registration.
    pub proxy: NodeService,
    pub node_address: String,
    pub datacenter: String,
    pub trust_domain: String,
    /// Trusted roots, PEM, active first.
    pub roots_pem: Vec<String>,
    /// The proxy's own identity: the destination service's leaf for a sidecar.
    pub leaf: Option<CertPair>,
    /// Terminating gateway: the leaf of each linked service, presented per SNI.
    pub service_leaves: BTreeMap<ServiceName, CertPair>,
    pub entries: ConfigEntrySet,
    /// Mesh endpoints (health/connect) of every service the proxy may route to.
    pub connect_endpoints: BTreeMap<ServiceName, Vec<Endpoint>>,
    /// Plain instances (health/service) of services a terminating gateway fronts.
    pub service_endpoints: BTreeMap<ServiceName, Vec<Endpoint>>,
    /// The ACL default policy, which decides when no intention matches.
    pub default_allow: bool,
    /// Where Lambda functions are invoked (`None`: AWS's regional endpoints).
    pub lambda_endpoint: Option<lambda::LambdaEndpoint>,
    /// The server ports (HOST, PORT) of this datacenter's servers: a mesh gateway registered
    /// with `Meta { consul-wan-federation = "1" }` routes the SNI `server.<dc>.consul` to them
    /// (`docs/multi-dc.md`). Empty when this datacenter is not federated.
    pub local_servers: Vec<(String, u16)>,
    /// This datacenter's mesh gateways (health/service rows of every mesh gateway in the
    /// proxy's partition): where a sidecar sends targets in another datacenter in mode `local`.
    pub mesh_gateways: Vec<Endpoint>,
    /// Other datacenters' mesh gateways (HOST, PORT) by datacenter (the federation's map): where
    /// a mesh gateway sends another datacenter's SNI, and a sidecar in mode `remote` or `none`
    /// its targets there.
    pub remote_gateways: BTreeMap<String, Vec<(String, u16)>>,
}

impl ProxyInputs {
    /// The address listeners bind to: the proxy's service address, else its node's.
    pub fn bind_address(&self) -> &str {
        if self.proxy.address.is_empty() {
            &self.node_address
        } else {
            &self.proxy.address
        }
    }
}

impl ProxyKind {
    /// The kind of a registration xDS configures (`None` for anything but a proxy or gateway).
    pub fn of(service: &NodeService) -> Option<Self> {
        match service.kind {
            ServiceKind::ConnectProxy => Some(Self::Sidecar),
            ServiceKind::TerminatingGateway => Some(Self::TerminatingGateway),
            ServiceKind::MeshGateway => Some(Self::MeshGateway),
            _ => None,
        }
    }
}

/// A sidecar's discovery chains, one per upstream destination.
pub type UpstreamChains = BTreeMap<sidecar::UpstreamKey, chain::Chain>;

/// Compiles a proxy's resources. Never fails: config was validated when written; anything
/// missing at runtime (a leaf not yet issued) leaves out only what depends on it.
pub fn compile(inputs: &ProxyInputs) -> Resources {
    let chains = match inputs.kind {
        ProxyKind::Sidecar => sidecar::chains_of(inputs),
        ProxyKind::TerminatingGateway | ProxyKind::MeshGateway => UpstreamChains::new(),
    };
    compile_with_chains(inputs, &chains)
}

/// [`compile`] with the upstreams' chains already compiled (as [`crate::deps::discover`]
/// returns them), so no chain is compiled twice.
pub fn compile_with_chains(inputs: &ProxyInputs, chains: &UpstreamChains) -> Resources {
    match inputs.kind {
        ProxyKind::Sidecar => sidecar::compile(inputs, chains),
        ProxyKind::TerminatingGateway => gateway::terminating(inputs),
        ProxyKind::MeshGateway => gateway::mesh(inputs),
    }
}

// === shared builders ===

/// The intentions deciding who may reach `dest`, highest precedence first.
pub(crate) fn intentions_for(
    entries: &ConfigEntrySet,
    dest: &ServiceName,
) -> Vec<intentions::Intention> {
    intentions::match_by(entries, MatchBy::Destination, dest)
}

pub(crate) fn is_http(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// `typed_extension_protocol_options` making a cluster speak HTTP/2 upstream.
pub(crate) fn http2_options() -> std::collections::HashMap<String, pb::Any> {
    use pb::upstream_http::http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    };
    let opts = pb::upstream_http::HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    core::Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    [(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
        pack_any(opts),
    )]
    .into_iter()
    .collect()
}

/// A STATIC cluster to one address.
pub(crate) fn static_cluster(
    name: &str,
    host: &str,
    port: u16,
    connect_timeout_ms: u64,
    http2: bool,
) -> cluster::Cluster {
    cluster::Cluster {
        name: name.to_owned(),
        connect_timeout: Some(pb::millis(connect_timeout_ms)),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(load_assignment(name, &[(host.to_owned(), port, true)])),
        typed_extension_protocol_options: if http2 {
            http2_options()
        } else {
            Default::default()
        },
        ..Default::default()
    }
}

/// An EDS cluster fed over ADS.
pub(crate) fn eds_cluster(
    name: &str,
    connect_timeout_ms: u64,
    http2: bool,
    tls: Option<core::TransportSocket>,
) -> cluster::Cluster {
    cluster::Cluster {
        name: name.to_owned(),
        connect_timeout: Some(pb::millis(connect_timeout_ms)),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
            eds_config: Some(pb::ads_source()),
            service_name: String::new(),
        }),
        transport_socket: tls,
        typed_extension_protocol_options: if http2 {
            http2_options()
        } else {
            Default::default()
        },
        ..Default::default()
    }
}

/// A load assignment of `(host, port, healthy)` endpoints.
pub(crate) fn load_assignment(
    name: &str,
    eps: &[(String, u16, bool)],
) -> endpoint::ClusterLoadAssignment {
    endpoint::ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: vec![endpoint::LocalityLbEndpoints {
            lb_endpoints: eps
                .iter()
                .map(|(host, port, healthy)| endpoint::LbEndpoint {
                    host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                        endpoint::Endpoint {
                            address: Some(pb::socket_address(host, *port)),
                            ..Default::default()
                        },
                    )),
                    health_status: if *healthy {
                        core::HealthStatus::Healthy as i32
                    } else {
                        core::HealthStatus::Unhealthy as i32
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener on `host:port` with the given filter chains.
pub(crate) fn listener(
    name: &str,
    host: &str,
    port: u16,
    chains: Vec<listener::FilterChain>,
    listener_filters: Vec<listener::ListenerFilter>,
) -> listener::Listener {
    listener::Listener {
        name: name.to_owned(),
        address: Some(pb::socket_address(host, port)),
        filter_chains: chains,
        listener_filters,
        traffic_direction: 0,
        ..Default::default()
    }
}

pub(crate) fn network_filter(name: &str, config: pb::Any) -> listener::Filter {
    listener::Filter {
        name: name.to_owned(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(config)),
    }
}

pub(crate) fn http_filter(name: &str, config: pb::Any) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: name.to_owned(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

pub(crate) fn router_filter() -> hcm::HttpFilter {
    http_filter(
        "envoy.filters.http.router",
        pack_any(pb::router::Router::default()),
    )
}

pub(crate) fn tcp_proxy(stat_prefix: &str, cluster: &str) -> listener::Filter {
    network_filter(
        "envoy.filters.network.tcp_proxy",
        pack_any(pb::tcp_proxy::TcpProxy {
            stat_prefix: stat_prefix.to_owned(),
            cluster_specifier: Some(pb::tcp_proxy::tcp_proxy::ClusterSpecifier::Cluster(
                cluster.to_owned(),
            )),
            ..Default::default()
        }),
    )
}

/// An HCM with an inline route table and the given filters before the router.
pub(crate) fn hcm_filter(
    stat_prefix: &str,
    routes: route::RouteConfiguration,
    filters: Vec<hcm::HttpFilter>,
    forward_client_cert: bool,
) -> listener::Filter {
    hcm_network_filter(http_connection_manager(
        stat_prefix,
        routes,
        filters,
        forward_client_cert,
    ))
}

/// The HTTP connection manager itself, for callers that adjust it before it is packed.
pub(crate) fn http_connection_manager(
    stat_prefix: &str,
    routes: route::RouteConfiguration,
    mut filters: Vec<hcm::HttpFilter>,
    forward_client_cert: bool,
) -> hcm::HttpConnectionManager {
    filters.push(router_filter());
    let mut h = hcm::HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            routes,
        )),
        http_filters: filters,
        ..Default::default()
    };
    if forward_client_cert {
        h.forward_client_cert_details =
            hcm::http_connection_manager::ForwardClientCertDetails::AppendForward as i32;
        h.set_current_client_cert_details =
            Some(hcm::http_connection_manager::SetCurrentClientCertDetails {
                subject: Some(pb::BoolValue { value: true }),
                cert: true,
                chain: true,
                dns: true,
                uri: true,
                ..Default::default()
            });
    }
    h
}

pub(crate) fn hcm_network_filter(h: hcm::HttpConnectionManager) -> listener::Filter {
    network_filter("envoy.filters.network.http_connection_manager", pack_any(h))
}

/// A route table with one catch-all virtual host.
pub(crate) fn route_config(name: &str, routes: Vec<route::Route>) -> route::RouteConfiguration {
    route::RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts: vec![route::VirtualHost {
            name: name.to_owned(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        validate_clusters: Some(pb::BoolValue { value: false }),
        ..Default::default()
    }
}

/// A catch-all route to one cluster.
pub(crate) fn route_to(cluster: &str) -> route::Route {
    route::Route {
        r#match: Some(route::RouteMatch {
            path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                cluster.to_owned(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub(crate) fn insert<T: prost::Name + prost::Message>(
    map: &mut BTreeMap<String, pb::Any>,
    name: &str,
    value: T,
) {
    map.insert(name.to_owned(), pack_any(value));
}

/// Endpoints of a target: instances of its service passing its subset filter.
pub(crate) fn target_endpoints(
    eps: &[Endpoint],
    filter: &str,
    only_passing: bool,
) -> Vec<(String, u16, bool)> {
    let expr = if filter.is_empty() {
        None
    } else {
        mesh_model::bexpr::parse(filter).ok()
    };
    eps.iter()
        .filter(|e| {
            expr.as_ref()
                .is_none_or(|x| mesh_model::bexpr::eval(x, &e.row))
        })
        .filter(|e| !only_passing || e.healthy)
        .map(|e| (e.address.clone(), e.port, e.healthy))
        .collect()
}

#[cfg(test)]
mod tests;
