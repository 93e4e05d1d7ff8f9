use mesh_model::catalog::{CheckStatus, HealthCheck, Node, NodeService, ServiceKind};

use CheckStatus::{Critical as CRITICAL, Passing as PASSING};
use mesh_model::names::ServiceName;

use super::catalog::Registration;
use super::*;

fn node(name: &str) -> Node {
    Node {
        node: name.into(),
        address: "10.0.0.1".into(),
        ..Node::default()
    }
}

fn svc(id: &str, name: &str, port: u16) -> NodeService {
    NodeService {
        id: id.into(),
        service: name.into(),
        port,
        ..NodeService::default()
    }
}

fn reg(node_name: &str, services: Vec<NodeService>, checks: Vec<HealthCheck>) -> Op {
    Op::Register(Registration {
        node: node(node_name),
        skip_node_update: false,
        services,
        checks,
        replace_checks_of: vec![],
    })
}

fn ttl_check(node: &str, id: &str, service_id: &str, status: CheckStatus) -> HealthCheck {
    HealthCheck {
        node: node.into(),
        check_id: id.into(),
        name: id.into(),
        status,
        service_id: service_id.into(),
        ..HealthCheck::default()
    }
}

#[test]
fn register_sets_indexes_and_touches_keys() {
    let mut st = State::default();
    let keys = st
        .apply(&reg("n1", vec![svc("web-1", "web", 80)], vec![]), 1)
        .unwrap()
        .unwrap();
    let web = ServiceName::default_tuple("web");
    assert!(keys.contains(&WatchKey::Service(web.clone())));
    assert!(keys.contains(&WatchKey::Nodes));
    let inst = st.instances(&web);
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0].service.create_index, 1);
    assert_eq!(inst[0].service.namespace, "default");
    assert_eq!(st.index_of(&[WatchKey::Service(web.clone())]), 1);

    // Same registration again: nothing changes, no service key touched, indexes stay.
    let keys = st
        .apply(&reg("n1", vec![svc("web-1", "web", 80)], vec![]), 2)
        .unwrap()
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(st.instances(&web)[0].service.modify_index, 1);
    assert_eq!(st.index_of(&[WatchKey::Service(web.clone())]), 1);

    // A change to the port bumps modify but not create.
    st.apply(&reg("n1", vec![svc("web-1", "web", 81)], vec![]), 3)
        .unwrap();
    let s = st.instances(&web)[0].service.clone();
    assert_eq!((s.create_index, s.modify_index, s.port), (1, 3, 81));
    // Another service's key is untouched.
    assert_eq!(
        st.index_of(&[WatchKey::Service(ServiceName::default_tuple("db"))]),
        1
    );
}

#[test]
fn check_for_unknown_service_is_rejected_without_side_effects() {
    let mut st = State::default();
    let err = st
        .apply(
            &reg("n1", vec![], vec![ttl_check("n1", "c1", "nope", PASSING)]),
            1,
        )
        .unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(m) if m.contains("Missing service for check")));
    assert_eq!(st.index(), 0);
    assert!(
        st.node("default", "n1").is_none(),
        "node must not be half-registered"
    );
}

#[test]
fn health_status_and_ttl_updates() {
    let mut st = State::default();
    st.apply(
        &reg(
            "n1",
            vec![svc("web-1", "web", 80)],
            vec![ttl_check("n1", "c1", "web-1", CRITICAL)],
        ),
        1,
    )
    .unwrap();
    let web = ServiceName::default_tuple("web");
    assert_eq!(st.instances(&web)[0].status(), CRITICAL);
    let keys = st
        .apply(
            &Op::UpdateCheck {
                node: NodeKey::new("", "n1"),
                check_id: "c1".into(),
                status: PASSING,
                output: "ok".into(),
            },
            2,
        )
        .unwrap()
        .unwrap();
    assert!(keys.contains(&WatchKey::Service(web.clone())));
    assert_eq!(st.instances(&web)[0].status(), PASSING);
    let err = st
        .apply(
            &Op::UpdateCheck {
                node: NodeKey::new("", "n1"),
                check_id: "zz".into(),
                status: PASSING,
                output: "".into(),
            },
            3,
        )
        .unwrap_err();
    assert!(matches!(err, ApplyError::NotFound(_)));
    // A node-level check affects every service on the node.
    st.apply(
        &reg("n1", vec![], vec![ttl_check("n1", "node-c", "", CRITICAL)]),
        4,
    )
    .unwrap();
    assert_eq!(st.instances(&web)[0].status(), CRITICAL);
    assert_eq!(st.index_of(&[WatchKey::Service(web)]), 4);
}

