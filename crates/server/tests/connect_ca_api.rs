//! The Connect CA through a real HTTP client: roots and leaf shapes, leaves verified with
//! `openssl verify`, cache reuse, blocking leaf reads woken by a root rotation, the old root kept
//! in the bundle, persistence across a restart (roots, configuration, and leaves: none is
//! reissued), ACLs, authorize, and bad configuration bodies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// `openssl verify` of a leaf against a bundle of roots.
fn verifies(roots: &[&str], leaf: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write(dir.path(), "roots.pem", &roots.join("\n"));
    let l = write(dir.path(), "leaf.pem", leaf);
    openssl(&["verify", "-CAfile", &bundle, &l])
}

fn roots(s: &TestServer) -> Value {
    let r = s.get("/v1/agent/connect/ca/roots");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn active_root_pem(roots: &Value) -> String {
    let id = roots["ActiveRootID"].as_str().unwrap();
    roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ID"] == id)
        .unwrap()["RootCert"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn leaf(s: &TestServer, svc: &str) -> Value {
    let r = s.get(&format!("/v1/agent/connect/ca/leaf/{svc}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.index,
        r.json()["ModifyIndex"].as_u64(),
        "X-Consul-Index is the leaf's index"
    );
    r.json()
}

fn p256_pkcs8() -> String {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn ts(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

#[test]
fn roots_have_consuls_shape_and_block() {
    let s = TestServer::start();
    let r = roots(&s);
    let td = r["TrustDomain"].as_str().unwrap();
    let cluster = td.strip_suffix(".consul").unwrap();
    assert_eq!(cluster.len(), 36, "uuid: {td}");
    assert_eq!(cluster.split('-').count(), 5);
    let list = r["Roots"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let root = &list[0];
    assert_eq!(root["ID"], r["ActiveRootID"]);
    assert_eq!(root["ID"].as_str().unwrap().len(), 59, "sha-1 colon hex");
    assert_eq!(root["Name"], "Consul CA Primary Cert");
    assert_eq!(root["Active"], true);
    assert_eq!(root["PrivateKeyType"], "ec");
    assert_eq!(root["PrivateKeyBits"], 256);
    assert_eq!(root["IntermediateCerts"], Value::Null);
    assert_eq!(root["ExternalTrustDomain"], cluster);
    assert!(root["SerialNumber"].as_u64().unwrap() > 0);
    assert!(root["SigningKeyID"].as_str().unwrap().contains(':'));
    assert!(root["CreateIndex"].as_u64().unwrap() > 0);
    let life = ts(&root["NotAfter"]) - ts(&root["NotBefore"]);
    assert_eq!(life, time::Duration::hours(87600), "10-year root");
    let pem = root["RootCert"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &write(dir.path(), "r.pem", pem),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains(&format!("URI:spiffe://{td}")), "{text}");

    // Both paths answer the same roots; ?pem=true answers the bundle as text.
    assert_eq!(s.get("/v1/connect/ca/roots").json(), r);
    let p = s.get("/v1/connect/ca/roots?pem=true");
    assert_eq!(p.status, 200);
    assert_eq!(p.body.trim(), pem.trim());

    // A blocking read with the current index waits for the wait time when nothing changes.
    let index = s.get("/v1/connect/ca/roots").index.unwrap();
    let t = Instant::now();
    let b = s.get(&format!("/v1/connect/ca/roots?index={index}&wait=300ms"));
    assert_eq!(b.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(b.index, Some(index));
}

#[test]
fn leaf_verifies_against_the_root_and_is_reused() {
    let s = TestServer::start();
    let r = roots(&s);
    let td = r["TrustDomain"].as_str().unwrap();
    let l = leaf(&s, "web");
    assert_eq!(l["Service"], "web");
    assert_eq!(l["Namespace"], "default");
    assert_eq!(l["Partition"], "default");
    let uri = format!("spiffe://{td}/ns/default/dc/dc1/svc/web");
    assert_eq!(l["ServiceURI"], uri);
    let cert = l["CertPEM"].as_str().unwrap();
    let (ok, text) = verifies(&[&active_root_pem(&r)], cert);
    assert!(ok, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &write(dir.path(), "l.pem", cert),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("URI:{uri}")), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("Key Agreement"), "{text}");
    assert!(text.contains("prime256v1"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    // 72h, back-dated by a minute.
    let (after, before) = (ts(&l["ValidAfter"]), ts(&l["ValidBefore"]));
    assert_eq!(before - after, time::Duration::hours(72));
    assert_eq!(
        ca::cert_validity(cert).unwrap(),
        (after, before),
        "JSON matches the certificate"
    );
    let now = OffsetDateTime::now_utc();
    assert!(
        after <= now - time::Duration::seconds(55) && after >= now - time::Duration::seconds(90)
    );
    // The key matches the certificate.
    let key = write(dir.path(), "k.pem", l["PrivateKeyPEM"].as_str().unwrap());
    let (ok, pub_from_key) = openssl(&["pkey", "-in", &key, "-pubout"]);
    assert!(ok, "{pub_from_key}");
    let (ok, pub_from_cert) = openssl(&[
        "x509",
        "-in",
        &write(dir.path(), "l2.pem", cert),
        "-noout",
        "-pubkey",
    ]);
    assert!(ok);
    assert_eq!(pub_from_key, pub_from_cert);

    // Cached: same serial twice; another service gets its own leaf.
    let again = leaf(&s, "web");
    assert_eq!(again["SerialNumber"], l["SerialNumber"]);
    assert_eq!(again["CertPEM"], l["CertPEM"]);
    let db = leaf(&s, "db");
    assert_ne!(db["SerialNumber"], l["SerialNumber"]);
    assert!(db["ModifyIndex"].as_u64() > l["ModifyIndex"].as_u64());
    // A namespace from the query string lands in the SPIFFE ID.
    let ns = s.get("/v1/agent/connect/ca/leaf/web?ns=team1").json();
    assert_eq!(ns["Namespace"], "team1");
    assert_eq!(
        ns["ServiceURI"],
        format!("spiffe://{td}/ns/team1/dc/dc1/svc/web")
    );
    assert_ne!(ns["SerialNumber"], l["SerialNumber"]);
    let ap = s.get("/v1/agent/connect/ca/leaf/web?partition=p1&ns=n1");
    assert_eq!(ap.status, 200, "{}", ap.body);
    assert_eq!(
        ap.json()["ServiceURI"],
        format!("spiffe://{td}/ap/p1/ns/n1/dc/dc1/svc/web")
    );
    assert_eq!(ap.json()["Partition"], "p1");
    // A blocking read on the current index waits, then answers the same leaf.
    let t = Instant::now();
    let b = s.get(&format!(
        "/v1/agent/connect/ca/leaf/web?index={}&wait=300ms",
        l["ModifyIndex"]
    ));
    assert!(t.elapsed() >= Duration::from_millis(290));
    assert_eq!(b.json()["SerialNumber"], l["SerialNumber"]);
    // Bad service names are refused.
    assert_eq!(s.get("/v1/agent/connect/ca/leaf/bad%20name").status, 400);
}

#[test]
fn rotation_keeps_old_root_and_reissues_leaves() {
    let s = TestServer::start();
    let before = roots(&s);
    let old_id = before["ActiveRootID"].as_str().unwrap().to_owned();
    let old_pem = active_root_pem(&before);
    let l1 = leaf(&s, "web");
    let idx = l1["ModifyIndex"].as_u64().unwrap();

    // A blocking leaf read, woken by the rotation's reissue.
    let base = s.base.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let mut r = ureq::get(format!(
            "{base}/v1/agent/connect/ca/leaf/web?index={idx}&wait=30s"
        ))
        .call()
        .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        (v, t.elapsed())
    });
    // A blocking roots read, woken by the rotation itself.
    let roots_index = s.get("/v1/connect/ca/roots").index.unwrap();
    let base = s.base.clone();
    let roots_waiter = std::thread::spawn(move || {
        let mut r = ureq::get(format!(
            "{base}/v1/connect/ca/roots?index={roots_index}&wait=30s"
        ))
        .call()
        .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v
    });
    std::thread::sleep(Duration::from_millis(200));

    let key = p256_pkcs8();
    let body = json!({"Provider": "consul", "Config": {"PrivateKey": key}}).to_string();
    let put_at = Instant::now();
    let r = s.put("/v1/connect/ca/configuration", &body);
    assert_eq!(r.status, 200, "{}", r.body);

    // Both roots are in the bundle at once; the new one is active.
    let after = roots(&s);
    let new_id = after["ActiveRootID"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    let list = after["Roots"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let old = list.iter().find(|r| r["ID"] == old_id.as_str()).unwrap();
    assert_eq!(old["Active"], false);
    assert_eq!(old["RootCert"], old_pem.as_str());
    assert_eq!(after["TrustDomain"], before["TrustDomain"]);
    let new_pem = active_root_pem(&after);
    let woken = roots_waiter.join().unwrap();
    assert_eq!(woken["Roots"].as_array().unwrap().len(), 2, "{woken}");
    let bundle = s.get("/v1/connect/ca/roots?pem=true").body;
    assert!(bundle.starts_with(new_pem.trim()), "active root first");
    assert!(bundle.contains(old_pem.trim()));
    // Within the grace the old leaf is still served (every proxy first gets the new bundle) and
    // still verifies against the bundle.
    let during = leaf(&s, "web");
    if put_at.elapsed() < server::connect::ROTATION_GRACE {
        assert_eq!(during["SerialNumber"], l1["SerialNumber"]);
    }
    let (ok, text) = verifies(&[&new_pem, &old_pem], l1["CertPEM"].as_str().unwrap());
    assert!(ok, "{text}");

    // The blocked read wakes with a leaf from the new root.
    let (l2, waited) = waiter.join().unwrap();
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_ne!(l2["SerialNumber"], l1["SerialNumber"]);
    assert!(l2["ModifyIndex"].as_u64().unwrap() > idx);
    let (ok, text) = verifies(&[&new_pem], l2["CertPEM"].as_str().unwrap());
    assert!(ok, "{text}");
    let (ok, _) = verifies(&[&old_pem], l2["CertPEM"].as_str().unwrap());
    assert!(!ok, "signed by the new root only");
    assert_eq!(
        leaf(&s, "web")["SerialNumber"],
        l2["SerialNumber"],
        "cached again"
    );

    // Same key settings: the config changes, the root does not.
    let body = json!({"Provider": "consul", "Config": {"PrivateKey": key, "LeafCertTTL": "24h"}})
        .to_string();
    assert_eq!(s.put("/v1/connect/ca/configuration", &body).status, 200);
    assert_eq!(roots(&s)["ActiveRootID"], new_id.as_str());
    let c = s.get("/v1/connect/ca/configuration").json();
    assert_eq!(c["Config"]["LeafCertTTL"], "24h");
    assert!(
        c["Config"].get("PrivateKey").is_none(),
        "the key is never shown"
    );
    // Dropping the supplied key changes the key settings: a fresh generated root.
    assert_eq!(
        s.put(
            "/v1/connect/ca/configuration",
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"24h"}}"#
        )
        .status,
        200
    );
    let third = roots(&s);
    assert_eq!(third["Roots"].as_array().unwrap().len(), 3);
    assert_ne!(third["ActiveRootID"], new_id.as_str());
}

#[test]
fn state_survives_restart() {
    let s = TestServer::start();
    assert_eq!(
        s.put(
            "/v1/connect/ca/configuration",
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"12h"}}"#
        )
        .status,
        200
    );
    let r1 = roots(&s);
    let l1 = leaf(&s, "web");
    let dir = s.stop();
    let s = TestServer::start_in(dir, |_| {});
    let r2 = roots(&s);
    assert_eq!(r2, r1, "same trust domain, same roots");
    let c = s.get("/v1/connect/ca/configuration").json();
    assert_eq!(c["Config"]["LeafCertTTL"], "12h");
    let l2 = leaf(&s, "web");
    assert_eq!(
        l2, l1,
        "a restart reissues no leaf: same serial, certificate and key"
    );
    // A leaf signed after the restart still gets a serial above every earlier one.
    let api = leaf(&s, "api");
    assert!(
        api["ModifyIndex"].as_u64() > l1["ModifyIndex"].as_u64(),
        "serials keep increasing"
    );
    assert_eq!(
        ts(&l2["ValidBefore"]) - ts(&l2["ValidAfter"]),
        time::Duration::hours(12)
    );
    let (ok, text) = verifies(&[&active_root_pem(&r2)], l2["CertPEM"].as_str().unwrap());
    assert!(ok, "{text}");
}

#[test]
fn acls_guard_leaf_config_and_authorize() {
    let s = TestServer::start_with(|c| {
        c.acl.enabled = true;
        c.acl.default_allow = false;
    });
    let mgmt = s.put("/v1/acl/bootstrap", "").json()["SecretID"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = s.req(
        "PUT",
        "/v1/acl/policy",
        Some(
            &json!({"Name": "web", "Rules": "service \"web\" { policy = \"write\" }"}).to_string(),
        ),
        Some(&mgmt),
    );
    assert_eq!(p.status, 200, "{}", p.body);
    let t = s.req(
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Policies": [{"Name": "web"}]}).to_string()),
        Some(&mgmt),
    );
    let web = t.json()["SecretID"].as_str().unwrap().to_owned();

    // Roots need no token.
    assert_eq!(s.get("/v1/agent/connect/ca/roots").status, 200);
    let r = s.get("/v1/agent/connect/ca/leaf/web");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        "Permission denied: anonymous token lacks permission 'service:write' on \"web\""
    );
    let r = s.req("GET", "/v1/agent/connect/ca/leaf/web", None, Some(&web));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.req("GET", "/v1/agent/connect/ca/leaf/db", None, Some(&web));
    assert_eq!(r.status, 403);
    assert!(
        r.body
            .contains("lacks permission 'service:write' on \"db\""),
        "{}",
        r.body
    );
    // Configuration needs operator rights.
    assert_eq!(
        s.req("GET", "/v1/connect/ca/configuration", None, Some(&web))
            .status,
        403
    );
    assert_eq!(
        s.req("GET", "/v1/connect/ca/configuration", None, Some(&mgmt))
            .status,
        200
    );
    let put = s.req(
        "PUT",
        "/v1/connect/ca/configuration",
        Some(r#"{"Provider":"consul"}"#),
        Some(&web),
    );
    assert_eq!(put.status, 403);
    assert!(put.body.contains("operator:write"), "{}", put.body);
    // Authorize needs service:write on the target; with default deny and no intention: denied.
    let td = roots(&s)["TrustDomain"].as_str().unwrap().to_owned();
    let body = json!({"Target": "web", "ClientCertURI": format!("spiffe://{td}/ns/default/dc/dc1/svc/api")}).to_string();
    assert_eq!(
        s.req("POST", "/v1/agent/connect/authorize", Some(&body), None)
            .status,
        403
    );
    let a = s.req(
        "POST",
        "/v1/agent/connect/authorize",
        Some(&body),
        Some(&web),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["Authorized"], false);
    assert_eq!(a.json()["Reason"], "Default behavior configured by ACLs");
}

fn authorize(s: &TestServer, target: &str, uri: &str) -> (bool, String) {
    let body =
        json!({"Target": target, "ClientCertURI": uri, "ClientCertSerial": "01"}).to_string();
    let r = s.req("POST", "/v1/agent/connect/authorize", Some(&body), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    (
        v["Authorized"].as_bool().unwrap(),
        v["Reason"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn authorize_follows_intentions_and_trust_domain() {
    let s = TestServer::start();
    let td = roots(&s)["TrustDomain"].as_str().unwrap().to_owned();
    let uri = |svc: &str| format!("spiffe://{td}/ns/default/dc/dc1/svc/{svc}");
    // ACLs off: default allow.
    let (ok, reason) = authorize(&s, "db", &uri("web"));
    assert!(ok, "{reason}");
    for (src, action) in [("web", "deny"), ("api", "allow")] {
        let r = s.put(
            &format!("/v1/connect/intentions/exact?source={src}&destination=db"),
            &json!({"Action": action}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (ok, reason) = authorize(&s, "db", &uri("web"));
    assert!(!ok);
    assert!(reason.contains("Matched L4 intention"), "{reason}");
    let (ok, _) = authorize(&s, "db", &uri("api"));
    assert!(ok);
    // Another trust domain is never authorized, whatever the intentions say.
    let (ok, reason) = authorize(&s, "db", "spiffe://other.consul/ns/default/dc/dc1/svc/api");
    assert!(!ok);
    assert!(reason.contains("external trust domain"), "{reason}");
    // L7 intentions count as deny.
    assert_eq!(
        s.put(
            "/v1/config",
            r#"{"Kind":"service-defaults","Name":"auth","Protocol":"http"}"#
        )
        .status,
        200
    );
    let perm = json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]});
    let r = s.put(
        "/v1/connect/intentions/exact?source=api&destination=auth",
        &perm.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (ok, reason) = authorize(&s, "auth", &uri("api"));
    assert!(!ok, "{reason}");
    // Malformed requests.
    let bad = |body: &str| s.req("POST", "/v1/agent/connect/authorize", Some(body), None);
    assert_eq!(
        bad(r#"{"ClientCertURI":"spiffe://x/ns/a/dc/b/svc/c"}"#).status,
        400
    );
    assert_eq!(bad(r#"{"Target":"db"}"#).status, 400);
    let r = bad(r#"{"Target":"db","ClientCertURI":"http://nope"}"#);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("ClientCertURI"), "{}", r.body);
}

#[test]
fn configuration_defaults_and_bad_bodies() {
    let s = TestServer::start();
    let c = s.get("/v1/connect/ca/configuration");
    assert_eq!(c.status, 200);
    let c = c.json();
    assert_eq!(c["Provider"], "consul");
    assert_eq!(
        c["Config"],
        json!({"LeafCertTTL": "72h", "IntermediateCertTTL": "8760h", "RootCertTTL": "87600h",
               "PrivateKeyType": "ec", "PrivateKeyBits": 256, "RotationPeriod": "2160h"})
    );
    assert_eq!(c["State"], Value::Null);
    assert_eq!(c["ForceWithoutCrossSigning"], false);
    assert!(c["CreateIndex"].as_u64().unwrap() > 0);
    let root_before = roots(&s)["ActiveRootID"].clone();
    for (body, field) in [
        ("{", "body"),
        (r#"{"Config":{}}"#, "Provider"),
        (r#"{"Provider":"vault"}"#, "Provider"),
        (r#"{"Provider":"consul","Bogus":true}"#, "Bogus"),
        (
            r#"{"Provider":"consul","Config":{"Bogus":1}}"#,
            "Config.Bogus",
        ),
        (
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"forever"}}"#,
            "Config.LeafCertTTL",
        ),
        (
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"30m"}}"#,
            "Config.LeafCertTTL",
        ),
        (
            r#"{"Provider":"consul","Config":{"LeafCertTTL":"9000h"}}"#,
            "Config.LeafCertTTL",
        ),
        (
            r#"{"Provider":"consul","Config":{"PrivateKeyType":"dsa"}}"#,
            "Config.PrivateKeyType",
        ),
        (
            r#"{"Provider":"consul","Config":{"PrivateKeyBits":100}}"#,
            "Config.PrivateKeyBits",
        ),
        (
            r#"{"Provider":"consul","Config":{"PrivateKey":"not a key"}}"#,
            "Config.PrivateKey",
        ),
        (
            r#"{"Provider":"consul","Config":{"RootCert":"x","PrivateKey":"y"}}"#,
            "Config.RootCert",
        ),
    ] {
        let r = s.put("/v1/connect/ca/configuration", body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.body.starts_with(&format!("{field}: ")),
            "{body}: {}",
            r.body
        );
    }
    // Nothing was stored or rotated by the refused bodies.
    assert_eq!(s.get("/v1/connect/ca/configuration").json(), c);
    assert_eq!(roots(&s)["ActiveRootID"], root_before);
}
