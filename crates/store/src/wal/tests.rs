//! Data directories written by earlier versions must open and replay to the same state.
//!
//! `tests/fixtures/data-v1/` holds two data directories written by the store as it was before
//! the log carried typed ops (the code of commit `d749690`, by this module's generator as first
//! committed in `624f6c5`): `log-only` (every record in `wal.log`) and `snapshot-and-log` (a
//! snapshot after the first half of the ops, the rest in the log). Each has
//! `expected-state.json`: the state that code held in memory after applying the ops live.
//!
//! The generator is the ignored test `write_fixtures`, kept so the fixtures can be read as a
//! program; it writes into `$STORE_FIXTURES_OUT`, never over the committed files, which are the
//! contract with data directories in the field and must not be regenerated to make a
//! comparison pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::path::{Path, PathBuf};

use mesh_model::acl::{AclPolicy, AclToken, PolicyLink};
use mesh_model::catalog::{CheckStatus, Node, RegisterRequest, ServiceDefinition};
use mesh_model::config_entry::{self, EntryKey, Kind};

use super::{HEADER, LOG_FILE, Record, RecordRef, SNAPSHOT_FILE, Wal};
use crate::StoreOptions;
use crate::state::acl::AclOp;
use crate::state::ca::{CaConfigRecord, CaOp, CaRoot};
use crate::state::{CheckKey, ClusterMeta, NodeKey, Op, Registration, ServiceKey, State};

const EXPECTED: &str = "expected-state.json";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-v1")
}

fn entry(json: &str) -> Op {
    let e = config_entry::decode_json(json.as_bytes()).unwrap();
    e.validate().unwrap();
    Op::ConfigSet {
        entry: e,
        cas: None,
    }
}

fn agent_registration(body: &str, node: &str) -> Registration {
    let def = ServiceDefinition::decode_json(body.as_bytes()).unwrap();
    let mut services = vec![def.to_node_service("dc1").unwrap()];
    let mut checks = def.health_checks(node).unwrap();
    if let Some(sidecar) = def.sidecar(&Default::default()).unwrap() {
        services.push(sidecar.to_node_service("dc1").unwrap());
        checks.extend(sidecar.health_checks(node).unwrap());
    }
    Registration {
        node: Node {
            node: node.into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            ..Node::default()
        },
        skip_node_update: true,
        services,
        checks,
        replace_checks_of: vec![],
    }
}

fn catalog_registration(body: &str) -> Registration {
    let req = RegisterRequest::decode_json(body.as_bytes()).unwrap();
    let meta = mesh_model::EntMeta::new(Some(&req.partition), Some(&req.namespace));
    let mut services = vec![];
    let mut checks = vec![];
    if let Some(def) = &req.service {
        services.push(def.to_node_service("dc1").unwrap());
        checks.extend(def.health_checks(&req.node).unwrap());
    }
    for c in req.check.iter().chain(&req.checks) {
        checks.push(c.to_health_check(&req.node, &meta).unwrap());
    }
    Registration {
        node: Node {
            node: req.node.clone(),
            address: req.address.clone(),
            datacenter: "dc1".into(),
            partition: meta.partition.clone(),
            ..Node::default()
        },
        skip_node_update: false,
        services,
        checks,
        replace_checks_of: vec![],
    }
}

fn root(id: &str) -> CaRoot {
    CaRoot {
        id: id.into(),
        name: format!("root {id}"),
        not_after_unix: 4_000_000_000,
        root_cert: format!("-----BEGIN CERTIFICATE-----\n{id}\n-----END CERTIFICATE-----\n"),
        max_leaf_ttl_secs: 3600,
        ..CaRoot::default()
    }
}

