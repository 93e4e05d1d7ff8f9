use super::prometheus::{ClusterStats, parse, quantile};
use super::record::{MigrationRecord, MigrationState};
use super::*;

#[test]
fn steps_rise_to_100() {
    assert_eq!(parse_steps("10,50,100").unwrap(), [10, 50, 100]);
    assert_eq!(parse_steps(" 10%, 25 ,100").unwrap(), [10, 25, 100]);
    assert_eq!(parse_steps("100").unwrap(), [100]);
    let err = |s: &str| parse_steps(s).unwrap_err().to_string();
    assert_eq!(err("10,50"), "--steps \"10,50\": the last step must be 100");
    assert!(err("50,10,100").contains("10 comes after 50: weights must go up"));
    assert!(err("10,10,100").contains("weights must go up"));
    assert!(err("0,100").contains("0 is not between 1 and 100"));
    assert!(err("10,abc,100").contains("\"abc\" is not a whole percentage"));
    assert!(err("10,150").contains("150 is not between 1 and 100"));
    assert_eq!(
        steps_every("10").unwrap(),
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    );
    assert_eq!(steps_every("30").unwrap(), [30, 60, 90, 100]);
    assert_eq!(steps_every("100").unwrap(), [100]);
    assert!(steps_every("0").is_err());
    assert!(steps_every("x").is_err());
}

#[test]
fn thresholds_parse_or_name_the_flag() {
    assert_eq!(parse_rate("1%").unwrap(), 0.01);
    assert_eq!(parse_rate("0.5%").unwrap(), 0.005);
    assert_eq!(parse_rate("0.02").unwrap(), 0.02);
    assert!(
        parse_rate("lots")
            .unwrap_err()
            .to_string()
            .starts_with("--max-error-rate \"lots\":")
    );
    assert!(parse_rate("150%").is_err());
    assert!(parse_rate("NaN").is_err());
    assert_eq!(
        parse_duration("max-p99", "500ms").unwrap(),
        Duration::from_millis(500)
    );
    assert_eq!(
        parse_duration("interval", "1m").unwrap(),
        Duration::from_secs(60)
    );
    assert!(
        parse_duration("interval", "soon")
            .unwrap_err()
            .to_string()
            .starts_with("--interval \"soon\":")
    );
    assert!(parse_duration("interval", "0s").is_err());
}

const TH: Thresholds = Thresholds {
    max_error_rate: 0.01,
    max_p99_ms: 500.0,
    min_requests: 20,
};

fn w(requests: u64, errors: u64, p99: Option<f64>) -> Window {
    Window {
        requests,
        errors,
        p99_ms: p99,
    }
}

#[test]
fn a_step_promotes_waits_or_rolls_back() {
    assert_eq!(judge(&w(100, 0, Some(20.0)), &TH), Verdict::Promote);
    assert_eq!(judge(&w(100, 1, Some(20.0)), &TH), Verdict::Promote);
    // Too little traffic never promotes, and judges nothing.
    assert!(matches!(
        judge(&w(19, 19, Some(9000.0)), &TH),
        Verdict::Wait { .. }
    ));
    let Verdict::Rollback(b) = judge(&w(200, 60, Some(20.0)), &TH) else {
        panic!("30% errors must roll back");
    };
    assert_eq!(b.threshold(), "error rate");
    assert_eq!(
        b.to_string(),
        "error rate 30.0% > 1.0% (60 of 200 requests)"
    );
    let Verdict::Rollback(b) = judge(&w(50, 0, Some(1500.0)), &TH) else {
        panic!("a slow p99 must roll back");
    };
    assert_eq!(b.to_string(), "p99 latency 1500ms > 500ms (50 requests)");
    // Both crossed: the error rate is named.
    let Verdict::Rollback(b) = judge(&w(50, 50, Some(1500.0)), &TH) else {
        panic!()
    };
    assert_eq!(b.threshold(), "error rate");
    // min_requests 0 still needs one request.
    let th = Thresholds {
        min_requests: 0,
        ..TH
    };
    assert!(matches!(judge(&w(0, 0, None), &th), Verdict::Wait { .. }));
}

