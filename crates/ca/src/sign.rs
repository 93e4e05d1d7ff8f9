//! Root generation and leaf signing with rcgen (ring backend).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
    SerialNumber,
};
use sha1::Digest as _;
use time::OffsetDateTime;

use mesh_model::connect;
use mesh_model::names::ServiceName;

/// `Name` of a root in `/v1/connect/ca/roots`, as Consul's built-in provider names it.
pub const ROOT_NAME: &str = "Consul CA Primary Cert";

/// Leaves are back-dated by a minute so that a peer whose clock runs slightly behind accepts
/// them at once (Consul's `NotBefore = now - 1 min`).
pub const LEAF_BACKDATE: Duration = Duration::from_secs(60);

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot generate a key: {0}")]
    KeyGen(#[source] rcgen::Error),
    #[error("invalid private key: {0}")]
    BadKey(#[source] rcgen::Error),
    #[error("the private key must be an ec P-256 key")]
    WrongKeyType,
    #[error("cannot build the certificate: {0}")]
    Params(#[source] rcgen::Error),
    #[error("cannot sign the certificate: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("validity out of range")]
    Validity,
    /// A public key that is not an uncompressed P-256 point (65 bytes, `04 || X || Y`).
    #[error("the public key must be an uncompressed P-256 point (65 bytes starting with 04)")]
    BadPublicKey,
    /// A secondary's proof that it holds the key it asks to certify did not verify.
    #[error("the proof of possession of the intermediate key does not verify")]
    BadProof,
}

/// A freshly made root: what the store keeps and the roots endpoint shows.
#[derive(Debug, Clone)]
pub struct GeneratedRoot {
    pub cert_pem: String,
    /// PKCS#8 PEM of the signing key.
    pub key_pem: String,
    /// Consul's root `ID`: colon-hex SHA-1 of the certificate's DER.
    pub id: String,
    /// Colon-hex Subject Key Identifier (Consul's `SigningKeyID`).
    pub signing_key_id: String,
    pub common_name: String,
    pub serial: u64,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// What signing needs from a stored root. The root is never re-parsed: its issuer name and key ID
/// are rebuilt from the same inputs that made it, which encode byte-for-byte the same.
#[derive(Debug, Clone, Copy)]
pub struct SigningRoot<'a> {
    pub key_pem: &'a str,
    pub common_name: &'a str,
}

/// A signed leaf with its fresh key.
#[derive(Debug, Clone)]
pub struct IssuedLeaf {
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// Colon-hex serial, as Consul's leaf JSON shows it.
    pub serial_hex: String,
    pub spiffe_id: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Lower-case colon-separated hex (`0a:1b:...`), Consul's `connect.HexString`.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Minimal big-endian bytes of a serial (Go's `big.Int.Bytes`), never empty.
pub(crate) fn serial_bytes(serial: u64) -> Vec<u8> {
    let bytes = serial.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    bytes[first..].to_vec()
}

/// Colon-hex form of a serial number as Consul prints leaf serials.
pub fn serial_hex(serial: u64) -> String {
    colon_hex(&serial_bytes(serial))
}

/// Consul's key ID: SHA-256 over the DER SubjectPublicKeyInfo (`connect.KeyId`).
pub(crate) fn key_id(key: &impl PublicKeyData) -> Vec<u8> {
    sha2::Sha256::digest(key.subject_public_key_info()).to_vec()
}

fn root_common_name(trust_domain: &str, serial: u64) -> String {
    let short: String = trust_domain.chars().take(8).collect();
    format!("pri-{serial:x}.consul.ca.{short}.consul")
}

pub(crate) fn root_params(common_name: &str, key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(key));
    params
}

pub(crate) fn load_key(pem: &str) -> Result<KeyPair, CaError> {
    let key = KeyPair::from_pem(pem).map_err(CaError::BadKey)?;
    if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
        return Err(CaError::WrongKeyType);
    }
    Ok(key)
}

