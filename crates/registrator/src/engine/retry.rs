//! Retries with backoff for transient errors, and adaptive pacing: throttling raises a delay
//! that every later call waits first, successes shrink it again.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use rand::Rng;
use tracing::debug;

use super::{Engine, MAX_ATTEMPTS, MAX_BACKOFF};
use crate::{
    aws::{Aws, AwsError},
    consul::{Consul, ConsulError},
    metrics::add,
};

pub(super) trait Retry {
    fn retryable(&self) -> bool;
    fn throttled(&self) -> bool;
}

impl Retry for AwsError {
    fn retryable(&self) -> bool {
        AwsError::retryable(self)
    }
    fn throttled(&self) -> bool {
        matches!(self, AwsError::Throttled(_))
    }
}

impl Retry for ConsulError {
    fn retryable(&self) -> bool {
        ConsulError::retryable(self)
    }
    fn throttled(&self) -> bool {
        false
    }
}

/// Adaptive pacing: throttling raises a shared delay every call waits first; successes shrink
/// it again (in the spirit of the AWS SDKs' adaptive retry mode).
#[derive(Debug, Default)]
pub(super) struct Pace {
    delay_us: AtomicU64,
}

impl Pace {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }
    fn throttled(&self) {
        // ×1.5 on a throttle and ×0.8 on a success: the delay grows only while more than
        // about a third of calls are throttled, and otherwise settles back to zero.
        let cur = self.delay_us.load(Ordering::Relaxed);
        let next = (cur * 3 / 2).clamp(20_000, MAX_BACKOFF.as_micros() as u64);
        self.delay_us.store(next, Ordering::Relaxed);
    }
    fn succeeded(&self) {
        let cur = self.delay_us.load(Ordering::Relaxed);
        if cur > 0 {
            let next = cur * 4 / 5;
            self.delay_us
                .store(if next < 1_000 { 0 } else { next }, Ordering::Relaxed);
        }
    }
}

pub(super) fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return d;
    }
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

impl<A: Aws, C: Consul> Engine<A, C> {
    pub(super) async fn retry<T, E: Retry + std::fmt::Display, F, Fut>(
        &self,
        op: &str,
        counter: &AtomicU64,
        f: F,
    ) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let m = &self.inner.metrics;
        let mut attempt = 0;
        loop {
            let pause = self.inner.pace.delay();
            if !pause.is_zero() {
                tokio::time::sleep(jitter(pause)).await;
            }
            add(counter, 1);
            match f().await {
                Ok(v) => {
                    self.inner.pace.succeeded();
                    return Ok(v);
                }
                Err(e) if e.retryable() && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    add(&m.retries, 1);
                    let wait = if e.throttled() {
                        add(&m.aws_throttled, 1);
                        self.inner.pace.throttled();
                        self.inner.pace.delay()
                    } else {
                        (Duration::from_millis(10) * 2u32.pow(attempt)).min(MAX_BACKOFF)
                    };
                    debug!(op, attempt, error = %e, "retrying");
                    tokio::time::sleep(jitter(wait)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn aws_call<'a, T, F, Fut>(&'a self, op: &str, f: F) -> Result<T, AwsError>
    where
        F: Fn(&'a A) -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let aws = &self.inner.aws;
        self.retry(op, &self.inner.metrics.aws_calls, || f(aws))
            .await
    }

    pub(super) async fn consul_call<'a, T, F, Fut>(
        &'a self,
        op: &str,
        f: F,
    ) -> Result<T, ConsulError>
    where
        F: Fn(&'a C) -> Fut,
        Fut: Future<Output = Result<T, ConsulError>>,
    {
        let consul = &self.inner.consul;
        self.retry(op, &self.inner.metrics.consul_calls, || f(consul))
            .await
    }
}
