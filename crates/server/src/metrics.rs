//! The server's metrics: what it counts as it runs (HTTP requests, leaf certificates issued; the
//! ADS server's own in [`xds::ads::AdsMetrics`], the store's commit time in
//! [`store::CommitMetrics`]), what it reads from the state at a scrape (catalog and config-entry
//! counts, Lambda services), and the two renderings of `GET /v1/agent/metrics`: Consul's JSON
//! and Prometheus' text format. Names follow Consul's where Consul has the metric, `lambdamesh_`
//! otherwise; `docs/metrics.md` is the table.
//!
//! Every metric is described once, in [`collect`], as a [`Metric`] with both names; the two
//! renderings only walk that list.

mod json;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mesh_model::config_entry::{ConfigEntry, Kind as EntryKind};
use telemetry::text::{Kind, Writer};
use telemetry::{Counter, Family, Histogram, HistogramSnapshot};

use crate::AppState;

pub use json::to_consul_json;

/// Bounds of the HTTP timer in milliseconds. Consul renders the timer as a summary (only its
/// sum and count reach Prometheus here); the buckets are not shown, so a few suffice.
const HTTP_MS_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 1000.0];

/// Connect kinds Consul's `consul.state.connect_instances` reports, zero or not.
const CONNECT_KINDS: [&str; 6] = [
    "connect-proxy",
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
    "connect-native",
];

/// What the server counts while it runs; one per server, shared by every request.
#[derive(Debug)]
pub struct ServerMetrics {
    started: Instant,
    /// Milliseconds per request, by `method` and Consul's `path` label.
    http_time: Family<Histogram>,
    /// Requests by `method`, `path` and `code`.
    http_requests: Family<Counter>,
    /// Leaf certificates signed (first issue, renewal, rotation).
    pub(crate) leaves_issued: Counter,
    /// The ADS server's sessions, pushes, NACKs and latencies.
    pub(crate) ads: Arc<xds::ads::AdsMetrics>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            http_time: Family::new(&["method", "path"], || Histogram::new(HTTP_MS_BUCKETS)),
            http_requests: Family::new(&["method", "path", "code"], Counter::default),
            leaves_issued: Counter::default(),
            ads: Arc::default(),
        }
    }
}

impl ServerMetrics {
    /// Seconds since the server started: the interval Consul's JSON `Rate`s are over.
    pub(crate) fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Consul's `path` label of a route template: the pattern Consul registers (the template cut
/// before its first parameter), without the leading slash, `/` as `_`. So
/// `/v1/catalog/service/{name}` is `v1_catalog_service_`, as Consul labels
/// `/v1/catalog/service/web`; the label's values are bounded by the route table.
pub fn path_label(template: &str) -> String {
    let pattern = template.split('{').next().unwrap_or(template);
    pattern.trim_start_matches('/').replace('/', "_")
}

/// Middleware: times and counts every request by its route (never the raw path).
pub(crate) async fn track_http(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unknown".to_owned(), |p| path_label(p.as_str()));
    let resp = next.run(req).await;
    let m = &app.metrics;
    m.http_time
        .get(&[&method, &path])
        .observe_ms(started.elapsed());
    m.http_requests
        .get(&[&method, &path, resp.status().as_str()])
        .inc();
    resp
}

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    /// A histogram in seconds (Prometheus `histogram`; a sample in milliseconds in the JSON).
    Seconds(HistogramSnapshot),
    /// A timer in milliseconds, as Consul's timers are (Prometheus `summary` with its sum and
    /// count; a sample in the JSON).
    Millis(HistogramSnapshot),
}

/// One labelled series of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A metric with both its names.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Prometheus' name (Consul's flattened with `_` where it is Consul's).
    pub prom: &'static str,
    /// The dotted name of Consul's JSON.
    pub json: &'static str,
    pub help: &'static str,
    /// The Prometheus type (a family may have no series yet).
    pub kind: Kind,
    pub series: Vec<Series>,
}

impl Metric {
    fn one(prom: &'static str, json: &'static str, help: &'static str, value: Value) -> Self {
        let kind = match value {
            Value::Counter(_) => Kind::Counter,
            Value::Gauge(_) => Kind::Gauge,
            Value::Seconds(_) => Kind::Histogram,
            Value::Millis(_) => Kind::Summary,
        };
        Self::labelled(prom, json, help, kind, vec![(Vec::new(), value)])
    }

