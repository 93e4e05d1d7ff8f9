//! The mesh with real Envoy processes: A → sidecar → sidecar → B over mTLS; plaintext and
//! foreign-CA clients rejected at B; intentions enforced at L4 and L7 and changed live;
//! a 50/50 splitter and a router path match, reconfigured without restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::Proc;
use common::mesh::{
    Backend, Envoy, delete, free_port, gateway_enforces_intention, get, get_json, put, wait_until,
};
use serde_json::json;

fn register(http: &str, body: serde_json::Value) {
    put(http, "/v1/agent/service/register", &body);
}

fn curl_with_cert(port: u16, cert: &str, key: &str) -> bool {
    std::process::Command::new("curl")
        .args([
            "-s",
            "-k",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "--cert",
            cert,
            "--key",
            key,
            &format!("https://127.0.0.1:{port}/"),
        ])
        .status()
        .unwrap()
        .success()
}

#[test]
fn sidecar_to_sidecar_mtls_and_intentions() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let b = Backend::start("hello from b");
    let (b_public, a_public, a_upstream) = (free_port(), free_port(), free_port());
    register(
        &http,
        json!({"Name": "b", "Port": b.port, "Connect": {"SidecarService": {"Port": b_public}}}),
    );
    register(
        &http,
        json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": a_public, "Proxy": {"Upstreams": [{"DestinationName": "b", "LocalBindPort": a_upstream}]}}}}),
    );
    let eb = Envoy::start(&http, &server.grpc, &["-sidecar-for", "b"]);
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "a"]);
    let url = format!("http://127.0.0.1:{a_upstream}/hello");
    wait_until(30, "a → b through both sidecars", || {
        get(&url).1 == "hello from b /hello"
    });
    assert!(eb.stat("listener_manager.lds.update_success") >= 1);
    assert_eq!(eb.stat("listener_manager.lds.update_rejected"), 0);

    // Plaintext straight to B's public listener: no HTTP answer.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", b_public)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("hello"),
        "plaintext reached the service"
    );

    // A client certificate from our CA works; the same identity from another CA is refused.
    let dir = tempfile::tempdir().unwrap();
    let leaf = get_json(&http, "/v1/agent/connect/ca/leaf/a");
    let (cert, key) = (dir.path().join("a.pem"), dir.path().join("a.key"));
    std::fs::write(&cert, leaf["CertPEM"].as_str().unwrap()).unwrap();
    std::fs::write(&key, leaf["PrivateKeyPEM"].as_str().unwrap()).unwrap();
    assert!(
        curl_with_cert(b_public, cert.to_str().unwrap(), key.to_str().unwrap()),
        "our CA's leaf must be accepted"
    );
    let uri = leaf["ServiceURI"].as_str().unwrap();
    let (fcert, fkey) = (dir.path().join("f.pem"), dir.path().join("f.key"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=a",
        ])
        .args([
            "-addext",
            &format!("subjectAltName=URI:{uri}"),
            "-keyout",
            fkey.to_str().unwrap(),
            "-out",
            fcert.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        !curl_with_cert(b_public, fcert.to_str().unwrap(), fkey.to_str().unwrap()),
        "a certificate from another CA must be refused"
    );

    // L4 deny closes the connection; removing it restores traffic without restarts.
    put(
        &http,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &json!({"Action": "deny"}),
    );
    wait_until(20, "L4 deny", || get(&url).0 == 0);
    delete(&http, "/v1/connect/intentions/exact?source=a&destination=b");
    wait_until(20, "allow again", || get(&url).0 == 200);

    // L7: the same deny is a 403 once b speaks HTTP.
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "b", "Protocol": "http"}),
    );
    put(
        &http,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &json!({"Action": "deny"}),
    );
    wait_until(20, "L7 deny = 403", || get(&url).0 == 403);
    // Precedence: a→b (9) allow beats *→b (8) deny.
    put(
        &http,
        "/v1/connect/intentions/exact?source=*&destination=b",
        &json!({"Action": "deny"}),
    );
    put(
        &http,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &json!({"Action": "allow"}),
    );
    wait_until(20, "exact allow beats wildcard deny", || get(&url).0 == 200);
    // L7 permissions: only GET /hello* allowed. A request no permission matches falls to the
    // default policy (allow here, ACLs being off), as in Consul, so the rest is denied by a
    // second permission; the first match is terminal. (This step used to expect a 403 for
    // /other from an allow-only list: it passed only because a→b connections opened while the
    // earlier deny was in force kept that decision while they drained, the bug of issue 14.)
    put(
        &http,
        "/v1/connect/intentions/exact?source=a&destination=b",
        &json!({"Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/hello", "Methods": ["GET"]}},
            {"Action": "deny", "HTTP": {"PathPrefix": "/"}}
        ]}),
    );
    wait_until(20, "L7 permission allows /hello", || {
        get(&url).0 == 200 && get(&format!("http://127.0.0.1:{a_upstream}/other")).0 == 403
    });
    // SIGTERM stops the server even with Envoys connected (their streams are ended for them).
    let mut server = server;
    assert!(
        server.terminate(),
        "the server did not shut down gracefully with proxies connected"
    );
}

