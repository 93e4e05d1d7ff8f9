//! `lambdamesh migrate`'s rules, as values: the step weights (`--steps`, `--step-weight`), the
//! thresholds (`--max-error-rate`, `--max-p99`, `--min-requests`, `--interval`), the health of
//! a step from its figures and what follows from it (promote, wait, roll back), the splitter a
//! weight becomes, and the migration record kept in the key/value store (`record.rs`). Envoy's
//! Prometheus text and the figures taken from it are in `prometheus.rs`.
//!
//! No clocks, no I/O: times travel in as strings, figures as numbers.

pub mod prometheus;
pub mod record;

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::catalog::definition::parse_go_duration;

/// Bad input to `migrate`, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("--steps {given:?}: {reason}")]
    Steps { given: String, reason: String },
    #[error("--{flag} {given:?}: {reason}")]
    Threshold {
        flag: &'static str,
        given: String,
        reason: String,
    },
}

/// `--steps 10,25,50,100`: weights in percent, each in 1..=100, strictly rising, ending at 100.
///
/// # Errors
/// [`MigrationError::Steps`] naming the first bad weight.
pub fn parse_steps(text: &str) -> Result<Vec<u8>, MigrationError> {
    let bad = |reason: String| MigrationError::Steps {
        given: text.to_owned(),
        reason,
    };
    let mut steps: Vec<u8> = Vec::new();
    for part in text.split(',') {
        let part = part.trim().trim_end_matches('%');
        let w: u8 = part
            .parse()
            .map_err(|_| bad(format!("{part:?} is not a whole percentage")))?;
        if w == 0 || w > 100 {
            return Err(bad(format!("{w} is not between 1 and 100")));
        }
        if let Some(last) = steps.last()
            && w <= *last
        {
            return Err(bad(format!("{w} comes after {last}: weights must go up")));
        }
        steps.push(w);
    }
    if steps.last() != Some(&100) {
        return Err(bad("the last step must be 100".into()));
    }
    Ok(steps)
}

/// `--step-weight 10`: 10, 20, ..., 100 (the last step is 100 even when it does not divide).
///
/// # Errors
/// [`MigrationError::Steps`] for a weight outside 1..=100.
pub fn steps_every(text: &str) -> Result<Vec<u8>, MigrationError> {
    let w: u8 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .ok()
        .filter(|w| (1..=100).contains(w))
        .ok_or_else(|| MigrationError::Threshold {
            flag: "step-weight",
            given: text.to_owned(),
            reason: "expected a whole percentage between 1 and 100".into(),
        })?;
    let mut steps: Vec<u8> = (1..)
        .map(|i| w.saturating_mul(i))
        .take_while(|s| *s < 100)
        .collect();
    steps.push(100);
    Ok(steps)
}

/// `--max-error-rate 1%` (or `0.01`): a fraction in 0..=1.
///
/// # Errors
/// [`MigrationError::Threshold`].
pub fn parse_rate(text: &str) -> Result<f64, MigrationError> {
    let bad = |reason: &str| MigrationError::Threshold {
        flag: "max-error-rate",
        given: text.to_owned(),
        reason: reason.into(),
    };
    let t = text.trim();
    let (number, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| bad("expected a percentage such as 1% or a fraction such as 0.01"))?;
    let v = v / scale;
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(bad("must be between 0% and 100%"));
    }
    Ok(v)
}

/// A positive Go-style duration (`30s`, `500ms`, `1m`), for `flag`.
///
/// # Errors
/// [`MigrationError::Threshold`].
pub fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, MigrationError> {
    let d = parse_go_duration(text.trim()).map_err(|reason| MigrationError::Threshold {
        flag,
        given: text.to_owned(),
        reason,
    })?;
    if d.is_zero() {
        return Err(MigrationError::Threshold {
            flag,
            given: text.to_owned(),
            reason: "must be more than zero".into(),
        });
    }
    Ok(d)
}

