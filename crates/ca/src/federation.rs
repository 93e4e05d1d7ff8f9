//! The certificates of several datacenters (`docs/multi-dc.md`): a secondary's intermediate CA,
//! signed by the primary's root for a key the secondary made and proved it holds, and the server
//! certificates servers present to each other (signed by a root or an intermediate).
//!
//! A signer here is always a [`SigningRoot`] (a key and the common name of its certificate): an
//! intermediate is made with the same subject shape as a root (CN only, SKI = SHA-256 of the
//! key), so the issuer of a leaf is rebuilt from those two alone, whichever CA it is.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
    SignatureAlgorithm, SigningKey as _,
};
use time::OffsetDateTime;

use mesh_model::{connect, federation};

use crate::sign::{
    CaError, SigningRoot, end_entity_params, key_id, load_key, root_params, serial_bytes,
    serial_hex,
};

/// Length of an uncompressed P-256 point (`04 || X || Y`).
const P256_POINT_LEN: usize = 65;

/// A P-256 public key as an uncompressed point, checked for shape (the curve check is the
/// signature check of [`verify_possession`], which every key that reaches signing has passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P256PublicKey(Vec<u8>);

impl P256PublicKey {
    /// Reads the raw point.
    ///
    /// # Errors
    /// Not 65 bytes starting with `04`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CaError> {
        if bytes.len() != P256_POINT_LEN || bytes[0] != 0x04 {
            return Err(CaError::BadPublicKey);
        }
        Ok(Self(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A fresh intermediate key held by a secondary, with its proof of possession for the primary.
#[derive(Debug, Clone)]
pub struct IntermediateKey {
    /// PKCS#8 PEM (never leaves the secondary).
    pub key_pem: String,
    pub public_key: P256PublicKey,
    /// ECDSA (ASN.1) signature over [`federation::possession_message`].
    pub proof: Vec<u8>,
}

/// Makes a P-256 key for a secondary's intermediate and signs the possession message with it.
///
/// # Errors
/// Key generation or signing fails.
pub fn new_intermediate_key(
    trust_domain: &str,
    datacenter: &str,
) -> Result<IntermediateKey, CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::KeyGen)?;
    let public_key = P256PublicKey::from_bytes(key.public_key_raw())?;
    let msg = federation::possession_message(trust_domain, datacenter, public_key.as_bytes());
    let proof = key.sign(&msg).map_err(CaError::Sign)?;
    Ok(IntermediateKey {
        key_pem: key.serialize_pem(),
        public_key,
        proof,
    })
}

/// Checks that `proof` is the holder of `public_key` signing the possession message of
/// `trust_domain` and `datacenter` (which also checks the point is on the curve).
///
/// # Errors
/// [`CaError::BadProof`].
pub fn verify_possession(
    trust_domain: &str,
    datacenter: &str,
    public_key: &P256PublicKey,
    proof: &[u8],
) -> Result<(), CaError> {
    let msg = federation::possession_message(trust_domain, datacenter, public_key.as_bytes());
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        public_key.as_bytes(),
    )
    .verify(&msg, proof)
    .map_err(|_| CaError::BadProof)
}