    fn labelled(
        prom: &'static str,
        json: &'static str,
        help: &'static str,
        kind: Kind,
        series: Vec<(Vec<(&'static str, String)>, Value)>,
    ) -> Self {
        Self {
            prom,
            json,
            help,
            kind,
            series: series
                .into_iter()
                .map(|(labels, value)| Series { labels, value })
                .collect(),
        }
    }
}

/// Every series of one family, with its label names.
fn family_series<M>(
    f: &Family<M>,
    value: impl Fn(&M) -> Value,
) -> Vec<(Vec<(&'static str, String)>, Value)> {
    f.members()
        .into_iter()
        .map(|(values, m)| {
            let labels = f
                .label_names()
                .iter()
                .copied()
                .zip(values.iter().cloned())
                .collect();
            (labels, value(&m))
        })
        .collect()
}

/// Counts read from the state at a scrape.
struct StateCounts {
    usage: store::state::catalog::CatalogUsage,
    entries: Vec<(EntryKind, u64)>,
    lambda_services: u64,
}

fn state_counts(app: &AppState) -> StateCounts {
    app.store.read(|s| {
        let set = s.config_entries();
        let mut entries: Vec<(EntryKind, u64)> = EntryKind::ALL.iter().map(|k| (*k, 0)).collect();
        let mut lambda_services = 0;
        for e in set.iter() {
            if let Some(n) = entries.iter_mut().find(|(k, _)| *k == e.kind()) {
                n.1 += 1;
            }
            if let ConfigEntry::ServiceDefaults(sd) = e
                && sd.lambda_target().is_some()
            {
                lambda_services += 1;
            }
        }
        StateCounts {
            usage: s.usage(),
            entries,
            lambda_services,
        }
    })
}

/// Every metric of the server, read now.
pub fn collect(app: &AppState) -> Vec<Metric> {
    let m = &app.metrics;
    let dc = || ("datacenter", app.config.datacenter.clone());
    let counts = state_counts(app);
    let commit = app.store.commit_metrics();
    let ads = &m.ads;
    let streams: i64 = ads.streams.members().iter().map(|(_, g)| g.get()).sum();
    let gauge = |v: u64| Value::Gauge(v as f64);
    vec![
        Metric::labelled(
            "consul_api_http",
            "consul.api.http",
            "Time to answer an HTTP API request in milliseconds, by method and route (Consul's path label).",
            Kind::Summary,
            family_series(&m.http_time, |h| Value::Millis(h.snapshot())),
        ),
        Metric::labelled(
            "lambdamesh_api_http_requests_total",
            "lambdamesh.api.http.requests",
            "HTTP API requests answered, by method, route (Consul's path label) and status code.",
            Kind::Counter,
            family_series(&m.http_requests, |c| Value::Counter(c.get())),
        ),
        Metric::labelled(
            "consul_state_nodes",
            "consul.state.nodes",
            "Nodes in the catalog.",
            Kind::Gauge,
            vec![(vec![dc()], gauge(counts.usage.nodes))],
        ),
        Metric::labelled(
            "consul_state_services",
            "consul.state.services",
            "Distinct service names in the catalog.",
            Kind::Gauge,
            vec![(vec![dc()], gauge(counts.usage.services))],
        ),
        Metric::labelled(
            "consul_state_service_instances",
            "consul.state.service_instances",
            "Service instances in the catalog.",
            Kind::Gauge,
            vec![(vec![dc()], gauge(counts.usage.service_instances))],
        ),
        Metric::labelled(
            "consul_state_connect_instances",
            "consul.state.connect_instances",
            "Service mesh instances in the catalog, by kind.",
            Kind::Gauge,
            CONNECT_KINDS
                .iter()
                .map(|k| {
                    let n = counts.usage.connect_instances.get(k).copied().unwrap_or(0);
                    (vec![dc(), ("kind", (*k).to_owned())], gauge(n))
                })
                .collect(),
        ),
        Metric::labelled(
            "consul_state_config_entries",
            "consul.state.config_entries",
            "Configuration entries, by kind.",
            Kind::Gauge,
            counts
                .entries
                .iter()
                .map(|(k, n)| (vec![dc(), ("kind", k.as_str().to_owned())], gauge(*n)))
                .collect(),
        ),
        Metric::labelled(
            "lambdamesh_lambda_services",
            "lambdamesh.lambda.services",
            "Services marked as Lambda functions (service-defaults with a usable Lambda marking).",
            Kind::Gauge,
            vec![(vec![dc()], gauge(counts.lambda_services))],
        ),
        Metric::labelled(
            "consul_xds_server_streams",
            "consul.xds.server.streams",
            "Open xDS streams (connected proxies), by xDS version.",
            Kind::Gauge,
            vec![(
                vec![("version", "v3".to_owned())],
                Value::Gauge(streams as f64),
            )],
        ),
        Metric::labelled(
            "lambdamesh_xds_connected_proxies",
            "lambdamesh.xds.connected_proxies",
            "Proxies with an open ADS session, by protocol (sotw or delta).",
            Kind::Gauge,
            family_series(&ads.streams, |g| Value::Gauge(g.get() as f64)),
        ),
        Metric::one(
            "consul_xds_server_streamStart",
            "consul.xds.server.streamStart",
            "Time from a stream's first request to its first configuration, in milliseconds.",
            Value::Millis(millis(&ads.stream_start.snapshot())),
        ),
        Metric::labelled(
            "lambdamesh_xds_pushes_total",
            "lambdamesh.xds.pushes",
            "xDS responses sent to proxies, by resource type.",
            Kind::Counter,
            family_series(&ads.pushes, |c| Value::Counter(c.get())),
        ),
        Metric::labelled(
            "lambdamesh_xds_nacks_total",
            "lambdamesh.xds.nacks",
            "xDS responses proxies rejected (NACK), by resource type.",
            Kind::Counter,
            family_series(&ads.nacks, |c| Value::Counter(c.get())),
        ),
        Metric::labelled(
            "lambdamesh_xds_push_latency_seconds",
            "lambdamesh.xds.push_latency",
            "Time from sending an xDS response to the proxy's ACK or NACK of it, by resource type.",
            Kind::Histogram,
            family_series(&ads.push_latency, |h| Value::Seconds(h.snapshot())),
        ),
        Metric::one(
            "lambdamesh_connect_leaf_certificates_issued_total",
            "lambdamesh.connect.leaf_certificates_issued",
            "Leaf certificates signed by the built-in CA (first issue, renewal, rotation).",
            Value::Counter(m.leaves_issued.get()),
        ),
        Metric::one(
            "consul_raft_commitTime",
            "consul.raft.commitTime",
            "Time to commit a batch of writes to the store's log (fsync included), in milliseconds.",
            Value::Millis(millis(&commit.commit_seconds.snapshot())),
        ),
        Metric::one(
            "consul_raft_apply",
            "consul.raft.apply",
            "Writes committed to the store's log.",
            Value::Counter(commit.applied.get()),
        ),
        Metric::one(
            "lambdamesh_store_commit_duration_seconds",
            "lambdamesh.store.commit_duration",
            "Time to commit a batch of writes to the store's log (fsync included).",
            Value::Seconds(commit.commit_seconds.snapshot()),
        ),
    ]
}

/// A histogram in seconds as milliseconds (sum, extremes and squares; buckets are not shown).
fn millis(s: &HistogramSnapshot) -> HistogramSnapshot {
    HistogramSnapshot {
        buckets: s.buckets.iter().map(|(b, n)| (b * 1000.0, *n)).collect(),
        count: s.count,
        sum: s.sum * 1000.0,
        min: s.min * 1000.0,
        max: s.max * 1000.0,
        sum_squares: s.sum_squares * 1e6,
    }
}

/// The metrics in Prometheus' text format.
pub fn to_prometheus(metrics: &[Metric]) -> String {
    let mut w = Writer::new();
    for metric in metrics {
        w.family(metric.prom, metric.help, metric.kind);
        for s in &metric.series {
            let labels: Vec<(&str, &str)> =
                s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match &s.value {
                Value::Counter(n) => w.sample(metric.prom, &labels, *n as f64),
                Value::Gauge(v) => w.sample(metric.prom, &labels, *v),
                Value::Seconds(h) => w.histogram_samples(metric.prom, &labels, h),
                Value::Millis(h) => w.summary_samples(metric.prom, &labels, h.count, h.sum),
            }
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests;
