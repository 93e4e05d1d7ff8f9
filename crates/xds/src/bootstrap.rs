//! Envoy bootstrap for `lambdamesh connect envoy`: the node identity (node.id = the proxy's
//! service ID, as Consul sets it), the admin listener, and ADS towards the control plane's gRPC
//! port with the ACL token as `x-consul-token` metadata.

use serde_json::{Value, json};

/// What the bootstrap depends on.
#[derive(Debug, Clone)]
pub struct BootstrapParams {
    pub node_id: String,
    pub service: String,
    pub namespace: String,
    pub partition: String,
    pub datacenter: String,
    pub xds_host: String,
    pub xds_port: u16,
    pub admin_host: String,
    pub admin_port: u16,
    pub token: Option<String>,
    /// Use incremental (delta) xDS, as Consul 1.14+ does; false for state of the world.
    pub delta: bool,
}

/// Cluster name of the control plane in the bootstrap (Consul's name).
pub const XDS_CLUSTER: &str = "local_agent";

/// The bootstrap as JSON (Envoy accepts JSON for `-c`).
pub fn bootstrap_json(p: &BootstrapParams) -> Value {
    let initial_metadata: Vec<Value> = p
        .token
        .iter()
        .map(|t| json!({"key": "x-consul-token", "value": t}))
        .collect();
    json!({
        "admin": {
            "address": {"socket_address": {"address": p.admin_host, "port_value": p.admin_port}}
        },
        "node": {
            "id": p.node_id,
            "cluster": p.service,
            "metadata": {"namespace": p.namespace, "partition": p.partition, "datacenter": p.datacenter}
        },
        "static_resources": {
            "clusters": [{
                "name": XDS_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {
                    "cluster_name": XDS_CLUSTER,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": p.xds_host, "port_value": p.xds_port}}}}]}]
                }
            }]
        },
        "dynamic_resources": {
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "ads_config": {
                "api_type": if p.delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}, "initial_metadata": initial_metadata}]
            }
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {"re2.max_program_size.error_level": 1048576}}]}
    })
}
