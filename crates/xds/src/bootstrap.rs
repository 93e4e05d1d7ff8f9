//! Envoy bootstrap for `lambdamesh connect envoy`: the node identity (node.id = the proxy's
//! service ID, as Consul sets it), the admin listener, and ADS towards the control plane's gRPC
//! port with the ACL token as `x-consul-token` metadata. With several control-plane replicas
//! (`docs/ha.md`) the ADS cluster holds them all, round robin with a TCP health check, so a
//! reconnect after a replica dies goes to a live one. With `envoy_prometheus_bind_addr` in the
//! proxy's `Config`, Consul's metrics listener (`/metrics` → the admin API's `/stats/prometheus`).

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
    /// `envoy_prometheus_bind_addr` (host, port): a listener serving Envoy's Prometheus stats
    /// at `/metrics`, as Consul's bootstrap adds it.
    pub prometheus: Option<(String, u16)>,
}

/// Names Consul gives the metrics listener and the cluster of Envoy's own admin API.
pub const PROMETHEUS_LISTENER: &str = "envoy_prometheus_metrics_listener";
pub const SELF_ADMIN_CLUSTER: &str = "self_admin";
/// The path the metrics listener serves (Consul's default `-prometheus-scrape-path`).
pub const PROMETHEUS_PATH: &str = "/metrics";

/// Reads `envoy_prometheus_bind_addr` from a proxy's (or proxy-defaults') `Config`.
///
/// # Errors
/// The value is not `HOST:PORT` (named in the message).
pub fn prometheus_bind_addr(config: &Value) -> Result<Option<(String, u16)>, String> {
    let Some(v) = config.get("envoy_prometheus_bind_addr") else {
        return Ok(None);
    };
    let text = v.as_str().ok_or_else(|| {
        format!("envoy_prometheus_bind_addr: expected a string HOST:PORT, got {v}")
    })?;
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("envoy_prometheus_bind_addr: expected HOST:PORT, got {text:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("envoy_prometheus_bind_addr: invalid port in {text:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("envoy_prometheus_bind_addr: no host in {text:?}"));
    }
    Ok(Some((host.to_owned(), port)))
}

/// Consul's metrics listener and the admin cluster it routes to.
fn prometheus_resources(p: &BootstrapParams, host: &str, port: u16) -> (Value, Value) {
    let listener = json!({
        "name": PROMETHEUS_LISTENER,
        "address": {"socket_address": {"address": host, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "envoy_prometheus_metrics",
                "codec_type": "HTTP1",
                "route_config": {"name": "self_admin_route", "virtual_hosts": [{
                    "name": SELF_ADMIN_CLUSTER, "domains": ["*"],
                    "routes": [
                        {"match": {"path": PROMETHEUS_PATH}, "route": {"cluster": SELF_ADMIN_CLUSTER, "prefix_rewrite": "/stats/prometheus"}},
                        {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
                    ]
                }]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
            }
        }]}]
    });
    let cluster = json!({
        "name": SELF_ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": SELF_ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": p.admin_host, "port_value": p.admin_port}}}}]}]
        }
    });
    (listener, cluster)
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
    let mut v = json!({
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
    });
    if let Some((host, port)) = &p.prometheus {
        let (listener, cluster) = prometheus_resources(p, host, *port);
        if let Some(clusters) = v["static_resources"]["clusters"].as_array_mut() {
            clusters.push(cluster);
        }
        v["static_resources"]["listeners"] = json!([listener]);
    }
    v
}

#[cfg(test)]
mod prometheus_tests {
    use super::*;

    fn params(prometheus: Option<(String, u16)>) -> BootstrapParams {
        BootstrapParams {
            node_id: "web-sidecar-proxy".into(),
            service: "web-sidecar-proxy".into(),
            namespace: "default".into(),
            partition: "default".into(),
            datacenter: "dc1".into(),
            xds: vec![("127.0.0.1".into(), 8502)],
            admin_host: "127.0.0.1".into(),
            admin_port: 19000,
            token: None,
            delta: true,
            prometheus,
        }
    }

    #[test]
    fn the_prometheus_bind_addr_adds_consuls_metrics_listener() {
        assert!(bootstrap_json(&params(None))["static_resources"]["listeners"].is_null());
        let v = bootstrap_json(&params(Some(("127.0.0.1".into(), 9102))));
        let l = &v["static_resources"]["listeners"][0];
        assert_eq!(l["name"], PROMETHEUS_LISTENER);
        assert_eq!(l["address"]["socket_address"]["port_value"], 9102);
        let route = &l["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
            [0]["routes"][0];
        assert_eq!(route["match"]["path"], "/metrics");
        assert_eq!(route["route"]["prefix_rewrite"], "/stats/prometheus");
        let admin = &v["static_resources"]["clusters"][1];
        assert_eq!(admin["name"], SELF_ADMIN_CLUSTER);
        assert_eq!(
            admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            19000
        );
    }

    #[test]
    fn the_bind_addr_is_read_or_named() {
        let c = |v: Value| prometheus_bind_addr(&json!({"envoy_prometheus_bind_addr": v}));
        assert_eq!(c(json!("0.0.0.0:9102")), Ok(Some(("0.0.0.0".into(), 9102))));
        assert_eq!(c(json!("[::1]:9102")), Ok(Some(("::1".into(), 9102))));
        assert_eq!(prometheus_bind_addr(&json!({})), Ok(None));
        assert!(c(json!("9102")).unwrap_err().contains("HOST:PORT"));
        assert!(c(json!("h:x")).unwrap_err().contains("invalid port"));
        assert!(c(json!(9102)).unwrap_err().contains("expected a string"));
    }
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
            prometheus: None,
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
