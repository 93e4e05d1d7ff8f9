//! The etcd backend against a real 3-member etcd cluster on loopback: several replicas share one
//! log; writes through any replica are seen by all, indexes agree and never go backwards, a
//! blocking query on one replica wakes for a write through another, concurrent check-and-set
//! writes through different replicas have exactly one winner per index, a new replica loads a
//! snapshot plus the log, a watch past a compaction resyncs, and an unavailable etcd answers
//! writes with `Unavailable` while reads keep serving, then everything resumes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::time::Duration;

use mesh_model::catalog::{Node, NodeService};
use mesh_model::config_entry::{EntryKey, Kind, decode_value};
use mesh_model::names::ServiceName;
use store::etcd::EncryptionKey;
use store::state::Registration;
use store::{EtcdOptions, Op, Store, StoreError, WatchKey, WatchOutcome};
use test_support::EtcdCluster;

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

fn opts(cluster: &EtcdCluster, key: &EncryptionKey, replica: &str) -> EtcdOptions {
    let mut o = EtcdOptions::new(cluster.endpoints(), key.clone());
    o.replica = replica.into();
    o.prefix = "/test".into();
    o.request_timeout = Duration::from_secs(2);
    o
}

async fn replicas(cluster: &EtcdCluster, key: &EncryptionKey, n: usize) -> Vec<Store> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            Store::open_etcd(opts(cluster, key, &format!("r{i}")))
                .await
                .unwrap(),
        );
    }
    out
}

