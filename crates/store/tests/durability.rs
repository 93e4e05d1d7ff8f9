//! The store through its public API: restart keeps every acknowledged write, a torn log tail is
//! cut off, indexes never go backwards, and blocking waiters wake only for their keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::io::Write;
use std::time::Duration;

use mesh_model::catalog::{Node, NodeService};
use mesh_model::names::ServiceName;
use store::state::Registration;
use store::{Op, Store, StoreOptions, WatchKey, WatchOutcome};

fn reg(node: &str, id: &str, name: &str) -> Op {
    Op::Register(Registration {
        node: Node {
            node: node.into(),
            address: "127.0.0.1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        services: vec![NodeService {
            id: id.into(),
            service: name.into(),
            port: 80,
            ..NodeService::default()
        }],
        checks: vec![],
        replace_checks_of: vec![],
    })
}

fn opts() -> StoreOptions {
    StoreOptions::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_restart_and_index_is_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let store = Store::open(dir.path(), opts()).unwrap();
        let mut last = 0;
        for i in 0..50 {
            let c = store
                .write(reg("n1", &format!("web-{i}"), "web"))
                .await
                .unwrap();
            assert!(c.index > last);
            last = c.index;
        }
        last
    };
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.index(), last);
    let n = store.read(|s| s.instances(&ServiceName::default_tuple("web")).len());
    assert_eq!(n, 50);
    // After a restart, a query never reports an index lower than before.
    let idx = store.read(|s| s.index_of(&[WatchKey::Service(ServiceName::default_tuple("web"))]));
    assert!(idx >= last);
    let c = store.write(reg("n1", "web-new", "web")).await.unwrap();
    assert_eq!(c.index, last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        for i in 0..10 {
            store
                .write(reg("n1", &format!("a-{i}"), "a"))
                .await
                .unwrap();
        }
    }
    // Simulate a crash in the middle of writing a record: a header promising more than is there.
    let log = dir.path().join("wal.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .unwrap();
    drop(f);
    let before = std::fs::metadata(&log).unwrap().len();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.index(), 10);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), before - 10);
    assert_eq!(
        store.read(|s| s.instances(&ServiceName::default_tuple("a")).len()),
        10
    );
    // Writes continue after the repaired tail and survive another restart.
    store.write(reg("n1", "a-after", "a")).await.unwrap();
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(
        store.read(|s| s.instances(&ServiceName::default_tuple("a")).len()),
        11
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_compaction_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let small = StoreOptions {
        snapshot_threshold_bytes: 2_000,
        ..StoreOptions::default()
    };
    {
        let store = Store::open(dir.path(), small.clone()).unwrap();
        for i in 0..100 {
            store
                .write(reg("n1", &format!("s-{i}"), "s"))
                .await
                .unwrap();
        }
    }
    assert!(dir.path().join("snapshot.json").exists());
    assert!(std::fs::metadata(dir.path().join("wal.log")).unwrap().len() < 2_000 + 1_000);
    let store = Store::open(dir.path(), small).unwrap();
    assert_eq!(store.index(), 100);
    assert_eq!(
        store.read(|s| s.instances(&ServiceName::default_tuple("s")).len()),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_wake_only_for_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store.write(reg("n1", "web", "web")).await.unwrap();
    let web = [WatchKey::Service(ServiceName::default_tuple("web"))];
    let db = [WatchKey::Service(ServiceName::default_tuple("db"))];
    let idx = store.read(|s| s.index_of(&web));

    let s2 = store.clone();
    let waiter =
        tokio::spawn(async move { s2.wait_for_change(&web, idx, Duration::from_secs(10)).await });
    // Wait until the waiter is registered, then write an unrelated service: it must keep waiting.
    for _ in 0..100 {
        if store.waiter_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.write(reg("n1", "db", "db")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "an unrelated write woke the web watcher"
    );
    let c = store.write(reg("n2", "web-2", "web")).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, WatchOutcome::Changed(c.index));

    // A wait with nothing changing times out with the same index.
    let idx_db = store.read(|s| s.index_of(&db));
    let out = store
        .wait_for_change(&db, idx_db, Duration::from_millis(50))
        .await;
    assert_eq!(out, WatchOutcome::TimedOut(idx_db));
    assert_eq!(store.waiter_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_ops_are_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let bad = Op::UpdateCheck {
        node: store::state::NodeKey::new("", "n"),
        check_id: "x".into(),
        status: mesh_model::catalog::CheckStatus::Passing,
        output: "".into(),
    };
    assert!(matches!(
        store.write(bad).await,
        Err(store::StoreError::Rejected(_))
    ));
    assert_eq!(store.index(), 0);
    // Nothing was written: no op counted, no commit timed.
    let m = store.commit_metrics();
    assert_eq!(m.applied.get(), 0);
    assert_eq!(m.commit_seconds.snapshot().count, 0);
    drop(store);
    assert_eq!(
        std::fs::metadata(dir.path().join("wal.log")).unwrap().len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_counted_and_timed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    for i in 0..3 {
        store
            .write(reg("n1", &format!("web-{i}"), "web"))
            .await
            .unwrap();
    }
    let m = store.commit_metrics();
    assert_eq!(m.applied.get(), 3);
    // Each write waited for its own batch here (they were sequential): three timed commits.
    let commits = m.commit_seconds.snapshot();
    assert_eq!(commits.count, 3);
    assert!(commits.sum > 0.0 && commits.min > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_entries_cas_and_restart() {
    use mesh_model::config_entry::{EntryKey, Kind, decode_value};
    let dir = tempfile::tempdir().unwrap();
    let entry = decode_value(
        serde_json::json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    )
    .unwrap();
    let key = EntryKey {
        kind: Kind::ServiceDefaults,
        meta: mesh_model::EntMeta::default(),
        name: "web".into(),
    };
    let modify = {
        let store = Store::open(dir.path(), opts()).unwrap();
        // cas=0: create only if absent.
        let c = store
            .write(Op::ConfigSet {
                entry: entry.clone(),
                cas: Some(0),
            })
            .await
            .unwrap();
        assert!(c.applied);
        let again = store
            .write(Op::ConfigSet {
                entry: entry.clone(),
                cas: Some(0),
            })
            .await
            .unwrap();
        assert!(!again.applied, "cas=0 must fail when the entry exists");
        let changed = decode_value(
            serde_json::json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"}),
        )
        .unwrap();
        let stale = store
            .write(Op::ConfigSet {
                entry: changed.clone(),
                cas: Some(c.index + 100),
            })
            .await
            .unwrap();
        assert!(!stale.applied);
        let ok = store
            .write(Op::ConfigSet {
                entry: changed,
                cas: Some(c.index),
            })
            .await
            .unwrap();
        assert!(ok.applied);
        // A splitter on a service whose protocol is grpc is fine; an invalid one is rejected whole.
        let bad = decode_value(serde_json::json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50}, {"Weight": 40, "Service": "b"}]})).unwrap();
        let err = store
            .write(Op::ConfigSet {
                entry: bad,
                cas: None,
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("100"), "{err}");
        store.read(|s| s.entry_indexes(&key)).unwrap().1
    };
    let store = Store::open(dir.path(), opts()).unwrap();
    let (entry, idx) = store.read(|s| {
        (
            s.config_entries().get(&key).map(|e| e.to_json()),
            s.entry_indexes(&key),
        )
    });
    assert_eq!(entry.unwrap()["Protocol"], "grpc");
    assert_eq!(idx.unwrap().1, modify);
    let del = store
        .write(Op::ConfigDelete {
            key: key.clone(),
            cas: Some(1),
        })
        .await
        .unwrap();
    assert!(!del.applied, "delete with a stale cas must not apply");
    store
        .write(Op::ConfigDelete {
            key: key.clone(),
            cas: None,
        })
        .await
        .unwrap();
    assert!(store.read(|s| s.config_entries().get(&key).is_none()));
}
