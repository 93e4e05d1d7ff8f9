//! Targets in other datacenters on values: upstream `Datacenter`, resolver `Redirect` and
//! `Failover` across datacenters, mesh gateway modes, mesh gateways forwarding other
//! datacenters' SNI, and failover from a function to another datacenter.

use super::lambda::{
    ARN, CALLER_FILTERS, aggregate_members, filter_names, hcm_of, lambda_instance, route_cluster,
};
use super::*;

fn sni_in(svc: &str, dc: &str) -> String {
    format!("{svc}.default.{dc}.internal.{TD}")
}

fn upstream_in(name: &str, dc: &str, port: u16) -> Upstream {
    Upstream {
        destination_name: name.into(),
        datacenter: dc.into(),
        local_bind_port: port,
        ..Upstream::default()
    }
}

fn gateway_endpoint(address: &str, port: u16) -> Endpoint {
    Endpoint {
        address: address.into(),
        port,
        healthy: true,
        row: json!({"Service": {"Kind": "mesh-gateway"}}),
    }
}

/// Inputs of a dc1 sidecar that knows its local gateway (10.0.1.1:8443) and dc2's
/// (10.0.2.1:9443).
fn federated(upstreams: Vec<Upstream>, set: ConfigEntrySet) -> ProxyInputs {
    let mut inp = inputs(sidecar(upstreams), set);
    inp.mesh_gateways = vec![gateway_endpoint("10.0.1.1", 8443)];
    inp.remote_gateways = BTreeMap::from([
        ("dc2".to_owned(), vec![("10.0.2.1".to_owned(), 9443)]),
        ("dc3".to_owned(), vec![("10.0.3.1".to_owned(), 9443)]),
    ]);
    inp
}

fn endpoint_addrs(out: &Resources, cluster: &str) -> Vec<(String, u32)> {
    let la: endpoint::ClusterLoadAssignment = decode(&out.endpoints[cluster]);
    la.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .map(|e| {
            let Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(e)) = &e.host_identifier
            else {
                panic!("no endpoint")
            };
            let Some(core::address::Address::SocketAddress(sa)) =
                &e.address.as_ref().unwrap().address
            else {
                panic!("no socket address")
            };
            let Some(core::socket_address::PortSpecifier::PortValue(p)) = sa.port_specifier else {
                panic!("no port")
            };
            (sa.address.clone(), p)
        })
        .collect()
}

fn upstream_tls(out: &Resources, cluster: &str) -> pb::tls::UpstreamTlsContext {
    let c: cluster::Cluster = decode(&out.clusters[cluster]);
    match &c.transport_socket.as_ref().expect("mesh TLS").config_type {
        Some(core::transport_socket::ConfigType::TypedConfig(any)) => decode(any),
        None => panic!("untyped TLS"),
    }
}

