//! Consul's JSON of `GET /v1/agent/metrics` (go-metrics' `MetricsSummary`): `Timestamp`,
//! `Gauges` (`Name`, `Value`, `Labels`), `Points` (always empty here), `Counters` and `Samples`
//! (`Name`, `Count`, `Rate`, `Sum`, `Min`, `Max`, `Mean`, `Stddev`, `Labels`).
//!
//! Consul's values are aggregates of its last ten-second interval; the server keeps running
//! totals instead, so here `Count`/`Sum` are totals since start and `Rate` is `Sum` per second
//! of uptime (`docs/metrics.md`). Histograms in seconds are shown as samples in milliseconds,
//! Consul's unit for timers.

use serde_json::{Map, Value as Json, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{Metric, Value, millis};
use telemetry::HistogramSnapshot;

/// The JSON body for `metrics`, read at `now`, `uptime_secs` after the server started.
pub fn to_consul_json(metrics: &[Metric], now: OffsetDateTime, uptime_secs: f64) -> Json {
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    let mut samples = Vec::new();
    let rate = |sum: f64| {
        if uptime_secs > 0.0 {
            sum / uptime_secs
        } else {
            0.0
        }
    };
    for metric in metrics {
        for s in &metric.series {
            let labels: Map<String, Json> = s
                .labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Json::from(v.clone())))
                .collect();
            match &s.value {
                Value::Gauge(v) => gauges.push(json!({
                    "Name": metric.json, "Value": v, "Labels": labels,
                })),
                Value::Counter(n) => {
                    // Every increment is one: the aggregate of n increments of 1.
                    let one = if *n > 0 { 1.0 } else { 0.0 };
                    counters.push(json!({
                        "Name": metric.json, "Count": n, "Rate": rate(*n as f64), "Sum": n,
                        "Min": one, "Max": one, "Mean": one, "Stddev": 0.0, "Labels": labels,
                    }));
                }
                Value::Millis(h) => samples.push(sample(metric.json, h, rate(h.sum), labels)),
                Value::Seconds(h) => {
                    let ms = millis(h);
                    samples.push(sample(metric.json, &ms, rate(ms.sum), labels));
                }
            }
        }
    }
    json!({
        "Timestamp": timestamp(now),
        "Gauges": gauges,
        "Points": [],
        "Counters": counters,
        "Samples": samples,
    })
}

fn sample(name: &str, h: &HistogramSnapshot, rate: f64, labels: Map<String, Json>) -> Json {
    json!({
        "Name": name, "Count": h.count, "Rate": rate, "Sum": h.sum, "Min": h.min, "Max": h.max,
        "Mean": h.mean(), "Stddev": h.stddev(), "Labels": labels,
    })
}

/// Go's `time.Time.String()` of a UTC time, whole seconds: `2017-08-08 02:55:10 +0000 UTC`.
fn timestamp(now: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC");
    now.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_default()
}
