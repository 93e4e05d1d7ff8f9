//! Per-function metrics as CloudWatch's `AWS/Lambda` namespace names them (`Invocations`,
//! `Errors`, `Throttles`, `Duration`, `ConcurrentExecutions`), plus cold starts and their
//! `InitDuration` (which AWS reports only in the `REPORT` line), labelled with CloudWatch's
//! dimensions `FunctionName` and `Resource` as `function_name` and `resource` (the function, or
//! `function:qualifier` when the invoke named a version or alias). Recorded by the pools
//! (`pool.rs`) for every invoke, synchronous or an attempt of an asynchronous one; served in
//! Prometheus' text format at `GET /metrics` on the platform's listener (`docs/metrics.md`).

use std::sync::Arc;

use telemetry::{Counter, Family, Gauge, Histogram, text::Writer};

/// Milliseconds, from a warm Python handler's few to the 900 s timeout.
const MS_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300_000.0, 900_000.0,
];

const LABELS: &[&str] = &["function_name", "resource"];

/// Every function's metrics.
pub(crate) struct LambdaMetrics {
    invocations: Family<Counter>,
    errors: Family<Counter>,
    throttles: Family<Counter>,
    duration: Family<Histogram>,
    concurrent: Family<Gauge>,
    cold_starts: Family<Counter>,
    init_duration: Family<Histogram>,
}

/// One function resource's metrics, for one invoke.
pub(crate) struct FunctionMetrics {
    pub invocations: Arc<Counter>,
    pub errors: Arc<Counter>,
    pub throttles: Arc<Counter>,
    /// Milliseconds the function ran (the `REPORT` line's `Duration`).
    pub duration: Arc<Histogram>,
    pub concurrent: Arc<Gauge>,
    pub cold_starts: Arc<Counter>,
    /// Milliseconds from starting a sandbox to the end of its INIT.
    pub init_duration: Arc<Histogram>,
}

impl Default for LambdaMetrics {
    fn default() -> Self {
        let ms = || Histogram::new(MS_BUCKETS);
        Self {
            invocations: Family::new(LABELS, Counter::default),
            errors: Family::new(LABELS, Counter::default),
            throttles: Family::new(LABELS, Counter::default),
            duration: Family::new(LABELS, ms),
            concurrent: Family::new(LABELS, Gauge::default),
            cold_starts: Family::new(LABELS, Counter::default),
            init_duration: Family::new(LABELS, ms),
        }
    }
}

/// CloudWatch's `Resource` of an invoke: what follows `:function:` in the ARN the caller used
/// (`name` or `name:qualifier`), or the function's name when that ARN does not parse.
pub(crate) fn resource_of(function: &str, invoked_arn: &str) -> String {
    match crate::arn::parse_function_ref(invoked_arn) {
        Ok(r) => match r.qualifier {
            Some(q) => format!("{}:{q}", r.name),
            None => r.name,
        },
        Err(_) => function.to_owned(),
    }
}

impl LambdaMetrics {
    /// The metrics of `function` invoked as `invoked_arn`.
    pub(crate) fn function(&self, function: &str, invoked_arn: &str) -> FunctionMetrics {
        let resource = resource_of(function, invoked_arn);
        let labels = [function, resource.as_str()];
        FunctionMetrics {
            invocations: self.invocations.get(&labels),
            errors: self.errors.get(&labels),
            throttles: self.throttles.get(&labels),
            duration: self.duration.get(&labels),
            concurrent: self.concurrent.get(&labels),
            cold_starts: self.cold_starts.get(&labels),
            init_duration: self.init_duration.get(&labels),
        }
    }

    /// All of them in Prometheus' text format.
    pub(crate) fn render(&self) -> String {
        let mut w = Writer::new();
        w.counter_family(
            "aws_lambda_invocations_total",
            "Invocations (CloudWatch Invocations): times function code ran, function errors included, throttled invokes not.",
            &self.invocations,
        );
        w.counter_family(
            "aws_lambda_errors_total",
            "Invocations that ended in a function error (CloudWatch Errors): Unhandled, timeouts, runtime exits, init failures.",
            &self.errors,
        );
        w.counter_family(
            "aws_lambda_throttles_total",
            "Invoke requests refused with 429 TooManyRequestsException (CloudWatch Throttles).",
            &self.throttles,
        );
        w.histogram_family(
            "aws_lambda_duration_milliseconds",
            "Time the function code ran per invocation, in milliseconds (CloudWatch Duration).",
            &self.duration,
        );
        w.gauge_family(
            "aws_lambda_concurrent_executions",
            "Invocations running now (CloudWatch ConcurrentExecutions).",
            &self.concurrent,
        );
        w.counter_family(
            "aws_lambda_cold_starts_total",
            "Invocations that started a new sandbox (a cold start; AWS reports it only as Init Duration in REPORT lines).",
            &self.cold_starts,
        );
        w.histogram_family(
            "aws_lambda_init_duration_milliseconds",
            "Time from starting a sandbox to the end of its INIT phase, in milliseconds (the REPORT line's Init Duration).",
            &self.init_duration,
        );
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_cloudwatchs() {
        let arn = "arn:aws:lambda:us-east-1:123456789012:function";
        assert_eq!(resource_of("f", &format!("{arn}:f")), "f");
        assert_eq!(resource_of("f", &format!("{arn}:f:live")), "f:live");
        assert_eq!(resource_of("f", &format!("{arn}:f:3")), "f:3");
        assert_eq!(resource_of("f", "not an arn at all"), "f");
    }

    #[test]
    fn renders_by_value() {
        let m = LambdaMetrics::default();
        let f = m.function("f", "arn:aws:lambda:us-east-1:123456789012:function:f:live");
        f.invocations.add(2);
        f.errors.inc();
        f.duration.observe(3.0);
        f.duration.observe(7.0);
        let text = m.render();
        let labels = r#"{function_name="f",resource="f:live"}"#;
        for line in [
            format!("aws_lambda_invocations_total{labels} 2\n"),
            format!("aws_lambda_errors_total{labels} 1\n"),
            format!("aws_lambda_throttles_total{labels} 0\n"),
            format!("aws_lambda_duration_milliseconds_sum{labels} 10\n"),
            format!("aws_lambda_duration_milliseconds_count{labels} 2\n"),
            "aws_lambda_duration_milliseconds_bucket{function_name=\"f\",resource=\"f:live\",le=\"5\"} 1\n".to_owned(),
            format!("aws_lambda_concurrent_executions{labels} 0\n"),
            "# TYPE aws_lambda_init_duration_milliseconds histogram\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
}
