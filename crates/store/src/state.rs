//! The state machine: [`State`] changed only by [`Op`]s through [`State::apply`], which is
//! deterministic (no clocks, no randomness: IDs and times travel inside the op) so replaying the
//! log rebuilds exactly the state that was acknowledged. `apply` validates everything before it
//! mutates anything: an op is applied whole or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use mesh_model::EntMeta;
use mesh_model::catalog::CheckStatus;
use mesh_model::config_entry::{ConfigEntry, EntryKey, Kind};
use mesh_model::names::ServiceName;

pub mod acl;
pub mod ca;
pub mod catalog;
mod config;
pub mod kv;

pub use catalog::{CheckKey, NodeKey, Registration, ServiceKey};

/// What a blocking query depends on. A write touches keys; a query waits on keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    /// The node list.
    Nodes,
    /// One node's record, services and checks.
    Node(NodeKey),
    /// The list of service names in a tenancy.
    Services(EntMeta),
    /// Instances (and their health) of one service.
    Service(ServiceName),
    /// Mesh-capable endpoints of one service (`health/connect`).
    Connect(ServiceName),
    /// All config entries of one kind.
    ConfigKind(Kind),
    /// One config entry.
    ConfigEntry(EntryKey),
    /// ACL tokens and policies.
    Acl,
    /// Connect CA roots and configuration.
    CaRoots,
    /// Cluster metadata (cluster ID, CA).
    Meta,
    /// One key of the key/value store.
    KvKey(String),
    /// Any key of the key/value store (recursive and key-list queries wait on this).
    KvTree,
    /// Other datacenters' mesh gateways (the federation's map).
    FederationStates,
}

/// Why an op was refused. The HTTP layer maps each variant to one status code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
}

/// Cluster-wide metadata, fixed at first start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub cluster_id: String,
}

/// One durable change, as typed values: the handler decodes and validates once, the committer
/// applies what it is given. Written into the log in the shape every earlier version wrote
/// (`crate::wal::record`), so variants are only ever added and existing ones keep their shape.
// Ops live for one write; boxing the large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A catalog or agent registration: node, instances and checks in one atomic write.
    Register(catalog::Registration),
    /// A node with its instances and checks.
    DeregisterNode(NodeKey),
    /// One instance and its checks.
    DeregisterService(ServiceKey),
    DeregisterCheck(CheckKey),
    /// TTL check update (`agent/check/pass|warn|fail`, `agent/check/update`): the check
    /// `check_id` on `node`, in whichever namespace it is.
    UpdateCheck {
        node: NodeKey,
        check_id: String,
        status: CheckStatus,
        output: String,
    },
    SetClusterMeta(ClusterMeta),
    /// `PUT /v1/config`: a decoded, validated entry (graph checks against the other entries
    /// run at apply), with an optional check-and-set index (0 = must not exist).
    ConfigSet {
        entry: ConfigEntry,
        cas: Option<u64>,
    },
    ConfigDelete {
        key: EntryKey,
        cas: Option<u64>,
    },
    Acl(acl::AclOp),
    /// Connect CA: initialise, rotate, prune roots.
    Ca(ca::CaOp),
    /// The key/value store (`/v1/kv`).
    Kv(kv::KvOp),
    /// One datacenter's mesh gateways as `HOST:PORT`, as the federation learned them (Consul's
    /// federation states, reduced to what routing needs): the primary stores what each
    /// secondary reports, a secondary the primary's map.
    SetFederationState {
        datacenter: String,
        mesh_gateways: Vec<String>,
    },
}

/// The whole control-plane state.
#[derive(Debug, Default, Clone)]
pub struct State {
    index: u64,
    /// Index at open: per-key indexes are not persisted, so queries never report less than this
    /// after a restart (keeps `X-Consul-Index` monotonic across restarts).
    floor: u64,
    pub meta: ClusterMeta,
    pub(crate) nodes: BTreeMap<NodeKey, mesh_model::catalog::Node>,
    /// Change only through `insert_service`/`remove_service`, which keep the two indexes below.
    pub(crate) services: BTreeMap<ServiceKey, mesh_model::catalog::NodeService>,
    /// The instances of each service name, so a query for one service (and every proxy's
    /// endpoints) reads its instances instead of scanning the whole catalog.
    pub(crate) services_by_name: HashMap<catalog::NameKey, BTreeSet<ServiceKey>>,
    /// The mesh-capable instances of each service name: its sidecar proxies and its
    /// connect-native instances (`connect_instances`, every caller's upstream endpoints).
    pub(crate) mesh_instances_of: HashMap<catalog::NameKey, BTreeSet<ServiceKey>>,
    pub(crate) checks: BTreeMap<catalog::CheckKey, mesh_model::catalog::HealthCheck>,
    pub(crate) config: mesh_model::config_entry::ConfigEntrySet,
    pub(crate) config_index: config::EntryIndexes,
    pub(crate) acl: acl::AclState,
    pub(crate) ca: ca::CaState,
    pub(crate) kv: kv::KvTable,
    /// Mesh gateways (`HOST:PORT`) by datacenter ([`Op::SetFederationState`]).
    pub(crate) federation_states: BTreeMap<String, Vec<String>>,
    key_index: HashMap<WatchKey, u64>,
    /// The last serial blocks reserved, as (index of the reservation, end of its block): the
    /// writer of a reservation reads its own block here, whatever other replicas reserved after
    /// it. Not durable (only the writer, right after its write, needs it).
    pub(crate) serial_blocks: std::collections::VecDeque<(u64, std::ops::Range<u64>)>,
}

