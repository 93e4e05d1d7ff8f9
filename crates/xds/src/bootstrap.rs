//! Envoy bootstrap for `lambdamesh connect envoy`: the node identity (node.id = the proxy's
//! service ID, as Consul sets it), the admin listener, and ADS towards the control plane's gRPC
//! port with the ACL token as `x-consul-token` metadata. With several control-plane replicas
//! (`docs/ha.md`) the ADS cluster holds them all, round robin with a TCP health check, so a
//! reconnect after a replica dies goes to a live one.

use serde_json::{Value, json};

/// What the bootstrap depends on.
#[derive(Debug, Clone)]
pub struct BootstrapParams {
    pub node_id: String,
    pub service: String,
    pub namespace: String,
    pub partition: String,
    pub datacenter: String,
    /// The control plane's xDS (gRPC) addresses, host and port: one, or every replica.
    pub xds: Vec<(String, u16)>,
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
    let lb_endpoints: Vec<Value> = p
        .xds
        .iter()
        .map(|(host, port)| {
            json!({"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}})
        })
        .collect();
    let mut cluster = json!({
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
            "endpoints": [{"lb_endpoints": lb_endpoints}]
        }
    });
    if p.xds.len() > 1 {
        // A dead replica leaves the rotation within a second, so the ADS stream's reconnect
        // (Envoy retries it with backoff) lands on a live one.
        cluster["health_checks"] = json!([{
            "timeout": "1s",
            "interval": "1s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "tcp_health_check": {}
        }]);
    }
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
            "clusters": [cluster]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(xds: Vec<(String, u16)>) -> BootstrapParams {
        BootstrapParams {
            node_id: "web-sidecar-proxy".into(),
            service: "web".into(),
            namespace: "default".into(),
            partition: "default".into(),
            datacenter: "dc1".into(),
            xds,
            admin_host: "127.0.0.1".into(),
            admin_port: 19000,
            token: None,
            delta: true,
        }
    }

    #[test]
    fn every_replica_is_in_the_ads_cluster() {
        let one = bootstrap_json(&params(vec![("127.0.0.1".into(), 8502)]));
        let c = &one["static_resources"]["clusters"][0];
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(c.get("health_checks").is_none());
        let three = bootstrap_json(&params(vec![
            ("127.0.0.1".into(), 8502),
            ("127.0.0.1".into(), 8512),
            ("127.0.0.1".into(), 8522),
        ]));
        let c = &three["static_resources"]["clusters"][0];
        let ports: Vec<u64> = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["endpoint"]["address"]["socket_address"]["port_value"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ports, [8502, 8512, 8522]);
        assert_eq!(c["health_checks"][0]["interval"], "1s");
    }
}
