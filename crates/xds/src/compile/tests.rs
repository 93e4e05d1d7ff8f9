//! The compiler on values: inputs in, Envoy protos out, decoded and checked field by field.

use std::collections::BTreeMap;

use mesh_model::EntMeta;
use mesh_model::catalog::{NodeService, ProxyConfig, ServiceKind, Upstream};
use mesh_model::config_entry::{self, ConfigEntrySet};
use mesh_model::intentions::{self, MatchBy};
use mesh_model::names::ServiceName;
use prost::Message;
use serde_json::json;

use super::chain::{Dest, compile_chain};
use super::*;
use crate::pb::{self, rbac};

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

fn entries(list: &[serde_json::Value]) -> ConfigEntrySet {
    let mut set = ConfigEntrySet::default();
    for v in list {
        let e = config_entry::decode_value(v.clone()).unwrap();
        set.validate_upsert(&e).unwrap();
        set.insert(e);
    }
    set
}

fn sidecar(upstreams: Vec<Upstream>) -> NodeService {
    NodeService {
        kind: ServiceKind::ConnectProxy,
        id: "web-sidecar-proxy".into(),
        service: "web-sidecar-proxy".into(),
        port: 21000,
        namespace: "default".into(),
        partition: "default".into(),
        proxy: ProxyConfig {
            destination_service_name: "web".into(),
            destination_service_id: "web".into(),
            local_service_address: "127.0.0.1".into(),
            local_service_port: 8080,
            upstreams,
            ..ProxyConfig::default()
        },
        ..NodeService::default()
    }
}

fn endpoint(port: u16, version: &str, healthy: bool) -> Endpoint {
    Endpoint {
        address: "10.0.0.1".into(),
        port,
        healthy,
        row: json!({"Service": {"Meta": {"version": version}}}),
    }
}

fn inputs(proxy: NodeService, set: ConfigEntrySet) -> ProxyInputs {
    ProxyInputs {
        kind: ProxyKind::Sidecar,
        proxy,
        node_address: "127.0.0.1".into(),
        datacenter: "dc1".into(),
        trust_domain: TD.into(),
        roots_pem: vec!["ROOT".into()],
        leaf: Some(CertPair {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        }),
        service_leaves: BTreeMap::new(),
        entries: set,
        connect_endpoints: BTreeMap::new(),
        service_endpoints: BTreeMap::new(),
        default_allow: false,
        lambda_endpoint: None,
        local_servers: Vec::new(),
        mesh_gateways: Vec::new(),
        remote_gateways: BTreeMap::new(),
    }
}

/// Inputs of the terminating gateway `tgw` on 127.0.0.1:8443 (service leaves added by the test).
fn terminating_gateway_inputs(set: ConfigEntrySet) -> ProxyInputs {
    let gw = NodeService {
        kind: ServiceKind::TerminatingGateway,
        id: "tgw".into(),
        service: "tgw".into(),
        port: 8443,
        namespace: "default".into(),
        partition: "default".into(),
        ..NodeService::default()
    };
    let mut inp = inputs(gw, set);
    inp.kind = ProxyKind::TerminatingGateway;
    inp.leaf = None;
    inp
}

fn decode<T: Message + Default>(any: &pb::Any) -> T {
    T::decode(any.value.as_slice()).unwrap()
}

fn db_upstream() -> Upstream {
    Upstream {
        destination_name: "db".into(),
        local_bind_port: 9191,
        ..Upstream::default()
    }
}

