//! Prometheus' text exposition format, version 0.0.4: one `# HELP` and one `# TYPE` line per
//! family, then its samples, label values and help texts escaped as the format says. The one
//! writer of the format in lambdamesh: the server's `/v1/agent/metrics?format=prometheus`, the
//! Lambda platform's `/metrics` and the registrator's `-metrics-addr` all render through it.

use std::fmt::Write as _;

use crate::{Counter, Family, Gauge, Histogram, HistogramSnapshot};

/// The `Content-Type` of a scrape answer, as Prometheus' own Go client sends it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as the `# TYPE` line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// Builds one scrape answer.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        self.out.push_str(&number(value));
        self.out.push('\n');
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram (after [`Writer::family`]).
    pub fn histogram_samples(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            self.out.push_str(&bucket);
            self.labels(labels, Some(&number(*bound)));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(&bucket);
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    /// The `_sum` and `_count` lines of one summary without quantiles (after
    /// [`Writer::family`]).
    pub fn summary_samples(&mut self, name: &str, labels: &[(&str, &str)], count: u64, sum: f64) {
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64);
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, c: &Counter) {
        self.family(name, help, Kind::Counter);
        self.sample(name, &[], c.get() as f64);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help, Kind::Gauge);
        self.sample(name, &[], value);
    }

    /// A histogram without labels.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, help, Kind::Histogram);
        self.histogram_samples(name, &[], &h.snapshot());
    }

    /// Every member of a family of counters.
    pub fn counter_family(&mut self, name: &str, help: &str, f: &Family<Counter>) {
        self.family(name, help, Kind::Counter);
        for (values, c) in f.members() {
            self.sample(name, &f.pairs(&values), c.get() as f64);
        }
    }

    /// Every member of a family of gauges.
    pub fn gauge_family(&mut self, name: &str, help: &str, f: &Family<Gauge>) {
        self.family(name, help, Kind::Gauge);
        for (values, g) in f.members() {
            self.sample(name, &f.pairs(&values), g.get() as f64);
        }
    }

    /// Every member of a family of histograms.
    pub fn histogram_family(&mut self, name: &str, help: &str, f: &Family<Histogram>) {
        self.family(name, help, Kind::Histogram);
        for (values, h) in f.members() {
            self.histogram_samples(name, &f.pairs(&values), &h.snapshot());
        }
    }

    /// The answer's body.
    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            debug_assert!(valid_label(k), "bad label name {k:?}");
            if !first {
                self.out.push(',');
            }
            first = false;
            let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
        }
        self.out.push('}');
    }
}

/// A value as the format writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
fn valid_label(s: &str) -> bool {
    valid_name(s) && !s.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_by_value() {
        let requests: Family<Counter> = Family::new(&["path", "code"], Counter::default);
        requests.get(&["v1_catalog_service_", "200"]).add(3);
        requests.get(&["odd\"path\\\n", "404"]).inc();
        let latency = Histogram::new(&[0.005, 0.5]);
        latency.observe(0.001);
        latency.observe(0.25);
        latency.observe(2.0);
        let mut w = Writer::new();
        w.counter_family("x_requests_total", "Requests.\nBy path.", &requests);
        w.gauge("x_up", "Whether it is up.", 1.0);
        w.histogram("x_latency_seconds", "Latency \\ in seconds.", &latency);
        w.family("x_api", "A Consul timer.", Kind::Summary);
        w.summary_samples("x_api", &[("method", "GET")], 2, 1.5);
        assert_eq!(
            w.finish(),
            "# HELP x_requests_total Requests.\\nBy path.\n\
             # TYPE x_requests_total counter\n\
             x_requests_total{path=\"odd\\\"path\\\\\\n\",code=\"404\"} 1\n\
             x_requests_total{path=\"v1_catalog_service_\",code=\"200\"} 3\n\
             # HELP x_up Whether it is up.\n\
             # TYPE x_up gauge\n\
             x_up 1\n\
             # HELP x_latency_seconds Latency \\\\ in seconds.\n\
             # TYPE x_latency_seconds histogram\n\
             x_latency_seconds_bucket{le=\"0.005\"} 1\n\
             x_latency_seconds_bucket{le=\"0.5\"} 2\n\
             x_latency_seconds_bucket{le=\"+Inf\"} 3\n\
             x_latency_seconds_sum 2.251\n\
             x_latency_seconds_count 3\n\
             # HELP x_api A Consul timer.\n\
             # TYPE x_api summary\n\
             x_api_sum{method=\"GET\"} 1.5\n\
             x_api_count{method=\"GET\"} 2\n"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(-2.0), "-2");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1e20), "100000000000000000000");
    }

    #[test]
    fn names() {
        assert!(valid_name("consul_raft_commitTime"));
        assert!(valid_name("a:b"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("consul.api.http"));
        assert!(valid_label("le"));
        assert!(!valid_label("a:b"));
    }
}
