//! Cheap metrics for the server, the Lambda platform and the registrator, and one rendering of
//! them in Prometheus' text exposition format 0.0.4 ([`text`]).
//!
//! Recording is a few relaxed atomic operations: [`Counter`] and [`Gauge`] are one atomic each,
//! a [`Histogram`] has fixed bucket bounds chosen when it is made (no allocation, no lock when
//! observing). A [`Family`] holds one metric per label set, created on first use (a read lock
//! on the hot path); callers keep label values bounded (route templates, not raw paths).
//!
//! What the metrics mean, their names and which of Consul's or CloudWatch's they stand for is
//! each owner's business (`docs/metrics.md`): this crate knows no metric. It must not depend on
//! anything (every binary and the store use it).

mod family;
mod histogram;
pub mod text;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub use family::Family;
pub use histogram::{Histogram, HistogramSnapshot};

/// A count that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (connected streams, running invokes).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds one now and takes it away when the guard drops: the gauge counts what is in
    /// progress even when the work ends early (an error, a dropped future).
    pub fn track(&self) -> GaugeGuard<'_> {
        self.inc();
        GaugeGuard(self)
    }
}

/// See [`Gauge::track`].
#[must_use = "the gauge goes back down when this guard drops"]
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_count() {
        let c = Counter::default();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
        let g = Gauge::default();
        {
            let _a = g.track();
            let _b = g.track();
            assert_eq!(g.get(), 2);
        }
        assert_eq!(g.get(), 0);
        g.set(-3);
        assert_eq!(g.get(), -3);
    }
}
