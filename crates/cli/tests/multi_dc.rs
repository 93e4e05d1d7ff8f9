//! Two datacenters on loopback with the real binary (`docs/multi-dc.md`): dc1 the primary, dc2 a
//! secondary joined through the inter-server protocol. dc2 takes dc1's trust domain and roots,
//! its leaves chain to dc1's root through an intermediate dc1 signed, a root rotation in dc1
//! reaches dc2, and dc2 keeps serving while dc1 is gone. The secondary dials `primary_gateways`
//! with the SNI `server.dc1.consul`: dc1's server port itself (the direct path), or a real Envoy
//! mesh gateway of dc1 registered with `-expose-servers`, which routes that SNI to dc1's server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Proc;
use common::dcs::{mesh_gateway, primary, primary_with, roots_file, secondary, secondary_with};
use common::mesh::{free_port, get, get_json, put, wait_until};
use serde_json::{Value, json};

/// The PEM blocks of a text, in order.
fn pem_blocks(text: &str) -> Vec<String> {
    text.split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(|b| format!("{}\n", b.trim()))
        .collect()
}

fn active_root(roots: &Value) -> Value {
    roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Active"] == true)
        .cloned()
        .unwrap()
}

/// `openssl verify` of a leaf PEM (leaf, then its intermediates) against `root_pem` only.
fn verify_chain(dir: &Path, root_pem: &str, cert_pem: &str) -> (bool, String) {
    let blocks = pem_blocks(cert_pem);
    std::fs::write(dir.join("v-root.pem"), root_pem).unwrap();
    std::fs::write(dir.join("v-leaf.pem"), &blocks[0]).unwrap();
    std::fs::write(dir.join("v-chain.pem"), blocks[1..].concat()).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(dir.join("v-root.pem"));
    if blocks.len() > 1 {
        cmd.arg("-untrusted").arg(dir.join("v-chain.pem"));
    }
    let out = cmd.arg(dir.join("v-leaf.pem")).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_secondary_joins_the_primary_trust_domain_and_follows_its_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dc1_port = free_port();
    let dc1 = primary(d, dc1_port);
    let ca_file = roots_file(d, &dc1.http);
    let dc2 = secondary(d, "dc2", &ca_file, &[format!("127.0.0.1:{dc1_port}")]);

    let roots1 = get_json(&dc1.http, "/v1/agent/connect/ca/roots");
    wait_until(30, "dc2 to hold dc1's roots and an intermediate", || {
        let r = get_json(&dc2.http, "/v1/agent/connect/ca/roots");
        r["ActiveRootID"] == roots1["ActiveRootID"]
            && active_root(&r)["IntermediateCerts"].is_array()
    });
    let roots2 = get_json(&dc2.http, "/v1/agent/connect/ca/roots");
    assert_eq!(
        roots2["TrustDomain"], roots1["TrustDomain"],
        "one trust domain"
    );
    // Each lists both, its own first (Consul's order with no round trips measured).
    wait_until(30, "dc1 to list dc2", || {
        get_json(&dc1.http, "/v1/catalog/datacenters") == json!(["dc1", "dc2"])
    });
    assert_eq!(
        get_json(&dc2.http, "/v1/catalog/datacenters"),
        json!(["dc2", "dc1"])
    );
    assert_eq!(
        active_root(&roots2)["RootCert"],
        active_root(&roots1)["RootCert"],
        "dc2 shows dc1's root"
    );
    assert!(active_root(&roots1)["IntermediateCerts"].is_null());

    // A dc2 leaf: dc2's SPIFFE ID, verified by dc1's root through the intermediate it carries,
    // and not without it.
    let leaf = get_json(&dc2.http, "/v1/agent/connect/ca/leaf/web");
    let td = roots1["TrustDomain"].as_str().unwrap();
    assert_eq!(
        leaf["ServiceURI"],
        format!("spiffe://{td}/ns/default/dc/dc2/svc/web")
    );
    let cert = leaf["CertPEM"].as_str().unwrap();
    assert_eq!(pem_blocks(cert).len(), 2, "leaf + dc2's intermediate");
    let root1_pem = active_root(&roots1)["RootCert"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, text) = verify_chain(d, &root1_pem, cert);
    assert!(ok, "dc2 leaf against dc1's root: {text}");
    let (ok, _) = verify_chain(d, &root1_pem, &pem_blocks(cert)[0]);
    assert!(!ok, "the intermediate is what links the leaf to the root");
    // A dc1 leaf verifies against the same root with no intermediate.
    let leaf1 = get_json(&dc1.http, "/v1/agent/connect/ca/leaf/web");
    let (ok, text) = verify_chain(d, &root1_pem, leaf1["CertPEM"].as_str().unwrap());
    assert!(ok, "dc1 leaf: {text}");

    // A secondary's CA keys are the primary's to change.
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap();
    let body = json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h", "PrivateKey": key}});
    let mut resp = agent
        .put(&format!("http://{}/v1/connect/ca/configuration", dc2.http))
        .send(body.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("this datacenter (dc2) is a secondary") && text.contains("primary (dc1)"),
        "{text}"
    );

    // Root rotation in dc1 reaches dc2: both roots trusted there, the new one active, and a
    // new intermediate signed by it, so dc2's new leaves verify against the new root alone.
    let old_root = roots1["ActiveRootID"].as_str().unwrap().to_owned();
    put(&dc1.http, "/v1/connect/ca/configuration", &body);
    let new_roots = get_json(&dc1.http, "/v1/agent/connect/ca/roots");
    let new_root = new_roots["ActiveRootID"].as_str().unwrap().to_owned();
    assert_ne!(new_root, old_root);
    wait_until(30, "dc2 to follow the rotation", || {
        let r = get_json(&dc2.http, "/v1/agent/connect/ca/roots");
        r["ActiveRootID"] == new_root.as_str()
            && r["Roots"].as_array().unwrap().len() == 2
            && active_root(&r)["IntermediateCerts"].is_array()
    });
    let new_root_pem = active_root(&new_roots)["RootCert"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(30, "dc2 leaves reissued under the new root", || {
        let leaf = get_json(&dc2.http, "/v1/agent/connect/ca/leaf/web");
        verify_chain(d, &new_root_pem, leaf["CertPEM"].as_str().unwrap()).0
    });

    // dc1 gone: dc2 keeps serving its own datacenter (catalog, leaves) and names the gateway
    // it cannot reach; when dc1 returns on the same port, dc2 is back in contact.
    drop(dc1);
    put(
        &dc2.http,
        "/v1/agent/service/register",
        &json!({"Name": "api", "Port": 9000}),
    );
    let (status, body) = get(&format!("http://{}/v1/catalog/service/api", dc2.http));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"api\""), "{body}");
    let (status, body) = get(&format!("http://{}/v1/agent/connect/ca/leaf/api", dc2.http));
    assert_eq!(status, 200, "a new leaf without the primary: {body}");
    let gw = format!("127.0.0.1:{dc1_port}");
    wait_until(30, "dc2 to log the unreachable gateway", || {
        dc2.log
            .lock()
            .iter()
            .any(|l| l.contains("cannot reach the primary through this gateway") && l.contains(&gw))
    });
    let dc1 = primary(d, dc1_port);
    let seen = dc2.log.lock().len();
    // A rotation right after dc1 returns reaches dc2 once its retry finds dc1 again.
    let key2 = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    let key2 = String::from_utf8(key2.stdout).unwrap();
    put(
        &dc1.http,
        "/v1/connect/ca/configuration",
        &json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h", "PrivateKey": key2}}),
    );
    let third = get_json(&dc1.http, "/v1/agent/connect/ca/roots")["ActiveRootID"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(60, "dc2 to catch up with dc1 after the outage", || {
        get_json(&dc2.http, "/v1/agent/connect/ca/roots")["ActiveRootID"] == third.as_str()
    });
    assert!(
        dc2.log.lock()[seen..]
            .iter()
            .any(|l| l.contains("holding an intermediate CA signed by the primary")),
        "log:\n{}",
        dc2.log.lock().join("\n")
    );

    // dc2 restarted while dc1 is down: its data dir keeps the trust domain, the roots and the
    // intermediate with its key, so it signs leaves that dc1's root verifies, with no contact.
    let third_pem = active_root(&get_json(&dc1.http, "/v1/agent/connect/ca/roots"))["RootCert"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(dc1);
    drop(dc2);
    let dc2 = secondary(d, "dc2", &ca_file, &[format!("127.0.0.1:{dc1_port}")]);
    let roots = get_json(&dc2.http, "/v1/agent/connect/ca/roots");
    assert_eq!(roots["ActiveRootID"], third.as_str(), "{roots}");
    assert_eq!(roots["TrustDomain"], td);
    let leaf = get_json(&dc2.http, "/v1/agent/connect/ca/leaf/after-restart");
    let (ok, text) = verify_chain(d, &third_pem, leaf["CertPEM"].as_str().unwrap());
    assert!(ok, "a leaf signed after the restart: {text}");
}

fn new_key() -> String {
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    String::from_utf8(key.stdout).unwrap()
}

#[test]
fn a_secondary_reaches_the_primary_only_through_its_mesh_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dc1 = primary(d, free_port());
    let gw_port = free_port();
    let gw = mesh_gateway(&dc1, gw_port);
    let ca_file = roots_file(d, &dc1.http);
    // dc2 knows only the gateway's address, never dc1's server port.
    let gw_addr = format!("127.0.0.1:{gw_port}");
    let dc2 = secondary(d, "dc2", &ca_file, std::slice::from_ref(&gw_addr));
    let roots1 = get_json(&dc1.http, "/v1/agent/connect/ca/roots");
    wait_until(60, "dc2 to join dc1 through the mesh gateway", || {
        let r = get_json(&dc2.http, "/v1/agent/connect/ca/roots");
        r["ActiveRootID"] == roots1["ActiveRootID"]
            && active_root(&r)["IntermediateCerts"].is_array()
    });
    assert!(
        gw.stat("cluster.server.dc1.consul.upstream_cx_total") > 0,
        "the join went through the gateway's server.dc1.consul cluster"
    );
    let leaf = get_json(&dc2.http, "/v1/agent/connect/ca/leaf/web");
    let root1_pem = active_root(&roots1)["RootCert"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, text) = verify_chain(d, &root1_pem, leaf["CertPEM"].as_str().unwrap());
    assert!(ok, "{text}");

    // The gateway gone: dc2 names it and keeps retrying; a rotation in dc1 meanwhile reaches
    // dc2 once the gateway is back.
    drop(gw);
    let seen = dc2.log.lock().len();
    put(
        &dc1.http,
        "/v1/connect/ca/configuration",
        &json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h", "PrivateKey": new_key()}}),
    );
    let rotated = get_json(&dc1.http, "/v1/agent/connect/ca/roots")["ActiveRootID"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(60, "dc2 to name the gateway it cannot reach", || {
        dc2.log.lock()[seen..].iter().any(|l| {
            l.contains("cannot reach the primary through this gateway") && l.contains(&gw_addr)
        })
    });
    assert_ne!(
        get_json(&dc2.http, "/v1/agent/connect/ca/roots")["ActiveRootID"],
        rotated.as_str(),
        "no path to dc1 without its gateway"
    );
    let _gw = mesh_gateway(&dc1, gw_port);
    wait_until(
        60,
        "dc2 to follow the rotation once the gateway is back",
        || get_json(&dc2.http, "/v1/agent/connect/ca/roots")["ActiveRootID"] == rotated.as_str(),
    );
}

/// `GET http://{http}{path}`: status, `X-Consul-Index`, body.
fn get_indexed(http: &str, path: &str, timeout: Duration) -> (u16, u64, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build(),
    );
    let mut r = agent.get(&format!("http://{http}{path}")).call().unwrap();
    let index = r
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (
        r.status().as_u16(),
        index,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn reads_with_dc_are_answered_by_the_other_datacenter_through_the_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dc1 = primary(d, free_port());
    let gw1_port = free_port();
    let _gw1 = mesh_gateway(&dc1, gw1_port);
    let ca_file = roots_file(d, &dc1.http);
    let dc2 = secondary(d, "dc2", &ca_file, &[format!("127.0.0.1:{gw1_port}")]);
    // dc2's own gateway, which dc2 reports to dc1 so dc1 can reach dc2's servers.
    let _gw2 = mesh_gateway(&dc2, free_port());
    put(
        &dc1.http,
        "/v1/agent/service/register",
        &json!({"Name": "web", "Port": 8080}),
    );
    put(
        &dc2.http,
        "/v1/agent/service/register",
        &json!({"Name": "api", "Port": 9000, "Tags": ["v2"]}),
    );
    // Config entries are the primary's, replicated: written in dc2 once it has joined (the
    // write goes to dc1), read in dc2 from dc1 with ?dc=dc2 once replicated back.
    wait_until(60, "dc2 to join", || {
        !get_json(&dc2.http, "/v1/agent/connect/ca/roots")["Roots"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    put(
        &dc2.http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    );
    wait_until(60, "dc1 to read dc2's catalog with ?dc=dc2", || {
        let (status, _, body) = get_indexed(
            &dc1.http,
            "/v1/catalog/services?dc=dc2",
            Duration::from_secs(20),
        );
        status == 200 && body.contains("\"api\"")
    });
    let (status, _, body) = get_indexed(
        &dc2.http,
        "/v1/catalog/services?dc=dc1",
        Duration::from_secs(20),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"web\"") && !body.contains("\"api\""),
        "{body}"
    );
    let (status, _, body) = get_indexed(
        &dc1.http,
        "/v1/health/service/api?dc=dc2",
        Duration::from_secs(20),
    );
    assert_eq!(status, 200, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows[0]["Node"]["Datacenter"], "dc2", "{body}");
    wait_until(30, "dc2's replicated entry, read from dc1", || {
        let (status, _, body) = get_indexed(
            &dc1.http,
            "/v1/config/service-defaults/api?dc=dc2",
            Duration::from_secs(20),
        );
        status == 200 && body.contains("\"http\"")
    });
    // The other datacenter's own errors come back as it gave them.
    let (status, _, _) = get_indexed(
        &dc1.http,
        "/v1/config/service-defaults/nope?dc=dc2",
        Duration::from_secs(20),
    );
    assert_eq!(status, 404);

    // A blocking read across datacenters: woken by a write in dc2, with dc2's index.
    let (_, index, _) = get_indexed(
        &dc1.http,
        "/v1/catalog/service/api?dc=dc2",
        Duration::from_secs(20),
    );
    assert!(index > 0);
    let http1 = dc1.http.clone();
    let waiter = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = get_indexed(
            &http1,
            &format!("/v1/catalog/service/api?dc=dc2&index={index}&wait=20s"),
            Duration::from_secs(40),
        );
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    put(
        &dc2.http,
        "/v1/agent/service/register",
        &json!({"Name": "api", "ID": "api-2", "Port": 9001}),
    );
    let ((status, new_index, body), took) = waiter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(new_index > index, "{new_index} > {index}");
    assert!(body.contains("api-2"), "{body}");
    assert!(
        took < Duration::from_secs(15),
        "woken by the write, not the wait: {took:?}"
    );

    // No path: Consul's status and text.
    let (status, _, body) = get_indexed(
        &dc1.http,
        "/v1/catalog/services?dc=dc9",
        Duration::from_secs(20),
    );
    assert_eq!((status, body.trim()), (500, "No path to datacenter"));
    // Writes are not forwarded (yet), and say so.
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let r = agent
        .put(&format!("http://{}/v1/config?dc=dc2", dc1.http))
        .send(json!({"Kind": "service-defaults", "Name": "x"}).to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn config_entries_and_intentions_replicate_from_the_primary_and_writes_go_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dc1_port = free_port();
    let dc1 = primary(d, dc1_port);
    let ca_file = roots_file(d, &dc1.http);
    let dc2 = secondary(d, "dc2", &ca_file, &[format!("127.0.0.1:{dc1_port}")]);
    put(
        &dc1.http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
    );
    put(
        &dc1.http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "admin", "Protocol": "http"}),
    );
    put(
        &dc1.http,
        "/v1/config",
        &json!({"Kind": "service-router", "Name": "web", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}]}),
    );
    put(
        &dc1.http,
        "/v1/connect/intentions/exact?source=a&destination=web",
        &json!({"Action": "deny"}),
    );
    wait_until(30, "dc2 to hold dc1's entries and intention", || {
        get(&format!("http://{}/v1/config/service-router/web", dc2.http)).0 == 200
            && get(&format!(
                "http://{}/v1/connect/intentions/exact?source=a&destination=web",
                dc2.http
            ))
            .1
            .contains("deny")
    });
    // A write in dc2 goes to dc1, then comes back by replication.
    put(
        &dc2.http,
        "/v1/config?dc=dc2",
        &json!({"Kind": "service-defaults", "Name": "api", "Protocol": "grpc"}),
    );
    assert_eq!(
        get_json(&dc1.http, "/v1/config/service-defaults/api")["Protocol"],
        "grpc",
        "written in the primary"
    );
    wait_until(30, "the dc2 write to replicate back", || {
        get(&format!(
            "http://{}/v1/config/service-defaults/api",
            dc2.http
        ))
        .0 == 200
    });
    put(
        &dc2.http,
        "/v1/connect/intentions/exact?source=b&destination=web",
        &json!({"Action": "allow"}),
    );
    assert!(
        get(&format!(
            "http://{}/v1/connect/intentions/exact?source=b&destination=web",
            dc1.http
        ))
        .1
        .contains("allow")
    );
    // A delete in dc1 reaches dc2.
    common::mesh::delete(&dc1.http, "/v1/config/service-router/web");
    wait_until(30, "the delete to replicate", || {
        get(&format!("http://{}/v1/config/service-router/web", dc2.http)).0 == 404
    });
    let status = get_json(&dc2.http, "/v1/internal/federation/status");
    assert_eq!(status["Secondary"], true, "{status}");
    assert!(
        status["ConfigEntryReplication"]["ReplicatedIndex"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        status["ConfigEntryReplication"]["LastError"].is_null(),
        "{status}"
    );
    assert!(
        status["ConfigEntryReplication"]["LagSeconds"]
            .as_i64()
            .unwrap()
            <= 31
    );

    // dc1 gone: dc2 keeps serving what it replicated, says what fails and how old its copy is;
    // a write there cannot reach the primary and says so.
    drop(dc1);
    wait_until(30, "the replication error", || {
        !get_json(&dc2.http, "/v1/internal/federation/status")["ConfigEntryReplication"]
            ["LastError"]
            .is_null()
    });
    assert_eq!(
        get_json(&dc2.http, "/v1/config/service-defaults/web")["Protocol"],
        "http"
    );
    let (status, body) = {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut r = agent
            .put(&format!("http://{}/v1/config", dc2.http))
            .send(json!({"Kind": "service-defaults", "Name": "x"}).to_string())
            .unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("cannot reach datacenter dc1"), "{body}");
}

#[test]
fn a_secondary_refuses_a_primary_its_ca_file_does_not_vouch_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dc1_port = free_port();
    let _dc1 = primary(d, dc1_port);
    // The roots of another, unrelated cluster.
    let other = Proc::start(&["server", "-dev"]);
    let wrong = roots_file(d, &other.http);
    let dc2 = secondary(d, "dc2", &wrong, &[format!("127.0.0.1:{dc1_port}")]);
    wait_until(30, "the TLS refusal, with the gateway named", || {
        dc2.log.lock().iter().any(|l| {
            l.contains("cannot reach the primary through this gateway")
                && l.contains(&format!("127.0.0.1:{dc1_port}"))
                && l.contains("TLS with server.dc1.consul")
        })
    });
    std::thread::sleep(Duration::from_secs(1));
    let roots = get_json(&dc2.http, "/v1/agent/connect/ca/roots");
    assert!(
        roots["Roots"].as_array().unwrap().is_empty(),
        "no roots taken from an unverified peer: {roots}"
    );
}