/// A signed intermediate CA certificate.
#[derive(Debug, Clone)]
pub struct IssuedIntermediate {
    pub cert_pem: String,
    pub common_name: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Signs the intermediate CA of `datacenter` for `public_key` with the primary's `root`: CA with
/// path length 0 (it signs leaves only), the trust domain's signing URI SAN (as Consul's
/// intermediates carry), valid `[not_before, not_after)` as [`federation::intermediate_validity`]
/// decided. The caller has checked the key with [`verify_possession`].
///
/// # Errors
/// The root's key cannot be read, or signing fails.
pub fn sign_intermediate(
    root: SigningRoot<'_>,
    trust_domain: &str,
    datacenter: &str,
    public_key: &P256PublicKey,
    serial: u64,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<IssuedIntermediate, CaError> {
    let root_key = load_key(root.key_pem)?;
    let issuer = Issuer::new(root_params(root.common_name, &root_key), root_key);
    let common_name = federation::intermediate_common_name(trust_domain, datacenter, serial);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(public_key));
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(serial)));
    params.not_before = whole_seconds(not_before)?;
    params.not_after = whole_seconds(not_after)?;
    let uri = connect::signing_spiffe_id(trust_domain);
    params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(CaError::Params)?)];
    let cert = params
        .signed_by(public_key, &issuer)
        .map_err(CaError::Sign)?;
    Ok(IssuedIntermediate {
        cert_pem: cert.pem(),
        common_name,
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// Cross-signs the primary's active root with a previous root's key: a certificate with the
/// active root's subject and key, issued by the previous root. Presented after a server
/// certificate, it lets a peer that still trusts only the previous root (a secondary that was cut
/// off during a rotation) verify the new chain, and so learn the new root over a verified
/// connection. Valid from `not_before` until `not_after`, which the caller bounds by both roots.
///
/// # Errors
/// A key cannot be read, or signing fails.
pub fn cross_sign_root(
    previous: SigningRoot<'_>,
    active_key_pem: &str,
    active_common_name: &str,
    serial: u64,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, CaError> {
    let prev_key = load_key(previous.key_pem)?;
    let issuer = Issuer::new(root_params(previous.common_name, &prev_key), prev_key);
    let active_key = load_key(active_key_pem)?;
    let mut params = root_params(active_common_name, &active_key);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(serial)));
    params.not_before = whole_seconds(not_before)?;
    params.not_after = whole_seconds(not_after)?;
    let cert = params
        .signed_by(&active_key, &issuer)
        .map_err(CaError::Sign)?;
    Ok(cert.pem())
}

/// `t` without its sub-second part (certificate times are whole seconds).
fn whole_seconds(t: OffsetDateTime) -> Result<OffsetDateTime, CaError> {
    t.replace_nanosecond(0).map_err(|_| CaError::Validity)
}

/// A server's certificate and key.
#[derive(Debug, Clone)]
pub struct IssuedServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Signs the certificate a server of `datacenter` presents to other servers: URI SAN
/// `spiffe://<td>/agent/server/dc/<dc>` (its identity), DNS SANs `server.<dc>.<domain>` and
/// `<node>.server.<dc>.<domain>` (the names clients verify and gateways route), both EKUs.
///
/// # Errors
/// The signer's key cannot be read, or signing fails.
#[allow(clippy::too_many_arguments)]
pub fn sign_server_cert(
    signer: SigningRoot<'_>,
    trust_domain: &str,
    datacenter: &str,
    node: &str,
    domain: &str,
    serial: u64,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<IssuedServerCert, CaError> {
    let now = now.replace_nanosecond(0).map_err(|_| CaError::Validity)?;
    let signer_key = load_key(signer.key_pem)?;
    let issuer = Issuer::new(root_params(signer.common_name, &signer_key), signer_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::KeyGen)?;
    let server_name = federation::server_sni(datacenter, None, domain);
    let uri = federation::server_spiffe_id(trust_domain, datacenter);
    let mut sans = vec![
        SanType::URI(uri.try_into().map_err(CaError::Params)?),
        SanType::DnsName(server_name.clone().try_into().map_err(CaError::Params)?),
    ];
    if !node.is_empty() {
        let node_name = federation::server_sni(datacenter, Some(node), domain);
        if let Ok(n) = node_name.try_into() {
            sans.push(SanType::DnsName(n));
        }
    }
    let params = end_entity_params(
        &server_name,
        sans,
        serial,
        now,
        ttl,
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        &key,
    )?;
    let cert = params.signed_by(&key, &issuer).map_err(CaError::Sign)?;
    Ok(IssuedServerCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial_hex: serial_hex(serial),
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

#[cfg(test)]
mod tests;
