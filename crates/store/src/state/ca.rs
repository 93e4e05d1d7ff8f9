//! Connect CA state: the cluster ID (and so the trust domain), the roots (one active, retired
//! ones kept until every leaf they signed has expired), the CA configuration, and the high-water
//! mark of reserved serial numbers. Keys and certificates are made in the HTTP layer and travel
//! inside the op, so applying stays deterministic; every change touches [`WatchKey::CaRoots`].

use serde::{Deserialize, Serialize};

use super::{ApplyError, State, WatchKey};

/// How many reservations [`State::serial_block`] remembers: far more than can be committed
/// between a write and its writer reading the result.
const RECENT_SERIAL_BLOCKS: usize = 256;

/// The CA's durable state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaState {
    /// UUID; the trust domain is `<cluster_id>.consul`. Empty until initialised.
    pub cluster_id: String,
    /// Oldest first; exactly one is active once initialised.
    pub roots: Vec<CaRoot>,
    pub config: CaConfigRecord,
    /// Serials below this are reserved (handed out or skipped); the next block starts here.
    pub next_serial: u64,
}

/// One root certificate with its signing key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaRoot {
    pub id: String,
    pub name: String,
    pub common_name: String,
    pub serial_number: u64,
    pub signing_key_id: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    pub not_after_unix: i64,
    pub root_cert: String,
    pub private_key: String,
    pub private_key_type: String,
    pub private_key_bits: u32,
    pub active: bool,
    /// Longest LeafCertTTL in force while this root signed: bounds its leaves' lifetime.
    pub max_leaf_ttl_secs: u64,
    /// Unix time it stopped being active.
    pub retired_at_unix: Option<i64>,
    pub create_index: u64,
    pub modify_index: u64,
    /// In a secondary datacenter: the intermediate CA (signed by this root of the primary's) that
    /// signs this datacenter's leaves, PEM, as Consul's `CARoot.IntermediateCerts`. Empty in the
    /// primary. `private_key` is then the intermediate's key, never the root's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intermediate_certs: Vec<String>,
    /// Common name of the certificate `private_key` signs as: the intermediate's in a secondary,
    /// empty when it is the root itself (`common_name`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signing_common_name: String,
}

