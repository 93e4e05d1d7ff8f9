//! TLS of the inter-server protocol: every server presents a server certificate from the mesh CA
//! (`spiffe://<td>/agent/server/dc/<dc>`, DNS `server.<dc>.consul`), verifies its peer's chain
//! against the trust domain's roots, and reads the peer's datacenter from its URI SAN. rustls with
//! the ring provider, TLS 1.2 and 1.3.
//!
//! A server answers clients without a certificate too (a secondary's first join has none yet);
//! each request decides what it needs from [`Peer`].

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no usable certificate in {what}")]
    NoCertificate { what: &'static str },
    #[error("bad PEM in {what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS verifier: {0}")]
    Verifier(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM text.
///
/// # Errors
/// Bad PEM, or no certificate at all.
pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "the server key",
        message: e.to_string(),
    })
}

fn root_store(roots: &[String]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for pem in roots {
        for c in certs(pem, "the trusted roots")? {
            store.add(c)?;
        }
    }
    if store.is_empty() {
        return Err(TlsError::NoCertificate {
            what: "the trusted roots",
        });
    }
    Ok(Arc::new(store))
}

/// The TLS configuration a server listens with: its chain (leaf first) and key; client
/// certificates verified against `roots` when presented.
///
/// # Errors
/// Bad PEM, or rustls refuses the parts.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    roots: &[String],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(root_store(roots)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(chain_pem, "the server certificate")?, key(key_pem)?)?;
    Ok(Arc::new(config))
}

/// The TLS configuration a server dials another with: the peer's chain verified against `roots`
/// and its DNS name (`server.<dc>.consul`, the SNI); this server's own chain and key presented
/// when it has them.
///
/// # Errors
/// Bad PEM, or rustls refuses the parts.
pub fn client_config(
    roots: &[String],
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(root_store(roots)?, provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier);
    let config = match identity {
        Some((chain, key_pem)) => {
            builder.with_client_auth_cert(certs(chain, "the server certificate")?, key(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Who is on the other end of a verified connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No certificate (a first join).
    Anonymous,
    /// A server of this trust domain, in this datacenter.
    Server { datacenter: String },
    /// A certificate that chains to the roots but names no server (a service's leaf, say).
    Other { uri: Option<String> },
}

/// The peer of a verified connection, from its end-entity certificate's URI SAN.
pub fn peer(certs: Option<&[CertificateDer<'_>]>, trust_domain: &str) -> Peer {
    let Some(first) = certs.and_then(|c| c.first()) else {
        return Peer::Anonymous;
    };
    let uris = ca::uri_sans(first.as_ref()).unwrap_or_default();
    for uri in &uris {
        if let Some(dc) = mesh_model::federation::parse_server_spiffe_id(uri, trust_domain) {
            return Peer::Server { datacenter: dc };
        }
    }
    Peer::Other {
        uri: uris.into_iter().next(),
    }
}
