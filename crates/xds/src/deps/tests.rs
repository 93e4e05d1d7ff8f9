//! Discovery on values: compiling with only the discovered entries and endpoints gives the
//! resources compiling with everything gives (so nothing the compiler reads is missed), and
//! what belongs to other services is not a dependency.

use std::collections::{BTreeMap, BTreeSet};

use mesh_model::EntMeta;
use mesh_model::catalog::{NodeService, ProxyConfig, ServiceKind, Upstream};
use mesh_model::config_entry::{self, ConfigEntrySet, EntryKey, Kind};
use mesh_model::names::ServiceName;
use serde_json::json;

use super::{MeshState, discover, leaves};
use crate::compile::{CertPair, Endpoint, ProxyInputs, ProxyKind, compile, compile_with_chains};

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";
const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:auth";

/// A catalog and a config: services with their instances and mesh endpoints.
#[derive(Default)]
struct World {
    entries: ConfigEntrySet,
    instances: BTreeMap<ServiceName, Vec<Endpoint>>,
    connect: BTreeMap<ServiceName, Vec<Endpoint>>,
    remote: BTreeMap<String, Vec<(String, u16)>>,
}

impl MeshState for World {
    fn config_entries(&self) -> &ConfigEntrySet {
        &self.entries
    }
    fn service_names(&self, meta: &EntMeta) -> Vec<String> {
        self.instances
            .keys()
            .filter(|s| s.meta == *meta)
            .map(|s| s.name.clone())
            .collect()
    }
    fn connect_endpoints(&self, svc: &ServiceName) -> Vec<Endpoint> {
        self.connect.get(svc).cloned().unwrap_or_default()
    }
    fn service_endpoints(&self, svc: &ServiceName) -> Vec<Endpoint> {
        self.instances.get(svc).cloned().unwrap_or_default()
    }
    fn mesh_gateways(&self, meta: &EntMeta) -> (Vec<Endpoint>, BTreeSet<ServiceName>) {
        let mut eps = Vec::new();
        let mut names = BTreeSet::new();
        for (svc, list) in self.instances.iter().filter(|(s, _)| s.meta == *meta) {
            for e in list
                .iter()
                .filter(|e| e.row["Service"]["Kind"] == "mesh-gateway")
            {
                eps.push(e.clone());
                names.insert(svc.clone());
            }
        }
        (eps, names)
    }
    fn remote_gateways(&self) -> BTreeMap<String, Vec<(String, u16)>> {
        self.remote.clone()
    }
}

fn svc(name: &str) -> ServiceName {
    ServiceName::default_tuple(name)
}

fn endpoint(port: u16, version: &str, kind: &str) -> Endpoint {
    Endpoint {
        address: "10.0.0.1".into(),
        port,
        healthy: true,
        row: json!({"Service": {"Kind": kind, "Meta": {"version": version}}}),
    }
}

impl World {
    fn new(entries: &[serde_json::Value]) -> Self {
        let mut w = World::default();
        for v in entries {
            let e = config_entry::decode_value(v.clone()).unwrap();
            w.entries.validate_upsert(&e).unwrap();
            w.entries.insert(e);
        }
        w
    }

    /// A service with one instance and, unless `mesh` is empty, mesh endpoints of that kind
    /// (`""`: sidecars; `"terminating-gateway"`: a linked gateway).
    fn service(mut self, name: &str, mesh: &[(&str, &str)]) -> Self {
        self.instances
            .insert(svc(name), vec![endpoint(80, "v1", "")]);
        if !mesh.is_empty() {
            let eps = mesh
                .iter()
                .enumerate()
                .map(|(i, (version, kind))| endpoint(21000 + i as u16, version, kind))
                .collect();
            self.connect.insert(svc(name), eps);
        }
        self
    }
}