#[test]
fn connect_instances_follow_proxies() {
    let mut st = State::default();
    let mut proxy = svc("web-sidecar-proxy", "web-sidecar-proxy", 21000);
    proxy.kind = ServiceKind::ConnectProxy;
    proxy.proxy.destination_service_name = "web".into();
    let keys = st
        .apply(&reg("n1", vec![svc("web", "web", 80), proxy], vec![]), 1)
        .unwrap()
        .unwrap();
    let web = ServiceName::default_tuple("web");
    assert!(keys.contains(&WatchKey::Connect(web.clone())));
    let c = st.connect_instances(&web);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].service.id, "web-sidecar-proxy");
    let keys = st
        .apply(
            &Op::DeregisterService(ServiceKey::new("", "n1", "", "web-sidecar-proxy")),
            2,
        )
        .unwrap()
        .unwrap();
    assert!(keys.contains(&WatchKey::Connect(web.clone())));
    assert!(st.connect_instances(&web).is_empty());
}

#[test]
fn deregister_node_removes_everything_on_it() {
    let mut st = State::default();
    st.apply(
        &reg(
            "n1",
            vec![svc("a", "a", 1), svc("b", "b", 2)],
            vec![ttl_check("n1", "c", "a", PASSING)],
        ),
        1,
    )
    .unwrap();
    st.apply(&reg("n2", vec![svc("a", "a", 1)], vec![]), 2)
        .unwrap();
    st.apply(&Op::DeregisterNode(NodeKey::new("", "n1")), 3)
        .unwrap();
    assert!(st.node("default", "n1").is_none());
    assert_eq!(st.instances(&ServiceName::default_tuple("a")).len(), 1);
    assert!(st.node_checks("default", "n1").next().is_none());
    assert_eq!(st.service_tags(&mesh_model::EntMeta::default()).len(), 1);
}

#[test]
fn tenancy_separates_services() {
    let mut st = State::default();
    let mut s = svc("web", "web", 80);
    s.namespace = "team-a".into();
    st.apply(&reg("n1", vec![s, svc("web", "web", 80)], vec![]), 1)
        .unwrap();
    let a = ServiceName::new("web", mesh_model::EntMeta::new(None, Some("team-a")));
    assert_eq!(st.instances(&a).len(), 1);
    assert_eq!(st.instances(&ServiceName::default_tuple("web")).len(), 1);
}

#[test]
fn services_with_an_id_are_found_on_every_node_in_node_order() {
    let mut st = State::default();
    st.apply(
        &reg("n2", vec![svc("p", "web", 80), svc("q", "db", 81)], vec![]),
        1,
    )
    .unwrap();
    st.apply(&reg("n1", vec![svc("p", "api", 82)], vec![]), 2)
        .unwrap();
    let found: Vec<(&str, &str)> = st
        .services_with_id("default", "p")
        .map(|(n, s)| (n.node.as_str(), s.service.as_str()))
        .collect();
    assert_eq!(found, [("n1", "api"), ("n2", "web")]);
    // The same order as walking the nodes and their services.
    let walked: Vec<(&str, &str)> = st
        .nodes("default")
        .flat_map(|n| st.node_services("default", &n.node).map(move |s| (n, s)))
        .filter(|(_, s)| s.id == "p")
        .map(|(n, s)| (n.node.as_str(), s.service.as_str()))
        .collect();
    assert_eq!(found, walked);
    assert_eq!(st.services_with_id("other", "p").count(), 0);
    assert_eq!(st.services_with_id("default", "nope").count(), 0);
}

/// The federation's gateway map: set per datacenter, unchanged sets are no-ops (no log record,
/// no wake-up), kept by snapshots, written in the log as plain fields.
#[test]
fn federation_states_are_set_per_datacenter_and_survive_a_snapshot() {
    let mut st = State::default();
    let set = |dc: &str, gws: &[&str]| Op::SetFederationState {
        datacenter: dc.into(),
        mesh_gateways: gws.iter().map(|g| (*g).to_owned()).collect(),
    };
    assert_eq!(
        st.apply(&set("dc2", &["127.0.0.1:9443"]), 1).unwrap(),
        Some(vec![WatchKey::FederationStates])
    );
    assert_eq!(st.apply(&set("dc2", &["127.0.0.1:9443"]), 2).unwrap(), None);
    st.apply(&set("dc3", &["10.0.3.1:443", "10.0.3.2:443"]), 2)
        .unwrap();
    assert_eq!(st.index_of(&[WatchKey::FederationStates]), 2);
    assert!(matches!(
        st.apply(&set("", &[]), 3),
        Err(ApplyError::Invalid(_))
    ));
    let restored = State::from_snapshot(
        serde_json::from_str(&serde_json::to_string(&st.to_snapshot()).unwrap()).unwrap(),
    );
    assert_eq!(restored.federation_states(), st.federation_states());
    assert_eq!(restored.federation_states()["dc3"].len(), 2);
    let op = set("dc2", &["127.0.0.1:9443"]);
    let written = serde_json::to_value(&op).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"SetFederationState": {"datacenter": "dc2", "mesh_gateways": ["127.0.0.1:9443"]}})
    );
    assert_eq!(serde_json::from_value::<Op>(written).unwrap(), op);
}

