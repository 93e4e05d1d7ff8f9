//! Terminating and mesh gateways (reference §5.3, §6.1).
//!
//! - Terminating gateway: one listener with `tls_inspector`; per linked service and per resolver
//!   subset a filter chain matched by SNI that presents *that service's* leaf, requires a client
//!   certificate from the mesh CA, enforces the service's intentions (RBAC), and forwards to the
//!   service's real address (optionally over TLS with the entry's `CAFile`/`CertFile`/`KeyFile`/
//!   `SNI`). Clusters are named by SNI, so the Lambda patch can find and replace them.
//! - Mesh gateway: TLS passthrough: `sni_cluster` + `tcp_proxy`, one cluster per local service
//!   (and subset) named by SNI whose endpoints are the services' sidecars. With
//!   `Meta { consul-wan-federation = "1" }` (Consul's `-expose-servers`) also a chain for the
//!   SNI `server.<dc>.consul` and `*.server.<dc>.consul` to this datacenter's server ports, as
//!   Consul's WAN federation through mesh gateways has it (`docs/multi-dc.md`).

use std::collections::BTreeMap;

use mesh_model::config_entry::{ConfigEntry, EntryKey, Kind, LinkedService};
use mesh_model::connect;
use mesh_model::names::{ServiceName, WILDCARD};

use super::{
    ProxyInputs, insert, intentions_for, is_http, listener, load_assignment, network_filter,
    route_config, target_endpoints, tcp_proxy, tls,
};
use crate::pb::{self, cluster, core, listener as lpb, pack_any, route};
use crate::resources::Resources;

fn tls_inspector() -> lpb::ListenerFilter {
    lpb::ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(lpb::listener_filter::ConfigType::TypedConfig(pack_any(
            pb::tls_inspector::TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn linked(inputs: &ProxyInputs) -> Vec<(ServiceName, LinkedService)> {
    let gw = &inputs.proxy;
    let key = EntryKey {
        kind: Kind::TerminatingGateway,
        meta: gw.ent_meta(),
        name: gw.service.clone(),
    };
    let Some(ConfigEntry::TerminatingGateway(tg)) = inputs.entries.get(&key) else {
        return vec![];
    };
    let mut out: BTreeMap<ServiceName, LinkedService> = BTreeMap::new();
    for s in &tg.services {
        let meta = s.ent_meta_within(&gw.ent_meta());
        if s.name == WILDCARD {
            for svc in inputs.service_leaves.keys().filter(|k| k.meta == meta) {
                out.entry(svc.clone()).or_insert_with(|| s.clone());
            }
        } else {
            // An exact entry wins over the wildcard's settings.
            out.insert(ServiceName::new(&s.name, meta), s.clone());
        }
    }
    out.into_iter().collect()
}

/// The gateway-to-service TLS from the entry's file settings (none when no file is set).
fn external_tls(s: &LinkedService) -> Option<core::TransportSocket> {
    if s.ca_file.is_empty() && s.cert_file.is_empty() && s.sni.is_empty() {
        return None;
    }
    let file = |f: &str| core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(f.to_owned())),
        ..Default::default()
    };
    let mut common = pb::tls::CommonTlsContext::default();
    if !s.cert_file.is_empty() {
        common.tls_certificates.push(pb::tls::TlsCertificate {
            certificate_chain: Some(file(&s.cert_file)),
            private_key: Some(file(&s.key_file)),
            ..Default::default()
        });
    }
    if !s.ca_file.is_empty() {
        common.validation_context_type = Some(
            pb::tls::common_tls_context::ValidationContextType::ValidationContext(
                pb::tls::CertificateValidationContext {
                    trusted_ca: Some(file(&s.ca_file)),
                    ..Default::default()
                },
            ),
        );
    }
    let ctx = pb::tls::UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: s.sni.clone(),
        ..Default::default()
    };
    Some(core::TransportSocket {
        name: "tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
            ctx,
        ))),
    })
}

