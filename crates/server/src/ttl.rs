//! TTL checks of the agent's node: a check that is not refreshed within its TTL turns critical
//! with Consul's output text. Deadlines live in memory only: after a restart every TTL check gets
//! a full TTL again, as a restarted Consul agent does.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use mesh_model::catalog::{CheckStatus, definition::parse_go_duration};
use store::Op;
use store::state::NodeKey;

use crate::AppState;

#[derive(Default)]
pub struct TtlTimers {
    deadlines: Mutex<HashMap<String, Instant>>,
}

impl TtlTimers {
    /// Restarts the TTL of `check_id` (on registration and on every pass/warn/fail).
    pub fn touch(&self, check_id: &str, ttl: Duration) {
        self.deadlines
            .lock()
            .insert(check_id.to_owned(), Instant::now() + ttl);
    }

    pub fn forget(&self, check_id: &str) {
        self.deadlines.lock().remove(check_id);
    }

    fn expired(&self, now: Instant) -> Vec<String> {
        let mut map = self.deadlines.lock();
        let ids: Vec<String> = map
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            map.remove(id);
        }
        ids
    }
}

/// How often deadlines are scanned: TTLs are seconds long, so a quarter second is precise enough.
const SCAN_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn run(app: AppState) {
    // Give every TTL check already in the catalog a full TTL from now.
    let existing: Vec<(String, String)> = app.store.read(|s| {
        s.node_checks("default", &app.config.node_name)
            .filter(|c| !c.definition.ttl.is_empty())
            .map(|c| (c.check_id.clone(), c.definition.ttl.clone()))
            .collect()
    });
    for (id, ttl) in existing {
        if let Ok(d) = parse_go_duration(&ttl) {
            app.ttl.touch(&id, d);
        }
    }
    let mut tick = tokio::time::interval(SCAN_EVERY);
    loop {
        tick.tick().await;
        for check_id in app.ttl.expired(Instant::now()) {
            let ttl = app.store.read(|s| {
                s.node_checks("default", &app.config.node_name)
                    .find(|c| c.check_id == check_id)
                    .map(|c| (c.definition.ttl.clone(), c.status))
            });
            let Some((ttl, status)) = ttl else { continue };
            if status == CheckStatus::Critical {
                continue;
            }
            let op = Op::UpdateCheck {
                node: NodeKey::new("default", &app.config.node_name),
                check_id: check_id.clone(),
                status: CheckStatus::Critical,
                output: format!("TTL expired (last refresh more than {ttl} ago)"),
            };
            if let Err(e) = app.store.write(op).await {
                tracing::warn!(check_id = %check_id, error = %e, "could not mark an expired TTL check critical");
            }
        }
    }
}
