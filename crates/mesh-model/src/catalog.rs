//! Catalog records (nodes, service instances, health checks) in Consul's JSON shapes, the request
//! bodies that create them (catalog register, agent service definitions, `services register`
//! files), and the pure rules around them: validation and sidecar expansion.
//!
//! Stored records and API records share one shape on purpose: Consul's clients read exactly these
//! field names, so keeping one struct per record means a field cannot be stored but not served.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decode::{self, DecodeError};
use crate::names::{self, EntMeta, NameError};

pub mod definition;
mod kinds;

pub use definition::{CheckDefinition, ServiceDefinition, ServiceFile};
pub use kinds::{CheckStatus, ServiceKind};

/// Consul's port range for auto-assigned sidecar ports (`sidecar_min_port`..`sidecar_max_port`).
pub const SIDECAR_PORT_MIN: u16 = 21000;
pub const SIDECAR_PORT_MAX: u16 = 21255;

fn is_empty_map<K, V>(m: &BTreeMap<K, V>) -> bool {
    m.is_empty()
}
fn is_zero(p: &u16) -> bool {
    *p == 0
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// A catalog node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID", default)]
    pub id: String,
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// Load-balancing weights of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

/// `MeshGateway { Mode }` on proxies, upstreams and config entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MeshGatewayConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// One upstream of a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Upstream {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_peer: String,
    pub destination_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_bind_address: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub local_bind_port: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_mode: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, Value>,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default, skip_serializing_if = "is_false")]
    pub centrally_configured: bool,
}

/// `Proxy` block of a connect-proxy or gateway instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    #[serde(
        default,
        rename = "DestinationServiceID",
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_service_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub local_service_port: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_service_socket_path: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default = "empty_object")]
    pub expose: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub transparent_proxy: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// `Connect` block of a stored instance (sidecar registrations are expanded, never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceConnect {
    #[serde(default, skip_serializing_if = "is_false")]
    pub native: bool,
}

/// A service instance on a node (Consul's `NodeService`), as stored and as served by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NodeService {
    #[serde(default)]
    pub kind: ServiceKind,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub tagged_addresses: BTreeMap<String, Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub weights: Weights,
    #[serde(default)]
    pub enable_tag_override: bool,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub connect: ServiceConnect,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub locality: Value,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl NodeService {
    pub fn ent_meta(&self) -> EntMeta {
        EntMeta::new(Some(&self.partition), Some(&self.namespace))
    }
    pub fn is_connect_proxy(&self) -> bool {
        self.kind == ServiceKind::ConnectProxy
    }
    /// True for instances that take part in the mesh (`health/connect` results).
    pub fn is_mesh_capable_for(&self, service: &str) -> bool {
        (self.is_connect_proxy() && self.proxy.destination_service_name == service)
            || (self.connect.native && self.service == service)
    }
}

/// A health check as stored and served (Consul's `HealthCheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: CheckStatus,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_tags: Vec<String>,
    #[serde(default, rename = "Type")]
    pub check_type: String,
    #[serde(default)]
    pub definition: CheckRuntime,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// What the agent needs to run a check (`Definition` in Consul's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CheckRuntime {
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "HTTP")]
    pub http: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "TCP")]
    pub tcp: String,
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "TTL")]
    pub ttl: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deregister_critical_service_after: String,
}

/// Why a catalog request was refused. Messages name the field.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CatalogError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CatalogError {
    CatalogError::Invalid(msg.into())
}

/// Body of `PUT /v1/catalog/register`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegisterRequest {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub node_meta: BTreeMap<String, String>,
    #[serde(default)]
    pub service: Option<ServiceDefinition>,
    #[serde(default)]
    pub check: Option<CheckDefinition>,
    #[serde(default)]
    pub checks: Vec<CheckDefinition>,
    #[serde(default)]
    pub skip_node_update: bool,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub locality: Value,
}

impl RegisterRequest {
    pub fn decode_json(bytes: &[u8]) -> Result<Self, CatalogError> {
        let req: Self = decode::from_json_slice(bytes)?;
        req.validate()?;
        Ok(req)
    }

    pub fn validate(&self) -> Result<(), CatalogError> {
        if self.node.is_empty() {
            return Err(invalid("Must provide node"));
        }
        names::validate_service_name("node name", &self.node)?;
        if let Some(svc) = &self.service {
            svc.validate_for_catalog()?;
        }
        for c in self.check.iter().chain(&self.checks) {
            c.validate()?;
        }
        Ok(())
    }
}

/// Body of `PUT /v1/catalog/deregister`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeregisterRequest {
    #[serde(default)]
    pub node: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
}

impl DeregisterRequest {
    pub fn decode_json(bytes: &[u8]) -> Result<Self, CatalogError> {
        let req: Self = decode::from_json_slice(bytes)?;
        if req.node.is_empty() {
            return Err(invalid("Must provide node"));
        }
        Ok(req)
    }
}

/// Picks the first port of the sidecar range not in `used`.
pub fn next_free_sidecar_port(used: &BTreeSet<u16>) -> Option<u16> {
    (SIDECAR_PORT_MIN..=SIDECAR_PORT_MAX).find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests;
