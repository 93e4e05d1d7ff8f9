//! Fixed-bucket histograms: observing is a bucket search over a handful of bounds and a few
//! relaxed atomic operations. Besides the buckets each keeps the sum, minimum, maximum and sum of
//! squares, which Consul's JSON rendering of a timer (`Samples`: `Min`, `Max`, `Mean`, `Stddev`)
//! needs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Observations in fixed buckets, in whatever unit the owner chose (the metric's name says it).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending; a last `+Inf` bucket is implied.
    bounds: &'static [f64],
    /// Per bucket (not cumulative); `bounds.len() + 1` of them.
    buckets: Box<[AtomicU64]>,
    sum: AtomicF64,
    sum_squares: AtomicF64,
    min: AtomicF64,
    max: AtomicF64,
}

/// A consistent-enough copy of a histogram: the count is the sum of the buckets read, so the
/// `+Inf` bucket always equals it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`, ascending, without the `+Inf` bucket.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
    /// 0 when nothing was observed.
    pub min: f64,
    /// 0 when nothing was observed.
    pub max: f64,
    pub sum_squares: f64,
}

impl HistogramSnapshot {
    /// The mean (0 when nothing was observed).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The sample standard deviation, as go-metrics computes it for Consul's JSON (0 below two
    /// observations).
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let var = (self.sum_squares - self.sum * self.sum / n) / (n - 1.0);
        var.max(0.0).sqrt()
    }
}

impl Histogram {
    /// A histogram with these upper bounds (ascending; `+Inf` is added).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::new(0.0),
            sum_squares: AtomicF64::new(0.0),
            min: AtomicF64::new(f64::INFINITY),
            max: AtomicF64::new(f64::NEG_INFINITY),
        }
    }

    /// Records one observation (NaN is ignored: it would poison the sum).
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.update(|s| s + v);
        self.sum_squares.update(|s| s + v * v);
        self.min.update(|m| m.min(v));
        self.max.update(|m| m.max(v));
    }

    /// Records a duration in seconds.
    pub fn observe_secs(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Records a duration in milliseconds.
    pub fn observe_ms(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64() * 1000.0);
    }

    /// The upper bounds it was made with.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// A copy of the counts and sums.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            if let Some(bound) = self.bounds.get(i) {
                buckets.push((*bound, cumulative));
            }
        }
        let (min, max) = if cumulative == 0 {
            (0.0, 0.0)
        } else {
            (self.min.get(), self.max.get())
        };
        HistogramSnapshot {
            buckets,
            count: cumulative,
            sum: self.sum.get(),
            min,
            max,
            sum_squares: self.sum_squares.get(),
        }
    }
}

/// An `f64` in an `AtomicU64` (its bits), updated with compare-and-swap.
#[derive(Debug)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(v: f64) -> Self {
        Self(AtomicU64::new(v.to_bits()))
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn update(&self, f: impl Fn(f64) -> f64) {
        // `fetch_update` retries until no other thread changed the value in between; the
        // closure always returns `Some`, so it cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::new(&[1.0, 5.0, 10.0]);
        for v in [0.5, 1.0, 3.0, 10.0, 50.0] {
            h.observe(v);
        }
        h.observe(f64::NAN);
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (5.0, 3), (10.0, 4)]);
        assert_eq!(s.count, 5);
        assert_eq!(s.sum, 64.5);
        assert_eq!((s.min, s.max), (0.5, 50.0));
        assert_eq!(s.mean(), 12.9);
    }

    #[test]
    fn stddev_is_the_sample_deviation() {
        let h = Histogram::new(&[1.0]);
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        // Sample variance of these eight values is 32/7.
        assert!((s.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        let empty = Histogram::new(&[1.0]).snapshot();
        assert_eq!(
            (empty.count, empty.min, empty.max, empty.stddev()),
            (0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn durations_in_either_unit() {
        let h = Histogram::new(&[0.01, 1.0]);
        h.observe_secs(std::time::Duration::from_millis(5));
        let ms = Histogram::new(&[10.0, 1000.0]);
        ms.observe_ms(std::time::Duration::from_millis(5));
        assert_eq!(h.snapshot().buckets[0], (0.01, 1));
        assert_eq!(ms.snapshot().buckets[0], (10.0, 1));
    }
}