#[test]
fn tcp_sidecar_resources() {
    let mut inp = inputs(sidecar(vec![db_upstream()]), ConfigEntrySet::default());
    inp.connect_endpoints.insert(
        ServiceName::default_tuple("db"),
        vec![endpoint(21001, "v1", true), endpoint(21002, "v1", false)],
    );
    let out = compile(&inp);
    let db_sni = format!("db.default.dc1.internal.{TD}");
    assert_eq!(
        out.clusters.keys().cloned().collect::<Vec<_>>(),
        vec![db_sni.clone(), "local_app".to_owned()]
    );
    assert_eq!(
        out.listeners.keys().cloned().collect::<Vec<_>>(),
        vec![
            "db:127.0.0.1:9191".to_owned(),
            "public_listener:127.0.0.1:21000".to_owned()
        ]
    );

    let local: cluster::Cluster = decode(&out.clusters["local_app"]);
    let la = local.load_assignment.unwrap();
    let ep = la.endpoints[0].lb_endpoints[0]
        .host_identifier
        .clone()
        .unwrap();
    let endpoint::lb_endpoint::HostIdentifier::Endpoint(e) = ep else {
        panic!("endpoint")
    };
    assert_eq!(e.address, Some(pb::socket_address("127.0.0.1", 8080)));

    let db: cluster::Cluster = decode(&out.clusters[&db_sni]);
    assert_eq!(db.connect_timeout, Some(pb::millis(5000)));
    let ts = db.transport_socket.unwrap();
    let Some(core::transport_socket::ConfigType::TypedConfig(any)) = ts.config_type else {
        panic!("tls")
    };
    let utls: pb::tls::UpstreamTlsContext = decode(&any);
    assert_eq!(utls.sni, db_sni);
    let common = utls.common_tls_context.unwrap();
    let Some(pb::tls::common_tls_context::ValidationContextType::ValidationContext(vc)) =
        common.validation_context_type
    else {
        panic!("vc")
    };
    assert_eq!(
        vc.match_typed_subject_alt_names[0].matcher,
        Some(pb::exact_matcher(&format!(
            "spiffe://{TD}/ns/default/dc/dc1/svc/db"
        )))
    );

    // Endpoints: both instances, the critical one marked unhealthy (filtered by only_passing only).
    let cla: endpoint::ClusterLoadAssignment = decode(&out.endpoints[&db_sni]);
    let statuses: Vec<i32> = cla.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| e.health_status)
        .collect();
    assert_eq!(
        statuses,
        vec![
            core::HealthStatus::Healthy as i32,
            core::HealthStatus::Unhealthy as i32
        ]
    );

    // The public listener: TLS requiring client certs, network RBAC before tcp_proxy.
    let l: listener::Listener = decode(&out.listeners["public_listener:127.0.0.1:21000"]);
    let chain = &l.filter_chains[0];
    let names: Vec<&str> = chain.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.network.rbac",
            "envoy.filters.network.tcp_proxy"
        ]
    );
    let Some(core::transport_socket::ConfigType::TypedConfig(any)) =
        chain.transport_socket.clone().unwrap().config_type
    else {
        panic!()
    };
    let dtls: pb::tls::DownstreamTlsContext = decode(&any);
    assert_eq!(
        dtls.require_client_certificate,
        Some(pb::BoolValue { value: true })
    );

    // Deterministic: the same inputs give byte-identical resources.
    assert_eq!(compile(&inp), out);
}

#[test]
fn http_sidecar_uses_hcm_with_rbac_before_router() {
    let set = entries(&[json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})]);
    let out = compile(&inputs(sidecar(vec![]), set));
    let l: listener::Listener = decode(&out.listeners["public_listener:127.0.0.1:21000"]);
    let Some(listener::filter::ConfigType::TypedConfig(any)) =
        l.filter_chains[0].filters[0].config_type.clone()
    else {
        panic!()
    };
    let h: hcm::HttpConnectionManager = decode(&any);
    let web_rbac = format!("lambdamesh.intentions.web.default.dc1.internal.{TD}");
    let names: Vec<&str> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [web_rbac.as_str(), "envoy.filters.http.router"]);
    // The RBAC filter takes its rules over ECDS (ADS), failing closed until they arrive.
    let Some(hcm::http_filter::ConfigType::ConfigDiscovery(src)) = &h.http_filters[0].config_type
    else {
        panic!("the RBAC filter must be discovered, not inline")
    };
    assert_eq!(src.config_source, Some(pb::ads_source()));
    assert_eq!(
        src.type_urls,
        ["type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"]
    );
    let default: pb::http_rbac::Rbac = decode(src.default_config.as_ref().unwrap());
    let deny_all = default.rules.unwrap();
    assert_eq!(deny_all.action, rbac::rbac::Action::Allow as i32);
    assert!(deny_all.policies.is_empty());
    // The resource it names carries the intentions' rules (default deny: an ALLOW list).
    assert_eq!(out.extension_configs.len(), 1);
    let ext: pb::core::TypedExtensionConfig = decode(&out.extension_configs[&web_rbac]);
    assert_eq!(ext.name, web_rbac);
    let r: pb::http_rbac::Rbac = decode(ext.typed_config.as_ref().unwrap());
    assert_eq!(r.rules.unwrap().action, rbac::rbac::Action::Allow as i32);
}