pub(super) fn terminating(inputs: &ProxyInputs) -> Resources {
    let mut out = Resources::default();
    let p = &inputs.proxy;
    let mut chains = Vec::new();
    for (svc, link) in linked(inputs) {
        let Some(leaf) = inputs.service_leaves.get(&svc) else {
            continue;
        };
        let protocol = inputs.entries.protocol_of(&svc);
        let ints = intentions_for(&inputs.entries, &svc);
        let eps = inputs
            .service_endpoints
            .get(&svc)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let resolver = inputs.entries.resolver_of(&svc);
        // The Lambda patch (reference §2.2–§2.3): a linked Lambda service is invoked by the
        // gateway, after its RBAC; every chain of the service (one per subset) is patched.
        let lambda = super::lambda::lambda_of(&inputs.entries, &svc).filter(|_| is_http(&protocol));
        let mut subsets: Vec<(String, String, bool)> = vec![(String::new(), String::new(), false)];
        if let Some(r) = resolver {
            subsets.extend(
                r.subsets
                    .iter()
                    .map(|(name, s)| (name.clone(), s.filter.clone(), s.only_passing)),
            );
        }
        for (subset, filter, only_passing) in subsets {
            let sni = connect::service_sni(
                &svc,
                Some(&subset),
                &inputs.datacenter,
                &inputs.trust_domain,
            );
            let filters = if is_http(&protocol) {
                let rules = super::rbac::compile_rbac(
                    &ints,
                    inputs.default_allow,
                    &inputs.trust_domain,
                    true,
                );
                // One rule set per service, shared by its subsets' chains.
                let service_sni =
                    connect::service_sni(&svc, None, &inputs.datacenter, &inputs.trust_domain);
                let rbac = super::rbac::http_rbac_filter(
                    &super::rbac::http_rbac_name(&service_sni),
                    rules,
                    &mut out,
                );
                let mut r = super::route_to(&sni);
                if let Some(route::route::Action::Route(a)) = &mut r.action
                    && !link.disable_auto_host_rewrite
                {
                    a.host_rewrite_specifier =
                        Some(route::route_action::HostRewriteSpecifier::AutoHostRewrite(
                            pb::BoolValue { value: true },
                        ));
                }
                let mut routes = vec![r];
                let mut http_filters = vec![rbac];
                if let Some(l) = &lambda {
                    super::lambda::clear_host_rewrite(&mut routes);
                    http_filters.push(super::lambda::function_error_filter());
                    http_filters.push(super::lambda::lambda_filter(l));
                }
                let mut h = super::http_connection_manager(
                    &format!("terminating_gateway.{}", svc.name),
                    route_config(&sni, routes),
                    http_filters,
                    true,
                );
                if lambda.is_some() {
                    super::lambda::strip_any_host_port(&mut h);
                    super::lambda::identity_only_client_cert(&mut h);
                }
                vec![super::hcm_network_filter(h)]
            } else {
                let rules = super::rbac::compile_rbac(
                    &ints,
                    inputs.default_allow,
                    &inputs.trust_domain,
                    false,
                );
                vec![
                    network_filter(
                        "envoy.filters.network.rbac",
                        pack_any(pb::net_rbac::Rbac {
                            rules: Some(rules),
                            stat_prefix: "connect_authz".into(),
                            ..Default::default()
                        }),
                    ),
                    tcp_proxy(&format!("terminating_gateway.{}", svc.name), &sni),
                ]
            };
            chains.push(lpb::FilterChain {
                filter_chain_match: Some(lpb::FilterChainMatch {
                    server_names: vec![sni.clone()],
                    ..Default::default()
                }),
                filters,
                transport_socket: Some(tls::downstream(leaf, &inputs.roots_pem)),
                ..Default::default()
            });
            if let Some(l) = &lambda {
                // Replaced, as Consul does: only the name and connect timeout survive.
                let c = super::lambda::lambda_cluster(
                    &sni,
                    super::chain::DEFAULT_CONNECT_TIMEOUT_MS,
                    l,
                    inputs.lambda_endpoint.as_ref(),
                );
                insert(&mut out.clusters, &sni, c);
                continue;
            }
            let http2 = matches!(protocol.as_str(), "http2" | "grpc");
            let c = cluster::Cluster {
                name: sni.clone(),
                connect_timeout: Some(pb::millis(super::chain::DEFAULT_CONNECT_TIMEOUT_MS)),
                cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
                    cluster::cluster::DiscoveryType::Eds as i32,
                )),
                eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
                    eds_config: Some(pb::ads_source()),
                    service_name: String::new(),
                }),
                transport_socket: external_tls(&link),
                typed_extension_protocol_options: if http2 {
                    super::http2_options()
                } else {
                    Default::default()
                },
                ..Default::default()
            };
            insert(&mut out.clusters, &sni, c);
            insert(
                &mut out.endpoints,
                &sni,
                load_assignment(&sni, &target_endpoints(eps, &filter, only_passing)),
            );
        }
    }
    chains.sort_by(|a, b| {
        let name = |c: &lpb::FilterChain| {
            c.filter_chain_match
                .as_ref()
                .and_then(|m| m.server_names.first().cloned())
                .unwrap_or_default()
        };
        name(a).cmp(&name(b))
    });
    if !chains.is_empty() {
        let bind = inputs.bind_address();
        let name = format!("default:{bind}:{}", p.port);
        insert(
            &mut out.listeners,
            &name,
            listener(&name, bind, p.port, chains, vec![tls_inspector()]),
        );
    }
    out
}