/// Every kind of op the server writes, in an order in which each applies.
fn fixture_ops() -> Vec<Op> {
    vec![
        Op::SetClusterMeta(ClusterMeta {
            cluster_id: "11111111-2222-3333-4444-555555555555".into(),
        }),
        Op::Ca(CaOp::Initialize {
            cluster_id: "11111111-2222-3333-4444-555555555555".into(),
            config: CaConfigRecord::default(),
            root: root("r1"),
        }),
        Op::Ca(CaOp::ReserveSerials { count: 4 }),
        Op::Acl(AclOp::Init {
            anonymous: AclToken {
                accessor_id: "00000000-0000-0000-0000-000000000002".into(),
                secret_id: "anonymous".into(),
                description: "Anonymous Token".into(),
                ..AclToken::default()
            },
            initial_management: None,
        }),
        Op::Acl(AclOp::PolicySet {
            policy: AclPolicy {
                id: "p-1".into(),
                name: "web-write".into(),
                rules: r#"service "web" { policy = "write" }"#.into(),
                ..AclPolicy::default()
            },
            create: true,
        }),
        Op::Acl(AclOp::TokenSet {
            token: AclToken {
                accessor_id: "t-1".into(),
                secret_id: "s-1".into(),
                policies: vec![PolicyLink {
                    id: "p-1".into(),
                    name: "web-write".into(),
                }],
                create_time: "2026-01-01T00:00:00Z".into(),
                ..AclToken::default()
            },
            create: true,
        }),
        Op::Register(agent_registration(
            r#"{"Name":"web","ID":"web-1","Port":8080,"Tags":["v1"],"Meta":{"version":"1"},
                "Check":{"TTL":"30s","Status":"passing"},
                "Connect":{"SidecarService":{}}}"#,
            "n1",
        )),
        Op::Register(agent_registration(
            r#"{"Name":"api","ID":"api-1","Port":9090,
                "Checks":[{"TTL":"10s"},{"TTL":"20s","Status":"warning"}],
                "Connect":{"SidecarService":{"Proxy":{"Upstreams":[
                    {"DestinationName":"web","LocalBindPort":10000}]}}}}"#,
            "n1",
        )),
        Op::Register(catalog_registration(
            r#"{"Node":"n2","Address":"10.0.0.2",
                "Service":{"Kind":"terminating-gateway","Service":"tgw","ID":"tgw-1","Port":8443},
                "Checks":[{"Node":"n2","CheckID":"n2-alive","Name":"alive","Status":"passing"}]}"#,
        )),
        Op::Register(catalog_registration(
            r#"{"Node":"n3","Address":"10.0.0.3",
                "Service":{"Kind":"mesh-gateway","Service":"mgw","ID":"mgw-1","Port":8443}}"#,
        )),
        Op::Register(catalog_registration(
            r#"{"Node":"n4","Address":"10.0.0.4",
                "Service":{"Service":"db","ID":"db-1","Port":5432,"Namespace":"team","Partition":"default",
                    "Check":{"TTL":"1m","Status":"passing"}}}"#,
        )),
        Op::Register(catalog_registration(
            r#"{"Node":"n5","Address":"10.0.0.5",
                "Service":{"Kind":"ingress-gateway","Service":"igw","ID":"igw-1","Port":8080}}"#,
        )),
        Op::Register(catalog_registration(
            r#"{"Node":"n6","Address":"10.0.0.6",
                "Service":{"Kind":"api-gateway","Service":"agw","ID":"agw-1","Port":8080}}"#,
        )),
        // (The v1 fixtures hold this record with an empty partition, as the TTL timer wrote it.)
        Op::UpdateCheck {
            node: NodeKey::new("", "n1"),
            check_id: "service:web-1".into(),
            status: CheckStatus::Critical,
            output: "TTL expired".into(),
        },
        Op::UpdateCheck {
            node: NodeKey::new("default", "n1"),
            check_id: "service:api-1:1".into(),
            status: CheckStatus::Warning,
            output: "slow".into(),
        },
        entry(r#"{"Kind":"proxy-defaults","Name":"global","Config":{"protocol":"http"}}"#),
        entry(r#"{"Kind":"service-defaults","Name":"web","Protocol":"HTTP"}"#),
        entry(
            r#"{"Kind":"service-resolver","Name":"web","DefaultSubset":"v1",
                "Subsets":{"v1":{"Filter":"Service.Meta.version == 1"},"v2":{"Filter":"Service.Meta.version == 2"}}}"#,
        ),
        entry(
            r#"{"Kind":"service-splitter","Name":"web",
                "Splits":[{"Weight":90,"ServiceSubset":"v1"},{"Weight":10,"ServiceSubset":"v2"}]}"#,
        ),
        entry(
            r#"{"Kind":"service-router","Name":"web","Routes":[{"Match":{"HTTP":{"PathPrefix":"/admin",
                "Methods":["get"]}},"Destination":{"Service":"api"}}]}"#,
        ),
        entry(
            r#"{"Kind":"terminating-gateway","Name":"tgw","Services":[{"Name":"db","Namespace":"team"}]}"#,
        ),
        entry(
            r#"{"Kind":"service-intentions","Name":"web","Sources":[{"Name":"*","Action":"deny"},
                {"Name":"api","Action":"allow"}]}"#,
        ),
        entry(
            r#"{"Kind":"service-intentions","Name":"db","Namespace":"team","Sources":[
                {"Name":"web","Namespace":"default","Action":"allow"}]}"#,
        ),
        entry(r#"{"Kind":"mesh","TransparentProxy":{"MeshDestinationsOnly":true}}"#),
        Op::ConfigSet {
            entry: config_entry::decode_json(
                br#"{"Kind":"service-defaults","Name":"api","Protocol":"http"}"#,
            )
            .unwrap(),
            cas: Some(0),
        },
        // (The v1 fixtures hold this entry as raw client JSON, snake_case keys, as a handler
        // before them wrote it; replay decodes it.)
        Op::ConfigSet {
            entry: config_entry::decode_value(serde_json::json!({"kind": "service-defaults",
                "name": "lambda-fn", "protocol": "http", "meta": {"owner": "registrator"}}))
            .unwrap(),
            cas: None,
        },
        Op::ConfigDelete {
            key: EntryKey {
                kind: Kind::ServiceRouter,
                meta: mesh_model::EntMeta::default(),
                name: "web".into(),
            },
            cas: None,
        },
        Op::ConfigDelete {
            key: EntryKey {
                kind: Kind::ServiceIntentions,
                meta: mesh_model::EntMeta::new(None, Some("team")),
                name: "db".into(),
            },
            cas: Some(23),
        },
        Op::DeregisterCheck(CheckKey::new("default", "n2", "default", "n2-alive")),
        Op::DeregisterService(ServiceKey::new(
            "default",
            "n1",
            "default",
            "api-1-sidecar-proxy",
        )),
        Op::DeregisterNode(NodeKey::new("default", "n6")),
        Op::Ca(CaOp::SetConfig {
            config: CaConfigRecord {
                leaf_cert_ttl_secs: 7200,
                ..CaConfigRecord::default()
            },
            rotate: Some(root("r2")),
            now_unix: 1_800_000_000,
        }),
        Op::Ca(CaOp::Prune {
            now_unix: 1_900_000_000,
        }),
        Op::Acl(AclOp::TokenDelete {
            accessor_id: "t-1".into(),
        }),
    ]
}