/// An intention change must reach requests on open connections: on an HTTP service it changes
/// only the ECDS resource (the listener, which would drain its connections, stays the same);
/// on a TCP service it replaces the filter chain, so the old chain's connections are closed.
#[test]
fn intention_change_touches_only_the_rbac_resource_on_http() {
    let http = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    let deny = json!({"Kind": "service-intentions", "Name": "web",
        "Sources": [{"Name": "api", "Action": "deny"}]});
    let allow = json!({"Kind": "service-intentions", "Name": "web",
        "Sources": [{"Name": "api", "Action": "allow"}]});

    let a = compile(&inputs(
        sidecar(vec![]),
        entries(&[http.clone(), allow.clone()]),
    ));
    let b = compile(&inputs(sidecar(vec![]), entries(&[http, deny.clone()])));
    assert_eq!(a.listeners, b.listeners, "the listener must not change");
    assert_eq!(a.clusters, b.clusters);
    assert_ne!(a.extension_configs, b.extension_configs);

    let a = compile(&inputs(sidecar(vec![]), entries(&[allow])));
    let b = compile(&inputs(sidecar(vec![]), entries(&[deny])));
    assert!(a.extension_configs.is_empty() && b.extension_configs.is_empty());
    assert_ne!(a.listeners, b.listeners, "tcp: the chain carries the rules");
}

fn rbac_for(set: &ConfigEntrySet, default_allow: bool, http: bool) -> rbac::Rbac {
    let ints = intentions::match_by(
        set,
        MatchBy::Destination,
        &ServiceName::default_tuple("web"),
    );
    super::rbac::compile_rbac(&ints, default_allow, TD, http)
}

fn principal_regexes(p: &rbac::Principal) -> Vec<String> {
    match &p.identifier {
        Some(rbac::principal::Identifier::Authenticated(a)) => match &a.principal_name {
            Some(pb::matcher::StringMatcher {
                match_pattern: Some(pb::matcher::string_matcher::MatchPattern::SafeRegex(r)),
                ..
            }) => vec![r.regex.clone()],
            _ => vec![],
        },
        Some(rbac::principal::Identifier::AndIds(s))
        | Some(rbac::principal::Identifier::OrIds(s)) => {
            s.ids.iter().flat_map(principal_regexes).collect()
        }
        Some(rbac::principal::Identifier::NotId(p)) => principal_regexes(p)
            .into_iter()
            .map(|r| format!("NOT {r}"))
            .collect(),
        _ => vec![],
    }
}

#[test]
fn rbac_default_deny_is_an_allow_list_with_precedence() {
    let set = entries(&[
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [
            {"Name": "api", "Action": "allow"},
            {"Name": "*", "Action": "deny"},
            {"Name": "billing", "Action": "deny"}
        ]}),
    ]);
    let r = rbac_for(&set, false, false);
    assert_eq!(r.action, rbac::rbac::Action::Allow as i32);
    assert_eq!(
        r.policies.len(),
        1,
        "only the allow intention makes a policy under default deny"
    );
    let p = r.policies.values().next().unwrap();
    assert_eq!(
        principal_regexes(&p.principals[0]),
        vec![format!(
            "^spiffe://{}/ns/default/dc/[^/]+/svc/api$",
            regex::escape(TD)
        )]
    );
}

