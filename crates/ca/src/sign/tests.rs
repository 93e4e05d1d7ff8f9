#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::process::Command;

use super::*;

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn ids_are_consul_colon_hex() {
    assert_eq!(colon_hex(&[0x0a, 0xff, 0]), "0a:ff:00");
    assert_eq!(serial_hex(5), "05");
    assert_eq!(serial_hex(0x1234), "12:34");
    assert_eq!(serial_hex(0), "00");
}

#[test]
fn leaf_verifies_against_root_with_spiffe_san_and_ekus() {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let root = generate_root(TD, 7, now, Duration::from_secs(87600 * 3600), None).unwrap();
    assert_eq!(root.id.len(), 20 * 3 - 1, "sha-1 colon hex");
    assert_eq!(root.signing_key_id.len(), 32 * 3 - 1, "sha-256 colon hex");
    let web = ServiceName::default_tuple("web");
    let ttl = Duration::from_secs(72 * 3600);
    let leaf = sign_leaf(
        SigningRoot {
            key_pem: &root.key_pem,
            common_name: &root.common_name,
        },
        TD,
        "dc1",
        &web,
        42,
        now,
        ttl,
    )
    .unwrap();
    assert_eq!(leaf.serial_hex, "2a");
    assert_eq!(leaf.not_after - leaf.not_before, time::Duration::hours(72));
    assert_eq!(leaf.not_before, now - time::Duration::minutes(1));
    // The certificates say the same as the returned times.
    assert_eq!(
        crate::cert_validity(&leaf.cert_pem).unwrap(),
        (leaf.not_before, leaf.not_after)
    );
    assert_eq!(
        crate::cert_validity(&root.cert_pem).unwrap(),
        (root.not_before, root.not_after)
    );

    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.pem");
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&root_path, &root.cert_pem).unwrap();
    std::fs::write(&leaf_path, &leaf.cert_pem).unwrap();
    let (r, l) = (root_path.to_str().unwrap(), leaf_path.to_str().unwrap());
    // The certificates are dated in 2027; verify at that time.
    let (ok, text) = openssl(&["verify", "-attime", "1800000100", "-CAfile", r, l]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&["x509", "-in", l, "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("URI:spiffe://{TD}/ns/default/dc/dc1/svc/web")),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(
        text.contains("Digital Signature, Non Repudiation")
            || text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );
    assert!(text.contains("Key Agreement"), "{text}");
    assert!(
        text.contains("CN=web.svc.default.11111111.consul")
            || text.contains("CN = web.svc.default.11111111.consul"),
        "{text}"
    );
    let aki = root.signing_key_id.to_uppercase();
    assert!(text.contains(&aki), "leaf AKI is the root SKI: {text}");
    let (ok, text) = openssl(&["x509", "-in", r, "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains(&format!("URI:spiffe://{TD}")), "{text}");
    assert!(text.contains("prime256v1"), "{text}");
    // A leaf from another root does not verify.
    let other = generate_root(TD, 8, now, Duration::from_secs(3600 * 24), None).unwrap();
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, &other.cert_pem).unwrap();
    let (ok, _) = openssl(&[
        "verify",
        "-attime",
        "1800000100",
        "-CAfile",
        other_path.to_str().unwrap(),
        l,
    ]);
    assert!(!ok);
}

#[test]
fn supplied_key_is_used_and_bad_keys_refused() {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let a = generate_root(TD, 1, now, Duration::from_secs(3600), None).unwrap();
    let b = generate_root(TD, 2, now, Duration::from_secs(3600), Some(&a.key_pem)).unwrap();
    assert_eq!(a.signing_key_id, b.signing_key_id);
    assert_ne!(a.id, b.id);
    assert!(matches!(
        generate_root(TD, 3, now, Duration::from_secs(3600), Some("junk")),
        Err(CaError::BadKey(_))
    ));
}
