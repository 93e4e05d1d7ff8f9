//! The registrator's Consul client over HTTPS (`CONSUL_HTTP_ADDR=https://…` with
//! `CONSUL_CACERT`): a real Envoy terminates TLS, with a certificate for 127.0.0.1 from a test
//! CA, in front of a real server; the client trusts that CA and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use registrator::{
    consul::{Consul, ConsulError, ConsulSetupError, HttpConsul},
    tags::{MANAGED_TAG, Scope},
};
use serde_json::json;

/// A CA and a server certificate it signed for `127.0.0.1`, as PEM: (CA, certificate, key).
fn tls_material() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::new(ca, ca_key))
        .unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// Envoy terminating TLS on `port` and passing the bytes on to `upstream`; killed on drop.
struct TlsProxy {
    child: Child,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsProxy {
    fn start(port: u16, upstream: SocketAddr, cert: &str, key: &str, log: &Path) -> TlsProxy {
        let config = json!({
            "static_resources": {
                "listeners": [{
                    "name": "https",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "common_tls_context": {"tls_certificates": [{
                                    "certificate_chain": {"inline_string": cert},
                                    "private_key": {"inline_string": key},
                                }]},
                            },
                        },
                        "filters": [{
                            "name": "envoy.filters.network.tcp_proxy",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                "stat_prefix": "https",
                                "cluster": "consul",
                            },
                        }],
                    }],
                }],
                "clusters": [{
                    "name": "consul",
                    "type": "STATIC",
                    "load_assignment": {"cluster_name": "consul", "endpoints": [{"lb_endpoints": [{
                        "endpoint": {"address": {"socket_address": {
                            "address": upstream.ip().to_string(),
                            "port_value": upstream.port(),
                        }}},
                    }]}]},
                }],
            },
        });
        let envoy = test_support::envoy_path().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(envoy)
            .args(["--disable-hot-restart", "-l", "warning", "--log-path"])
            .arg(log)
            .arg("--config-yaml")
            .arg(config.to_string())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut proxy = TlsProxy { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "envoy exited ({status}): {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "envoy did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }
}

struct Setup {
    https: String,
    http: String,
    ca_file: std::path::PathBuf,
    dir: tempfile::TempDir,
    // Dropped first: the proxy, then the server, then the data dir.
    _proxy: TlsProxy,
    _server: server::Background,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = server::Background::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        server::ServerConfig::for_tests(&dir.path().join("server")),
    )
    .unwrap();
    let (ca, cert, key) = tls_material();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let port = test_support::free_port();
    let proxy = TlsProxy::start(
        port,
        server.http_addr(),
        &cert,
        &key,
        &dir.path().join("envoy.log"),
    );
    Setup {
        https: format!("https://127.0.0.1:{port}"),
        http: format!("http://{}", server.http_addr()),
        ca_file,
        _proxy: proxy,
        _server: server,
        dir,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn scope() -> Scope {
    Scope {
        dc: String::new(),
        partition: String::new(),
        namespace: String::new(),
    }
}

#[test]
fn writes_and_reads_go_over_https_with_consul_cacert() {
    let s = setup();
    let ca_file = s.ca_file.to_str().unwrap();
    let consul = HttpConsul::new(&s.https, None, Some(ca_file)).unwrap();
    runtime().block_on(async {
        assert_eq!(consul.local_datacenter().await.unwrap(), "dc1");
        consul
            .register(
                scope(),
                json!({"Node": "lambdas", "Address": "lambdas.example",
                    "Service": {"ID": "auth", "Service": "auth", "Tags": [MANAGED_TAG]}}),
            )
            .await
            .unwrap();
        let over_tls = consul
            .node_services(scope(), "lambdas".into())
            .await
            .unwrap();
        assert!(over_tls.owned.contains("auth"), "{over_tls:?}");
        // The write really reached the server: read it back without TLS.
        let plain = HttpConsul::new(&s.http, None, None).unwrap();
        let direct = plain
            .node_services(scope(), "lambdas".into())
            .await
            .unwrap();
        assert_eq!(direct, over_tls);
    });
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let s = setup();
    let (other_ca, _, _) = tls_material();
    let other = s.dir.path().join("other-ca.pem");
    std::fs::write(&other, other_ca).unwrap();
    runtime().block_on(async {
        for cacert in [None, Some(other.to_str().unwrap())] {
            let consul = HttpConsul::new(&s.https, None, cacert).unwrap();
            let err = consul.local_datacenter().await.unwrap_err();
            let text = err.to_string();
            // Configuration, not a passing fault: never retried, and the CA setting is named.
            assert!(
                matches!(err, ConsulError::Failed(_))
                    && !err.retryable()
                    && text.contains(&s.https),
                "CONSUL_CACERT {cacert:?}: {text}"
            );
            assert!(
                // UnknownIssuer, or BadSignature when the other CA has the same (empty) name.
                text.contains("certificate is not accepted") && text.contains("CONSUL_CACERT"),
                "the error should say the certificate is not trusted and name the setting: {text}"
            );
            if let Some(path) = cacert {
                assert!(text.contains(path), "the CA file in use is named: {text}");
            }
            let at_start = consul.check_trust().await.unwrap_err();
            assert!(
                matches!(&at_start, ConsulError::Failed(m) if m.contains("not accepted") && m.contains("CONSUL_CACERT")),
                "{at_start}"
            );
        }
        let trusted = HttpConsul::new(&s.https, None, Some(s.ca_file.to_str().unwrap())).unwrap();
        assert_eq!(trusted.check_trust().await, Ok(()));
    });
}

/// The registrator stops at start-up when Consul's certificate is not trusted, naming
/// CONSUL_CACERT, instead of retrying every call as if the server were down.
#[test]
fn an_untrusted_consul_stops_the_registrator_at_setup() {
    let s = setup();
    let (other_ca, _, _) = tls_material();
    let other = s.dir.path().join("other-ca.pem");
    std::fs::write(&other, other_ca).unwrap();
    let vars: std::collections::BTreeMap<String, String> = [
        ("CONSUL_HTTP_ADDR", s.https.as_str()),
        ("CONSUL_CACERT", other.to_str().unwrap()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let err = runtime()
        .block_on(registrator::setup::engine(&vars))
        .err()
        .expect("setup must fail");
    let text = err.to_string();
    assert!(
        matches!(err, registrator::setup::SetupError::ConsulTrust(_))
            && text.contains("CONSUL_CACERT")
            && text.contains(other.to_str().unwrap()),
        "{text}"
    );
    // With the right CA the same set-up starts.
    let mut good = vars.clone();
    good.insert("CONSUL_CACERT".into(), s.ca_file.to_str().unwrap().into());
    assert!(
        runtime()
            .block_on(registrator::setup::engine(&good))
            .is_ok()
    );
}

#[test]
fn an_unusable_consul_cacert_is_reported_at_setup() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = HttpConsul::new("https://127.0.0.1:1", None, Some(missing.to_str().unwrap()))
        .err()
        .unwrap();
    assert!(matches!(err, ConsulSetupError::CaCert { .. }), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = HttpConsul::new("https://127.0.0.1:1", None, Some(junk.to_str().unwrap()))
        .err()
        .unwrap();
    assert!(matches!(err, ConsulSetupError::NoCert(_)), "{err}");
}