#[test]
fn rbac_default_allow_denies_with_higher_precedence_carved_out() {
    let set = entries(&[
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [
            {"Name": "api", "Action": "allow"},
            {"Name": "*", "Action": "deny"}
        ]}),
    ]);
    let r = rbac_for(&set, true, false);
    assert_eq!(r.action, rbac::rbac::Action::Deny as i32);
    assert_eq!(r.policies.len(), 1);
    let p = r.policies.values().next().unwrap();
    // *→web deny, except what api→web (higher precedence) already allows.
    let got = principal_regexes(&p.principals[0]);
    assert_eq!(
        got,
        vec![
            format!(
                "^spiffe://{}/ns/default/dc/[^/]+/svc/[^/]+$",
                regex::escape(TD)
            ),
            format!(
                "NOT ^spiffe://{}/ns/default/dc/[^/]+/svc/api$",
                regex::escape(TD)
            ),
        ]
    );
}

#[test]
fn l7_intentions_are_deny_on_tcp_and_permissions_on_http() {
    let set = entries(&[
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [
            {"Name": "api", "Permissions": [{"Action": "deny", "HTTP": {"PathPrefix": "/admin"}}, {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}
        ]}),
    ]);
    let tcp = rbac_for(&set, false, false);
    assert!(
        tcp.policies.is_empty(),
        "an L7 intention on a TCP listener allows nothing"
    );
    let http = rbac_for(&set, false, true);
    let p = http.policies.values().next().unwrap();
    assert_eq!(
        p.permissions.len(),
        1,
        "one allow permission, narrowed by the earlier deny"
    );
    assert!(matches!(
        p.permissions[0].rule,
        Some(rbac::permission::Rule::AndRules(_))
    ));
}

#[test]
fn chain_router_splitter_resolver() {
    let set = entries(&[
        json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "2s", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
        json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
        json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/beta"}}, "Destination": {"ServiceSubset": "v2", "RequestTimeout": "3s"}}]}),
    ]);
    let chain = compile_chain(&set, &ServiceName::default_tuple("web"), "dc1", TD);
    let v1 = format!("v1.web.default.dc1.internal.{TD}");
    let v2 = format!("v2.web.default.dc1.internal.{TD}");
    assert_eq!(chain.protocol, "http");
    assert_eq!(chain.routes.len(), 2);
    assert_eq!(chain.routes[0].dest, Dest::Cluster(v2.clone()));
    assert_eq!(chain.routes[0].request_timeout_ns, 3_000_000_000);
    assert_eq!(
        chain.routes[1].dest,
        Dest::Weighted(vec![(v1.clone(), 9000), (v2.clone(), 1000)])
    );
    assert_eq!(chain.targets[&v1].connect_timeout_ms, 2000);
    assert_eq!(chain.targets[&v1].filter, "Service.Meta.version == v1");

    // Subset endpoints follow the filter.
    let eps = vec![endpoint(1, "v1", true), endpoint(2, "v2", true)];
    assert_eq!(
        target_endpoints(&eps, &chain.targets[&v2].filter, false),
        vec![("10.0.0.1".to_owned(), 2, true)]
    );
}

#[test]
fn resolver_redirect_follows_to_another_service() {
    let set = entries(&[
        json!({"Kind": "service-resolver", "Name": "db", "Redirect": {"Service": "db-v2"}}),
    ]);
    let chain = compile_chain(&set, &ServiceName::default_tuple("db"), "dc1", TD);
    let sni = format!("db-v2.default.dc1.internal.{TD}");
    assert_eq!(
        chain.routes.last().unwrap().dest,
        Dest::Cluster(sni.clone())
    );
    assert_eq!(
        chain.targets[&sni].spiffe_id,
        format!("spiffe://{TD}/ns/default/dc/dc1/svc/db-v2")
    );
}

#[test]
fn terminating_gateway_chain_per_sni_with_the_services_leaf() {
    let set = entries(&[
        json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "ext"}]}),
    ]);
    let mut inp = terminating_gateway_inputs(set);
    inp.service_leaves.insert(
        ServiceName::new("ext", EntMeta::default()),
        CertPair {
            cert_pem: "EXT".into(),
            key_pem: "K".into(),
        },
    );
    inp.service_endpoints.insert(
        ServiceName::default_tuple("ext"),
        vec![endpoint(80, "", true)],
    );
    let out = compile(&inp);
    let sni = format!("ext.default.dc1.internal.{TD}");
    let l: listener::Listener = decode(&out.listeners["default:127.0.0.1:8443"]);
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        vec![sni.clone()]
    );
    assert!(out.clusters.contains_key(&sni) && out.endpoints.contains_key(&sni));
}