/// The stored CA configuration (durations in seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaConfigRecord {
    pub provider: String,
    pub leaf_cert_ttl_secs: u64,
    pub intermediate_cert_ttl_secs: u64,
    pub root_cert_ttl_secs: u64,
    pub rotation_period_secs: u64,
    pub private_key_type: String,
    pub private_key_bits: u32,
    /// The caller-supplied signing key, if any (never shown by GET).
    pub private_key: Option<String>,
    pub force_without_cross_signing: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for CaConfigRecord {
    fn default() -> Self {
        const HOUR: u64 = 3600;
        Self {
            provider: "consul".into(),
            leaf_cert_ttl_secs: 72 * HOUR,
            intermediate_cert_ttl_secs: 8760 * HOUR,
            root_cert_ttl_secs: 87600 * HOUR,
            rotation_period_secs: 2160 * HOUR,
            private_key_type: "ec".into(),
            private_key_bits: 256,
            private_key: None,
            force_without_cross_signing: false,
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// CA ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CaOp {
    /// First start: the cluster ID, the default config and the first root. Refused once
    /// initialised (so a racing second init cannot replace the trust domain).
    Initialize {
        cluster_id: String,
        config: CaConfigRecord,
        root: CaRoot,
    },
    /// Reserves `count` serial numbers starting at the current `next_serial`.
    ReserveSerials { count: u64 },
    /// Stores a new configuration; with `rotate`, the given root becomes active and the previous
    /// one is retired at `now_unix` (kept in the bundle until its leaves have expired).
    SetConfig {
        config: CaConfigRecord,
        rotate: Option<CaRoot>,
        now_unix: i64,
    },
    /// Drops retired roots whose leaves have all expired (or whose own certificate has).
    Prune { now_unix: i64 },
    /// A secondary datacenter takes the primary's trust domain and roots (`docs/multi-dc.md`):
    /// `roots` are the primary's, without their keys, the active one carrying this
    /// datacenter's intermediate and its key. Replaces the roots; on first use it also sets the
    /// cluster ID, and it refuses a cluster ID other than the one already held (one trust domain
    /// for the life of a data dir).
    SetPrimaryRoots {
        cluster_id: String,
        roots: Vec<CaRoot>,
    },
}

/// Leaves are back-dated by this much, so they can outlive `retired_at + ttl` by it.
const LEAF_BACKDATE_SECS: i64 = 60;

impl CaRoot {
    /// The common name of the certificate that signs leaves with `private_key`.
    pub fn signing_cn(&self) -> &str {
        if self.signing_common_name.is_empty() {
            &self.common_name
        } else {
            &self.signing_common_name
        }
    }

    /// When every leaf this retired root signed has expired (`None` while active).
    pub fn leaves_expire_at(&self) -> Option<i64> {
        self.retired_at_unix.map(|t| {
            t + i64::try_from(self.max_leaf_ttl_secs).unwrap_or(i64::MAX / 2) + LEAF_BACKDATE_SECS
        })
    }
}

impl CaState {
    /// The root that signs new leaves.
    pub fn active_root(&self) -> Option<&CaRoot> {
        self.roots.iter().find(|r| r.active)
    }
}

impl State {
    pub fn ca(&self) -> &CaState {
        &self.ca
    }

    /// The serials `[start, end)` reserved by the `ReserveSerials` op committed at `index`, while
    /// it is among the last reservations this state applied.
    pub fn serial_block(&self, index: u64) -> Option<std::ops::Range<u64>> {
        self.serial_blocks
            .iter()
            .find(|(at, _)| *at == index)
            .map(|(_, range)| range.clone())
    }

    pub(super) fn apply_ca(&mut self, op: &CaOp, index: u64) -> Result<Vec<WatchKey>, ApplyError> {
        match op {
            CaOp::Initialize {
                cluster_id,
                config,
                root,
            } => {
                if !self.ca.cluster_id.is_empty() {
                    return Err(ApplyError::Conflict("the CA is already initialised".into()));
                }
                if cluster_id.is_empty() {
                    return Err(ApplyError::Invalid("empty cluster ID".into()));
                }
                self.ca.cluster_id = cluster_id.clone();
                self.ca.config = CaConfigRecord {
                    create_index: index,
                    modify_index: index,
                    ..config.clone()
                };
                self.ca.roots = vec![CaRoot {
                    active: true,
                    create_index: index,
                    modify_index: index,
                    ..root.clone()
                }];
                let mut keys = vec![WatchKey::CaRoots];
                // The CA's ID is the cluster's ID (as in Consul).
                if self.meta.cluster_id.is_empty() {
                    self.meta.cluster_id = cluster_id.clone();
                    keys.push(WatchKey::Meta);
                }
                Ok(keys)
            }
            CaOp::ReserveSerials { count } => {
                let start = self.ca.next_serial.max(1);
                self.ca.next_serial = start
                    .checked_add(*count)
                    .ok_or_else(|| ApplyError::Invalid("serial numbers exhausted".into()))?;
                if self.serial_blocks.len() == RECENT_SERIAL_BLOCKS {
                    self.serial_blocks.pop_front();
                }
                self.serial_blocks
                    .push_back((index, start..self.ca.next_serial));
                Ok(vec![WatchKey::CaRoots])
            }
            CaOp::SetConfig {
                config,
                rotate,
                now_unix,
            } => {
                if self.ca.cluster_id.is_empty() {
                    return Err(ApplyError::Invalid("the CA is not initialised".into()));
                }
                if let Some(new) = rotate
                    && self.ca.roots.iter().any(|r| r.id == new.id)
                {
                    return Err(ApplyError::Conflict(format!(
                        "root {} already exists",
                        new.id
                    )));
                }
                let leaf_ttl = config.leaf_cert_ttl_secs;
                for r in &mut self.ca.roots {
                    if r.active {
                        r.max_leaf_ttl_secs = r.max_leaf_ttl_secs.max(leaf_ttl);
                        if rotate.is_some() {
                            r.active = false;
                            r.retired_at_unix = Some(*now_unix);
                        }
                        r.modify_index = index;
                    }
                }
                if let Some(new) = rotate {
                    self.ca.roots.push(CaRoot {
                        active: true,
                        max_leaf_ttl_secs: new.max_leaf_ttl_secs.max(leaf_ttl),
                        retired_at_unix: None,
                        create_index: index,
                        modify_index: index,
                        ..new.clone()
                    });
                }
                self.ca.config = CaConfigRecord {
                    create_index: self.ca.config.create_index,
                    modify_index: index,
                    ..config.clone()
                };
                Ok(vec![WatchKey::CaRoots])
            }
            CaOp::SetPrimaryRoots { cluster_id, roots } => {
                if cluster_id.is_empty() {
                    return Err(ApplyError::Invalid("empty cluster ID".into()));
                }
                if !self.ca.cluster_id.is_empty() && self.ca.cluster_id != *cluster_id {
                    return Err(ApplyError::Conflict(format!(
                        "this datacenter's trust domain is {}.consul, the primary's {cluster_id}.consul",
                        self.ca.cluster_id
                    )));
                }
                if roots.iter().filter(|r| r.active).count() != 1 {
                    return Err(ApplyError::Invalid(
                        "the primary's roots must have exactly one active root".into(),
                    ));
                }
                let mut keys = vec![WatchKey::CaRoots];
                if self.ca.cluster_id.is_empty() {
                    self.ca.cluster_id = cluster_id.clone();
                    if self.meta.cluster_id.is_empty() {
                        self.meta.cluster_id = cluster_id.clone();
                        keys.push(WatchKey::Meta);
                    }
                }
                let old = std::mem::take(&mut self.ca.roots);
                self.ca.roots = roots
                    .iter()
                    .map(|r| {
                        let kept = old.iter().find(|o| o.id == r.id);
                        CaRoot {
                            create_index: kept.map_or(index, |o| o.create_index),
                            modify_index: index,
                            ..r.clone()
                        }
                    })
                    .collect();
                Ok(keys)
            }
            CaOp::Prune { now_unix } => {
                let before = self.ca.roots.len();
                self.ca.roots.retain(|r| {
                    r.active
                        || (r.leaves_expire_at().is_none_or(|t| t > *now_unix)
                            && r.not_after_unix > *now_unix)
                });
                if self.ca.roots.len() == before {
                    // Nothing to drop: still a logged no-op is wasteful, so the caller checks
                    // first; keep the op valid anyway.
                    return Ok(Vec::new());
                }
                Ok(vec![WatchKey::CaRoots])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Op;

    fn root(id: &str, not_after_unix: i64) -> CaRoot {
        CaRoot {
            id: id.into(),
            not_after_unix,
            max_leaf_ttl_secs: 100,
            ..CaRoot::default()
        }
    }

    #[test]
    fn init_rotate_prune() {
        let mut s = State::default();
        let init = Op::Ca(CaOp::Initialize {
            cluster_id: "abc".into(),
            config: CaConfigRecord::default(),
            root: root("r1", 10_000),
        });
        let keys = s.apply(&init, 1).unwrap().unwrap();
        assert!(keys.contains(&WatchKey::CaRoots));
        assert_eq!(s.meta.cluster_id, "abc");
        assert!(s.apply(&init, 2).is_err(), "initialised once");
        let rot = Op::Ca(CaOp::SetConfig {
            config: CaConfigRecord {
                leaf_cert_ttl_secs: 200,
                ..CaConfigRecord::default()
            },
            rotate: Some(root("r2", 10_000)),
            now_unix: 1000,
        });
        s.apply(&rot, 3).unwrap();
        let ca = s.ca();
        assert_eq!(ca.active_root().unwrap().id, "r2");
        assert_eq!(ca.roots.len(), 2);
        let old = &ca.roots[0];
        assert!(!old.active);
        // The leaf TTL in force at rotation bounds the old root's leaves.
        assert_eq!(old.leaves_expire_at(), Some(1000 + 200 + 60));
        s.apply(&Op::Ca(CaOp::Prune { now_unix: 1200 }), 4).unwrap();
        assert_eq!(s.ca().roots.len(), 2, "leaves still valid");
        s.apply(&Op::Ca(CaOp::Prune { now_unix: 1261 }), 5).unwrap();
        assert_eq!(s.ca().roots.len(), 1);
        assert_eq!(s.ca().roots[0].id, "r2");
        s.apply(&Op::Ca(CaOp::ReserveSerials { count: 10 }), 6)
            .unwrap();
        assert_eq!(s.ca().next_serial, 11);
        assert_eq!(s.serial_block(6), Some(1..11));
        s.apply(&Op::Ca(CaOp::ReserveSerials { count: 10 }), 7)
            .unwrap();
        assert_eq!(s.serial_block(7), Some(11..21), "the next block follows");
        assert_eq!(s.serial_block(6), Some(1..11), "each writer finds its own");
    }

    #[test]
    fn a_secondary_takes_the_primary_roots_and_keeps_its_trust_domain() {
        let mut s = State::default();
        let with_int = |id: &str, active: bool| CaRoot {
            active,
            intermediate_certs: if active { vec!["INT".into()] } else { vec![] },
            signing_common_name: if active {
                "sec-1".into()
            } else {
                String::new()
            },
            ..root(id, 10_000)
        };
        let set = |roots| {
            Op::Ca(CaOp::SetPrimaryRoots {
                cluster_id: "primary".into(),
                roots,
            })
        };
        s.apply(&set(vec![with_int("r1", true)]), 1).unwrap();
        assert_eq!(s.ca().cluster_id, "primary");
        assert_eq!(s.meta.cluster_id, "primary");
        assert_eq!(s.ca().active_root().unwrap().signing_cn(), "sec-1");
        // A rotation in the primary: the old root stays, retired; its create index is kept.
        s.apply(&set(vec![with_int("r1", false), with_int("r2", true)]), 2)
            .unwrap();
        let ca = s.ca();
        assert_eq!(ca.active_root().unwrap().id, "r2");
        assert_eq!(ca.roots[0].create_index, 1);
        assert_eq!(ca.roots[0].signing_cn(), ca.roots[0].common_name);
        assert!(s.apply(&set(vec![]), 3).is_err(), "no active root");
        let other = Op::Ca(CaOp::SetPrimaryRoots {
            cluster_id: "another".into(),
            roots: vec![with_int("r9", true)],
        });
        assert!(matches!(s.apply(&other, 4), Err(ApplyError::Conflict(_))));
        let back = State::from_snapshot(s.to_snapshot());
        assert_eq!(back.ca(), s.ca());
    }

    #[test]
    fn snapshot_keeps_the_ca() {
        let mut s = State::default();
        let init = Op::Ca(CaOp::Initialize {
            cluster_id: "abc".into(),
            config: CaConfigRecord::default(),
            root: root("r1", 10_000),
        });
        s.apply(&init, 1).unwrap();
        let back = State::from_snapshot(s.to_snapshot());
        assert_eq!(back.ca(), s.ca());
    }
}
