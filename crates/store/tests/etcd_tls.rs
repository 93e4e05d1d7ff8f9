//! The etcd backend over TLS with client certificates and with etcd's own users, as etcd's
//! clients take them (`--cacert`, `--cert`, `--key`, `--user`): a real etcd that listens only on
//! `https://`, requires a client certificate from a test CA and has authentication enabled.
//! The right material works; a missing client certificate, an untrusted server and a wrong
//! password are each refused at open with an error naming the endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_model::catalog::{Node, NodeService};
use mesh_model::names::ServiceName;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use store::etcd::{EncryptionKey, EtcdTls};
use store::state::Registration;
use store::{EtcdOptions, Op, Store, StoreError};

struct Pem {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (CN `root`, which etcd
/// takes as the user when the client authenticates by certificate) it signed, and a second,
/// unrelated CA.
fn material(dir: &Path) -> Pem {
    let make_ca = || {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        (Issuer::new(params, key), pem)
    };
    let (issuer, ca_pem) = make_ca();
    let (_, other_pem) = make_ca();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "etcd");
    let (client_cert, client_key) = leaf(vec![], "root");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pem {
        ca: write("ca.pem", &ca_pem),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
        other_ca: write("other-ca.pem", &other_pem),
    }
}

/// One etcd member serving clients on https only, with client certificates required.
struct TlsEtcd {
    child: Child,
    url: String,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsEtcd {
    fn start(dir: &Path, pem: &Pem) -> TlsEtcd {
        let client = format!("https://127.0.0.1:{}", test_support::free_port());
        let peer = format!("http://127.0.0.1:{}", test_support::free_port());
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()))
            .args(["--name", "tls", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("tls={peer}")])
            .arg("--cert-file")
            .arg(&pem.server_cert)
            .arg("--key-file")
            .arg(&pem.server_key)
            .arg("--trusted-ca-file")
            .arg(&pem.ca)
            .args([
                "--client-cert-auth",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (scripts/setup.sh installs it)");
        let etcd = TlsEtcd { child, url: client };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcd.etcdctl(pem, &["endpoint", "health"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "etcd over TLS did not come up; log in {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    fn etcdctl(&self, pem: &Pem, args: &[&str]) -> std::process::Output {
        Command::new(std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "etcdctl".into()))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url))
            .arg(format!("--cacert={}", pem.ca.display()))
            .arg(format!("--cert={}", pem.client_cert.display()))
            .arg(format!("--key={}", pem.client_key.display()))
            .args(args)
            .output()
            .unwrap()
    }
}

fn opts(etcd: &TlsEtcd, key: &EncryptionKey, tls: EtcdTls) -> EtcdOptions {
    let mut o = EtcdOptions::new(vec![etcd.url.clone()], key.clone());
    o.prefix = "/tls".into();
    o.replica = "r".into();
    o.tls = Some(tls);
    o.request_timeout = Duration::from_secs(3);
    o
}

fn reg(id: &str) -> Op {
    Op::Register(Registration {
        node: Node {
            node: "n1".into(),
            address: "127.0.0.1".into(),
            ..Node::default()
        },
        skip_node_update: false,
        services: vec![NodeService {
            id: id.into(),
            service: "web".into(),
            port: 80,
            ..NodeService::default()
        }],
        checks: vec![],
        replace_checks_of: vec![],
    })
}

async fn refused(o: EtcdOptions) -> String {
    match Store::open_etcd(o).await {
        Err(StoreError::Etcd { endpoints, reason }) => format!("{endpoints}: {reason}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a store opened with the wrong TLS material or credentials"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_and_users_as_etcds_clients_take_them() {
    let dir = tempfile::tempdir().unwrap();
    let pem = material(dir.path());
    let etcd = TlsEtcd::start(dir.path(), &pem);
    let key = EncryptionKey::generate().unwrap();
    let full = || EtcdTls {
        ca_file: Some(pem.ca.clone()),
        cert_file: Some(pem.client_cert.clone()),
        key_file: Some(pem.client_key.clone()),
    };

    // The right CA and client certificate: writes commit and read back.
    {
        let store = Store::open_etcd(opts(&etcd, &key, full())).await.unwrap();
        let c = store.write(reg("web-1")).await.unwrap();
        assert!(c.applied);
        let web = ServiceName::default_tuple("web");
        assert_eq!(store.read(|st| st.instances(&web).len()), 1);
    }

    // No client certificate: etcd refuses the handshake; the error names the endpoint.
    let why = refused(opts(
        &etcd,
        &key,
        EtcdTls {
            cert_file: None,
            key_file: None,
            ..full()
        },
    ))
    .await;
    assert!(why.starts_with(&etcd.url), "{why}");
    // A server the configured CA did not sign: refused too.
    let why = refused(opts(
        &etcd,
        &key,
        EtcdTls {
            ca_file: Some(pem.other_ca.clone()),
            ..full()
        },
    ))
    .await;
    assert!(why.starts_with(&etcd.url), "{why}");

    // etcd's users: with authentication on, a password is checked (`--user user:password`).
    for args in [
        vec!["user", "add", "root:rootpw"],
        vec!["user", "add", "lambdamesh:s3cret"],
        vec!["role", "add", "mesh"],
        vec![
            "role",
            "grant-permission",
            "mesh",
            "--prefix=true",
            "readwrite",
            "/tls",
        ],
        vec!["user", "grant-role", "lambdamesh", "mesh"],
        vec!["auth", "enable"],
    ] {
        let out = etcd.etcdctl(&pem, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let mut right = opts(&etcd, &key, full());
    right.user = Some(("lambdamesh".into(), "s3cret".into()));
    {
        let store = Store::open_etcd(right.clone()).await.unwrap();
        assert_eq!(
            store.read(|st| st.instances(&ServiceName::default_tuple("web")).len()),
            1,
            "the state written before authentication was enabled"
        );
        store.write(reg("web-2")).await.unwrap();
    }
    let mut wrong = right.clone();
    wrong.user = Some(("lambdamesh".into(), "guess".into()));
    let why = refused(wrong).await;
    assert!(why.starts_with(&etcd.url), "{why}");
    assert!(
        why.to_lowercase().contains("auth"),
        "names the authentication: {why}"
    );
}