/// The registry of the whole test: a sidecar of `web`, and everything around it.
fn world() -> World {
    World::new(&[
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "api", "Action": "allow"}]}),
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "ops", "Action": "deny"}]}),
        json!({"Kind": "service-resolver", "Name": "api", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}, "Failover": {"*": {"Service": "api-backup"}}}),
        json!({"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "Service": "api-canary"}]}),
        json!({"Kind": "service-router", "Name": "api", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/v2"}}, "Destination": {"ServiceSubset": "v2"}}]}),
        json!({"Kind": "service-resolver", "Name": "api-canary", "ConnectTimeout": "3s"}),
        json!({"Kind": "service-resolver", "Name": "db", "Redirect": {"Service": "db-v2"}}),
        json!({"Kind": "service-resolver", "Name": "db-v2", "ConnectTimeout": "2s"}),
        json!({"Kind": "service-defaults", "Name": "auth", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
        json!({"Kind": "service-defaults", "Name": "pay", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
        json!({"Kind": "service-resolver", "Name": "pay", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}}}),
        json!({"Kind": "service-intentions", "Name": "pay", "Sources": [{"Name": "web", "Action": "allow"}]}),
        json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "pay"}, {"Name": "ext", "SNI": "ext.example"}]}),
        json!({"Kind": "terminating-gateway", "Name": "tgw-all", "Services": [{"Name": "*"}]}),
        // Nobody here reaches these.
        json!({"Kind": "service-defaults", "Name": "zzz", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "zzz", "Sources": [{"Name": "web", "Action": "deny"}]}),
        json!({"Kind": "service-resolver", "Name": "other", "ConnectTimeout": "9s"}),
        json!({"Kind": "service-router", "Name": "other", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/x"}}, "Destination": {"Service": "zzz"}}]}),
    ])
    .service("web", &[("v1", "")])
    .service("api", &[("v1", ""), ("v2", "")])
    .service("api-canary", &[("v1", "")])
    .service("api-backup", &[("v1", "")])
    .service("db-v2", &[("v1", "")])
    .service("auth", &[])
    .service("pay", &[("v1", "terminating-gateway")])
    .service("ext", &[])
    .service("zzz", &[("v1", "")])
    .service("other", &[("v1", "")])
}

fn upstream(name: &str, port: u16) -> Upstream {
    Upstream {
        destination_name: name.into(),
        local_bind_port: port,
        ..Upstream::default()
    }
}

fn web_sidecar() -> NodeService {
    let mut query = upstream("q", 9000);
    query.destination_type = "prepared_query".into();
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
            local_service_port: 8080,
            upstreams: vec![
                upstream("api", 9001),
                upstream("db", 9002),
                upstream("auth", 9003),
                upstream("pay", 9004),
                upstream("api", 9005),
                query,
            ],
            ..ProxyConfig::default()
        },
        ..NodeService::default()
    }
}

fn gateway(kind: &str, name: &str) -> NodeService {
    NodeService {
        kind: ServiceKind::parse(kind).unwrap(),
        id: name.into(),
        service: name.into(),
        port: 8443,
        namespace: "default".into(),
        partition: "default".into(),
        ..NodeService::default()
    }
}

fn cert(name: &str) -> CertPair {
    CertPair {
        cert_pem: format!("CERT {name}"),
        key_pem: format!("KEY {name}"),
    }
}

/// This datacenter's mesh gateways, and other datacenters' by datacenter.
type Gateways = (Vec<Endpoint>, BTreeMap<String, Vec<(String, u16)>>);

/// Inputs as the server builds them, with the given entries and endpoints.
fn inputs(
    kind: ProxyKind,
    proxy: &NodeService,
    entries: ConfigEntrySet,
    connect_endpoints: BTreeMap<ServiceName, Vec<Endpoint>>,
    service_endpoints: BTreeMap<ServiceName, Vec<Endpoint>>,
    gateways: Gateways,
    leaves: &BTreeSet<ServiceName>,
) -> ProxyInputs {
    let certs = || leaves.iter().map(|s| (s.clone(), cert(&s.name)));
    ProxyInputs {
        kind,
        proxy: proxy.clone(),
        node_address: "127.0.0.1".into(),
        datacenter: "dc1".into(),
        trust_domain: TD.into(),
        roots_pem: vec!["ROOT".into()],
        leaf: (kind == ProxyKind::Sidecar)
            .then(|| certs().next().map(|(_, c)| c))
            .flatten(),
        service_leaves: if kind == ProxyKind::TerminatingGateway {
            certs().collect()
        } else {
            BTreeMap::new()
        },
        entries,
        connect_endpoints,
        service_endpoints,
        default_allow: false,
        lambda_endpoint: None,
        local_servers: Vec::new(),
        mesh_gateways: gateways.0,
        remote_gateways: gateways.1,
    }
}

