//! The registrator's counters in Prometheus' text format 0.0.4 (written by
//! `telemetry::text`, one `# HELP`/`# TYPE` pair per counter, `_total` names), and [`serve`],
//! the small HTTP server that exposes them (`-metrics-addr`).

mod http;

use std::sync::atomic::{AtomicU64, Ordering};

pub use http::serve;

/// Counters; cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    pub full_syncs: AtomicU64,
    pub incomplete_syncs: AtomicU64,
    pub events: AtomicU64,
    pub events_skipped: AtomicU64,
    pub events_failed: AtomicU64,
    pub functions_seen: AtomicU64,
    pub upserts: AtomicU64,
    pub deletes: AtomicU64,
    pub writes: AtomicU64,
    pub errors: AtomicU64,
    pub aws_calls: AtomicU64,
    pub aws_throttled: AtomicU64,
    pub consul_calls: AtomicU64,
    pub retries: AtomicU64,
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    /// The counters in Prometheus' text format.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &AtomicU64); 14] = [
            ("full_syncs_total", "Full syncs run.", &self.full_syncs),
            (
                "incomplete_syncs_total",
                "Full syncs whose listing was incomplete (no deletions).",
                &self.incomplete_syncs,
            ),
            ("events_total", "Events received.", &self.events),
            (
                "events_skipped_total",
                "Events that needed no work.",
                &self.events_skipped,
            ),
            (
                "events_failed_total",
                "Events that failed (bad input or errors).",
                &self.events_failed,
            ),
            (
                "functions_seen_total",
                "Functions listed by full syncs.",
                &self.functions_seen,
            ),
            (
                "upserts_total",
                "Services written (config, catalog or mTLS material).",
                &self.upserts,
            ),
            ("deletes_total", "Services removed.", &self.deletes),
            (
                "writes_total",
                "Individual writes to Consul and Parameter Store.",
                &self.writes,
            ),
            (
                "errors_total",
                "Errors (per function or per call after retries).",
                &self.errors,
            ),
            (
                "aws_calls_total",
                "AWS API calls, retries included.",
                &self.aws_calls,
            ),
            (
                "aws_throttled_total",
                "AWS calls answered with throttling.",
                &self.aws_throttled,
            ),
            (
                "consul_calls_total",
                "Consul API calls, retries included.",
                &self.consul_calls,
            ),
            (
                "retries_total",
                "Calls retried after a transient error or throttling.",
                &self.retries,
            ),
        ];
        let mut w = telemetry::text::Writer::new();
        for (name, help, c) in rows {
            let name = format!("lambda_registrator_{name}");
            w.family(&name, help, telemetry::text::Kind::Counter);
            w.sample(&name, &[], get(c) as f64);
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        add(&m.upserts, 3);
        let text = m.render();
        assert!(text.contains("lambda_registrator_upserts_total 3\n"));
        assert!(text.contains("# TYPE lambda_registrator_deletes_total counter"));
        assert!(text.starts_with(
            "# HELP lambda_registrator_full_syncs_total Full syncs run.\n\
             # TYPE lambda_registrator_full_syncs_total counter\n\
             lambda_registrator_full_syncs_total 0\n"
        ));
    }
}