#[test]
fn an_upstream_in_another_datacenter_goes_through_the_gateways_its_mode_names() {
    let local_gw = vec![("10.0.1.1".to_owned(), 8443)];
    let dc2_gw = vec![("10.0.2.1".to_owned(), 9443)];
    let proxy_defaults = |mode: &str| json!({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": mode}});
    let auth_defaults = |mode: &str| json!({"Kind": "service-defaults", "Name": "auth", "MeshGateway": {"Mode": mode}});
    let with_mode = |mode: &str| {
        let mut u = upstream_in("auth", "dc2", 2345);
        u.mesh_gateway.mode = mode.into();
        u
    };
    let auth = sni_in("auth", "dc2");
    for (what, upstream, set, expected) in [
        (
            "proxy-defaults local",
            with_mode(""),
            vec![proxy_defaults("local")],
            &local_gw,
        ),
        (
            "proxy-defaults remote",
            with_mode(""),
            vec![proxy_defaults("remote")],
            &dc2_gw,
        ),
        ("no mode anywhere (none)", with_mode(""), vec![], &dc2_gw),
        (
            "service-defaults over proxy-defaults",
            with_mode(""),
            vec![proxy_defaults("local"), auth_defaults("remote")],
            &dc2_gw,
        ),
        (
            "the upstream over both",
            with_mode("local"),
            vec![proxy_defaults("remote"), auth_defaults("remote")],
            &local_gw,
        ),
    ] {
        let out = compile(&federated(vec![upstream], entries(&set)));
        let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
        assert_eq!(l.filter_chains.len(), 1, "{what}");
        let got: Vec<(String, u16)> = endpoint_addrs(&out, &auth)
            .into_iter()
            .map(|(h, p)| (h, p as u16))
            .collect();
        assert_eq!(&got, expected, "{what}");
        // The caller's TLS names the target in dc2 and wants dc2's identity: the gateways only
        // forward it.
        let tls = upstream_tls(&out, &auth);
        assert_eq!(tls.sni, auth, "{what}");
        let debug = format!("{tls:?}");
        assert!(
            debug.contains(&format!("spiffe://{TD}/ns/default/dc/dc2/svc/auth")),
            "{what}: {debug}"
        );
    }
}

#[test]
fn a_local_and_a_remote_upstream_of_one_service_are_two_chains() {
    let out = compile(&federated(
        vec![
            upstream_in("auth", "", 2345),
            upstream_in("auth", "dc2", 2346),
        ],
        ConfigEntrySet::default(),
    ));
    assert!(out.listeners.contains_key("auth:127.0.0.1:2345"));
    assert!(out.listeners.contains_key("auth:127.0.0.1:2346"));
    assert!(out.clusters.contains_key(&sni_in("auth", "dc1")));
    assert!(out.clusters.contains_key(&sni_in("auth", "dc2")));
}

#[test]
fn resolver_redirect_and_failover_reach_other_datacenters() {
    let set = entries(&[
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "pay", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "pay-backup", "Protocol": "http"}),
        json!({"Kind": "service-resolver", "Name": "api", "Redirect": {"Datacenter": "dc2"}}),
        json!({"Kind": "service-resolver", "Name": "db",
            "Failover": {"*": {"Datacenters": ["dc2", "dc3"]}}}),
        json!({"Kind": "service-resolver", "Name": "pay",
            "Failover": {"*": {"Targets": [{"Datacenter": "dc3"}, {"Service": "pay-backup"}]}}}),
    ]);
    let out = compile(&federated(
        vec![
            upstream_in("api", "", 2345),
            upstream_in("db", "", 2346),
            upstream_in("pay", "", 2347),
        ],
        set,
    ));
    // The redirect: api's traffic goes to dc2's api, through dc2's gateways (mode none).
    let l: listener::Listener = decode(&out.listeners["api:127.0.0.1:2345"]);
    assert_eq!(route_cluster(&hcm_of(&l, 0)), sni_in("api", "dc2"));
    assert_eq!(
        endpoint_addrs(&out, &sni_in("api", "dc2")),
        [("10.0.2.1".to_owned(), 9443)]
    );
    // Failover by datacenter, in order.
    let l: listener::Listener = decode(&out.listeners["db:127.0.0.1:2346"]);
    let agg = format!("failover-target~{}", sni_in("db", "dc1"));
    assert_eq!(route_cluster(&hcm_of(&l, 0)), agg);
    assert_eq!(
        aggregate_members(&out, &agg),
        [
            sni_in("db", "dc1"),
            sni_in("db", "dc2"),
            sni_in("db", "dc3")
        ]
    );
    assert_eq!(
        endpoint_addrs(&out, &sni_in("db", "dc3")),
        [("10.0.3.1".to_owned(), 9443)]
    );
    // Failover targets: another datacenter, then another service here.
    let agg = format!("failover-target~{}", sni_in("pay", "dc1"));
    assert_eq!(
        aggregate_members(&out, &agg),
        [
            sni_in("pay", "dc1"),
            sni_in("pay", "dc3"),
            sni_in("pay-backup", "dc1")
        ]
    );
}