/// Compiles `proxy` from everything in `w` and from what discovery found, and checks they agree.
fn assert_discovery_suffices(w: &World, proxy: &NodeService, kind: ProxyKind) -> super::Discovery {
    let found = discover(w, proxy, kind, "dc1", TD);
    let leaves = leaves(w, proxy, kind);
    assert_eq!(found.deps.leaves, leaves);
    // A mesh gateway's endpoints are, by definition, those of its tenancy's services that
    // have any; other proxies read endpoints by service, so all of them may be offered.
    let all_connect = match kind {
        ProxyKind::MeshGateway => w
            .connect
            .iter()
            .filter(|(s, eps)| s.meta == proxy.ent_meta() && !eps.is_empty())
            .map(|(s, eps)| (s.clone(), eps.clone()))
            .collect(),
        _ => w.connect.clone(),
    };
    let everything = inputs(
        kind,
        proxy,
        w.entries.clone(),
        all_connect,
        w.instances.clone(),
        (w.mesh_gateways(&proxy.ent_meta()).0, w.remote.clone()),
        &leaves,
    );
    let expected = compile(&everything);
    assert!(!expected.listeners.is_empty());
    let discovered = inputs(
        kind,
        proxy,
        found.entries.clone(),
        found.connect_endpoints.clone(),
        found.service_endpoints.clone(),
        (found.mesh_gateways.clone(), found.remote_gateways.clone()),
        &leaves,
    );
    let got = compile_with_chains(&discovered, &found.chains);
    for (kind, a, b) in [
        ("cluster", &got.clusters, &expected.clusters),
        ("endpoints", &got.endpoints, &expected.endpoints),
        ("listener", &got.listeners, &expected.listeners),
        ("route", &got.routes, &expected.routes),
        (
            "extension config",
            &got.extension_configs,
            &expected.extension_configs,
        ),
    ] {
        let differ: Vec<&String> = a
            .keys()
            .chain(b.keys())
            .filter(|name| a.get(*name) != b.get(*name))
            .collect();
        assert!(differ.is_empty(), "{kind} resources differ: {differ:?}");
    }
    assert!(
        found.entries.len() < w.entries.len(),
        "only what the proxy depends on is copied"
    );
    found
}

fn key(kind: Kind, name: &str) -> EntryKey {
    EntryKey {
        kind,
        meta: EntMeta::default(),
        name: name.into(),
    }
}

fn names(keys: &BTreeSet<EntryKey>, kind: Kind) -> Vec<&str> {
    keys.iter()
        .filter(|k| k.kind == kind)
        .map(|k| k.name.as_str())
        .collect()
}

#[test]
fn a_sidecar_compiles_the_same_from_its_dependencies_alone() {
    let w = world();
    let found = assert_discovery_suffices(&w, &web_sidecar(), ProxyKind::Sidecar);
    let deps = &found.deps;
    assert_eq!(deps.proxy, svc("web-sidecar-proxy"));
    // Each upstream's chain is compiled once, whatever the number of its listeners.
    assert_eq!(
        found.chains.keys().map(|k| &k.0).collect::<Vec<_>>(),
        [&svc("api"), &svc("auth"), &svc("db"), &svc("pay")]
    );
    assert_eq!(
        deps.connect,
        ["api", "api-backup", "api-canary", "auth", "db-v2", "pay"]
            .into_iter()
            .map(svc)
            .collect()
    );
    // The function's instances: their health decides failover involving it.
    assert_eq!(deps.instances, BTreeSet::from([svc("auth")]));
    assert!(deps.service_lists.is_empty() && !deps.remote_gateways);
    // The redirect's source and target, the nested split's service, the failover target.
    assert_eq!(
        names(&deps.entries, Kind::ServiceResolver),
        [
            "api",
            "api-backup",
            "api-canary",
            "auth",
            "db",
            "db-v2",
            "pay"
        ]
    );
    assert_eq!(
        names(&deps.entries, Kind::ServiceRouter),
        ["api", "auth", "db", "pay"]
    );
    assert!(
        deps.entries
            .contains(&key(Kind::ServiceSplitter, "api-canary"))
    );
    // Its own intentions and the wildcard ones that may exist, present or not.
    let intentions = names(&deps.entries, Kind::ServiceIntentions);
    assert_eq!(intentions, ["*", "*", "web"]);
    assert!(deps.entries.contains(&key(Kind::ProxyDefaults, "global")));
    // What only other services use is no dependency.
    assert!(
        deps.entries
            .iter()
            .all(|k| !["zzz", "other", "tgw", "tgw-all"].contains(&k.name.as_str())),
        "{:?}",
        deps.entries
    );
    assert!(!found.connect_endpoints.contains_key(&svc("zzz")));
}

