//! Test material (feature `test-util`): a mesh CA made by the project's own `ca` crate, exactly
//! as the server signs, and the two stored forms of a function's material, the Go registrator's
//! (Consul's SEC1 `EC PRIVATE KEY`, Go's key order) and ours (PKCS#8, sorted keys). Used by this
//! crate's tests, the CLI's end-to-end tests and the benchmark.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test scaffolding: a failed step is a bug

use std::{cell::Cell, time::Duration};

use base64::Engine as _;
use mesh_model::names::{EntMeta, ServiceName};
use serde_json::json;

use crate::material::ExtensionData;

/// A mesh CA: one root, leaves on demand.
pub struct Mesh {
    pub trust_domain: String,
    pub root: ca::GeneratedRoot,
    serial: Cell<u64>,
}

/// A leaf with its key in both PEM forms.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    /// PKCS#8 (`PRIVATE KEY`), as lambdamesh's CA makes it.
    pub key_pem: String,
    /// SEC1 (`EC PRIVATE KEY`), as Consul's agent answers.
    pub key_sec1_pem: String,
    pub spiffe_id: String,
}

impl Default for Mesh {
    fn default() -> Self {
        Self::new()
    }
}

impl Mesh {
    /// A CA with a fresh trust domain.
    pub fn new() -> Mesh {
        Self::with_trust_domain(&format!(
            "{:08x}-2222-4333-8444-555555555555.consul",
            std::process::id()
        ))
    }

    pub fn with_trust_domain(td: &str) -> Mesh {
        let root = ca::generate_root(
            td,
            1,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(10 * 365 * 86_400),
            None,
        )
        .unwrap();
        Mesh {
            trust_domain: td.to_owned(),
            root,
            serial: Cell::new(2),
        }
    }

    /// A leaf for `service` in the default tenancy of `dc1`.
    pub fn leaf(&self, service: &str) -> Leaf {
        self.leaf_for(&ServiceName::new(service, EntMeta::default()), "dc1")
    }

    /// A leaf for any service identity.
    pub fn leaf_for(&self, service: &ServiceName, dc: &str) -> Leaf {
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        let leaf = ca::sign_leaf(
            ca::SigningRoot {
                key_pem: &self.root.key_pem,
                common_name: &self.root.common_name,
            },
            &self.trust_domain,
            dc,
            service,
            serial,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(72 * 3600),
        )
        .unwrap();
        Leaf {
            key_sec1_pem: pkcs8_to_sec1_pem(&leaf.key_pem),
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
            spiffe_id: leaf.spiffe_id,
        }
    }

    /// The fields of a function's material.
    pub fn data(&self, leaf: &Leaf) -> ExtensionData {
        ExtensionData {
            private_key_pem: leaf.key_pem.clone(),
            cert_pem: leaf.cert_pem.clone(),
            root_cert_pem: self.root.cert_pem.clone(),
            trust_domain: self.trust_domain.clone(),
        }
    }

    /// The Go registrator's JSON of `leaf` (see [`go_json`]).
    pub fn go_json(&self, leaf: &Leaf) -> String {
        go_json(
            &leaf.key_sec1_pem,
            &leaf.cert_pem,
            &self.root.cert_pem,
            &self.trust_domain,
        )
    }

    /// lambdamesh's registrator's JSON of `leaf` (see [`our_json`]).
    pub fn our_json(&self, leaf: &Leaf) -> String {
        our_json(
            &leaf.key_pem,
            &leaf.cert_pem,
            &self.root.cert_pem,
            &self.trust_domain,
        )
    }
}

/// What Go's `json.Marshal(structs.ExtensionData{...})` writes: fields in declaration order,
/// `peers` omitted when empty, `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`.
pub fn go_json(key_pem: &str, cert_pem: &str, root_pem: &str, trust_domain: &str) -> String {
    let s = |v: &str| {
        serde_json::to_string(v)
            .unwrap()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    };
    format!(
        "{{\"privateKeyPEM\":{},\"certPEM\":{},\"rootCertPEM\":{},\"trustDomain\":{}}}",
        s(key_pem),
        s(cert_pem),
        s(root_pem),
        s(trust_domain)
    )
}

/// What lambdamesh's registrator writes (serde_json's sorted keys).
pub fn our_json(key_pem: &str, cert_pem: &str, root_pem: &str, trust_domain: &str) -> String {
    json!({
        "privateKeyPEM": key_pem,
        "certPEM": cert_pem,
        "rootCertPEM": root_pem,
        "trustDomain": trust_domain,
    })
    .to_string()
}

/// Rewrites a PKCS#8 P-256 key (`PRIVATE KEY`) as SEC1 (`EC PRIVATE KEY`) with the curve named
/// in `[0]`, the form Consul's agent answers with.
pub fn pkcs8_to_sec1_pem(pkcs8_pem: &str) -> String {
    let b64: String = pkcs8_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let (info, _) = crate::der::expect(&der, 0x30, "pkcs8").unwrap();
    let (_, _, rest) = crate::der::tlv(info).unwrap(); // version
    let (_, _, rest) = crate::der::tlv(rest).unwrap(); // algorithm
    let (inner, _) = crate::der::expect(rest, 0x04, "privateKey").unwrap();
    let (ec, _) = crate::der::expect(inner, 0x30, "ECPrivateKey").unwrap();
    let (_, version, rest) = crate::der::tlv(ec).unwrap();
    let (_, private, rest) = crate::der::tlv(rest).unwrap();
    // prime256v1, 1.2.840.10045.3.1.7
    let curve = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut body = Vec::new();
    body.extend(encode(0x02, version));
    body.extend(encode(0x04, private));
    body.extend(encode(0xa0, &curve));
    body.extend_from_slice(rest); // [1] publicKey, as it was
    let sec1 = encode(0x30, &body);
    let b64 = base64::engine::general_purpose::STANDARD.encode(sec1);
    let mut pem = String::from("-----BEGIN EC PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END EC PRIVATE KEY-----\n");
    pem
}

fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}