#[test]
fn grpc_and_http2_upstreams_speak_http2() {
    for protocol in ["grpc", "http2"] {
        let set =
            entries(&[json!({"Kind": "service-defaults", "Name": "db", "Protocol": protocol})]);
        let out = compile(&inputs(sidecar(vec![db_upstream()]), set));
        let db: cluster::Cluster = decode(&out.clusters[&format!("db.default.dc1.internal.{TD}")]);
        assert!(
            db.typed_extension_protocol_options
                .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
            "{protocol}"
        );
        let l: listener::Listener = decode(&out.listeners["db:127.0.0.1:9191"]);
        assert_eq!(
            l.filter_chains[0].filters[0].name, "envoy.filters.network.http_connection_manager",
            "{protocol}"
        );
    }
}

#[test]
fn terminating_gateway_uses_the_entrys_tls_files_towards_the_service() {
    let set = entries(&[
        json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "ext", "CAFile": "/etc/ca.pem", "CertFile": "/etc/c.pem", "KeyFile": "/etc/k.pem", "SNI": "ext.example"}]}),
    ]);
    let mut inp = terminating_gateway_inputs(set);
    inp.service_leaves.insert(
        ServiceName::default_tuple("ext"),
        CertPair {
            cert_pem: "EXT".into(),
            key_pem: "K".into(),
        },
    );
    let out = compile(&inp);
    let c: cluster::Cluster = decode(&out.clusters[&format!("ext.default.dc1.internal.{TD}")]);
    let Some(core::transport_socket::ConfigType::TypedConfig(any)) =
        c.transport_socket.unwrap().config_type
    else {
        panic!()
    };
    let t: pb::tls::UpstreamTlsContext = decode(&any);
    assert_eq!(t.sni, "ext.example");
    let common = t.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificates[0]
            .certificate_chain
            .as_ref()
            .unwrap()
            .specifier,
        Some(core::data_source::Specifier::Filename("/etc/c.pem".into()))
    );
}

#[test]
fn a_mesh_gateway_exposing_servers_routes_the_server_sni_to_them() {
    let gw = |meta: &[(&str, &str)]| NodeService {
        kind: ServiceKind::MeshGateway,
        id: "mgw".into(),
        service: "mgw".into(),
        port: 4431,
        namespace: "default".into(),
        partition: "default".into(),
        meta: meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..NodeService::default()
    };
    let mut inp = inputs(
        gw(&[("consul-wan-federation", "1")]),
        ConfigEntrySet::default(),
    );
    inp.kind = ProxyKind::MeshGateway;
    inp.leaf = None;
    inp.local_servers = vec![("127.0.0.1".into(), 8300)];
    let out = compile(&inp);
    let l: listener::Listener = decode(&out.listeners["default:127.0.0.1:4431"]);
    assert_eq!(l.filter_chains.len(), 2);
    assert_eq!(
        l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names,
        vec![
            "server.dc1.consul".to_owned(),
            "*.server.dc1.consul".to_owned()
        ]
    );
    assert!(
        l.filter_chains[1].filter_chain_match.is_none(),
        "services' SNI: the default chain"
    );
    let eps: endpoint::ClusterLoadAssignment = decode(&out.endpoints["server.dc1.consul"]);
    let lb = &eps.endpoints[0].lb_endpoints;
    assert_eq!(lb.len(), 1);
    assert!(out.clusters.contains_key("server.dc1.consul"));
    // Without the Meta (or without servers to route to) no server chain.
    for (meta, servers) in [
        (&[][..], vec![("127.0.0.1".to_owned(), 8300)]),
        (&[("consul-wan-federation", "1")][..], vec![]),
    ] {
        let mut inp = inputs(gw(meta), ConfigEntrySet::default());
        inp.kind = ProxyKind::MeshGateway;
        inp.local_servers = servers;
        let out = compile(&inp);
        let l: listener::Listener = decode(&out.listeners["default:127.0.0.1:4431"]);
        assert_eq!(l.filter_chains.len(), 1);
        assert!(!out.clusters.contains_key("server.dc1.consul"));
    }
}

mod lambda;
mod multi_dc;