pub(crate) fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime, CaError> {
    let d = time::Duration::try_from(d).map_err(|_| CaError::Validity)?;
    t.checked_add(d).ok_or(CaError::Validity)
}

/// Makes a self-signed CA root for `trust_domain` valid from `now` for `ttl`, with the URI SAN
/// `spiffe://<td>`. Uses `key_pem` (PKCS#8 P-256) when given, else a fresh P-256 key.
///
/// # Errors
/// The key cannot be read or made, or the validity overflows.
pub fn generate_root(
    trust_domain: &str,
    serial: u64,
    now: OffsetDateTime,
    ttl: Duration,
    key_pem: Option<&str>,
) -> Result<GeneratedRoot, CaError> {
    let key = match key_pem {
        Some(pem) => load_key(pem)?,
        None => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::KeyGen)?,
    };
    // X.509 times have whole seconds; keep the reported times equal to the certificate's.
    let now = now.replace_nanosecond(0).map_err(|_| CaError::Validity)?;
    let common_name = root_common_name(trust_domain, serial);
    let mut params = root_params(&common_name, &key);
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(serial)));
    params.not_before = now;
    params.not_after = add(now, ttl)?;
    let uri = connect::signing_spiffe_id(trust_domain);
    params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(CaError::Params)?)];
    let cert = params.self_signed(&key).map_err(CaError::Sign)?;
    let ski = key_id(&key);
    Ok(GeneratedRoot {
        id: colon_hex(&sha1::Sha1::digest(cert.der())),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        signing_key_id: colon_hex(&ski),
        common_name,
        serial,
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// Signs a leaf for `service` with a fresh P-256 key: URI SAN = the service's SPIFFE ID,
/// `NotBefore = now - 1 min`, `NotAfter = NotBefore + ttl`, Consul's key usages and both EKUs.
///
/// # Errors
/// The root's key cannot be read, or signing fails.
pub fn sign_leaf(
    root: SigningRoot<'_>,
    trust_domain: &str,
    datacenter: &str,
    service: &ServiceName,
    serial: u64,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<IssuedLeaf, CaError> {
    let now = now.replace_nanosecond(0).map_err(|_| CaError::Validity)?;
    let root_key = load_key(root.key_pem)?;
    let issuer = Issuer::new(root_params(root.common_name, &root_key), root_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::KeyGen)?;
    let spiffe_id = connect::service_spiffe_id(trust_domain, service, datacenter);
    let params = end_entity_params(
        &connect::service_cn(service, trust_domain),
        vec![SanType::URI(
            spiffe_id.clone().try_into().map_err(CaError::Params)?,
        )],
        serial,
        now,
        ttl,
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::DataEncipherment,
        ],
        &key,
    )?;
    let cert = params.signed_by(&key, &issuer).map_err(CaError::Sign)?;
    Ok(IssuedLeaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial_hex: serial_hex(serial),
        spiffe_id,
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// What every certificate the CA issues to an end entity (a service's leaf, a server) has: the
/// common name and SANs given, the serial, validity from `now` back-dated by [`LEAF_BACKDATE`]
/// for `ttl`, not a CA, client and server auth, and the key identifiers that chain it.
pub(crate) fn end_entity_params(
    common_name: &str,
    sans: Vec<SanType>,
    serial: u64,
    now: OffsetDateTime,
    ttl: Duration,
    key_usages: Vec<KeyUsagePurpose>,
    key: &KeyPair,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.serial_number = Some(SerialNumber::from_slice(&serial_bytes(serial)));
    params.not_before = now
        .checked_sub(time::Duration::try_from(LEAF_BACKDATE).map_err(|_| CaError::Validity)?)
        .ok_or(CaError::Validity)?;
    params.not_after = add(params.not_before, ttl)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = key_usages;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(key));
    Ok(params)
}

#[cfg(test)]
mod tests;
