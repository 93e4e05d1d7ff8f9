//! Consul JSON of catalog and health rows: nodes, service instances, checks, the flat
//! `/v1/catalog/service` row and the `{Node, Service, Checks}` health row. The HTTP handlers
//! answer with these, and the xDS source hands the health row to subset filters, so a filter
//! sees exactly what a client of the API would.
//!
//! The record structs and their field names are `mesh_model::catalog`'s; this module only adds
//! what the API shows around them (the datacenter, the flattened `Service*` names). It must not
//! depend on HTTP types or on the store's write side.

use serde_json::{Value, json};

use mesh_model::catalog::{HealthCheck, Node, NodeService};
use store::state::catalog::Instance;

/// A node as `/v1/catalog/nodes` and the health rows show it.
pub fn node(n: &Node, dc: &str) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": dc,
        "TaggedAddresses": n.tagged_addresses, "Meta": n.meta, "Partition": n.partition,
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    })
}

/// A service instance as the catalog and health rows show it (the record plus `Datacenter`).
pub fn service(s: &NodeService, dc: &str) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("Datacenter".into(), Value::from(dc));
    }
    v
}

/// A service instance as `/v1/agent/service(s)` shows it: without the raft indexes.
pub fn agent_service(s: &NodeService, dc: &str) -> Value {
    let mut v = service(s, dc);
    if let Some(o) = v.as_object_mut() {
        o.remove("CreateIndex");
        o.remove("ModifyIndex");
    }
    v
}

/// A health check, as every endpoint that lists checks shows it.
pub fn check(c: &HealthCheck) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// A node with its services (`/v1/catalog/node/:node` gives a map by ID,
/// `/v1/catalog/node-services/:node` a list).
pub fn node_with_services(n: &Node, dc: &str, services: Value) -> Value {
    json!({ "Node": node(n, dc), "Services": services })
}

/// The flat row of `/v1/catalog/service/:name` and `/v1/catalog/connect/:name`.
pub fn catalog_service(n: &Node, s: &NodeService, dc: &str) -> Value {
    json!({
        "ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": dc,
        "TaggedAddresses": n.tagged_addresses, "NodeMeta": n.meta,
        "ServiceKind": s.kind, "ServiceID": s.id, "ServiceName": s.service, "ServiceTags": s.tags,
        "ServiceAddress": s.address, "ServiceTaggedAddresses": s.tagged_addresses,
        "ServiceWeights": s.weights, "ServiceMeta": s.meta, "ServicePort": s.port,
        "ServiceSocketPath": "", "ServiceEnableTagOverride": s.enable_tag_override,
        "ServiceProxy": s.proxy, "ServiceConnect": s.connect, "ServiceLocality": s.locality,
        "Namespace": s.namespace, "Partition": s.partition,
        "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

/// One health row, `{Node, Service, Checks}` (`/v1/health/service/:name`, `/v1/health/connect/:name`,
/// and what xDS subset filters evaluate).
pub fn health_entry(i: &Instance<'_>, dc: &str) -> Value {
    json!({
        "Node": node(i.node, dc),
        "Service": service(i.service, dc),
        "Checks": i.checks.iter().map(|c| check(c)).collect::<Vec<_>>(),
    })
}