#[test]
fn a_function_in_another_datacenter_is_that_datacenters_to_invoke() {
    let set = entries(&[json!({
        "Kind": "service-defaults", "Name": "auth", "Protocol": "http",
        "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]
    })]);
    let out = compile(&federated(vec![upstream_in("auth", "dc2", 2345)], set));
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    let h = hcm_of(&l, 0);
    assert_eq!(filter_names(&h), ["envoy.filters.http.router"]);
    let c: cluster::Cluster = decode(&out.clusters[&sni_in("auth", "dc2")]);
    assert!(
        c.eds_cluster_config.is_some(),
        "a mesh cluster, not the Lambda one"
    );
    assert_eq!(
        endpoint_addrs(&out, &sni_in("auth", "dc2")),
        [("10.0.2.1".to_owned(), 9443)]
    );
}

#[test]
fn a_function_fails_over_to_another_datacenter_when_the_catalog_says_it_is_down() {
    let set = entries(&[
        json!({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}}),
        json!({"Kind": "service-defaults", "Name": "auth", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
        json!({"Kind": "service-resolver", "Name": "auth",
            "Failover": {"*": {"Datacenters": ["dc2"]}}}),
    ]);
    let compile_with = |instances: Vec<Endpoint>| {
        let mut inp = federated(vec![upstream_in("auth", "", 2345)], set.clone());
        inp.service_endpoints
            .insert(ServiceName::default_tuple("auth"), instances);
        compile(&inp)
    };
    // Healthy here: invoked here.
    let out = compile_with(vec![lambda_instance(true)]);
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    let h = hcm_of(&l, 0);
    assert_eq!(filter_names(&h), CALLER_FILTERS);
    assert_eq!(route_cluster(&h), sni_in("auth", "dc1"));
    // Critical, or deregistered: dc2's function, through the local gateway.
    for instances in [vec![lambda_instance(false)], vec![]] {
        let out = compile_with(instances);
        let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
        let h = hcm_of(&l, 0);
        assert_eq!(route_cluster(&h), sni_in("auth", "dc2"));
        assert_eq!(
            endpoint_addrs(&out, &sni_in("auth", "dc2")),
            [("10.0.1.1".to_owned(), 8443)]
        );
        assert_eq!(
            upstream_tls(&out, &sni_in("auth", "dc2")).sni,
            sni_in("auth", "dc2")
        );
    }
}

fn mesh_gateway(federated: bool) -> ProxyInputs {
    let gw = NodeService {
        kind: ServiceKind::MeshGateway,
        id: "mgw".into(),
        service: "mgw".into(),
        port: 4431,
        namespace: "default".into(),
        partition: "default".into(),
        meta: if federated {
            BTreeMap::from([("consul-wan-federation".to_owned(), "1".to_owned())])
        } else {
            BTreeMap::new()
        },
        ..NodeService::default()
    };
    let mut inp = inputs(gw, ConfigEntrySet::default());
    inp.kind = ProxyKind::MeshGateway;
    inp.leaf = None;
    inp.remote_gateways = BTreeMap::from([
        ("dc2".to_owned(), vec![("10.0.2.1".to_owned(), 9443)]),
        ("dc3".to_owned(), vec![]),
    ]);
    inp
}

#[test]
fn a_mesh_gateway_forwards_other_datacenters_sni_to_their_gateways() {
    let dc2 = format!("dc2.internal.{TD}");
    for federated in [false, true] {
        let out = compile(&mesh_gateway(federated));
        let l: listener::Listener = decode(&out.listeners["default:127.0.0.1:4431"]);
        // dc2's chain, then the default chain; dc3 has no known gateway, so no chain.
        assert_eq!(l.filter_chains.len(), 2);
        let names = &l.filter_chains[0]
            .filter_chain_match
            .as_ref()
            .unwrap()
            .server_names;
        let mut expected = vec![format!("*.{dc2}")];
        if federated {
            expected.push("*.server.dc2.consul".to_owned());
            expected.push("server.dc2.consul".to_owned());
        }
        assert_eq!(names, &expected);
        assert_eq!(endpoint_addrs(&out, &dc2), [("10.0.2.1".to_owned(), 9443)]);
        assert!(!out.clusters.contains_key(&format!("dc3.internal.{TD}")));
        // The TLS is not terminated: the chain only forwards.
        assert!(l.filter_chains[0].transport_socket.is_none());
    }
}
