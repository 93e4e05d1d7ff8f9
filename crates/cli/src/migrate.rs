//! `lambdamesh migrate SERVICE --to TARGET`: moves SERVICE's traffic to TARGET step by step
//! through its `service-splitter`, judging each step from the Envoys' own figures, and rolls
//! back to 0 % at once when a threshold is crossed (`docs/migrate.md`).
//!
//! The rules are values in `mesh_model::migration` (steps, thresholds, `judge`, the splitter,
//! the record); `migrate/scrape.rs` reads the Envoys, `migrate/control.rs` reads and writes the
//! splitter and the record with check-and-set, `migrate/run.rs` is the loop. Runs on the main
//! thread without an async runtime; a second thread turns SIGINT/SIGTERM into a flag.

mod control;
mod run;
mod scrape;

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use mesh_model::migration::record::{MigrationRecord, MigrationState, Owner};
use mesh_model::migration::{self as model, Thresholds};

use crate::client_cmd::HttpArgs;

/// Exit codes besides 0 (done) and 1 (refused, failed, rolled back).
pub const EXIT_STOPPED: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The service whose traffic moves (its service-splitter is written).
    pub service: String,
    /// Where the traffic goes (an http service, e.g. a Lambda function's).
    #[arg(long = "to")]
    pub to: Option<String>,
    /// TARGET's weights in percent, rising, ending at 100.
    #[arg(long, conflicts_with = "step_weight")]
    pub steps: Option<String>,
    /// Steps of this many percent (10: 10, 20, ..., 100).
    #[arg(long = "step-weight")]
    pub step_weight: Option<String>,
    /// How long each judgement waits (Go duration).
    #[arg(long, default_value = "30s")]
    pub interval: String,
    /// Highest error rate (5xx and 429) of TARGET's traffic in a step: 1% or 0.01.
    #[arg(long = "max-error-rate", default_value = "1%")]
    pub max_error_rate: String,
    /// Highest p99 latency of TARGET's traffic in a step.
    #[arg(long = "max-p99", default_value = "500ms")]
    pub max_p99: String,
    /// Requests that must reach TARGET in a step before it is judged; a step with fewer waits.
    #[arg(long = "min-requests", default_value_t = 20)]
    pub min_requests: u64,
    /// Check everything and print the plan; write nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Stop SERVICE's migration and send everything back to SERVICE (weight 0).
    #[arg(long, conflicts_with_all = ["status", "dry_run"])]
    pub abort: bool,
    /// Show SERVICE's migration (running or finished) and exit.
    #[arg(long, conflicts_with = "dry_run")]
    pub status: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// A migration's settings, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub service: String,
    pub target: String,
    pub steps: Vec<u8>,
    pub interval: Duration,
    pub interval_text: String,
    pub thresholds: Thresholds,
}

impl Plan {
    fn from_args(args: &MigrateArgs) -> anyhow::Result<Plan> {
        let Some(target) = args.to.clone() else {
            bail!("--to TARGET is required: the service SERVICE's traffic moves to");
        };
        if target == args.service {
            bail!("--to {target:?}: the target must differ from the service");
        }
        let steps = match (&args.steps, &args.step_weight) {
            (Some(s), _) => model::parse_steps(s)?,
            (None, Some(w)) => model::steps_every(w)?,
            (None, None) => vec![10, 25, 50, 100],
        };
        let interval = model::parse_duration("interval", &args.interval)?;
        let max_p99 = model::parse_duration("max-p99", &args.max_p99)?;
        Ok(Plan {
            service: args.service.clone(),
            target,
            steps,
            interval,
            interval_text: args.interval.trim().to_owned(),
            thresholds: Thresholds {
                max_error_rate: model::parse_rate(&args.max_error_rate)?,
                max_p99_ms: max_p99.as_secs_f64() * 1000.0,
                min_requests: args.min_requests,
            },
        })
    }
}

pub(crate) fn say(line: impl AsRef<str>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", line.as_ref()).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")
}

