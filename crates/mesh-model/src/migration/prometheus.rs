//! Envoy's `/stats/prometheus` text, read into the per-service figures `migrate` judges.
//!
//! Envoy's default tag extraction cuts a cluster name at its first dot, so the upstream cluster
//! of service `S` (SNI `S.default.<dc>.internal.<trust-domain>.consul`) is exported as
//! `envoy_cluster_default_<dc>_internal_<trust_domain>_consul_<stat>{envoy_cluster_name="S"}`
//! (non-alphanumerics as `_`). [`ClusterStats::of`] sums, for one service, the counters
//! `upstream_rq_completed`, `upstream_rq_xx{envoy_response_code_class="5"}`,
//! `upstream_rq{envoy_response_code="429"}` and the `upstream_rq_time` histogram (milliseconds)
//! of every such cluster. Counters are cumulative: a window is the difference of two scrapes.

use std::collections::BTreeMap;

use super::Window;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is not Prometheus text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parses the text exposition format (comments and blank lines skipped; timestamps ignored).
///
/// # Errors
/// [`ParseError`] naming the first bad line.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| ParseError {
            line: i + 1,
            reason: reason.to_owned(),
        };
        let (name, rest, labels) = match line.find('{') {
            Some(open) => {
                let close = line[open..]
                    .find('}')
                    .map(|c| open + c)
                    .ok_or_else(|| bad("unclosed label set"))?;
                let labels =
                    parse_labels(&line[open + 1..close]).ok_or_else(|| bad("bad label"))?;
                (&line[..open], &line[close + 1..], labels)
            }
            None => {
                let sp = line.find(' ').ok_or_else(|| bad("no value"))?;
                (&line[..sp], &line[sp..], Vec::new())
            }
        };
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("value is not a number"))?,
        };
        if name.is_empty() {
            return Err(bad("no metric name"));
        }
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_owned();
        let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((key, value));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

/// Cumulative figures of one service's upstream clusters in one or more Envoys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterStats {
    pub completed: u64,
    pub errors: u64,
    /// `le` bound (ms) → cumulative count, the `+Inf` bucket included.
    pub buckets: BTreeMap<Bound, u64>,
}

/// A histogram bound that orders (`+Inf` last).
#[derive(Debug, Clone, Copy)]
pub struct Bound(pub f64);

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The stat name of a mesh upstream cluster (`S.default.<dc>.internal.<td>.consul`) as
/// Envoy exports it, without the service: `Some(stat)` when `name` is one.
fn mesh_cluster_stat(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("envoy_cluster_default_")?;
    let at = rest.find("_internal_")?;
    let after = &rest[at..];
    let consul = after.find("_consul_")?;
    Some(&after[consul + "_consul_".len()..])
}

fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    }
}

impl ClusterStats {
    /// Sums `service`'s mesh upstream clusters in `samples`.
    pub fn of(samples: &[Sample], service: &str) -> Self {
        let mut s = Self::default();
        s.add(samples, service);
        s
    }

    /// Adds `service`'s clusters of another scrape (another Envoy).
    pub fn add(&mut self, samples: &[Sample], service: &str) {
        for x in samples {
            if x.label("envoy_cluster_name") != Some(service) {
                continue;
            }
            let Some(stat) = mesh_cluster_stat(&x.name) else {
                continue;
            };
            match stat {
                "upstream_rq_completed" => {
                    self.completed = self.completed.saturating_add(count(x.value))
                }
                "upstream_rq_xx" if x.label("envoy_response_code_class") == Some("5") => {
                    self.errors = self.errors.saturating_add(count(x.value));
                }
                "upstream_rq" if x.label("envoy_response_code") == Some("429") => {
                    self.errors = self.errors.saturating_add(count(x.value));
                }
                "upstream_rq_time_bucket" => {
                    let le = match x.label("le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(v) => match v.parse::<f64>() {
                            Ok(v) if v >= 0.0 => v,
                            _ => continue,
                        },
                        None => continue,
                    };
                    let n = self.buckets.entry(Bound(le)).or_default();
                    *n = n.saturating_add(count(x.value));
                }
                _ => {}
            }
        }
    }

    /// What happened between `earlier` and `self` (a scrape of the same Envoy). A counter
    /// that went down (Envoy restarted) counts from zero.
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Self {
            completed: d(self.completed, earlier.completed),
            errors: d(self.errors, earlier.errors),
            buckets: self
                .buckets
                .iter()
                .map(|(b, n)| (*b, d(*n, earlier.buckets.get(b).copied().unwrap_or(0))))
                .collect(),
        }
    }

    /// Adds another Envoy's window (histogram buckets add bound by bound).
    pub fn merge(&mut self, other: &Self) {
        self.completed = self.completed.saturating_add(other.completed);
        self.errors = self.errors.saturating_add(other.errors);
        for (b, n) in &other.buckets {
            let mine = self.buckets.entry(*b).or_default();
            *mine = mine.saturating_add(*n);
        }
    }

    /// The figures of a window (`since`, possibly merged).
    pub fn window(&self) -> Window {
        let buckets: Vec<(f64, u64)> = self.buckets.iter().map(|(b, n)| (b.0, *n)).collect();
        Window {
            requests: self.completed,
            errors: self.errors,
            p99_ms: quantile(0.99, &buckets),
        }
    }
}

/// The `q` quantile of a cumulative histogram `(le, count)` sorted by `le`, interpolated
/// linearly inside its bucket as Prometheus' `histogram_quantile` does; the `+Inf` bucket
/// answers its lower bound. `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, n) in buckets {
        if n as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            // Buckets of a well-formed histogram never go down; a malformed one is not trusted
            // to (a bucket below the previous one counts as empty).
            let in_bucket = n.saturating_sub(lower.1) as f64;
            let frac = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * frac.clamp(0.0, 1.0));
        }
        lower = (le, n);
    }
    Some(lower.0)
}