/// Applies and logs `ops` as the committer does (one record per applied op).
fn apply_and_log(state: &mut State, wal: &mut Wal, ops: &[Op]) {
    for op in ops {
        let index = state.index() + 1;
        let keys = state.apply(op, index).unwrap();
        assert!(keys.is_some(), "fixture op at {index} was a no-op: {op:?}");
        wal.append(index, op).unwrap();
        wal.commit().unwrap();
    }
}

fn state_json(state: &State) -> serde_json::Value {
    serde_json::json!({"index": state.index(), "state": state.to_snapshot()})
}

fn no_fsync() -> StoreOptions {
    StoreOptions {
        unsafe_no_fsync: true,
        ..StoreOptions::default()
    }
}

/// Writes fixtures like the committed ones into `$STORE_FIXTURES_OUT`.
#[test]
#[ignore = "writes fixture data directories; see the module doc"]
fn write_fixtures() {
    let out = PathBuf::from(
        std::env::var_os("STORE_FIXTURES_OUT").expect("STORE_FIXTURES_OUT: where to write"),
    );
    let ops = fixture_ops();
    let half = ops.len() / 2;
    for name in ["log-only", "snapshot-and-log"] {
        let dir = out.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let (mut state, mut wal) = Wal::open(&dir, &no_fsync()).unwrap();
        if name == "snapshot-and-log" {
            apply_and_log(&mut state, &mut wal, &ops[..half]);
            wal.snapshot(&state).unwrap();
            apply_and_log(&mut state, &mut wal, &ops[half..]);
        } else {
            apply_and_log(&mut state, &mut wal, &ops);
        }
        let expected = serde_json::to_string_pretty(&state_json(&state)).unwrap();
        std::fs::write(dir.join(EXPECTED), expected + "\n").unwrap();
    }
}

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for file in [LOG_FILE, SNAPSHOT_FILE] {
        let from = fixtures().join(name).join(file);
        if from.exists() {
            std::fs::copy(&from, tmp.path().join(file)).unwrap();
        }
    }
    tmp
}

fn expected(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name).join(EXPECTED)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn data_dirs_of_format_v1_replay_to_the_state_they_were_written_from() {
    for name in ["log-only", "snapshot-and-log"] {
        let dir = copy_fixture(name);
        let log_len = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        let (state, _wal) = Wal::open(dir.path(), &no_fsync()).unwrap();
        assert_eq!(state_json(&state), expected(name), "{name}");
        // Nothing was cut: every record decoded.
        let after = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert_eq!(after, log_len, "{name}: the log was cut");
    }
}

/// The records of a v1 log, each as (payload JSON, decoded record).
fn v1_records(name: &str) -> Vec<(serde_json::Value, Record)> {
    let bytes = std::fs::read(fixtures().join(name).join(LOG_FILE)).unwrap();
    let mut out = vec![];
    let mut off = 0;
    while off < bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let payload = &bytes[off + HEADER..off + HEADER + len];
        out.push((
            serde_json::from_slice(payload).unwrap(),
            serde_json::from_slice(payload).unwrap(),
        ));
        off += HEADER + len;
    }
    out
}