#[test]
fn splitter_router_and_live_changes() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let (v1, v2) = (Backend::start("v1"), Backend::start("v2"));
    let up = free_port();
    for (id, port, version) in [("web-1", v1.port, "v1"), ("web-2", v2.port, "v2")] {
        register(
            &http,
            json!({"Name": "web", "ID": id, "Port": port, "Meta": {"version": version}, "Connect": {"SidecarService": {"Port": free_port()}}}),
        );
    }
    register(
        &http,
        json!({"Name": "client", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "web", "LocalBindPort": up}]}}}}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-resolver", "Name": "web", "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}, "v2": {"Filter": "Service.Meta.version == v2"}}}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}]}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "/v2only"}}, "Destination": {"ServiceSubset": "v2"}}]}),
    );
    let _e1 = Envoy::start(&http, &server.grpc, &["-sidecar-for", "web-1"]);
    let _e2 = Envoy::start(&http, &server.grpc, &["-sidecar-for", "web-2"]);
    let _ec = Envoy::start(&http, &server.grpc, &["-sidecar-for", "client", "-sotw"]);
    let url = format!("http://127.0.0.1:{up}/x");
    wait_until(30, "both subsets reachable", || {
        let seen: std::collections::BTreeSet<String> = (0..20).map(|_| get(&url).1).collect();
        seen.contains("v1 /x") && seen.contains("v2 /x")
    });
    let mut v1_count = 0;
    for _ in 0..1000 {
        let (status, body) = get(&url);
        assert_eq!(status, 200, "{body}");
        if body.starts_with("v1") {
            v1_count += 1;
        }
    }
    assert!(
        (450..=550).contains(&v1_count),
        "50/50 split gave {v1_count}/1000 to v1"
    );
    // The router's path match sends /v2only* to v2 only.
    for _ in 0..20 {
        assert_eq!(
            get(&format!("http://127.0.0.1:{up}/v2only/a")).1,
            "v2 /v2only/a"
        );
    }
    // A live change: everything to v1, no restart.
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100, "ServiceSubset": "v1"}]}),
    );
    wait_until(20, "100% v1", || (0..20).all(|_| get(&url).1 == "v1 /x"));
}

#[test]
fn terminating_gateway_enforces_intentions() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let ext = Backend::start("external");
    put(
        &http,
        "/v1/catalog/register",
        &json!({"Node": "ext-node", "Address": "127.0.0.1", "Service": {"Service": "ext", "Port": ext.port}}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "ext", "Protocol": "http"}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "ext"}]}),
    );
    let up = free_port();
    register(
        &http,
        json!({"Name": "a", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "ext", "LocalBindPort": up}]}}}}),
    );
    let gw = Envoy::start(
        &http,
        &server.grpc,
        &[
            "-gateway",
            "terminating",
            "-register",
            "-service",
            "tgw",
            "-address",
            &format!("127.0.0.1:{}", free_port()),
        ],
    );
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "a"]);
    // health/connect for a linked service answers with the gateway, as Consul does.
    wait_until(20, "gateway registered", || {
        get_json(&http, "/v1/health/connect/ext")
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let url = format!("http://127.0.0.1:{up}/x");
    wait_until(30, "a → gateway → external service", || {
        get(&url).1 == "external /x"
    });
    gateway_enforces_intention(&http, &gw, "a", "ext", &url);
}

#[test]
fn mesh_gateway_routes_mtls_by_sni() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let b = Backend::start("hello from b");
    register(
        &http,
        json!({"Name": "b", "Port": b.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    let _eb = Envoy::start(&http, &server.grpc, &["-sidecar-for", "b"]);
    let gw_port = free_port();
    let _gw = Envoy::start(
        &http,
        &server.grpc,
        &[
            "-gateway",
            "mesh",
            "-register",
            "-service",
            "mgw",
            "-address",
            &format!("127.0.0.1:{gw_port}"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let leaf = get_json(&http, "/v1/agent/connect/ca/leaf/a");
    let roots = get_json(&http, "/v1/agent/connect/ca/roots");
    let td = roots["TrustDomain"].as_str().unwrap().to_owned();
    let (cert, key) = (dir.path().join("a.pem"), dir.path().join("a.key"));
    std::fs::write(&cert, leaf["CertPEM"].as_str().unwrap()).unwrap();
    std::fs::write(&key, leaf["PrivateKeyPEM"].as_str().unwrap()).unwrap();
    let sni = format!("b.default.dc1.internal.{td}");
    let call = || {
        let o = std::process::Command::new("curl")
            .args([
                "-s",
                "-k",
                "-m",
                "5",
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ])
            .args([
                "--resolve",
                &format!("{sni}:{gw_port}:127.0.0.1"),
                &format!("https://{sni}:{gw_port}/via-gateway"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    wait_until(30, "mTLS through the mesh gateway by SNI", || {
        call() == "hello from b /via-gateway"
    });
    // Without a client certificate the sidecar behind the gateway refuses the session.
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-k",
            "-m",
            "5",
            "--resolve",
            &format!("{sni}:{gw_port}:127.0.0.1"),
            &format!("https://{sni}:{gw_port}/"),
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("hello"),
        "no client certificate must be refused"
    );
}

#[test]
fn resolver_failover_to_another_service() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    let (primary, backup) = (Backend::start("primary"), Backend::start("backup"));
    register(
        &http,
        json!({"Name": "db", "Port": primary.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    register(
        &http,
        json!({"Name": "db-backup", "Port": backup.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    let up = free_port();
    register(
        &http,
        json!({"Name": "app", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": up}]}}}}),
    );
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "1s", "Failover": {"*": {"Service": "db-backup"}}}),
    );
    let _e1 = Envoy::start(&http, &server.grpc, &["-sidecar-for", "db"]);
    let _e2 = Envoy::start(&http, &server.grpc, &["-sidecar-for", "db-backup"]);
    let _ea = Envoy::start(&http, &server.grpc, &["-sidecar-for", "app"]);
    let url = format!("http://127.0.0.1:{up}/q");
    wait_until(30, "the primary answers", || get(&url).1 == "primary /q");
    // The primary's only instance goes away: traffic fails over to db-backup, over mTLS with
    // db-backup's own identity.
    let r = ureq::put(&format!("http://{http}/v1/agent/service/deregister/db"))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until(30, "failover to db-backup", || get(&url).1 == "backup /q");
}
