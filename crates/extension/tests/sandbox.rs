//! The extension binary in real sandboxes of the local Lambda platform, next to a Python
//! function (awslambdaric) that calls `127.0.0.1:<port>`: configuration and material problems
//! fail INIT through `init/error`; calls go over mutual TLS with the function's identity and the
//! upstream's SNI, and resume their TLS session; the peer's identity is checked; failures stay
//! with their connection; refresh keeps the last good material and hands new certificates to
//! new connections; a taken port is retried; SHUTDOWN is handled.
//!
//! The mesh side here is a rustls server with leaves of a test CA; `crates/cli/tests/extension.rs`
//! runs the same extension against real Envoy mesh gateways and sidecars.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

#[path = "sandbox/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Platform, Switch, TlsPeer, parameter, wait_until};
use lambdamesh_extension::testing::Mesh;
use serde_json::{Value, json};

const LONG_IDLE: Duration = Duration::from_secs(600);

fn env(
    gateway: u16,
    upstreams: &str,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("CONSUL_MESH_GATEWAY_URI", format!("127.0.0.1:{gateway}")),
        ("CONSUL_EXTENSION_DATA_PREFIX", "/lambdamesh".to_owned()),
        ("CONSUL_SERVICE_UPSTREAMS", upstreams.to_owned()),
    ];
    v.extend(extra.iter().cloned());
    v
}

fn body(answer: &Value) -> &str {
    answer["body"].as_str().unwrap_or_default()
}

#[test]
fn bad_configuration_and_missing_material_fail_init_with_every_problem_named() {
    let p = Platform::start(LONG_IDLE);
    let layer = p.publish_extension_layer();
    p.create_caller(
        "badconf",
        &layer,
        &[
            ("CONSUL_EXTENSION_DATA_PREFIX", "lambdamesh".to_owned()),
            ("CONSUL_SERVICE_UPSTREAMS", "web:x,a:7001,b:7001".to_owned()),
            ("CONSUL_REFRESH_FREQUENCY", "soon".to_owned()),
        ],
    );
    let (error, payload) = p.invoke("badconf", &json!({}));
    assert_eq!(error.as_deref(), Some("Unhandled"), "{payload}");
    assert_eq!(payload["errorType"], "Extension.ConfigInvalid", "{payload}");
    let message = payload["errorMessage"].as_str().unwrap();
    for problem in [
        "CONSUL_MESH_GATEWAY_URI is not set",
        r#"CONSUL_EXTENSION_DATA_PREFIX="lambdamesh": must start with '/'"#,
        r#"upstream "web:x": invalid port "x""#,
        r#"upstreams "a:7001" and "b:7001" both use port 7001"#,
        r#"CONSUL_REFRESH_FREQUENCY="soon""#,
    ] {
        assert!(message.contains(problem), "{problem:?} not in {message}");
    }
    assert!(message.starts_with("lambdamesh-extension: "), "{message}");

    // A good configuration without material: INIT fails naming the parameter.
    let port = test_support::free_port();
    p.create_caller("nomaterial", &layer, &env(1, &format!("web:{port}"), &[]));
    let (error, payload) = p.invoke("nomaterial", &json!({}));
    assert_eq!(error.as_deref(), Some("Unhandled"), "{payload}");
    assert_eq!(payload["errorType"], "Extension.MaterialUnavailable");
    assert!(
        payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("parameter /lambdamesh/default/default/nomaterial not found"),
        "{payload}"
    );
    // Material that is not the registrator's JSON.
    p.put_parameter(
        &parameter("nomaterial"),
        r#"{"privateKeyPEM":"k","certPEM":1,"rootCertPEM":"r","trustDomain":"t"}"#,
    );
    let (_, payload) = p.invoke("nomaterial", &json!({}));
    assert_eq!(payload["errorType"], "Extension.MaterialUnavailable");
    assert!(
        payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("certPEM is not a string"),
        "{payload}"
    );
}

#[test]
fn calls_go_over_mtls_as_the_function_and_the_peer_is_checked() {
    let p = Platform::start(LONG_IDLE);
    let layer = p.publish_extension_layer();
    let mesh = Mesh::new();
    let me = mesh.leaf("caller");
    // The Go registrator's exact JSON (Consul's SEC1 key).
    p.put_parameter(&parameter("caller"), &mesh.go_json(&me));
    let web = mesh.leaf("web");
    let peer = TlsPeer::start(&mesh, &web);
    let port = test_support::free_port();
    p.create_caller(
        "caller",
        &layer,
        &env(peer.port, &format!("web:{port}"), &[]),
    );
    let url = format!("http://127.0.0.1:{port}/hello");

    let answer = p.call("caller", &url);
    let sni = format!("web.default.dc1.internal.{}", mesh.trust_domain);
    assert_eq!(
        body(&answer),
        format!("peer {sni} {}", me.spiffe_id),
        "{answer}"
    );
    p.call("caller", &url);
    {
        let seen = peer.seen.lock();
        assert_eq!(seen.len(), 2);
        assert!(!seen[0].resumed, "the first connection is a full handshake");
        assert!(seen[1].resumed, "the second resumes the TLS session");
    }
    // Only loopback's 127.0.0.1 is listened on (the reference bound every interface).
    assert!(std::net::TcpStream::connect(("127.0.0.2", port)).is_err());

    // Another service's certificate, from the same CA: refused, and the extension stays up.
    peer.present(&mesh, &mesh.leaf("db"));
    let answer = p.call("caller", &url);
    assert_eq!(answer["status"], 0, "{answer}");
    let log = p.log("caller");
    assert!(
        log.contains("connection refused: the mesh peer failed verification")
            && log.contains(&format!("expected {}", web.spiffe_id))
            && log.contains("/svc/db"),
        "{log}"
    );
    peer.present(&mesh, &web);
    assert_eq!(p.call("caller", &url)["status"], 200);

    // A gateway that refuses connections: that connection is closed, the reason logged, the
    // extension stays up.
    let closed = test_support::free_port();
    let port2 = test_support::free_port();
    p.put_parameter(&parameter("refused"), &mesh.our_json(&mesh.leaf("refused")));
    p.create_caller(
        "refused",
        &layer,
        &env(closed, &format!("web:{port2}"), &[]),
    );
    let url2 = format!("http://127.0.0.1:{port2}/");
    for _ in 0..2 {
        assert_eq!(p.call("refused", &url2)["status"], 0);
    }
    let log = p.log("refused");
    assert!(
        log.contains("connection closed: cannot reach the upstream")
            && log.contains("cannot connect to the gateway"),
        "{log}"
    );
}