/// The durable form of a [`State`] (what a snapshot holds).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StateSnapshot {
    pub index: u64,
    pub meta: ClusterMeta,
    pub nodes: Vec<mesh_model::catalog::Node>,
    pub services: Vec<(String, mesh_model::catalog::NodeService)>,
    pub checks: Vec<mesh_model::catalog::HealthCheck>,
    /// Config entries as API JSON with (create, modify) indexes.
    #[serde(default)]
    pub config: Vec<(serde_json::Value, u64, u64)>,
    #[serde(default)]
    pub acl: acl::AclState,
    #[serde(default)]
    pub ca: ca::CaState,
    /// Left out when empty, so a store without keys writes the snapshot it wrote before the
    /// key/value store existed (the format-v1 fixtures stay byte-for-byte what they were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kv: Vec<kv::KvEntry>,
    /// Left out when empty, as `kv`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub federation_states: BTreeMap<String, Vec<String>>,
}

impl State {
    /// The highest applied index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Mesh gateways (`HOST:PORT`) by datacenter, as the federation learned them.
    pub fn federation_states(&self) -> &BTreeMap<String, Vec<String>> {
        &self.federation_states
    }

    /// The index a query over `keys` reports: the newest write that touched any of them, never
    /// below the restart floor, never 0 (Consul clients must not send index 0 as "changed").
    pub fn index_of(&self, keys: &[WatchKey]) -> u64 {
        keys.iter()
            .filter_map(|k| self.key_index.get(k))
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.floor)
            .max(1)
    }

    /// Replay keeps the log's index even when a record no longer applies.
    pub(crate) fn force_index(&mut self, index: u64) {
        self.index = self.index.max(index);
    }

    pub(crate) fn set_floor(&mut self) {
        self.floor = self.index;
    }

    /// Applies `op` at `index`. `Ok(None)` means a no-op that needs no log record (e.g. a failed
    /// check-and-set); `Ok(Some(keys))` lists the keys whose queries changed.
    ///
    /// # Errors
    /// The op is invalid against the current state; nothing was changed.
    pub fn apply(&mut self, op: &Op, index: u64) -> Result<Option<Vec<WatchKey>>, ApplyError> {
        let touched = match op {
            Op::ConfigSet { entry, cas } => match self.apply_config_set(entry, *cas, index)? {
                None => return Ok(None),
                Some(keys) => keys,
            },
            Op::ConfigDelete { key, cas } => match self.apply_config_delete(key, *cas)? {
                None => return Ok(None),
                Some(keys) => keys,
            },
            Op::Register(reg) => self.apply_register(reg, index)?,
            Op::DeregisterNode(key) => self.apply_deregister_node(key),
            Op::DeregisterService(key) => self.apply_deregister_service(key),
            Op::DeregisterCheck(key) => self.apply_deregister_check(key),
            Op::UpdateCheck {
                node,
                check_id,
                status,
                output,
            } => self.apply_update_check(node, check_id, *status, output, index)?,
            Op::Acl(op) => self.apply_acl(op, index)?,
            Op::Ca(op) => self.apply_ca(op, index)?,
            Op::Kv(op) => match self.apply_kv(op, index)? {
                None => return Ok(None),
                Some(keys) => keys,
            },
            Op::SetClusterMeta(meta) => {
                self.meta = meta.clone();
                vec![WatchKey::Meta]
            }
            Op::SetFederationState {
                datacenter,
                mesh_gateways,
            } => {
                if datacenter.is_empty() {
                    return Err(ApplyError::Invalid(
                        "a federation state needs a datacenter".into(),
                    ));
                }
                if self.federation_states.get(datacenter) == Some(mesh_gateways) {
                    return Ok(None);
                }
                self.federation_states
                    .insert(datacenter.clone(), mesh_gateways.clone());
                vec![WatchKey::FederationStates]
            }
        };
        self.index = index;
        for k in &touched {
            self.key_index.insert(k.clone(), index);
        }
        Ok(Some(touched))
    }

    pub(crate) fn to_snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            index: self.index,
            meta: self.meta.clone(),
            nodes: self.nodes.values().cloned().collect(),
            services: self
                .services
                .iter()
                .map(|(k, v)| (k.node().to_owned(), v.clone()))
                .collect(),
            checks: self.checks.values().cloned().collect(),
            config: self
                .config
                .iter()
                .map(|e| {
                    let (c, m) = self.config_index.get(&e.key()).copied().unwrap_or((0, 0));
                    (e.to_json(), c, m)
                })
                .collect(),
            acl: self.acl.clone(),
            ca: self.ca.clone(),
            kv: self.kv.values().cloned().collect(),
            federation_states: self.federation_states.clone(),
        }
    }

    pub(crate) fn from_snapshot(snap: StateSnapshot) -> Self {
        let mut state = State {
            index: snap.index,
            meta: snap.meta,
            acl: snap.acl,
            ca: snap.ca,
            federation_states: snap.federation_states,
            ..State::default()
        };
        for n in snap.nodes {
            state.nodes.insert(NodeKey::of(&n), n);
        }
        for (node, s) in snap.services {
            state.insert_service(ServiceKey::of(&node, &s), s);
        }
        for e in snap.kv {
            state.kv.insert(e.key.clone(), e);
        }
        for c in snap.checks {
            state.checks.insert(catalog::CheckKey::of(&c), c);
        }
        for (v, create, modify) in snap.config {
            match mesh_model::config_entry::decode_value(v) {
                Ok(e) => state.restore_entry(e, create, modify),
                Err(e) => {
                    tracing::error!(error = %e, "config entry in snapshot no longer decodes; dropped")
                }
            }
        }
        state
    }
}

#[cfg(test)]
mod tests;