/// The by-name index behind `instances` follows renames, deregistrations (of a service and of a
/// node) and snapshots; an instance's checks are its node's only, also next to a node whose
/// name extends it.
#[test]
fn instances_by_name_follow_every_change() {
    let mut st = State::default();
    let names = |st: &State, name: &str| -> Vec<(String, String)> {
        st.instances(&ServiceName::default_tuple(name))
            .iter()
            .map(|i| (i.node.node.clone(), i.service.id.clone()))
            .collect()
    };
    st.apply(
        &reg(
            "n1",
            vec![svc("a-1", "a", 1), svc("b-1", "b", 2)],
            vec![ttl_check("n1", "c1", "a-1", PASSING)],
        ),
        1,
    )
    .unwrap();
    st.apply(
        &reg(
            "n10",
            vec![svc("a-1", "a", 1)],
            vec![ttl_check("n10", "c10", "a-1", CRITICAL)],
        ),
        2,
    )
    .unwrap();
    let pair = |n: &str, id: &str| (n.to_owned(), id.to_owned());
    assert_eq!(names(&st, "a"), [pair("n1", "a-1"), pair("n10", "a-1")]);
    let a = st.instances(&ServiceName::default_tuple("a"));
    assert_eq!(a[0].checks.len(), 1);
    assert_eq!(a[0].status(), PASSING);
    assert_eq!(a[1].status(), CRITICAL);
    // The same ID registered under another name moves to that name.
    st.apply(&reg("n1", vec![svc("a-1", "c", 1)], vec![]), 3)
        .unwrap();
    assert_eq!(names(&st, "a"), [pair("n10", "a-1")]);
    assert_eq!(names(&st, "c"), [pair("n1", "a-1")]);
    st.apply(
        &Op::DeregisterService(ServiceKey::new("", "n10", "", "a-1")),
        4,
    )
    .unwrap();
    assert!(names(&st, "a").is_empty());
    assert!(!st.services_by_name.contains_key(&(
        "default".to_owned(),
        "default".to_owned(),
        "a".to_owned()
    )));
    let restored = State::from_snapshot(
        serde_json::from_str(&serde_json::to_string(&st.to_snapshot()).unwrap()).unwrap(),
    );
    assert_eq!(names(&restored, "b"), [pair("n1", "b-1")]);
    assert_eq!(names(&restored, "c"), [pair("n1", "a-1")]);
    st.apply(&Op::DeregisterNode(NodeKey::new("", "n1")), 5)
        .unwrap();
    assert!(names(&st, "b").is_empty() && names(&st, "c").is_empty());
    assert!(st.services_by_name.is_empty());
}

/// `connect_instances` reads its index: sidecars by destination (re-pointed ones move), native
/// instances by name, in catalog order, and nothing of another tenancy.
#[test]
fn connect_instances_follow_destinations_and_native_instances() {
    let mut st = State::default();
    let proxy = |id: &str, dest: &str| {
        let mut p = svc(id, &format!("{dest}-sidecar-proxy"), 21000);
        p.kind = ServiceKind::ConnectProxy;
        p.proxy.destination_service_name = dest.into();
        p
    };
    let mut native = svc("web-native", "web", 8443);
    native.connect.native = true;
    let mut other_ns = proxy("p-ns", "web");
    other_ns.namespace = "team-a".into();
    st.apply(&reg("n2", vec![proxy("p2", "web"), native], vec![]), 1)
        .unwrap();
    st.apply(&reg("n1", vec![proxy("p1", "web"), other_ns], vec![]), 2)
        .unwrap();
    let web = ServiceName::default_tuple("web");
    let ids = |st: &State, name: &ServiceName| -> Vec<String> {
        st.connect_instances(name)
            .iter()
            .map(|i| format!("{}/{}", i.node.node, i.service.id))
            .collect()
    };
    assert_eq!(ids(&st, &web), ["n1/p1", "n2/p2", "n2/web-native"]);
    // p1 re-pointed at api: it leaves web's list and joins api's.
    st.apply(&reg("n1", vec![proxy("p1", "api")], vec![]), 3)
        .unwrap();
    assert_eq!(ids(&st, &web), ["n2/p2", "n2/web-native"]);
    assert_eq!(ids(&st, &ServiceName::default_tuple("api")), ["n1/p1"]);
    let team_a = ServiceName::new("web", mesh_model::EntMeta::new(None, Some("team-a")));
    assert_eq!(ids(&st, &team_a), ["n1/p-ns"]);
    st.apply(&Op::DeregisterNode(NodeKey::new("", "n2")), 4)
        .unwrap();
    assert!(ids(&st, &web).is_empty());
    st.apply(&Op::DeregisterNode(NodeKey::new("", "n1")), 5)
        .unwrap();
    assert!(st.mesh_instances_of.is_empty() && st.services_by_name.is_empty());
}
