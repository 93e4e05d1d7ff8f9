#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::process::Command;

use super::*;
use crate::generate_root;
use mesh_model::names::ServiceName;

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

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn possession_is_proved_for_one_dc_and_trust_domain_only() {
    let k = new_intermediate_key(TD, "dc2").unwrap();
    verify_possession(TD, "dc2", &k.public_key, &k.proof).unwrap();
    assert!(matches!(
        verify_possession(TD, "dc3", &k.public_key, &k.proof),
        Err(CaError::BadProof)
    ));
    assert!(matches!(
        verify_possession("other.consul", "dc2", &k.public_key, &k.proof),
        Err(CaError::BadProof)
    ));
    let other = new_intermediate_key(TD, "dc2").unwrap();
    assert!(verify_possession(TD, "dc2", &other.public_key, &k.proof).is_err());
    // A point that is not on the curve never verifies.
    let mut bad = k.public_key.as_bytes().to_vec();
    bad[64] ^= 1;
    let bad = P256PublicKey::from_bytes(&bad).unwrap();
    assert!(verify_possession(TD, "dc2", &bad, &k.proof).is_err());
    assert!(P256PublicKey::from_bytes(&[4; 64]).is_err());
    assert!(P256PublicKey::from_bytes(&[2; 65]).is_err());
}

#[test]
fn secondary_chain_verifies_against_the_primary_root() {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let root = generate_root(TD, 1, now, Duration::from_secs(87600 * 3600), None).unwrap();
    let signer = SigningRoot {
        key_pem: &root.key_pem,
        common_name: &root.common_name,
    };
    let k = new_intermediate_key(TD, "dc2").unwrap();
    let int = sign_intermediate(
        signer,
        TD,
        "dc2",
        &k.public_key,
        9,
        now,
        now + time::Duration::days(365),
    )
    .unwrap();
    assert_eq!(int.common_name, "sec-9.dc2.ca.11111111.consul");
    assert_eq!(
        crate::cert_validity(&int.cert_pem).unwrap(),
        (int.not_before, int.not_after)
    );
    let int_signer = SigningRoot {
        key_pem: &k.key_pem,
        common_name: &int.common_name,
    };
    let web = ServiceName::default_tuple("web");
    let leaf = crate::sign_leaf(
        int_signer,
        TD,
        "dc2",
        &web,
        10,
        now,
        Duration::from_secs(3600),
    )
    .unwrap();
    let server = sign_server_cert(
        int_signer,
        TD,
        "dc2",
        "node-a",
        "consul",
        11,
        now,
        Duration::from_secs(3600),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(path("root.pem"), &root.cert_pem).unwrap();
    std::fs::write(path("int.pem"), &int.cert_pem).unwrap();
    std::fs::write(path("leaf.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(path("server.pem"), &server.cert_pem).unwrap();
    for cert in ["leaf.pem", "server.pem"] {
        let (ok, text) = openssl(&[
            "verify",
            "-attime",
            "1800000100",
            "-CAfile",
            &path("root.pem"),
            "-untrusted",
            &path("int.pem"),
            &path(cert),
        ]);
        assert!(ok, "{cert}: {text}");
        // Without the intermediate the root alone does not vouch for it.
        let (ok, _) = openssl(&[
            "verify",
            "-attime",
            "1800000100",
            "-CAfile",
            &path("root.pem"),
            &path(cert),
        ]);
        assert!(!ok, "{cert} must need the intermediate");
    }
    let (ok, text) = openssl(&["x509", "-in", &path("int.pem"), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains(&format!("URI:spiffe://{TD}")), "{text}");
    let (ok, text) = openssl(&["x509", "-in", &path("server.pem"), "-noout", "-text"]);
    assert!(ok, "{text}");
    assert!(text.contains("DNS:server.dc2.consul"), "{text}");
    assert!(text.contains("DNS:node-a.server.dc2.consul"), "{text}");
    assert_eq!(
        crate::uri_sans(&pem_der(&server.cert_pem)).unwrap(),
        vec![format!("spiffe://{TD}/agent/server/dc/dc2")]
    );
    // A leaf signed by the intermediate cannot sign further (path length 0 and no CA bit).
    let (ok, text) = openssl(&["x509", "-in", &path("leaf.pem"), "-noout", "-text"]);
    assert!(ok && text.contains("CA:FALSE"), "{text}");
}

#[test]
fn a_cross_signed_root_links_the_new_chain_to_the_previous_root() {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let year = Duration::from_secs(365 * 24 * 3600);
    let old = generate_root(TD, 1, now, year, None).unwrap();
    let new = generate_root(TD, 2, now, year, None).unwrap();
    let server = sign_server_cert(
        SigningRoot {
            key_pem: &new.key_pem,
            common_name: &new.common_name,
        },
        TD,
        "dc1",
        "",
        "consul",
        3,
        now,
        Duration::from_secs(3600),
    )
    .unwrap();
    let cross = cross_sign_root(
        SigningRoot {
            key_pem: &old.key_pem,
            common_name: &old.common_name,
        },
        &new.key_pem,
        &new.common_name,
        4,
        now,
        now + time::Duration::days(30),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(path("old.pem"), &old.cert_pem).unwrap();
    std::fs::write(path("cross.pem"), &cross).unwrap();
    std::fs::write(path("server.pem"), &server.cert_pem).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "-attime", "1800000100"];
        args.extend_from_slice(extra);
        let p = path("server.pem");
        args.push(&p);
        openssl(&args)
    };
    let (ok, text) = verify(&[
        "-CAfile",
        &path("old.pem"),
        "-untrusted",
        &path("cross.pem"),
    ]);
    assert!(
        ok,
        "server cert of the new root, via the cross-signed root: {text}"
    );
    let (ok, _) = verify(&["-CAfile", &path("old.pem")]);
    assert!(
        !ok,
        "without the cross-signed root the previous root does not vouch"
    );
}
