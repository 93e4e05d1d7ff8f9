//! What the ADS server counts: open sessions, pushes, NACKs, how long a proxy takes to answer a
//! push, and how long a new stream waits for its first configuration. Cheap to record (atomics);
//! rendered by the server (`server/src/metrics.rs`, `docs/metrics.md`).

use telemetry::{Counter, Family, Gauge, Histogram};

use crate::resources::{CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE};

/// Latency bounds in seconds: an Envoy on the same host answers a push in about a millisecond,
/// one under load or far away in hundreds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The ADS server's metrics; share one between the server and whoever renders it.
#[derive(Debug)]
pub struct AdsMetrics {
    /// Open sessions (the proxy named itself and was subscribed), by `protocol`: `sotw` or
    /// `delta`. One Envoy holds one ADS stream, so this is the number of connected proxies.
    pub streams: Family<Gauge>,
    /// Responses sent, by resource `type` ([`type_label`]).
    pub pushes: Family<Counter>,
    /// Responses a proxy rejected, by resource `type`.
    pub nacks: Family<Counter>,
    /// Seconds from sending a response to the proxy's ACK or NACK of it, by resource `type`:
    /// how long a pushed configuration takes to be taken up (or refused).
    pub push_latency: Family<Histogram>,
    /// Seconds from a stream's first request to the first configuration ready for it
    /// (Consul's `xds.server.streamStart`).
    pub stream_start: Histogram,
}

impl Default for AdsMetrics {
    fn default() -> Self {
        Self {
            streams: Family::new(&["protocol"], Gauge::default),
            pushes: Family::new(&["type"], Counter::default),
            nacks: Family::new(&["type"], Counter::default),
            push_latency: Family::new(&["type"], || Histogram::new(LATENCY_BUCKETS)),
            stream_start: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// A resource type URL as a short, bounded label value.
pub fn type_label(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER => "cluster",
        ENDPOINT => "endpoint",
        LISTENER => "listener",
        ROUTE => "route",
        EXTENSION_CONFIG => "extension_config",
        _ => "other",
    }
}
