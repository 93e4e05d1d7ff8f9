//! Who the far end of a connection must be: its chain verified against the mesh roots (with the
//! ServerAuth usage, no DNS name check: mesh leaves carry none), **and** its one URI SAN equal to
//! the upstream's SPIFFE ID (ASCII case aside, as the reference compared). The reference's main
//! branch dropped the second check; without it any mesh identity behind the gateway would be
//! accepted for any upstream.

use std::sync::Arc;

use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        verify_server_cert_signed_by_trust_anchor,
    },
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::ParsedCertificate,
};

use crate::der;

/// The peer presented a valid chain but another identity.
#[derive(Debug, thiserror::Error)]
#[error("peer is {presented}, expected {expected}")]
pub struct WrongIdentity {
    pub expected: String,
    /// The URI SANs found, joined (`none` when there are none).
    pub presented: String,
}

/// Verifies the peer of one upstream.
#[derive(Debug)]
pub struct MeshVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl MeshVerifier {
    /// A verifier accepting only `expected` (a SPIFFE ID) under `roots`.
    pub fn new(
        roots: Arc<RootCertStore>,
        expected: String,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            roots,
            expected,
            algorithms,
        }
    }
}

impl ServerCertVerifier for MeshVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let uris = der::cert_facts(end_entity.as_ref())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?
            .uris;
        match uris.as_slice() {
            [one] if one.eq_ignore_ascii_case(&self.expected) => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(WrongIdentity {
                    expected: self.expected.clone(),
                    presented: if uris.is_empty() {
                        "none".to_owned()
                    } else {
                        uris.join(",")
                    },
                })),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS error for the logs: rustls prints a verifier's own error in its debug form.
pub fn describe(e: &Error) -> String {
    match e {
        Error::InvalidCertificate(CertificateError::Other(o)) => {
            format!("invalid peer certificate: {o}")
        }
        other => other.to_string(),
    }
}

/// Whether a handshake failed because the material may be out of date: the peer's chain does
/// not reach our roots, or the peer refused our certificate. A wrong identity is not such a
/// failure (a newer root does not change who answers).
pub fn may_be_stale_material(e: &Error) -> bool {
    use rustls::AlertDescription as A;
    match e {
        Error::InvalidCertificate(c) => matches!(
            c,
            CertificateError::UnknownIssuer
                | CertificateError::BadSignature
                | CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
        ),
        Error::AlertReceived(a) => matches!(
            a,
            A::BadCertificate
                | A::UnknownCA
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::CertificateRequired
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::Mesh;
    use rustls::pki_types::pem::PemObject;

    fn verify(mesh_roots: &Mesh, peer: &str, expected: &str) -> Result<(), Error> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(mesh_roots.root.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let v = MeshVerifier::new(
            Arc::new(roots),
            expected.to_owned(),
            rustls::crypto::ring::default_provider().signature_verification_algorithms,
        );
        let cert = CertificateDer::from_pem_slice(peer.as_bytes()).unwrap();
        v.verify_server_cert(
            &cert,
            &[],
            &ServerName::try_from("web.default.dc1.internal.x").unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
    }

    #[test]
    fn chain_and_identity_are_both_required() {
        let mesh = Mesh::new();
        let web = mesh.leaf("web");
        verify(&mesh, &web.cert_pem, &web.spiffe_id).unwrap();
        verify(&mesh, &web.cert_pem, &web.spiffe_id.to_uppercase()).unwrap();
        // Same CA, another service: the chain is fine, the identity is not.
        let other = mesh.leaf("db");
        let e = verify(&mesh, &other.cert_pem, &web.spiffe_id).unwrap_err();
        assert!(
            describe(&e).contains(&format!(
                "peer is {}, expected {}",
                other.spiffe_id, web.spiffe_id
            )),
            "{}",
            describe(&e)
        );
        assert!(!may_be_stale_material(&e));
        // The right name from another CA (same trust domain, so even the same issuer name):
        // the chain fails.
        let foreign = Mesh::with_trust_domain(&mesh.trust_domain);
        let e = verify(&mesh, &foreign.leaf("web").cert_pem, &web.spiffe_id).unwrap_err();
        assert_eq!(e, Error::InvalidCertificate(CertificateError::BadSignature));
        assert!(may_be_stale_material(&e));
    }
}
