//! Consul's key/value store: entries with flags and create/modify indexes, check-and-set writes
//! and deletes, recursive deletes. Self-contained: [`KvOp`] is the only op, [`KvEntry`] the only
//! record, so another backend can implement the same semantics from this file alone.
//!
//! Sessions and locks are not supported: `LockIndex` is always 0 and `Session` never set.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ApplyError, State, WatchKey};

/// Largest value accepted (Consul's default `kv_max_value_size`).
pub const MAX_VALUE_BYTES: usize = 512 * 1024;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub flags: u64,
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A change of the key/value store. Written into the log as its serde shape (value in base64),
/// which must never change: variants are only added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// `PUT /v1/kv/<key>`; `cas`: 0 = only if absent, N = only if its ModifyIndex is N.
    Set {
        key: String,
        #[serde(with = "base64_bytes")]
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    },
    /// `DELETE /v1/kv/<key>`; with `cas` only if its ModifyIndex is that.
    Delete { key: String, cas: Option<u64> },
    /// `DELETE /v1/kv/<prefix>?recurse`: every key starting with `prefix`.
    DeleteTree { prefix: String },
}

/// The stored keys, in key order (prefix scans are range scans).
pub(crate) type KvTable = BTreeMap<String, KvEntry>;

fn key_watch(key: &str) -> WatchKey {
    WatchKey::KvKey(key.to_owned())
}

/// Checks a key as Consul does (`kvs_endpoint.go`: no leading slash after the path's own).
pub fn validate_key(key: &str) -> Result<(), ApplyError> {
    if key.is_empty() {
        return Err(ApplyError::Invalid("Missing key name".into()));
    }
    if key.len() > 4096 {
        return Err(ApplyError::Invalid(format!(
            "key is too long: {} bytes, at most 4096",
            key.len()
        )));
    }
    Ok(())
}

impl State {
    /// One key.
    pub fn kv_get(&self, key: &str) -> Option<&KvEntry> {
        self.kv.get(key)
    }

    /// Every key starting with `prefix`, in key order.
    pub fn kv_list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KvEntry> + 'a {
        self.kv
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e)
    }

    pub(super) fn apply_kv(
        &mut self,
        op: &KvOp,
        index: u64,
    ) -> Result<Option<Vec<WatchKey>>, ApplyError> {
        match op {
            KvOp::Set {
                key,
                value,
                flags,
                cas,
            } => {
                validate_key(key)?;
                if value.len() > MAX_VALUE_BYTES {
                    return Err(ApplyError::Invalid(format!(
                        "Value exceeds {MAX_VALUE_BYTES} byte limit"
                    )));
                }
                let current = self.kv.get(key).map(|e| e.modify_index);
                if let Some(cas) = cas {
                    let ok = match current {
                        None => *cas == 0,
                        Some(m) => m == *cas,
                    };
                    if !ok {
                        return Ok(None);
                    }
                }
                let create_index = self.kv.get(key).map_or(index, |e| e.create_index);
                self.kv.insert(
                    key.clone(),
                    KvEntry {
                        key: key.clone(),
                        flags: *flags,
                        value: value.clone(),
                        create_index,
                        modify_index: index,
                    },
                );
                Ok(Some(vec![key_watch(key), WatchKey::KvTree]))
            }
            KvOp::Delete { key, cas } => {
                let current = self.kv.get(key).map(|e| e.modify_index);
                if let Some(cas) = cas
                    && current != Some(*cas)
                {
                    // Consul: a check-and-set delete of a missing key with cas=0 fails too.
                    return Ok(None);
                }
                if current.is_none() {
                    return Ok(Some(Vec::new()));
                }
                self.kv.remove(key);
                Ok(Some(vec![key_watch(key), WatchKey::KvTree]))
            }
            KvOp::DeleteTree { prefix } => {
                let doomed: Vec<String> = self.kv_list(prefix).map(|e| e.key.clone()).collect();
                if doomed.is_empty() {
                    return Ok(Some(Vec::new()));
                }
                let mut touched = vec![WatchKey::KvTree];
                for k in doomed {
                    self.kv.remove(&k);
                    touched.push(key_watch(&k));
                }
                Ok(Some(touched))
            }
        }
    }
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        base64::engine::general_purpose::STANDARD
            .encode(v)
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str, cas: Option<u64>) -> super::super::Op {
        super::super::Op::Kv(KvOp::Set {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            flags: 0,
            cas,
        })
    }

    #[test]
    fn check_and_set_writes_only_on_the_index_it_names() {
        let mut s = State::default();
        assert!(s.apply(&set("a/b", "1", Some(0)), 1).unwrap().is_some());
        assert_eq!(s.kv_get("a/b").unwrap().modify_index, 1);
        // cas=0 on an existing key fails, as does a stale index.
        assert!(s.apply(&set("a/b", "2", Some(0)), 2).unwrap().is_none());
        assert!(s.apply(&set("a/b", "2", Some(7)), 2).unwrap().is_none());
        assert_eq!(s.kv_get("a/b").unwrap().value, b"1");
        assert!(s.apply(&set("a/b", "2", Some(1)), 2).unwrap().is_some());
        let e = s.kv_get("a/b").unwrap();
        assert_eq!(
            (e.create_index, e.modify_index, &e.value[..]),
            (1, 2, &b"2"[..])
        );
    }

    #[test]
    fn deletes_one_key_with_cas_or_a_whole_prefix() {
        let mut s = State::default();
        for (i, k) in ["a/1", "a/2", "ab", "b"].iter().enumerate() {
            s.apply(&set(k, "x", None), i as u64 + 1).unwrap();
        }
        assert_eq!(
            s.kv_list("a").map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["a/1", "a/2", "ab"]
        );
        let del = |key: &str, cas| {
            super::super::Op::Kv(KvOp::Delete {
                key: key.into(),
                cas,
            })
        };
        assert!(s.apply(&del("b", Some(1)), 5).unwrap().is_none());
        assert!(s.apply(&del("b", Some(4)), 5).unwrap().is_some());
        assert!(s.kv_get("b").is_none());
        let tree = super::super::Op::Kv(KvOp::DeleteTree {
            prefix: "a/".into(),
        });
        s.apply(&tree, 6).unwrap();
        assert_eq!(
            s.kv_list("").map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["ab"]
        );
    }

    #[test]
    fn refuses_an_empty_key_and_a_value_over_the_limit() {
        let mut s = State::default();
        assert!(s.apply(&set("", "x", None), 1).is_err());
        let big = super::super::Op::Kv(KvOp::Set {
            key: "k".into(),
            value: vec![0; MAX_VALUE_BYTES + 1],
            flags: 0,
            cas: None,
        });
        assert!(s.apply(&big, 1).is_err());
    }

    #[test]
    fn an_op_reads_back_from_its_log_shape() {
        let op = super::super::Op::Kv(KvOp::Set {
            key: "lambdamesh/migrations/greeter".into(),
            value: vec![0, 159, 146, 150],
            flags: 42,
            cas: Some(3),
        });
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(
            text,
            r#"{"Kv":{"Set":{"key":"lambdamesh/migrations/greeter","value":"AJ+Slg==","flags":42,"cas":3}}}"#
        );
        let back: super::super::Op = serde_json::from_str(&text).unwrap();
        assert_eq!(back, op);
    }
}