pub(super) fn mesh(inputs: &ProxyInputs) -> Resources {
    let mut out = Resources::default();
    let p = &inputs.proxy;
    for (svc, eps) in &inputs.connect_endpoints {
        let mut subsets: Vec<(String, String, bool)> = vec![(String::new(), String::new(), false)];
        if let Some(r) = inputs.entries.resolver_of(svc) {
            subsets.extend(
                r.subsets
                    .iter()
                    .map(|(name, s)| (name.clone(), s.filter.clone(), s.only_passing)),
            );
        }
        for (subset, filter, only_passing) in subsets {
            let sni =
                connect::service_sni(svc, Some(&subset), &inputs.datacenter, &inputs.trust_domain);
            // No TLS of its own: the client's mTLS session passes through to the sidecar.
            insert(
                &mut out.clusters,
                &sni,
                super::eds_cluster(&sni, super::chain::DEFAULT_CONNECT_TIMEOUT_MS, false, None),
            );
            insert(
                &mut out.endpoints,
                &sni,
                load_assignment(&sni, &target_endpoints(eps, &filter, only_passing)),
            );
        }
    }
    let bind = inputs.bind_address();
    let name = format!("default:{bind}:{}", p.port);
    let mut chains = Vec::new();
    let federated = p
        .meta
        .get(mesh_model::federation::WAN_FEDERATION_META)
        .is_some_and(|v| v == "1");
    if federated && !inputs.local_servers.is_empty() {
        let sni = mesh_model::federation::server_sni(
            &inputs.datacenter,
            None,
            mesh_model::federation::DEFAULT_DOMAIN,
        );
        let eps: Vec<(String, u16, bool)> = inputs
            .local_servers
            .iter()
            .map(|(h, port)| (h.clone(), *port, true))
            .collect();
        insert(
            &mut out.clusters,
            &sni,
            super::eds_cluster(&sni, super::chain::DEFAULT_CONNECT_TIMEOUT_MS, false, None),
        );
        insert(&mut out.endpoints, &sni, load_assignment(&sni, &eps));
        chains.push(lpb::FilterChain {
            filter_chain_match: Some(lpb::FilterChainMatch {
                server_names: vec![sni.clone(), format!("*.{sni}")],
                ..Default::default()
            }),
            // The servers' own TLS passes through: they authenticate each other.
            filters: vec![tcp_proxy(&format!("mesh_gateway_local_server.{sni}"), &sni)],
            ..Default::default()
        });
    }
    // Another datacenter's SNI (`<svc>.<ns>.<dc>.internal.<td>`, and its servers' when this
    // gateway carries servers' traffic) goes on to that datacenter's gateways, still encrypted
    // end to end: Consul's wildcard chain per remote datacenter.
    for (dc, gateways) in &inputs.remote_gateways {
        if *dc == inputs.datacenter || gateways.is_empty() {
            continue;
        }
        let cluster = connect::gateway_sni(dc, &p.partition, &inputs.trust_domain);
        let eps: Vec<(String, u16, bool)> = gateways
            .iter()
            .map(|(h, port)| (h.clone(), *port, true))
            .collect();
        insert(
            &mut out.clusters,
            &cluster,
            super::eds_cluster(
                &cluster,
                super::chain::DEFAULT_CONNECT_TIMEOUT_MS,
                false,
                None,
            ),
        );
        insert(
            &mut out.endpoints,
            &cluster,
            load_assignment(&cluster, &eps),
        );
        let mut names = vec![format!("*.{cluster}")];
        if federated {
            let server = mesh_model::federation::server_sni(
                dc,
                None,
                mesh_model::federation::DEFAULT_DOMAIN,
            );
            names.push(format!("*.{server}"));
            names.push(server);
        }
        chains.push(lpb::FilterChain {
            filter_chain_match: Some(lpb::FilterChainMatch {
                server_names: names,
                ..Default::default()
            }),
            filters: vec![tcp_proxy(
                &format!("mesh_gateway_remote.{cluster}"),
                &cluster,
            )],
            ..Default::default()
        });
    }
    let chain = lpb::FilterChain {
        filters: vec![
            network_filter(
                "envoy.filters.network.sni_cluster",
                pack_any(pb::sni_cluster::SniCluster::default()),
            ),
            tcp_proxy("mesh_gateway_local", "mesh_gateway_sni_placeholder"),
        ],
        ..Default::default()
    };
    insert(
        &mut out.listeners,
        &name,
        listener(
            &name,
            bind,
            p.port,
            {
                chains.push(chain);
                chains
            },
            vec![tls_inspector()],
        ),
    );
    out
}