/// A write retried while etcd elects a leader (a killed member may have been the leader).
async fn write_retry(store: &Store, op: Op) -> store::Committed {
    for _ in 0..20 {
        match store.write(op.clone()).await {
            Err(StoreError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("etcd stayed unavailable");
}

fn web() -> WatchKey {
    WatchKey::Service(ServiceName::default_tuple("web"))
}

/// Waits for a replica to reach an index. The bound is generous (a reconnect backs off up to
/// 2 s, and CI machines are slow); it only decides how long a stuck replica takes to fail.
async fn wait_index(store: &Store, index: u64) {
    for _ in 0..1000 {
        if store.index() >= index {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replica stuck at {} < {index}", store.index());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_writes_indexes_and_wake_each_other() {
    let cluster = EtcdCluster::start(3).unwrap();
    let key = EncryptionKey::generate().unwrap();
    let stores = replicas(&cluster, &key, 3).await;

    // Writes through every replica: one global sequence of indexes, each seen everywhere.
    let mut indexes = Vec::new();
    for i in 0..30 {
        let c = stores[i % 3]
            .write(reg("n1", &format!("web-{i}"), "web"))
            .await
            .unwrap();
        assert!(c.applied);
        indexes.push(c.index);
    }
    let mut sorted = indexes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 30, "every write got its own index");
    let last = *sorted.last().unwrap();
    for s in &stores {
        wait_index(s, last).await;
        assert_eq!(
            s.read(|st| st.instances(&ServiceName::default_tuple("web")).len()),
            30
        );
        assert_eq!(s.read(|st| st.index_of(&[web()])), last);
    }

    // A blocking query on replica 1 wakes for a write through replica 0.
    let at = stores[1].read(|st| st.index_of(&[web()]));
    let waiter = {
        let s = stores[1].clone();
        tokio::spawn(async move {
            s.wait_for_change(&[web()], at, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = stores[0].write(reg("n2", "web-x", "web")).await.unwrap();
    match waiter.await.unwrap() {
        WatchOutcome::Changed(i) => assert_eq!(i, c.index),
        WatchOutcome::TimedOut(i) => panic!("not woken (index {i})"),
    }

    // A new replica loads everything; so does one after a snapshot dropped the log before it.
    let late = Store::open_etcd(opts(&cluster, &key, "late"))
        .await
        .unwrap();
    assert_eq!(late.index(), c.index);
    assert_eq!(
        late.read(|st| st.instances(&ServiceName::default_tuple("web")).len()),
        31
    );

    // The wrong key is refused at start with a clear error.
    let wrong = Store::open_etcd(opts(&cluster, &EncryptionKey::generate().unwrap(), "x")).await;
    match wrong {
        Err(StoreError::Etcd { reason, .. }) => {
            assert!(reason.contains("encryption key"), "{reason}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a store opened with the wrong key"),
    }
    // Nothing readable is in etcd: values are sealed.
    let dump = cluster
        .etcdctl(&["get", "--prefix", "/test/log/", "--print-value-only"])
        .unwrap();
    assert!(dump.status.success());
    assert!(!String::from_utf8_lossy(&dump.stdout).contains("web-x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_through_replicas_has_one_winner_per_index() {
    let cluster = EtcdCluster::start(3).unwrap();
    let key = EncryptionKey::generate().unwrap();
    let stores = replicas(&cluster, &key, 3).await;
    let ekey = EntryKey {
        kind: Kind::ServiceDefaults,
        meta: mesh_model::EntMeta::default(),
        name: "web".into(),
    };
    // Every writer's entry differs (an unchanged entry succeeds without a new index).
    let entry = |writer: &str| {
        decode_value(serde_json::json!({
            "Kind": "service-defaults", "Name": "web", "Protocol": "http",
            "Meta": {"writer": writer}
        }))
        .unwrap()
    };
    let first = stores[0]
        .write(Op::ConfigSet {
            entry: entry("first"),
            cas: Some(0),
        })
        .await
        .unwrap();
    assert!(first.applied);
    // Each round: 6 writers (2 per replica) all CAS on the index they read; exactly one wins.
    let mut modify = first.index;
    for round in 0..10 {
        for s in &stores {
            wait_index(s, modify).await;
            assert_eq!(s.read(|st| st.entry_indexes(&ekey)).unwrap().1, modify);
        }
        let mut tasks = Vec::new();
        for w in 0..6 {
            let s = stores[w % 3].clone();
            let e = entry(&format!("round {round} writer {w}"));
            tasks.push(tokio::spawn(async move {
                s.write(Op::ConfigSet {
                    entry: e,
                    cas: Some(modify),
                })
                .await
                .unwrap()
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let c = t.await.unwrap();
            if c.applied {
                winners.push(c.index);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        modify = winners[0];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_refuses_writes_serves_reads_and_resumes() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let key = EncryptionKey::generate().unwrap();
    let stores = replicas(&cluster, &key, 2).await;
    let c = stores[0].write(reg("n1", "web-1", "web")).await.unwrap();
    wait_index(&stores[1], c.index).await;
    assert!(stores[1].contact().known_leader);

    cluster.kill_all();
    let err = stores[1].write(reg("n1", "web-2", "web")).await;
    match err {
        Err(StoreError::Unavailable { reason }) => assert!(reason.contains("etcd"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Reads keep serving the last state, marked stale.
    assert_eq!(
        stores[1].read(|st| st.instances(&ServiceName::default_tuple("web")).len()),
        1
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let contact = stores[1].contact();
    assert!(!contact.known_leader);
    assert!(contact.last_contact >= Duration::from_secs(1));

    cluster.restart_all().unwrap();
    // Writes resume (the first may still meet a member electing its leader).
    let mut resumed = None;
    for _ in 0..50 {
        match stores[1].write(reg("n1", "web-3", "web")).await {
            Ok(c) => {
                resumed = Some(c);
                break;
            }
            Err(StoreError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let c3 = resumed.expect("writes resumed after etcd came back");
    assert!(c3.index > c.index);
    wait_index(&stores[0], c3.index).await;
    assert!(stores[0].read(|st| {
        st.instances(&ServiceName::default_tuple("web"))
            .iter()
            .any(|i| i.service.id == "web-3")
    }));
    for _ in 0..50 {
        if stores[1].contact().known_leader {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stores[1].contact().known_leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_is_a_clear_error_naming_the_endpoint() {
    let port = test_support::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut o = EtcdOptions::new(vec![endpoint.clone()], EncryptionKey::generate().unwrap());
    o.request_timeout = Duration::from_secs(2);
    match Store::open_etcd(o).await {
        Err(e @ StoreError::Etcd { .. }) => {
            assert!(e.to_string().contains(&endpoint), "{e}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store on nothing"),
    }
}

fn etcd_revision(cluster: &EtcdCluster) -> i64 {
    let out = cluster
        .etcdctl(&["get", "/test/head", "-w", "json"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

/// A TCP relay in front of one etcd member that the test can cut and restore: the replica
/// behind it loses etcd while the member itself stays in the cluster and keeps up, so when the
/// replica comes back its member has certainly applied everything (the compaction included).
/// Killing the member instead races the replica's reconnect against the member's catch-up: a
/// watch opened on a member still replaying the log sees every entry and needs no resync.
struct Relay {
    url: String,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target_url: &str) -> Relay {
        use std::sync::atomic::Ordering;
        let target = target_url.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (open2, links2) = (open.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open2.load(Ordering::SeqCst) {
                    continue; // dropped: the replica sees its connection closed at once
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().push(link.abort_handle());
            }
        });
        Relay {
            url,
            open,
            links,
            accept,
        }
    }

    /// Closes every relayed connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_compaction_resyncs_from_the_snapshot() {
    let cluster = EtcdCluster::start(3).unwrap();
    let key = EncryptionKey::generate().unwrap();
    let mut oa = opts(&cluster, &key, "a");
    oa.snapshot_every = 5;
    let a = Store::open_etcd(oa).await.unwrap();
    // B reaches etcd through a relay only, so cutting the relay cuts B off while A goes on.
    let relay = Relay::start(&cluster.endpoints()[2]).await;
    let mut ob = opts(&cluster, &key, "b");
    ob.endpoints = vec![relay.url.clone()];
    let b = Store::open_etcd(ob).await.unwrap();
    let c = a.write(reg("n1", "web-0", "web")).await.unwrap();
    wait_index(&b, c.index).await;

    relay.cut();
    let mut last = c.index;
    for i in 1..=20 {
        last = write_retry(&a, reg("n1", &format!("web-{i}"), "web"))
            .await
            .index;
    }
    // A leads (B cannot renew its lease) and snapshots the log; then etcd compacts its history.
    let mut snapshotted = false;
    for _ in 0..100 {
        let out = cluster
            .etcdctl(&["get", "/test/snapshot", "--print-value-only"])
            .unwrap();
        if let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && meta["index"].as_u64() == Some(last)
        {
            snapshotted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(snapshotted, "no snapshot at index {last}");
    let logs = cluster
        .etcdctl(&["get", "--prefix", "/test/log/", "--keys-only"])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).trim(),
        "",
        "the log before the snapshot is dropped"
    );
    let rev = etcd_revision(&cluster);
    let out = cluster.etcdctl(&["compact", &rev.to_string()]).unwrap();
    assert!(out.status.success(), "{out:?}");

    // B comes back behind the compaction: it resyncs and sees everything, and follows again.
    assert_eq!(b.resyncs(), 0);
    relay.restore();
    wait_index(&b, last).await;
    assert_eq!(b.resyncs(), 1, "B caught up through a resync");
    assert_eq!(
        b.read(|st| st.instances(&ServiceName::default_tuple("web")).len()),
        21
    );
    let after = a.write(reg("n1", "web-after", "web")).await.unwrap();
    wait_index(&b, after.index).await;
    // A new replica loads the snapshot plus the log after it.
    let fresh = Store::open_etcd(opts(&cluster, &key, "fresh"))
        .await
        .unwrap();
    assert_eq!(fresh.index(), after.index);
    assert_eq!(
        fresh.read(|st| st.instances(&ServiceName::default_tuple("web")).len()),
        22
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_at_a_time_leads_and_another_takes_over() {
    let cluster = EtcdCluster::start(3).unwrap();
    let key = EncryptionKey::generate().unwrap();
    let mut stores = replicas(&cluster, &key, 3).await;
    let leaders = |stores: &[Store]| -> Vec<usize> {
        (0..stores.len())
            .filter(|i| *stores[*i].leadership().borrow())
            .collect()
    };
    let mut led = Vec::new();
    for _ in 0..100 {
        led = leaders(&stores);
        if led.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(led.len(), 1, "leaders: {led:?}");
    // The leader goes away (its lease is no longer renewed): another one takes over.
    let gone = stores.remove(led[0]);
    drop(gone);
    let mut next = Vec::new();
    for _ in 0..150 {
        next = leaders(&stores);
        if next.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(next.len(), 1, "leaders after the first went: {next:?}");
}