#[test]
fn refresh_keeps_the_last_good_material_and_new_connections_get_new_certificates() {
    let p = Platform::start(LONG_IDLE);
    let layer = p.publish_extension_layer();
    let mesh = Mesh::new();
    let first = mesh.leaf("fresh");
    p.put_parameter(&parameter("fresh"), &mesh.our_json(&first));
    let peer = TlsPeer::start(&mesh, &mesh.leaf("web"));
    let port = test_support::free_port();
    // Parameter Store is reached through a switch, so it can go down alone.
    let ssm = Switch::start(p.endpoint.trim_start_matches("http://"));
    p.create_caller(
        "fresh",
        &layer,
        &env(
            peer.port,
            &format!("web:{port}"),
            &[
                ("CONSUL_REFRESH_FREQUENCY", "1s".to_owned()),
                (
                    "AWS_ENDPOINT_URL_SSM",
                    format!("http://127.0.0.1:{}", ssm.port),
                ),
            ],
        ),
    );
    let url = format!("http://127.0.0.1:{port}/");
    let hash = |p: &Platform| {
        assert_eq!(p.call("fresh", &url)["status"], 200);
        peer.seen.lock().last().unwrap().client_sha256.clone()
    };
    let sha = |leaf: &lambdamesh_extension::testing::Leaf| {
        lambdamesh_extension::material::Material::from_data(
            mesh.data(leaf),
            &rustls::crypto::ring::default_provider(),
        )
        .unwrap()
        .leaf_sha256
    };
    assert_eq!(hash(&p), sha(&first));

    // Parameter Store down for several refresh intervals: every call still works.
    ssm.set(false);
    let second = mesh.leaf("fresh");
    p.put_parameter(&parameter("fresh"), &mesh.our_json(&second));
    // The sandbox is frozen between invokes (no timer runs): keep calling, and every call
    // works on the last good material while the re-reads fail.
    wait_until(30, "two failed re-reads logged", || {
        assert_eq!(hash(&p), sha(&first));
        p.log("fresh")
            .matches("cannot re-read the mTLS material; keeping the last good")
            .count()
            >= 2
    });
    // Back up: new connections present the new certificate.
    ssm.set(true);
    wait_until(30, "the new certificate in use", || {
        hash(&p) == sha(&second)
    });
    // Unusable material (a key that is not the certificate's) is not taken.
    let mut broken = mesh.data(&mesh.leaf("fresh"));
    broken.private_key_pem = mesh.leaf("other").key_pem;
    p.put_parameter(
        &parameter("fresh"),
        &lambdamesh_extension::testing::our_json(
            &broken.private_key_pem,
            &broken.cert_pem,
            &broken.root_cert_pem,
            &broken.trust_domain,
        ),
    );
    wait_until(30, "the unusable material logged", || {
        assert_eq!(hash(&p), sha(&second));
        p.log("fresh")
            .contains("new mTLS material is unusable; keeping the last good")
    });
}

#[test]
fn a_taken_port_is_retried_and_shutdown_is_handled() {
    let p = Platform::start(Duration::from_secs(2));
    let layer = p.publish_extension_layer();
    let mesh = Mesh::new();
    p.put_parameter(&parameter("busy"), &mesh.our_json(&mesh.leaf("busy")));
    let peer = TlsPeer::start(&mesh, &mesh.leaf("web"));
    let port = test_support::free_port();
    let other = test_support::free_port();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    p.create_caller(
        "busy",
        &layer,
        &env(peer.port, &format!("web:{port},web:{other}"), &[]),
    );
    // The other upstream serves while the taken port is retried.
    let answer = p.call("busy", &format!("http://127.0.0.1:{other}/"));
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(
        p.log("busy")
            .contains("cannot listen; retrying every second"),
        "{}",
        p.log("busy")
    );
    drop(squatter);
    wait_until(30, "the freed port served", || {
        p.call("busy", &format!("http://127.0.0.1:{port}/"))["status"] == 200
    });
    // Idle for the platform's timeout: SHUTDOWN, the listeners close, the extension exits.
    wait_until(30, "SHUTDOWN handled", || {
        p.log("busy").contains("shutting down")
    });
    wait_until(30, "the listener closed", || {
        std::net::TcpStream::connect(("127.0.0.1", other)).is_err()
    });
    assert_eq!(peer.open.load(std::sync::atomic::Ordering::SeqCst), 0);
}