#[test]
fn with_acls_on_a_first_join_needs_a_token_with_operator_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dc1_port = free_port();
    let dc1 = primary_with(
        d,
        dc1_port,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens { initial_management = \"root-secret\" }\n}\n",
    );
    let ca_file = roots_file(d, &dc1.http);
    let gw = [format!("127.0.0.1:{dc1_port}")];
    let no_token = secondary(d, "dc2", &ca_file, &gw);
    let wrong = secondary_with(
        d,
        "dc3",
        &ca_file,
        &gw,
        "acl { tokens { replication = \"not-a-token\" } }",
    );
    let with_token = secondary_with(
        d,
        "dc4",
        &ca_file,
        &gw,
        "acl { tokens { replication = \"root-secret\" } }",
    );
    let active = get_json(&dc1.http, "/v1/agent/connect/ca/roots")["ActiveRootID"].clone();
    wait_until(30, "dc4 (with the management token) to join", || {
        get_json(&with_token.http, "/v1/agent/connect/ca/roots")["ActiveRootID"] == active
    });
    let refused = |p: &Proc, why: &str| {
        let p_log = p.log.clone();
        let why = why.to_owned();
        wait_until(30, &format!("the refusal {why:?}"), move || {
            p_log
                .lock()
                .iter()
                .any(|l| l.contains("the primary refused: PermissionDenied") && l.contains(&why))
        });
        let roots = get_json(&p.http, "/v1/agent/connect/ca/roots");
        assert!(roots["Roots"].as_array().unwrap().is_empty(), "{roots}");
    };
    refused(&no_token, "operator:write");
    refused(&wrong, "ACL not found");
    // Only a datacenter whose servers proved who they are is listed.
    wait_until(30, "dc1 to list dc4", || {
        get_json(&dc1.http, "/v1/catalog/datacenters") == json!(["dc1", "dc4"])
    });
}

#[test]
fn bad_federation_config_is_refused_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.hcl");
    std::fs::write(
        &cfg,
        "datacenter = \"dc2\"\nprimary_datacenter = \"DC_1-\"\nprimary_gateways = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .args([
            "server",
            "-data-dir",
            dir.path().to_str().unwrap(),
            "-config-file",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "primary_datacenter: invalid datacenter name \"dc_1-\"",
        "primary_gateways[0]: \"127.0.0.1\": expected HOST:PORT",
        "primary_gateways: requires connect { enable_mesh_gateway_wan_federation = true }",
        "ca_file: a secondary datacenter needs the primary's CA roots",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
