//! The renderings by value.

use serde_json::json;
use telemetry::Histogram;

use super::*;

fn sample_metrics() -> Vec<Metric> {
    let h = Histogram::new(&[0.001, 0.01]);
    h.observe(0.0005);
    h.observe(0.002);
    vec![
        Metric::labelled(
            "consul_state_config_entries",
            "consul.state.config_entries",
            "Entries.",
            Kind::Gauge,
            vec![(
                vec![
                    ("datacenter", "dc1".into()),
                    ("kind", "service-defaults".into()),
                ],
                Value::Gauge(2.0),
            )],
        ),
        Metric::labelled(
            "lambdamesh_xds_nacks_total",
            "lambdamesh.xds.nacks",
            "NACKs.",
            Kind::Counter,
            vec![],
        ),
        Metric::one(
            "lambdamesh_connect_leaf_certificates_issued_total",
            "lambdamesh.connect.leaf_certificates_issued",
            "Leaves.",
            Value::Counter(4),
        ),
        Metric::one(
            "lambdamesh_store_commit_duration_seconds",
            "lambdamesh.store.commit_duration",
            "Commits.",
            Value::Seconds(h.snapshot()),
        ),
        Metric::labelled(
            "consul_api_http",
            "consul.api.http",
            "HTTP.",
            Kind::Summary,
            vec![(
                vec![("method", "GET".into()), ("path", "v1_agent_self".into())],
                Value::Millis(millis(&h.snapshot())),
            )],
        ),
    ]
}

#[test]
fn prometheus_text_by_value() {
    assert_eq!(
        to_prometheus(&sample_metrics()),
        "# HELP consul_state_config_entries Entries.\n\
         # TYPE consul_state_config_entries gauge\n\
         consul_state_config_entries{datacenter=\"dc1\",kind=\"service-defaults\"} 2\n\
         # HELP lambdamesh_xds_nacks_total NACKs.\n\
         # TYPE lambdamesh_xds_nacks_total counter\n\
         # HELP lambdamesh_connect_leaf_certificates_issued_total Leaves.\n\
         # TYPE lambdamesh_connect_leaf_certificates_issued_total counter\n\
         lambdamesh_connect_leaf_certificates_issued_total 4\n\
         # HELP lambdamesh_store_commit_duration_seconds Commits.\n\
         # TYPE lambdamesh_store_commit_duration_seconds histogram\n\
         lambdamesh_store_commit_duration_seconds_bucket{le=\"0.001\"} 1\n\
         lambdamesh_store_commit_duration_seconds_bucket{le=\"0.01\"} 2\n\
         lambdamesh_store_commit_duration_seconds_bucket{le=\"+Inf\"} 2\n\
         lambdamesh_store_commit_duration_seconds_sum 0.0025\n\
         lambdamesh_store_commit_duration_seconds_count 2\n\
         # HELP consul_api_http HTTP.\n\
         # TYPE consul_api_http summary\n\
         consul_api_http_sum{method=\"GET\",path=\"v1_agent_self\"} 2.5\n\
         consul_api_http_count{method=\"GET\",path=\"v1_agent_self\"} 2\n"
    );
}

#[test]
fn consul_json_by_value() {
    let now = time::macros::datetime!(2026-12-02 16:05:09.7 UTC);
    let body = to_consul_json(&sample_metrics(), now, 2.0);
    assert_eq!(body["Timestamp"], json!("2026-12-02 16:05:09 +0000 UTC"));
    assert_eq!(body["Points"], json!([]));
    assert_eq!(
        body["Gauges"],
        json!([{"Name": "consul.state.config_entries", "Value": 2.0,
                "Labels": {"datacenter": "dc1", "kind": "service-defaults"}}])
    );
    assert_eq!(
        body["Counters"],
        json!([{"Name": "lambdamesh.connect.leaf_certificates_issued", "Count": 4, "Rate": 2.0,
                "Sum": 4, "Min": 1.0, "Max": 1.0, "Mean": 1.0, "Stddev": 0.0, "Labels": {}}])
    );
    let samples = body["Samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    for s in samples {
        // Both in milliseconds: 0.5 ms and 2 ms.
        assert_eq!(s["Count"], json!(2));
        assert_eq!(s["Sum"], json!(2.5));
        assert_eq!(s["Min"], json!(0.5));
        assert_eq!(s["Max"], json!(2.0));
        assert_eq!(s["Mean"], json!(1.25));
        assert_eq!(s["Rate"], json!(1.25));
        let sd = s["Stddev"].as_f64().unwrap();
        assert!((sd - 1.125f64.sqrt()).abs() < 1e-9, "{sd}");
    }
    assert_eq!(samples[1]["Name"], json!("consul.api.http"));
    assert_eq!(
        samples[1]["Labels"],
        json!({"method": "GET", "path": "v1_agent_self"})
    );
}

#[test]
fn consul_path_labels_of_route_templates() {
    for (template, label) in [
        ("/v1/agent/self", "v1_agent_self"),
        ("/v1/catalog/service/{name}", "v1_catalog_service_"),
        ("/v1/config/{kind}/{name}", "v1_config_"),
        (
            "/v1/agent/service/deregister/{id}",
            "v1_agent_service_deregister_",
        ),
        ("/v1/acl/token/self", "v1_acl_token_self"),
        ("/v1/agent/metrics", "v1_agent_metrics"),
    ] {
        assert_eq!(path_label(template), label, "{template}");
    }
}