#[test]
fn a_tcp_sidecar_reads_no_router_or_splitter() {
    let w = World::new(&[
        json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "2s"}),
        json!({"Kind": "service-defaults", "Name": "zzz", "Protocol": "tcp"}),
    ])
    .service("db", &[("v1", "")]);
    let mut proxy = web_sidecar();
    proxy.proxy.upstreams = vec![upstream("db", 9002)];
    let found = assert_discovery_suffices(&w, &proxy, ProxyKind::Sidecar);
    assert_eq!(
        names(&found.deps.entries, Kind::ServiceRouter),
        Vec::<&str>::new()
    );
    assert_eq!(
        names(&found.deps.entries, Kind::ServiceSplitter),
        Vec::<&str>::new()
    );
    assert_eq!(found.entries.len(), 1);
}

#[test]
fn a_terminating_gateway_compiles_the_same_from_its_dependencies_alone() {
    let w = world();
    let found = assert_discovery_suffices(
        &w,
        &gateway("terminating-gateway", "tgw"),
        ProxyKind::TerminatingGateway,
    );
    let deps = &found.deps;
    assert_eq!(deps.leaves, [svc("ext"), svc("pay")].into_iter().collect());
    assert_eq!(deps.instances, deps.leaves);
    assert!(deps.connect.is_empty());
    // No `*` link: the list of services is no dependency.
    assert!(deps.service_lists.is_empty());
    assert!(deps.entries.contains(&key(Kind::TerminatingGateway, "tgw")));
    assert!(
        !deps
            .entries
            .contains(&key(Kind::TerminatingGateway, "tgw-all"))
    );
    assert_eq!(names(&deps.entries, Kind::ServiceResolver), ["ext", "pay"]);
}

#[test]
fn a_wildcard_link_depends_on_the_list_of_services() {
    let w = world();
    let found = assert_discovery_suffices(
        &w,
        &gateway("terminating-gateway", "tgw-all"),
        ProxyKind::TerminatingGateway,
    );
    assert_eq!(
        found.deps.service_lists,
        BTreeSet::from([EntMeta::default()])
    );
    assert_eq!(found.deps.leaves.len(), w.instances.len());
}

#[test]
fn a_mesh_gateway_compiles_the_same_from_its_dependencies_alone() {
    let w = world();
    let found =
        assert_discovery_suffices(&w, &gateway("mesh-gateway", "mgw"), ProxyKind::MeshGateway);
    let deps = &found.deps;
    assert_eq!(deps.service_lists, BTreeSet::from([EntMeta::default()]));
    assert_eq!(deps.connect.len(), w.instances.len());
    // Only services with mesh endpoints get clusters, so only their resolvers matter.
    assert!(!found.connect_endpoints.contains_key(&svc("auth")));
    assert!(!deps.entries.contains(&key(Kind::ServiceResolver, "auth")));
    assert!(deps.entries.contains(&key(Kind::ServiceResolver, "api")));
    assert!(deps.leaves.is_empty());
}

/// A sidecar with targets in other datacenters: one through the local mesh gateways (whose
/// instances and service list it then depends on), one through dc2's (the federation's map).
#[test]
fn targets_in_other_datacenters_read_the_gateways_their_mode_names() {
    let mut w = World::new(&[
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
        json!({"Kind": "service-defaults", "Name": "api", "MeshGateway": {"Mode": "local"}}),
        json!({"Kind": "service-resolver", "Name": "db", "Failover": {"*": {"Datacenters": ["dc2"]}}}),
        json!({"Kind": "service-resolver", "Name": "zzz", "ConnectTimeout": "9s"}),
    ])
    .service("web", &[("v1", "")])
    .service("db", &[("v1", "")])
    .service("mgw", &[]);
    w.instances
        .insert(svc("mgw"), vec![endpoint(8443, "v1", "mesh-gateway")]);
    w.remote
        .insert("dc2".into(), vec![("10.0.2.1".into(), 9443)]);
    let mut proxy = web_sidecar();
    let mut api = upstream("api", 9001);
    api.datacenter = "dc2".into();
    proxy.proxy.upstreams = vec![api, upstream("db", 9002)];
    let found = assert_discovery_suffices(&w, &proxy, ProxyKind::Sidecar);
    let deps = &found.deps;
    // dc2's api is reached through the local gateways; db's failover through dc2's.
    assert_eq!(deps.instances, BTreeSet::from([svc("mgw")]));
    assert_eq!(deps.service_lists, BTreeSet::from([EntMeta::default()]));
    assert!(deps.remote_gateways);
    assert_eq!(found.mesh_gateways.len(), 1);
    // Only this datacenter's db has mesh endpoints to read.
    assert_eq!(deps.connect, BTreeSet::from([svc("db")]));
}
