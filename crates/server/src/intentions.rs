//! Writes of the legacy intention API: the destination's `service-intentions` entry is read,
//! changed by the model (`mesh_model::intentions`), and written back with check-and-set, retried
//! a bounded number of times, so that two concurrent intention writes on one destination never
//! lose each other.
//!
//! Authorization and the query-string names are the handlers' (`api/intentions.rs`); this
//! module must not depend on HTTP types.

use mesh_model::config_entry::EntryKey;
use mesh_model::intentions::{self, DeleteOutcome, IntentionError, IntentionRequest};
use mesh_model::names::ServiceName;
use store::{Op, StoreError};

use crate::AppState;

/// Attempts of a read-modify-write before reporting a conflict.
const CAS_ATTEMPTS: usize = 16;

/// Failures of an intention write.
#[derive(Debug, thiserror::Error)]
pub enum IntentionWriteError {
    #[error(transparent)]
    Invalid(#[from] IntentionError),
    /// Every check-and-set attempt lost to another writer.
    #[error("intention changed concurrently too many times; retry")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key of the `service-intentions` entry that holds `dst`'s intentions.
pub(crate) fn entry_key(dst: &ServiceName) -> EntryKey {
    EntryKey {
        kind: mesh_model::config_entry::Kind::ServiceIntentions,
        meta: dst.meta.clone(),
        name: dst.name.clone(),
    }
}

/// Creates or replaces the intention `src → dst`.
///
/// # Errors
/// The request is invalid, the store refuses the entry, or writers keep racing.
pub async fn upsert_exact(
    app: &AppState,
    src: &ServiceName,
    dst: &ServiceName,
    req: &IntentionRequest,
) -> Result<(), IntentionWriteError> {
    for _ in 0..CAS_ATTEMPTS {
        let (entry, cas) = app.store.read(|s| {
            (
                intentions::upsert_exact(s.config_entries(), src, dst, req.clone()),
                s.entry_indexes(&entry_key(dst))
                    .map(|(_, m)| m)
                    .unwrap_or(0),
            )
        });
        let op = Op::ConfigSet {
            entry: entry?.to_json(),
            cas: Some(cas),
        };
        if app.store.write(op).await?.applied {
            return Ok(());
        }
    }
    Err(IntentionWriteError::Contended)
}

/// Removes the intention `src → dst` (the whole entry when it was the last source); removing
/// one that does not exist succeeds.
///
/// # Errors
/// The store refuses the write, or writers keep racing.
pub async fn delete_exact(
    app: &AppState,
    src: &ServiceName,
    dst: &ServiceName,
) -> Result<(), IntentionWriteError> {
    for _ in 0..CAS_ATTEMPTS {
        let (outcome, cas) = app.store.read(|s| {
            (
                intentions::delete_exact(s.config_entries(), src, dst),
                s.entry_indexes(&entry_key(dst)).map(|(_, m)| m),
            )
        });
        let op = match outcome {
            DeleteOutcome::NotFound => return Ok(()),
            DeleteOutcome::Write(entry) => Op::ConfigSet {
                entry: entry.to_json(),
                cas: Some(cas.unwrap_or(0)),
            },
            DeleteOutcome::Delete(key) => Op::ConfigDelete {
                kind: key.kind.as_str().to_owned(),
                partition: key.meta.partition,
                namespace: key.meta.namespace,
                name: key.name,
                cas,
            },
        };
        if app.store.write(op).await?.applied {
            return Ok(());
        }
    }
    Err(IntentionWriteError::Contended)
}