#[test]
fn the_splitter_sends_the_weight_to_the_target_and_keeps_meta() {
    let old = json!({"Kind": "service-splitter", "Name": "greeter", "Meta": {"team": "a"},
        "Splits": [{"Weight": 50, "Service": "greeter"}, {"Weight": 50, "Service": "greeter-lambda"}]});
    assert_eq!(weight_in(&old, "greeter-lambda"), 50.0);
    let e = splitter("greeter", "greeter-lambda", 10, Some(&old));
    assert_eq!(
        e,
        json!({"Kind": "service-splitter", "Name": "greeter", "Meta": {"team": "a"},
            "Splits": [{"Weight": 10.0, "Service": "greeter-lambda"}, {"Weight": 90.0, "Service": "greeter"}]})
    );
    assert_eq!(weight_in(&e, "greeter-lambda"), 10.0);
    assert_eq!(weight_in(&splitter("a", "b", 0, None), "b"), 0.0);
    // What we write decodes and validates as a config entry.
    for weight in [0, 10, 100] {
        let entry = crate::config_entry::decode_json(
            splitter("greeter", "greeter-lambda", weight, None)
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        entry.validate().unwrap();
    }
}

const ENVOY: &str = r#"# TYPE envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_completed counter
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_completed{envoy_cluster_name="greeter-lambda"} 200
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_completed{envoy_cluster_name="greeter"} 900
envoy_cluster_upstream_rq_completed{envoy_cluster_name="local_app"} 5000
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="greeter-lambda"} 130
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="greeter-lambda"} 60
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq{envoy_response_code="429",envoy_cluster_name="greeter-lambda"} 10
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_time_bucket{envoy_cluster_name="greeter-lambda",le="10"} 100
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_time_bucket{envoy_cluster_name="greeter-lambda",le="100"} 190
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_time_bucket{envoy_cluster_name="greeter-lambda",le="1000"} 200
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_time_bucket{envoy_cluster_name="greeter-lambda",le="+Inf"} 200
envoy_cluster_default_dc1_internal_1a2b_consul_upstream_rq_time_sum{envoy_cluster_name="greeter-lambda"} 5000
"#;

#[test]
fn envoy_text_gives_per_service_counters_and_a_p99() {
    let samples = parse(ENVOY).unwrap();
    let s = ClusterStats::of(&samples, "greeter-lambda");
    assert_eq!((s.completed, s.errors), (200, 70));
    let w = s.since(&ClusterStats::default()).window();
    assert_eq!((w.requests, w.errors), (200, 70));
    // rank 198 of 200 lies in (100, 1000]: 8 of its 10 → 820.
    assert!((w.p99_ms.unwrap() - 820.0).abs() < 1e-9);
    assert_eq!(ClusterStats::of(&samples, "greeter").completed, 900);
    assert_eq!(ClusterStats::of(&samples, "local_app").completed, 0);
    // A window is the difference of two scrapes; a counter that went down restarts at 0.
    let mut later = s.clone();
    later.completed += 10;
    later.errors += 1;
    later.buckets.values_mut().for_each(|n| *n += 10);
    let w = later.since(&s).window();
    assert_eq!((w.requests, w.errors), (10, 1));
    assert!(w.p99_ms.unwrap() <= 10.0);
    let restarted = ClusterStats::of(&parse("").unwrap(), "x");
    assert_eq!(restarted.since(&s).window().requests, 0);
    // Two Envoys' windows merge bucket by bucket.
    let mut both = later.since(&s);
    both.merge(&later.since(&s));
    assert_eq!(both.window().requests, 20);
    assert_eq!(both.buckets.values().last(), Some(&20));
}

#[test]
fn quantiles_interpolate_and_bad_text_is_named() {
    assert_eq!(quantile(0.99, &[(1.0, 0), (f64::INFINITY, 0)]), None);
    assert_eq!(quantile(0.5, &[(10.0, 10), (f64::INFINITY, 10)]), Some(5.0));
    assert_eq!(quantile(0.99, &[(10.0, 0), (f64::INFINITY, 4)]), Some(10.0));
    assert_eq!(parse("a{b=\"c\" 1").unwrap_err().line, 1);
    assert!(
        parse("x 1\ny notanumber")
            .unwrap_err()
            .to_string()
            .starts_with("line 2:")
    );
    let s = parse("m{a=\"x\\\"y\",b=\"\"} 3 1700000000").unwrap();
    assert_eq!(s[0].label("a"), Some("x\"y"));
    assert_eq!(s[0].value, 3.0);
}

#[test]
fn the_record_keeps_the_contract_field_names() {
    let text = r#"{
      "Service": "greeter", "Target": "greeter-lambda", "Steps": [10, 50, 100], "Interval": "5s",
      "Thresholds": { "MaxErrorRate": 0.01, "MaxP99Ms": 500, "MinRequests": 20 },
      "State": "running", "StepIndex": 1, "Weight": 50, "LastHealthyWeight": 10, "Reason": "",
      "Owner": { "Host": "laptop", "Pid": 1234, "HeartbeatAt": "2026-12-02T16:00:00Z" },
      "SplitterModifyIndex": 123, "StartedAt": "2026-12-02T16:00:00Z", "UpdatedAt": "2026-12-02T16:00:05Z",
      "History": [{ "Weight": 10, "StartedAt": "a", "EndedAt": "b", "Requests": 120, "Errors": 0,
        "ErrorRate": 0.0, "P99Ms": 12.5, "TargetRequests": 12, "TargetErrors": 0,
        "TargetErrorRate": 0.0, "TargetP99Ms": 20.1, "Outcome": "promoted" }]
    }"#;
    let r: MigrationRecord = serde_json::from_str(text).unwrap();
    assert_eq!(r.state, MigrationState::Running);
    assert_eq!(r.history[0].target_p99_ms, Some(20.1));
    let back = serde_json::to_value(&r).unwrap();
    let original: Value = serde_json::from_str(text).unwrap();
    for (k, v) in original.as_object().unwrap() {
        if k == "Thresholds" {
            assert_eq!(back[k]["MaxP99Ms"], 500.0);
            continue;
        }
        assert_eq!(&back[k], v, "{k}");
    }
}
