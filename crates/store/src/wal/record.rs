//! How an [`Op`] is written in a log record: the JSON shape every data directory holds, kept
//! apart from the typed `Op` the rest of the store works with.
//!
//! The shape is fixed: variants are only ever added, existing ones keep their names and fields
//! (`tests/fixtures/data-v1` holds logs of the first shape, and `wal::tests` replays them).
//! Where `Op` holds a typed value the log holds its plain form: a config entry as its API JSON
//! (`ConfigEntry::to_json`, read back with `decode_value`, so a record written by any version
//! decodes as that version's handler would have), a config-entry kind as its name, keys as flat
//! fields. Reading a record converts it back and fails (as a serde error) when it no longer
//! describes a valid op; replay skips such a record.
//!
//! Must not depend on anything but the model and serde.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use mesh_model::EntMeta;
use mesh_model::catalog::CheckStatus;
use mesh_model::config_entry::{self, EntryKey, Kind};

use crate::state::acl::AclOp;
use crate::state::ca::CaOp;
use crate::state::kv::KvOp;
use crate::state::{CheckKey, ClusterMeta, NodeKey, Op, Registration, ServiceKey};

/// An op as written, borrowing from the typed op.
#[derive(Serialize)]
enum Written<'a> {
    Register(&'a Registration),
    DeregisterNode {
        partition: &'a str,
        node: &'a str,
    },
    DeregisterService {
        partition: &'a str,
        node: &'a str,
        namespace: &'a str,
        service_id: &'a str,
    },
    DeregisterCheck {
        partition: &'a str,
        node: &'a str,
        namespace: &'a str,
        check_id: &'a str,
    },
    UpdateCheck {
        partition: &'a str,
        node: &'a str,
        check_id: &'a str,
        status: CheckStatus,
        output: &'a str,
    },
    SetClusterMeta(&'a ClusterMeta),
    ConfigSet {
        entry: Value,
        cas: Option<u64>,
    },
    ConfigDelete {
        kind: &'static str,
        partition: &'a str,
        namespace: &'a str,
        name: &'a str,
        cas: Option<u64>,
    },
    Acl(&'a AclOp),
    Ca(&'a CaOp),
    Kv(&'a KvOp),
    SetFederationState {
        datacenter: &'a str,
        mesh_gateways: &'a [String],
    },
}

/// An op as read, before it is checked and typed.
// Read once per record at replay; boxing the large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
enum Read {
    Register(Registration),
    DeregisterNode {
        partition: String,
        node: String,
    },
    DeregisterService {
        partition: String,
        node: String,
        namespace: String,
        service_id: String,
    },
    DeregisterCheck {
        partition: String,
        node: String,
        namespace: String,
        check_id: String,
    },
    UpdateCheck {
        partition: String,
        node: String,
        check_id: String,
        status: CheckStatus,
        output: String,
    },
    SetClusterMeta(ClusterMeta),
    ConfigSet {
        entry: Value,
        cas: Option<u64>,
    },
    ConfigDelete {
        kind: String,
        partition: String,
        namespace: String,
        name: String,
        cas: Option<u64>,
    },
    Acl(AclOp),
    Ca(CaOp),
    Kv(KvOp),
    SetFederationState {
        datacenter: String,
        mesh_gateways: Vec<String>,
    },
}

impl<'a> From<&'a Op> for Written<'a> {
    fn from(op: &'a Op) -> Self {
        match op {
            Op::Register(reg) => Written::Register(reg),
            Op::DeregisterNode(key) => Written::DeregisterNode {
                partition: key.partition(),
                node: key.node(),
            },
            Op::DeregisterService(key) => Written::DeregisterService {
                partition: key.partition(),
                node: key.node(),
                namespace: key.namespace(),
                service_id: key.id(),
            },
            Op::DeregisterCheck(key) => Written::DeregisterCheck {
                partition: key.partition(),
                node: key.node(),
                namespace: key.namespace(),
                check_id: key.check_id(),
            },
            Op::UpdateCheck {
                node,
                check_id,
                status,
                output,
            } => Written::UpdateCheck {
                partition: node.partition(),
                node: node.node(),
                check_id,
                status: *status,
                output,
            },
            Op::SetClusterMeta(meta) => Written::SetClusterMeta(meta),
            Op::ConfigSet { entry, cas } => Written::ConfigSet {
                entry: entry.to_json(),
                cas: *cas,
            },
            Op::ConfigDelete { key, cas } => Written::ConfigDelete {
                kind: key.kind.as_str(),
                partition: &key.meta.partition,
                namespace: &key.meta.namespace,
                name: &key.name,
                cas: *cas,
            },
            Op::Acl(op) => Written::Acl(op),
            Op::Ca(op) => Written::Ca(op),
            Op::Kv(op) => Written::Kv(op),
            Op::SetFederationState {
                datacenter,
                mesh_gateways,
            } => Written::SetFederationState {
                datacenter,
                mesh_gateways,
            },
        }
    }
}

impl TryFrom<Read> for Op {
    type Error = String;

    fn try_from(read: Read) -> Result<Self, String> {
        Ok(match read {
            Read::Register(reg) => Op::Register(reg),
            Read::DeregisterNode { partition, node } => {
                Op::DeregisterNode(NodeKey::new(&partition, &node))
            }
            Read::DeregisterService {
                partition,
                node,
                namespace,
                service_id,
            } => Op::DeregisterService(ServiceKey::new(&partition, &node, &namespace, &service_id)),
            Read::DeregisterCheck {
                partition,
                node,
                namespace,
                check_id,
            } => Op::DeregisterCheck(CheckKey::new(&partition, &node, &namespace, &check_id)),
            Read::UpdateCheck {
                partition,
                node,
                check_id,
                status,
                output,
            } => Op::UpdateCheck {
                node: NodeKey::new(&partition, &node),
                check_id,
                status,
                output,
            },
            Read::SetClusterMeta(meta) => Op::SetClusterMeta(meta),
            Read::ConfigSet { entry, cas } => Op::ConfigSet {
                entry: config_entry::decode_value(entry).map_err(|e| e.to_string())?,
                cas,
            },
            Read::ConfigDelete {
                kind,
                partition,
                namespace,
                name,
                cas,
            } => Op::ConfigDelete {
                key: EntryKey {
                    kind: Kind::parse(&kind).map_err(|e| e.to_string())?,
                    meta: EntMeta::new(Some(&partition), Some(&namespace)),
                    name,
                },
                cas,
            },
            Read::Acl(op) => Op::Acl(op),
            Read::Ca(op) => Op::Ca(op),
            Read::Kv(op) => Op::Kv(op),
            Read::SetFederationState {
                datacenter,
                mesh_gateways,
            } => Op::SetFederationState {
                datacenter,
                mesh_gateways,
            },
        })
    }
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Written::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Op::try_from(Read::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}
