//! The function's mTLS material as the registrator stores it in Parameter Store (reference §1.9,
//! `structs/ext_data.go`): `{"privateKeyPEM","certPEM","rootCertPEM","trustDomain","peers"?}`,
//! decoded into DER certificates and a key that are known to belong together.
//!
//! Decoding follows Go's `encoding/json` into that struct: keys match in any case, unknown keys
//! and `null`s are ignored, so the Go registrator's JSON and ours read the same. `peers` is
//! accepted and unused (peering is a TODO in the reference too). Pure; fuzzed.

use std::sync::Arc;

use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{der, upstream};

/// The four fields, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionData {
    pub private_key_pem: String,
    pub cert_pem: String,
    pub root_cert_pem: String,
    pub trust_domain: String,
}

/// Why stored material cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("not a JSON object")]
    NotObject,
    #[error("{field} is missing or empty")]
    Missing { field: &'static str },
    #[error("{field} is not a string")]
    NotString { field: &'static str },
    #[error("certPEM holds no certificate")]
    NoCertificate,
    #[error("rootCertPEM holds no certificate")]
    NoRoot,
    #[error("{field}: {reason}")]
    Pem { field: &'static str, reason: String },
    #[error("trustDomain {0:?} is not a DNS name")]
    TrustDomain(String),
    #[error("privateKeyPEM is not a usable key: {0}")]
    Key(String),
    #[error("privateKeyPEM does not belong to the certificate in certPEM")]
    KeyMismatch,
    #[error("a root in rootCertPEM cannot be a trust anchor: {0}")]
    Root(String),
}

/// Decodes the parameter's value.
///
/// # Errors
/// Not a JSON object, or a required field missing, empty or not a string.
pub fn decode(value: &[u8]) -> Result<ExtensionData, MaterialError> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(value) else {
        return Err(MaterialError::NotObject);
    };
    let field = |name: &'static str| -> Result<String, MaterialError> {
        // Go's decoder: an exact key wins, else the first key equal in any case.
        let found = map.get(name).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        });
        match found {
            None | Some(Value::Null) => Err(MaterialError::Missing { field: name }),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(MaterialError::Missing { field: name })
            }
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(MaterialError::NotString { field: name }),
        }
    };
    Ok(ExtensionData {
        private_key_pem: field("privateKeyPEM")?,
        cert_pem: field("certPEM")?,
        root_cert_pem: field("rootCertPEM")?,
        trust_domain: field("trustDomain")?,
    })
}

/// Usable material: the function's identity and the roots, parsed and checked.
#[derive(Debug)]
pub struct Material {
    /// The leaf (and any chain after it) with its signing key; keys checked to match.
    pub identity: Arc<CertifiedKey>,
    /// Each root of `rootCertPEM` (Consul writes one; a bundle of several is accepted).
    pub roots: Vec<CertificateDer<'static>>,
    pub trust_domain: String,
    /// Hex SHA-256 of the leaf's DER: what Envoy's XFCC `Hash` shows, and what the logs name.
    pub leaf_sha256: String,
    /// The leaf's validity, epoch seconds (for the logs).
    pub leaf_not_after: i64,
    /// The decoded fields, to tell a changed parameter from the same one re-read.
    pub data: ExtensionData,
}

impl Material {
    /// Parses and checks `data` with `provider`'s key loader.
    ///
    /// # Errors
    /// PEM that holds no certificate or key, a key that does not belong to the leaf, roots that
    /// are not CA certificates, a trust domain that cannot stand in an SNI.
    pub fn from_data(
        data: ExtensionData,
        provider: &CryptoProvider,
    ) -> Result<Self, MaterialError> {
        let pem = |field: &'static str| {
            move |e: rustls::pki_types::pem::Error| MaterialError::Pem {
                field,
                reason: e.to_string(),
            }
        };
        let chain = CertificateDer::pem_slice_iter(data.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("certPEM"))?;
        let leaf = chain.first().ok_or(MaterialError::NoCertificate)?;
        let facts = der::cert_facts(leaf.as_ref()).map_err(|e| MaterialError::Pem {
            field: "certPEM",
            reason: e.to_string(),
        })?;
        let leaf_sha256 = hex::encode(Sha256::digest(leaf.as_ref()));
        let roots = CertificateDer::pem_slice_iter(data.root_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("rootCertPEM"))?;
        if roots.is_empty() {
            return Err(MaterialError::NoRoot);
        }
        for root in &roots {
            webpki_anchor(root)?;
        }
        let td = &data.trust_domain;
        if !td.split('.').all(upstream::valid_label) {
            return Err(MaterialError::TrustDomain(td.clone()));
        }
        let key = PrivateKeyDer::from_pem_slice(data.private_key_pem.as_bytes())
            .map_err(pem("privateKeyPEM"))?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| MaterialError::Key(e.to_string()))?;
        let identity = CertifiedKey::new(chain, signing_key);
        identity
            .keys_match()
            .map_err(|_| MaterialError::KeyMismatch)?;
        Ok(Material {
            identity: Arc::new(identity),
            roots,
            trust_domain: td.to_ascii_lowercase(),
            leaf_sha256,
            leaf_not_after: facts.not_after,
            data,
        })
    }
}

