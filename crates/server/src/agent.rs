//! The local agent of this single-node server: its own node (registered at start with the
//! `serfHealth` check and the `consul` service, as a Consul server does), and registrations onto
//! that node, which start the TTL timers of their TTL checks ([`crate::ttl`]).
//!
//! The `/v1/agent/*` handlers decode, authorize and call [`register_local`]; this module must not
//! depend on HTTP types.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use mesh_model::catalog::definition::parse_go_duration;
use mesh_model::catalog::{HealthCheck, Node, NodeService, PASSING};
use store::state::Registration;
use store::{Op, StoreError};

use crate::AppState;

/// The agent's own node record.
pub(crate) fn agent_node(app: &AppState) -> Node {
    let ip = app.config.http_addr.ip().to_string();
    Node {
        id: app.config.node_id.clone(),
        node: app.config.node_name.clone(),
        address: ip.clone(),
        datacenter: app.config.datacenter.clone(),
        tagged_addresses: BTreeMap::from([("lan".to_owned(), ip.clone()), ("wan".to_owned(), ip)]),
        meta: BTreeMap::from([("consul-network-segment".to_owned(), String::new())]),
        partition: "default".into(),
        create_index: 0,
        modify_index: 0,
    }
}

/// Registers the agent's node, its `serfHealth` check and the `consul` service, as a Consul
/// server does at start.
///
/// # Errors
/// The store refuses the write.
pub(crate) async fn register_self(app: &AppState) -> Result<(), StoreError> {
    let node = agent_node(app);
    let consul = NodeService {
        id: "consul".into(),
        service: "consul".into(),
        port: 8300,
        namespace: "default".into(),
        partition: "default".into(),
        datacenter: app.config.datacenter.clone(),
        proxy: mesh_model::catalog::ProxyConfig {
            expose: json!({}),
            ..Default::default()
        },
        ..NodeService::default()
    };
    let serf = HealthCheck {
        node: node.node.clone(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: PASSING.into(),
        output: "Agent alive and reachable".into(),
        namespace: "default".into(),
        partition: "default".into(),
        ..HealthCheck::default()
    };
    let op = Op::Register(Registration {
        node,
        skip_node_update: false,
        services: vec![consul],
        checks: vec![serf],
        replace_checks_of: vec![],
    });
    app.store.write(op).await?;
    Ok(())
}

/// Writes services and checks onto the agent's node in one op (`replace_checks_of`: services
/// whose other checks are dropped), then starts a full TTL for every TTL check among them.
///
/// # Errors
/// The store refuses the write.
pub(crate) async fn register_local(
    app: &AppState,
    services: Vec<NodeService>,
    checks: Vec<HealthCheck>,
    replace_checks_of: Vec<String>,
) -> Result<(), StoreError> {
    let ttls: Vec<(String, String)> = checks
        .iter()
        .filter(|c| !c.definition.ttl.is_empty())
        .map(|c| (c.check_id.clone(), c.definition.ttl.clone()))
        .collect();
    app.store
        .write(Op::Register(Registration {
            node: agent_node(app),
            skip_node_update: true,
            services,
            checks,
            replace_checks_of,
        }))
        .await?;
    for (id, ttl) in ttls {
        if let Ok(d) = parse_go_duration(&ttl) {
            app.ttl.touch(&id, d);
        }
    }
    Ok(())
}

/// Removes a service from the agent's node, its sidecar proxy first (given by ID): a crash in
/// between leaves a service without its proxy, never a proxy pointing at nothing.
///
/// # Errors
/// The store refuses a write.
pub(crate) async fn deregister_local(
    app: &AppState,
    namespace: &str,
    service_id: String,
    sidecar_id: Option<String>,
) -> Result<(), StoreError> {
    for service_id in sidecar_id.into_iter().chain([service_id]) {
        app.store
            .write(Op::DeregisterService {
                partition: "default".into(),
                node: app.config.node_name.clone(),
                namespace: namespace.to_owned(),
                service_id,
            })
            .await?;
    }
    Ok(())
}

/// Removes a check from the agent's node and forgets its TTL.
///
/// # Errors
/// The store refuses the write.
pub(crate) async fn deregister_check(
    app: &AppState,
    namespace: &str,
    check_id: &str,
) -> Result<(), StoreError> {
    app.store
        .write(Op::DeregisterCheck {
            partition: "default".into(),
            node: app.config.node_name.clone(),
            namespace: namespace.to_owned(),
            check_id: check_id.to_owned(),
        })
        .await?;
    app.ttl.forget(check_id);
    Ok(())
}

/// Sets a TTL check's status and output, and restarts its TTL.
///
/// # Errors
/// The store refuses the write.
pub(crate) async fn update_ttl_check(
    app: &AppState,
    check_id: &str,
    ttl: Duration,
    status: &str,
    output: String,
) -> Result<(), StoreError> {
    app.store
        .write(Op::UpdateCheck {
            partition: "default".into(),
            node: app.config.node_name.clone(),
            check_id: check_id.to_owned(),
            status: status.into(),
            output,
        })
        .await?;
    app.ttl.touch(check_id, ttl);
    Ok(())
}
