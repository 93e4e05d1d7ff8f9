//! The migration record: `lambdamesh/migrations/<service>` in the key/value store, JSON with
//! Consul-style field names. The contract with the web UI (fields are only ever added; see
//! `docs/migrate.md`). Times are RFC 3339 strings written by the caller.

use serde::{Deserialize, Serialize};

/// The key prefix of every migration record.
pub const KEY_PREFIX: &str = "lambdamesh/migrations/";

/// The record's key for `service`.
pub fn key(service: &str) -> String {
    format!("{KEY_PREFIX}{service}")
}

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Running,
    Succeeded,
    RolledBack,
    Interrupted,
    /// Someone else changed the splitter: the migration stopped without writing.
    Stopped,
    /// `--abort`: back to 0 on request.
    Aborted,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
            Self::Interrupted => "interrupted",
            Self::Stopped => "stopped",
            Self::Aborted => "aborted",
        }
    }

    /// Whether a new `migrate` may replace the record.
    pub fn is_finished(self) -> bool {
        self != Self::Running
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordThresholds {
    pub max_error_rate: f64,
    pub max_p99_ms: f64,
    pub min_requests: u64,
}

/// Who runs the migration, and when it last said so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    pub heartbeat_at: String,
}

/// One step as it went (or goes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct StepRecord {
    pub weight: u8,
    pub started_at: String,
    #[serde(default)]
    pub ended_at: String,
    /// All requests to the service (target and the rest) during the step.
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    #[serde(rename = "P99Ms")]
    pub p99_ms: Option<f64>,
    pub target_requests: u64,
    pub target_errors: u64,
    pub target_error_rate: f64,
    #[serde(rename = "TargetP99Ms")]
    pub target_p99_ms: Option<f64>,
    /// `promoted`, `rolled_back`, `waiting` (the step in progress), `interrupted`, `stopped`.
    pub outcome: String,
}

/// The whole record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MigrationRecord {
    pub service: String,
    pub target: String,
    pub steps: Vec<u8>,
    /// As given (`5s`).
    pub interval: String,
    pub thresholds: RecordThresholds,
    pub state: MigrationState,
    pub step_index: usize,
    pub weight: u8,
    pub last_healthy_weight: u8,
    #[serde(default)]
    pub reason: String,
    pub owner: Owner,
    pub splitter_modify_index: u64,
    pub started_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub history: Vec<StepRecord>,
}
