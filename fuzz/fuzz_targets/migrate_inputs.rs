//! `migrate`'s outside input never panics: the flags (steps, step weight, error rate,
//! durations), Envoy's Prometheus text and the migration record read back from the KV store.
//! Whatever parses keeps its promises: steps rise and end at 100, rates lie in 0..=1, a
//! window's p99 is finite and never below zero.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_model::migration::prometheus::{ClusterStats, parse};
use mesh_model::migration::record::MigrationRecord;
use mesh_model::migration::{parse_duration, parse_rate, parse_steps, steps_every};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for steps in [parse_steps(text), steps_every(text)].into_iter().flatten() {
        assert_eq!(steps.last(), Some(&100));
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
    }
    if let Ok(r) = parse_rate(text) {
        assert!((0.0..=1.0).contains(&r));
    }
    let _ = parse_duration("interval", text);
    if let Ok(samples) = parse(text) {
        for service in ["greeter", "greeter-lambda", ""] {
            let s = ClusterStats::of(&samples, service);
            let w = s.since(&ClusterStats::default()).window();
            if let Some(p) = w.p99_ms {
                assert!(!p.is_nan() && p >= 0.0, "{p}");
            }
        }
    }
    let _ = serde_json::from_str::<MigrationRecord>(text);
});