/// Whether a root can be a trust anchor (what `RootCertStore::add` will do later).
fn webpki_anchor(root: &CertificateDer<'_>) -> Result<(), MaterialError> {
    let mut store = rustls::RootCertStore::empty();
    store
        .add(root.clone())
        .map_err(|e| MaterialError::Root(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::Mesh;

    #[test]
    fn go_json_in_any_key_case_with_unknown_keys_and_peers() {
        let v = br#"{"privatekeypem":"K","CertPEM":"C","rootCertPEM":"R","trustDomain":"td.consul",
                     "peers":[{"name":"p","trustDomain":"x"}],"extra":1,"certPEM":"C2"}"#;
        let d = decode(v).unwrap();
        assert_eq!(
            d,
            ExtensionData {
                private_key_pem: "K".into(),
                cert_pem: "C2".into(),
                root_cert_pem: "R".into(),
                trust_domain: "td.consul".into(),
            }
        );
    }

    #[test]
    fn missing_null_empty_and_mistyped_fields_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (b"[]", "not a JSON object"),
            (
                br#"{"privateKeyPEM":null,"certPEM":"C","rootCertPEM":"R","trustDomain":"t"}"#,
                "privateKeyPEM is missing or empty",
            ),
            (
                br#"{"privateKeyPEM":"K","certPEM":" ","rootCertPEM":"R","trustDomain":"t"}"#,
                "certPEM is missing or empty",
            ),
            (
                br#"{"privateKeyPEM":"K","certPEM":"C","rootCertPEM":1,"trustDomain":"t"}"#,
                "rootCertPEM is not a string",
            ),
            (
                br#"{"privateKeyPEM":"K","certPEM":"C","rootCertPEM":"R"}"#,
                "trustDomain is missing or empty",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn material_from_a_mesh_ca_parses_and_is_checked() {
        let provider = rustls::crypto::ring::default_provider();
        let mesh = Mesh::new();
        let fn_leaf = mesh.leaf("greeter");
        let m = Material::from_data(mesh.data(&fn_leaf), &provider).unwrap();
        assert_eq!(m.trust_domain, mesh.trust_domain);
        assert_eq!(m.roots.len(), 1);
        assert_eq!(m.leaf_sha256.len(), 64);
        // A SEC1 key (as Consul writes it) is as good as PKCS#8 (as lambdamesh writes it).
        let mut sec1 = mesh.data(&fn_leaf);
        sec1.private_key_pem = fn_leaf.key_sec1_pem.clone();
        Material::from_data(sec1, &provider).unwrap();
        // The key of another leaf does not belong to this certificate.
        let mut wrong = mesh.data(&fn_leaf);
        wrong.private_key_pem = mesh.leaf("other").key_pem;
        assert_eq!(
            Material::from_data(wrong, &provider).unwrap_err(),
            MaterialError::KeyMismatch
        );
        let mut no_root = mesh.data(&fn_leaf);
        no_root.root_cert_pem = "nothing here".into();
        assert_eq!(
            Material::from_data(no_root, &provider).unwrap_err(),
            MaterialError::NoRoot
        );
        let mut bad_td = mesh.data(&fn_leaf);
        bad_td.trust_domain = "a b.consul".into();
        assert!(matches!(
            Material::from_data(bad_td, &provider).unwrap_err(),
            MaterialError::TrustDomain(_)
        ));
    }
}