#[test]
fn ops_are_written_in_the_shape_v1_logs_hold() {
    let records = v1_records("log-only");
    assert_eq!(records.len(), fixture_ops().len());
    for ((payload, record), op) in records.into_iter().zip(fixture_ops()) {
        assert_eq!(
            record.op, op,
            "record {} reads as the op it was written from",
            record.index
        );
        let written = serde_json::to_value(RecordRef {
            index: record.index,
            op: &record.op,
        })
        .unwrap();
        // Two records were written in a form later code canonicalises: a config entry as raw
        // client JSON, and an empty partition (`default`).
        let canonicalised = payload["op"]["ConfigSet"]["entry"]["kind"].is_string()
            || payload["op"]["UpdateCheck"]["partition"] == "";
        if canonicalised {
            let back: Record = serde_json::from_value(written).unwrap();
            assert_eq!(back.op, record.op);
        } else {
            assert_eq!(written, payload);
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_le_bytes().to_vec();
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_whole_record_whose_op_no_longer_reads_is_skipped_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        r#"{"index":1,"op":{"SetClusterMeta":{"cluster_id":"c"}}}"#,
        r#"{"index":2,"op":{"ConfigSet":{"entry":{"Kind":"no-such-kind","Name":"x"},"cas":null}}}"#,
        r#"{"index":3,"op":{"ConfigDelete":{"kind":"nope","partition":"","namespace":"","name":"x","cas":null}}}"#,
        r#"{"index":4,"op":{"UpdateCheck":{"partition":"","node":"n","check_id":"c","status":"maintenance","output":""}}}"#,
        r#"{"index":5,"op":{"SomeFutureOp":{}}}"#,
        r#"{"index":6,"op":{"ConfigSet":{"entry":{"Kind":"service-defaults","Name":"web"},"cas":null}}}"#,
    ];
    let log: Vec<u8> = records.iter().flat_map(|r| frame(r.as_bytes())).collect();
    std::fs::write(dir.path().join(LOG_FILE), &log).unwrap();
    let (state, _wal) = Wal::open(dir.path(), &no_fsync()).unwrap();
    assert_eq!(state.index(), 6);
    assert_eq!(state.meta.cluster_id, "c");
    let web = EntryKey {
        kind: Kind::ServiceDefaults,
        meta: mesh_model::EntMeta::default(),
        name: "web".into(),
    };
    assert_eq!(state.entry_indexes(&web), Some((6, 6)));
    let len = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    assert_eq!(len, log.len() as u64, "nothing was cut");
}

#[test]
fn key_value_writes_replay_from_the_log_and_from_a_snapshot() {
    use crate::state::kv::KvOp;
    let dir = tempfile::tempdir().unwrap();
    let (mut state, mut wal) = Wal::open(dir.path(), &no_fsync()).unwrap();
    let set = |key: &str, value: &[u8], cas| {
        Op::Kv(KvOp::Set {
            key: key.into(),
            value: value.to_vec(),
            flags: 7,
            cas,
        })
    };
    apply_and_log(
        &mut state,
        &mut wal,
        &[
            set(
                "lambdamesh/migrations/greeter",
                b"{\"State\":\"running\"}",
                Some(0),
            ),
            set("lambdamesh/migrations/web", &[0, 255], None),
            set(
                "lambdamesh/migrations/greeter",
                b"{\"State\":\"succeeded\"}",
                Some(1),
            ),
            Op::Kv(KvOp::Delete {
                key: "lambdamesh/migrations/web".into(),
                cas: None,
            }),
        ],
    );
    let want = state_json(&state);
    drop(wal);
    let (replayed, mut wal) = Wal::open(dir.path(), &no_fsync()).unwrap();
    assert_eq!(state_json(&replayed), want);
    let e = replayed.kv_get("lambdamesh/migrations/greeter").unwrap();
    assert_eq!(
        (e.create_index, e.modify_index, e.flags, &e.value[..]),
        (1, 3, 7, &b"{\"State\":\"succeeded\"}"[..])
    );
    assert!(replayed.kv_get("lambdamesh/migrations/web").is_none());
    wal.snapshot(&replayed).unwrap();
    drop(wal);
    let (from_snapshot, _wal) = Wal::open(dir.path(), &no_fsync()).unwrap();
    assert_eq!(state_json(&from_snapshot), want);
}

#[test]
fn the_log_and_the_snapshot_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // A data dir from before: a world-readable log is made private on open.
    std::fs::write(dir.path().join(LOG_FILE), b"").unwrap();
    std::fs::set_permissions(
        dir.path().join(LOG_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (mut state, mut wal) = Wal::open(dir.path(), &no_fsync()).unwrap();
    assert_eq!(mode(LOG_FILE), 0o600);
    apply_and_log(&mut state, &mut wal, &fixture_ops()[..3]);
    wal.snapshot(&state).unwrap();
    assert_eq!(mode(SNAPSHOT_FILE), 0o600);
    assert_eq!(mode(LOG_FILE), 0o600);
}
