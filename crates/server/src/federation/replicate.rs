//! A secondary's replication of config entries (intentions included: they are
//! `service-intentions` entries) from the primary, as Consul replicates them: a blocking
//! `ConfigEntries` request through the primary's gateways, then the difference applied to the
//! local store, upserts in dependency order (defaults before resolvers before splitters and
//! routers) and deletes in the reverse order, so each write passes the committer's graph checks.
//! Writes made in a secondary are sent to the primary (`api.rs`), so the primary's set is the
//! whole truth. While the primary cannot be reached, the secondary keeps serving what it last
//! replicated and the lag grows (`ReplicationStatus`).

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use mesh_model::config_entry::{ConfigEntry, EntryKey, Kind, decode_value};
use store::Op;

use super::wire::{Answer, Request, VERSION};
use crate::AppState;

/// How long the primary holds a `ConfigEntries` request when nothing changes.
const WAIT: Duration = Duration::from_secs(30);
/// First retry delay after a failure (doubled up to `primary_gateways_interval`).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What `GET /v1/internal/federation/status` shows of config-entry replication.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplicationStatus {
    /// The primary's config-entry index last applied here (0: never).
    #[serde(rename = "ReplicatedIndex")]
    pub replicated_index: u64,
    /// Unix time of the last successful exchange with the primary.
    #[serde(rename = "LastSuccessUnix")]
    pub last_success_unix: Option<i64>,
    #[serde(rename = "LastError")]
    pub last_error: Option<String>,
}

/// Upsert order: what others are checked against goes first.
fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::ProxyDefaults => 0,
        Kind::Mesh => 1,
        Kind::ServiceDefaults => 2,
        Kind::ServiceResolver => 3,
        Kind::ServiceSplitter => 4,
        Kind::ServiceRouter => 5,
        Kind::ServiceIntentions => 6,
        Kind::TerminatingGateway => 7,
    }
}

/// The ops that make `local` equal to `remote`: deletes (routers first), then upserts
/// (defaults first).
pub(crate) fn plan(local: &[ConfigEntry], remote: &[ConfigEntry]) -> Vec<Op> {
    let theirs: BTreeMap<EntryKey, &ConfigEntry> = remote.iter().map(|e| (e.key(), e)).collect();
    let ours: BTreeMap<EntryKey, &ConfigEntry> = local.iter().map(|e| (e.key(), e)).collect();
    let mut deletes: Vec<&EntryKey> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    deletes.sort_by_key(|k| std::cmp::Reverse(rank(k.kind)));
    let mut upserts: Vec<&ConfigEntry> = theirs
        .iter()
        .filter(|(k, e)| ours.get(*k) != Some(*e))
        .map(|(_, e)| *e)
        .collect();
    upserts.sort_by_key(|e| rank(e.kind()));
    deletes
        .into_iter()
        .map(|k| Op::ConfigDelete {
            key: k.clone(),
            cas: None,
        })
        .chain(upserts.into_iter().map(|e| Op::ConfigSet {
            entry: e.clone(),
            cas: None,
        }))
        .collect()
}

pub(crate) async fn run(app: AppState) {
    use tracing::Instrument as _;
    let span = tracing::info_span!("replication", datacenter = %app.config.datacenter);
    async move {
        let cap = app.config.federation.primary_gateways_interval;
        let mut backoff = FIRST_BACKOFF;
        let mut min_index = 0u64;
        loop {
            match step(&app, &mut min_index).await {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "config-entry replication from the primary failed");
                    app.federation.replication.lock().last_error = Some(e);
                    min_index = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cap);
                }
            }
        }
    }
    .instrument(span)
    .await;
}

async fn step(app: &AppState, min_index: &mut u64) -> Result<(), String> {
    // Only a joined secondary has the certificate the primary asks for; with several replicas
    // on one etcd store, only the elected one replicates.
    if app.store.read(|s| s.ca().cluster_id.is_empty()) || !*app.store.leadership().borrow() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Ok(());
    }
    let primary = app.config.federation.primary_datacenter.clone();
    let req = Request::ConfigEntries {
        version: VERSION,
        min_index: *min_index,
        wait_ms: u64::try_from(WAIT.as_millis()).unwrap_or(u64::MAX),
    };
    let mut last = String::from("no gateway");
    let mut answer = None;
    for gw in super::route(app, &primary) {
        match super::dial(
            app,
            &primary,
            &gw,
            &[],
            &req,
            WAIT + Duration::from_secs(15),
        )
        .await
        {
            Ok(Answer::ConfigEntries(c)) => {
                answer = Some(c);
                break;
            }
            Ok(Answer::Error(e)) => {
                last = format!("the primary refused: {:?}: {}", e.code, e.message)
            }
            Ok(other) => last = format!("unexpected answer {other:?}"),
            Err(e) => last = format!("{gw}: {e}"),
        }
    }
    let Some(answer) = answer else {
        return Err(last);
    };
    let mut remote = Vec::with_capacity(answer.entries.len());
    for v in answer.entries {
        // The primary's entries were validated there; one this binary cannot read is skipped
        // (a newer kind or field), not allowed to stop the rest.
        match decode_value(v) {
            Ok(e) => remote.push(e),
            Err(e) => {
                tracing::warn!(error = %e, "skipped a config entry of the primary that does not decode here")
            }
        }
    }
    let local: Vec<ConfigEntry> = app
        .store
        .read(|s| s.config_entries().iter().cloned().collect());
    let ops = plan(&local, &remote);
    let n = ops.len();
    for op in ops {
        app.store
            .write(op)
            .await
            .map_err(|e| format!("cannot apply a replicated config entry: {e}"))?;
    }
    if n > 0 {
        tracing::info!(
            changes = n,
            index = answer.index,
            "replicated config entries from the primary"
        );
    }
    *min_index = answer.index;
    let mut st = app.federation.replication.lock();
    st.replicated_index = answer.index;
    st.last_success_unix = Some(OffsetDateTime::now_utc().unix_timestamp());
    st.last_error = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn e(v: serde_json::Value) -> ConfigEntry {
        decode_value(v).unwrap()
    }

    #[test]
    fn the_plan_deletes_dependents_first_and_upserts_dependencies_first() {
        let defaults = e(json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}));
        let router = e(json!({"Kind": "service-router", "Name": "web", "Routes": []}));
        let old = e(json!({"Kind": "service-defaults", "Name": "old", "Protocol": "http"}));
        let old_router = e(json!({"Kind": "service-router", "Name": "old", "Routes": []}));
        let same =
            e(json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}));
        let local = vec![old.clone(), old_router.clone(), same.clone()];
        let remote = vec![router.clone(), defaults.clone(), same];
        let ops = plan(&local, &remote);
        let shape: Vec<String> = ops
            .iter()
            .map(|op| match op {
                Op::ConfigDelete { key, .. } => format!("delete {:?} {}", key.kind, key.name),
                Op::ConfigSet { entry, .. } => {
                    format!("set {:?} {}", entry.kind(), entry.key().name)
                }
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "delete ServiceRouter old",
                "delete ServiceDefaults old",
                "set ServiceDefaults web",
                "set ServiceRouter web",
            ]
        );
        assert!(
            plan(&remote, &remote).is_empty(),
            "nothing to do when equal"
        );
    }
}
