//! A proxy's resources by xDS type, each a map from resource name to the packed proto.

use std::collections::BTreeMap;

use crate::pb::Any;

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Extension configs (ECDS): filter configurations that update in place, without touching the
/// listener that uses them (intentions as RBAC, `compile/rbac.rs`).
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// The order in which types are pushed on a change: clusters before their endpoints, listeners
/// before their routes and the extension configs they name (Envoy's make-before-break rule).
pub const PUSH_ORDER: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, EXTENSION_CONFIG];

/// Everything one proxy is served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub clusters: BTreeMap<String, Any>,
    pub endpoints: BTreeMap<String, Any>,
    pub listeners: BTreeMap<String, Any>,
    pub routes: BTreeMap<String, Any>,
    /// ECDS resources by name (the name the filter that subscribes to it carries).
    pub extension_configs: BTreeMap<String, Any>,
}

impl Resources {
    /// The resources of one type (empty for an unknown type URL).
    pub fn of_type(&self, type_url: &str) -> Option<&BTreeMap<String, Any>> {
        match type_url {
            CLUSTER => Some(&self.clusters),
            ENDPOINT => Some(&self.endpoints),
            LISTENER => Some(&self.listeners),
            ROUTE => Some(&self.routes),
            EXTENSION_CONFIG => Some(&self.extension_configs),
            _ => None,
        }
    }
}

/// A content version for one resource: FNV-1a of its encoding, in hex. Equal bytes, equal
/// version, so an unchanged resource is never re-sent in delta xDS.
pub fn version_of(any: &Any) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in any.type_url.as_bytes().iter().chain(&any.value) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
