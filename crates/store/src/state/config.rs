//! Config entries in the state: check-and-set, graph validation through the model's
//! `ConfigEntrySet`, and per-entry create/modify indexes.

use std::collections::BTreeMap;

use mesh_model::config_entry::{ConfigEntry, ConfigEntryError, ConfigEntrySet, EntryKey};

use super::{ApplyError, State, WatchKey};

/// Create/modify indexes of stored entries (kept beside the model's set, which is pure data).
pub(crate) type EntryIndexes = BTreeMap<EntryKey, (u64, u64)>;

fn rejected(e: ConfigEntryError) -> ApplyError {
    ApplyError::Invalid(e.to_string())
}

fn entry_keys(key: EntryKey) -> Vec<WatchKey> {
    vec![WatchKey::ConfigKind(key.kind), WatchKey::ConfigEntry(key)]
}

impl State {
    /// The config entries (for reads, intentions and xDS compilation).
    pub fn config_entries(&self) -> &ConfigEntrySet {
        &self.config
    }

    /// `(CreateIndex, ModifyIndex)` of a stored entry.
    pub fn entry_indexes(&self, key: &EntryKey) -> Option<(u64, u64)> {
        self.config_index.get(key).copied()
    }

    /// Stores `entry` (decoded and validated by the caller; only the checks against the other
    /// entries run here, on the latest state).
    pub(super) fn apply_config_set(
        &mut self,
        entry: &ConfigEntry,
        cas: Option<u64>,
        index: u64,
    ) -> Result<Option<Vec<WatchKey>>, ApplyError> {
        let key = entry.key();
        if let Some(cas) = cas {
            let current = self.config_index.get(&key).map(|(_, m)| *m);
            let ok = match current {
                None => cas == 0,
                Some(m) => m == cas,
            };
            if !ok {
                return Ok(None);
            }
        }
        self.config.validate_upsert(entry).map_err(rejected)?;
        if self.config.get(&key) == Some(entry) {
            // Unchanged: Consul still bumps the index; we keep watchers asleep instead.
            return Ok(Some(Vec::new()));
        }
        let create = self.config_index.get(&key).map_or(index, |(c, _)| *c);
        self.config_index.insert(key.clone(), (create, index));
        self.config.insert(entry.clone());
        Ok(Some(entry_keys(key)))
    }

    pub(super) fn apply_config_delete(
        &mut self,
        key: &EntryKey,
        cas: Option<u64>,
    ) -> Result<Option<Vec<WatchKey>>, ApplyError> {
        let current = self.config_index.get(key).map(|(_, m)| *m);
        if let Some(cas) = cas
            && current != Some(cas)
        {
            return Ok(None);
        }
        if current.is_none() {
            // Deleting what is not there succeeds and changes nothing, as in Consul.
            return Ok(Some(Vec::new()));
        }
        self.config.validate_delete(key).map_err(rejected)?;
        self.config.remove(key);
        self.config_index.remove(key);
        Ok(Some(entry_keys(key.clone())))
    }

    pub(super) fn restore_entry(&mut self, entry: ConfigEntry, create: u64, modify: u64) {
        self.config_index.insert(entry.key(), (create, modify));
        self.config.insert(entry);
    }
}
