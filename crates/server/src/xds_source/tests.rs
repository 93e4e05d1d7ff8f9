//! Which writes reach which proxies: a write wakes (and recomputes) only the proxies whose
//! dependencies it touched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use mesh_model::catalog::{Node, NodeService, ProxyConfig, ServiceKind, Upstream};
use mesh_model::names::ServiceName;
use serde_json::json;
use store::Op;
use store::state::Registration;
use tokio::sync::watch;
use xds::Resources;
use xds::ads::SnapshotSource;

use super::{StoreSource, read_state};
use crate::AppState;
use crate::config::ServerConfig;

const TD_SUFFIX: &str = ".consul";

async fn write(app: &AppState, op: Op) {
    let done = app.store.write(op).await.unwrap();
    assert!(done.applied);
}

async fn config(app: &AppState, entry: serde_json::Value) {
    let entry = mesh_model::config_entry::decode_value(entry).unwrap();
    write(app, Op::ConfigSet { entry, cas: None }).await;
}

/// Registers `name` and its sidecar `<name>-sidecar-proxy` with one upstream per name in
/// `upstreams`, on node `n1`.
async fn register(app: &AppState, name: &str, upstreams: &[&str]) {
    let service = |kind: ServiceKind, id: String, port: u16, proxy: ProxyConfig| NodeService {
        kind,
        id: id.clone(),
        service: id,
        port,
        namespace: "default".into(),
        partition: "default".into(),
        proxy,
        ..NodeService::default()
    };
    let sidecar = service(
        ServiceKind::ConnectProxy,
        format!("{name}-sidecar-proxy"),
        21000,
        ProxyConfig {
            destination_service_name: name.into(),
            destination_service_id: name.into(),
            local_service_port: 8080,
            upstreams: upstreams
                .iter()
                .zip(9000..)
                .map(|(u, port)| Upstream {
                    destination_name: (*u).into(),
                    local_bind_port: port,
                    ..Upstream::default()
                })
                .collect(),
            ..ProxyConfig::default()
        },
    );
    let reg = Registration {
        node: Node {
            node: "n1".into(),
            address: "127.0.0.1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        services: vec![
            service(
                ServiceKind::Typical,
                name.into(),
                8080,
                ProxyConfig::default(),
            ),
            sidecar,
        ],
        checks: vec![],
        replace_checks_of: vec![],
    };
    write(app, Op::Register(reg)).await;
}

/// Waits (bounded, so a broken feed fails instead of hanging) until the proxy's snapshot
/// satisfies `done`.
async fn until(
    rx: &mut watch::Receiver<std::sync::Arc<Resources>>,
    done: impl Fn(&Resources) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !done(&rx.borrow_and_update()) {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the proxy's snapshot never got there");
}

/// The encoded cluster of `svc` in a snapshot (a new connect timeout changes it).
fn cluster_of(r: &Resources, svc: &str) -> Option<Vec<u8>> {
    r.clusters
        .iter()
        .find(|(name, _)| {
            name.starts_with(&format!("{svc}.default.dc1.internal.")) && name.ends_with(TD_SUFFIX)
        })
        .map(|(_, any)| any.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_recomputes_only_the_proxies_that_depend_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = AppState::open(ServerConfig::for_tests(dir.path()))
        .await
        .unwrap();
    register(&app, "web", &["api"]).await;
    register(&app, "api", &[]).await;
    register(&app, "other", &["db"]).await;
    register(&app, "db", &[]).await;
    let source = StoreSource::new(app.clone());
    let mut web = source.subscribe("web-sidecar-proxy", None).unwrap();
    let mut other = source.subscribe("other-sidecar-proxy", None).unwrap();
    until(&mut web, |r| cluster_of(r, "api").is_some()).await;
    until(&mut other, |r| cluster_of(r, "db").is_some()).await;
    let api_before = cluster_of(&web.borrow(), "api").unwrap();
    let db_before = cluster_of(&other.borrow(), "db").unwrap();
    let web_count = source.recomputes("web-sidecar-proxy");
    assert!(web_count >= 1);

    let web_keys = app.store.read(|st| {
        let leaves = BTreeSet::from([ServiceName::default_tuple("web")]);
        read_state(st, &app.config, "web-sidecar-proxy", &leaves)
            .unwrap()
            .ok()
            .unwrap()
            .keys
    });
    let web_index = app.store.read(|st| st.index_of(&web_keys));

    // Writes that concern other services: config of theirs, a new service with its sidecar,
    // intentions towards `other`; the last one changes what `other` sends to `db`.
    config(
        &app,
        json!({"Kind": "service-defaults", "Name": "zzz", "Protocol": "http"}),
    )
    .await;
    register(&app, "zzz", &["db"]).await;
    config(
        &app,
        json!({"Kind": "service-intentions", "Name": "other", "Sources": [{"Name": "zzz", "Action": "allow"}]}),
    )
    .await;
    config(
        &app,
        json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "7s"}),
    )
    .await;

    // Deterministically: none of them touched a key `web` waits on.
    assert_eq!(app.store.read(|st| st.index_of(&web_keys)), web_index);
    // And at run time: `other` recomputed (its snapshot shows the last write), `web` did not.
    until(&mut other, |r| {
        cluster_of(r, "db").is_some_and(|c| c != db_before)
    })
    .await;
    let other_count = source.recomputes("other-sidecar-proxy");
    assert_eq!(source.recomputes("web-sidecar-proxy"), web_count);

    // A write `web` depends on recomputes `web` once, and not `other`.
    config(
        &app,
        json!({"Kind": "service-resolver", "Name": "api", "ConnectTimeout": "2s"}),
    )
    .await;
    assert!(app.store.read(|st| st.index_of(&web_keys)) > web_index);
    until(&mut web, |r| {
        cluster_of(r, "api").is_some_and(|c| c != api_before)
    })
    .await;
    assert_eq!(source.recomputes("web-sidecar-proxy"), web_count + 1);
    assert_eq!(source.recomputes("other-sidecar-proxy"), other_count);
}