/// What a step must show to be promoted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Errors (5xx and 429) over requests, as a fraction.
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
    /// Requests that reached the target during the step before it may be promoted.
    pub min_requests: u64,
}

/// Figures of one side (the target, or the rest) over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    /// 5xx answers (a Lambda function error is a 502) and 429s (a Lambda throttle).
    pub errors: u64,
    /// From the latency histogram's bucket deltas; `None` without requests.
    pub p99_ms: Option<f64>,
}

impl Window {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// A threshold the target crossed, with the numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    ErrorRate {
        rate: f64,
        max: f64,
        errors: u64,
        requests: u64,
    },
    Latency {
        p99_ms: f64,
        max_ms: f64,
        requests: u64,
    },
}

impl Breach {
    /// `error rate` or `p99 latency`: the threshold's name.
    pub fn threshold(&self) -> &'static str {
        match self {
            Breach::ErrorRate { .. } => "error rate",
            Breach::Latency { .. } => "p99 latency",
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::ErrorRate {
                rate,
                max,
                errors,
                requests,
            } => write!(
                f,
                "error rate {:.1}% > {:.1}% ({errors} of {requests} requests)",
                rate * 100.0,
                max * 100.0
            ),
            Breach::Latency {
                p99_ms,
                max_ms,
                requests,
            } => write!(
                f,
                "p99 latency {p99_ms:.0}ms > {max_ms:.0}ms ({requests} requests)"
            ),
        }
    }
}

/// What to do after an interval.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Healthy with enough traffic: go to the next step (or finish at 100).
    Promote,
    /// Healthy so far but not enough traffic reached the target yet: stay.
    Wait { reason: String },
    /// A threshold was crossed: back to 0 at once.
    Rollback(Breach),
}

/// The health of a step from the target's figures since the step began. Error rate is judged
/// before latency; either breach rolls back. Fewer than `min_requests` requests judge nothing:
/// a breach on a handful of requests is noise, and too little traffic never promotes.
pub fn judge(target: &Window, th: &Thresholds) -> Verdict {
    if target.requests < th.min_requests.max(1) {
        return Verdict::Wait {
            reason: format!(
                "{} of {} requests reached the target",
                target.requests,
                th.min_requests.max(1)
            ),
        };
    }
    let rate = target.error_rate();
    if rate > th.max_error_rate {
        return Verdict::Rollback(Breach::ErrorRate {
            rate,
            max: th.max_error_rate,
            errors: target.errors,
            requests: target.requests,
        });
    }
    if let Some(p99) = target.p99_ms
        && p99 > th.max_p99_ms
    {
        return Verdict::Rollback(Breach::Latency {
            p99_ms: p99,
            max_ms: th.max_p99_ms,
            requests: target.requests,
        });
    }
    Verdict::Promote
}

/// The `service-splitter` of `service` sending `weight` percent to `target` and the rest to
/// `service` itself (both splits kept, so 0 and 100 still show both sides), keeping the
/// existing entry's `Meta`.
pub fn splitter(service: &str, target: &str, weight: u8, existing: Option<&Value>) -> Value {
    let weight = weight.min(100);
    let mut entry = json!({
        "Kind": "service-splitter",
        "Name": service,
        "Splits": [
            {"Weight": f64::from(weight), "Service": target},
            {"Weight": f64::from(100 - weight), "Service": service},
        ],
    });
    if let Some(meta) = existing
        .and_then(|e| e.get("Meta"))
        .filter(|m| m.is_object())
    {
        entry["Meta"] = meta.clone();
    }
    entry
}

/// The weight `target` has in a splitter entry (API JSON), 0 when it is not among its splits.
pub fn weight_in(entry: &Value, target: &str) -> f64 {
    entry
        .get("Splits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("Service").and_then(Value::as_str) == Some(target))
        .filter_map(|s| s.get("Weight").and_then(Value::as_f64))
        .sum()
}

#[cfg(test)]
mod tests;