pub(crate) fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Seconds since an RFC 3339 time (`None` if it does not parse).
pub(crate) fn age(text: &str) -> Option<Duration> {
    let then = humantime::parse_rfc3339(text).ok()?;
    Some(SystemTime::now().duration_since(then).unwrap_or_default())
}

pub(crate) fn me() -> Owner {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    Owner {
        host,
        pid: std::process::id(),
        heartbeat_at: now_text(),
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}ms"))
}

/// The status lines of a record.
pub(crate) fn describe(rec: &MigrationRecord) -> Vec<String> {
    let mut lines = vec![format!(
        "{} → {}: {} at {}% (step {}/{}, last healthy {}%), steps {:?}, interval {}",
        rec.service,
        rec.target,
        rec.state.as_str(),
        rec.weight,
        (rec.step_index + 1).min(rec.steps.len()),
        rec.steps.len(),
        rec.last_healthy_weight,
        rec.steps,
        rec.interval,
    )];
    if !rec.reason.is_empty() {
        lines.push(format!("  reason: {}", rec.reason));
    }
    let heartbeat = age(&rec.owner.heartbeat_at)
        .map_or_else(|| "?".into(), |a| format!("{}s ago", a.as_secs()));
    lines.push(format!(
        "  owner: {} pid {} (heartbeat {heartbeat}); started {}, updated {}",
        rec.owner.host, rec.owner.pid, rec.started_at, rec.updated_at
    ));
    for s in &rec.history {
        lines.push(format!(
            "  {:>3}%  {:<11} target {} req, {} errors, p99 {} | all {} req, {} errors, p99 {}",
            s.weight,
            s.outcome,
            s.target_requests,
            pct(s.target_error_rate),
            ms(s.target_p99_ms),
            s.requests,
            pct(s.error_rate),
            ms(s.p99_ms),
        ));
    }
    lines
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<u8> {
    let client = args.http.client();
    if args.status {
        return status(&client, &args.service);
    }
    if args.abort {
        return run::abort(&client, &args.service);
    }
    let plan = Plan::from_args(&args)?;
    run::start(&client, plan, args.dry_run)
}

fn status(client: &consul_client::Client, service: &str) -> anyhow::Result<u8> {
    let Some((rec, _)) = control::record(client, service)? else {
        bail!("no migration of {service:?} recorded (lambdamesh/migrations/{service})");
    };
    for line in describe(&rec) {
        say(line)?;
    }
    if rec.state == MigrationState::Running {
        let stale = age(&rec.owner.heartbeat_at).is_none_or(|a| a > run::stale_after(&rec));
        if stale {
            say("  its owner stopped reporting: run the same `migrate` again to resume it")?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MigrateArgs,
    }

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("migrate").chain(argv.iter().copied()))?;
        Plan::from_args(&cli.args)
    }

    #[test]
    fn bad_input_is_named_before_anything_is_read() {
        let err = |argv: &[&str]| plan(argv).unwrap_err().to_string();
        assert!(err(&["greeter"]).contains("--to TARGET is required"));
        assert!(err(&["greeter", "--to", "greeter"]).contains("must differ"));
        assert!(
            err(&["greeter", "--to", "l", "--steps", "10,50"])
                .contains("the last step must be 100")
        );
        assert!(err(&["greeter", "--to", "l", "--steps", "50,10,100"]).contains("must go up"));
        assert!(
            err(&["greeter", "--to", "l", "--max-error-rate", "lots"]).contains("--max-error-rate")
        );
        assert!(err(&["greeter", "--to", "l", "--max-p99", "fast"]).contains("--max-p99"));
        assert!(err(&["greeter", "--to", "l", "--interval", "0s"]).contains("--interval"));
        let p = plan(&[
            "greeter",
            "--to",
            "l",
            "--step-weight",
            "25",
            "--interval",
            "5s",
            "--max-p99",
            "1s",
        ])
        .unwrap();
        assert_eq!(p.steps, [25, 50, 75, 100]);
        assert_eq!(p.interval, Duration::from_secs(5));
        assert_eq!(p.thresholds.max_p99_ms, 1000.0);
        assert_eq!(p.thresholds.max_error_rate, 0.01);
    }
}
