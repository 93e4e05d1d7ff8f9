//! One rustls client configuration per upstream, built once per material (never per connection,
//! as the reference did): the function's leaf as the client certificate, the roots as trust
//! anchors, a [`MeshVerifier`] expecting that upstream's SPIFFE ID, and the upstream's SNI.
//!
//! Each configuration keeps its own TLS session cache, so after the first connection a new one
//! resumes its session (one round trip, no certificate signing or chain verification). New
//! material means new configurations and empty caches: a resumed session would otherwise carry
//! the old identity on.

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore, SignatureScheme,
    client::{ResolvesClientCert, Resumption},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName},
    sign::CertifiedKey,
};

use crate::{material::Material, upstream::Upstream, verify::MeshVerifier};

/// The client side of every upstream for one material.
#[derive(Debug)]
pub struct TlsSet {
    /// In the order of the upstreams.
    pub upstreams: Vec<UpstreamTls>,
}

/// One upstream's client configuration and the names it uses.
#[derive(Debug)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub spiffe_id: String,
}

/// Why configurations could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("SNI {sni:?} is not a DNS name")]
    ServerName { sni: String },
    #[error("root certificate: {0}")]
    Root(rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// Builds the configurations of `upstreams` for `material`, trusting its roots and `retired`
/// (roots of earlier material still trusted; see `state`), with session resumption unless
/// `resumption` is false.
///
/// # Errors
/// A root that cannot be a trust anchor, or an SNI that is not a DNS name.
pub fn build(
    material: &Material,
    retired: &[CertificateDer<'static>],
    upstreams: &[Upstream],
    provider: &Arc<CryptoProvider>,
    resumption: bool,
) -> Result<TlsSet, TlsError> {
    let mut roots = RootCertStore::empty();
    for root in material.roots.iter().chain(retired) {
        roots.add(root.clone()).map_err(TlsError::Root)?;
    }
    let roots = Arc::new(roots);
    let identity: Arc<dyn ResolvesClientCert> = Arc::new(Identity(material.identity.clone()));
    let td = &material.trust_domain;
    let upstreams = upstreams
        .iter()
        .map(|u| {
            let sni = u.sni(td);
            let server_name =
                ServerName::try_from(sni.clone()).map_err(|_| TlsError::ServerName { sni })?;
            let spiffe_id = u.spiffe_id(td);
            let verifier = Arc::new(MeshVerifier::new(
                roots.clone(),
                spiffe_id.clone(),
                provider.signature_verification_algorithms,
            ));
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Config)?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_cert_resolver(identity.clone());
            if !resumption {
                config.resumption = Resumption::disabled();
            }
            Ok(UpstreamTls {
                config: Arc::new(config),
                server_name,
                spiffe_id,
            })
        })
        .collect::<Result<Vec<_>, TlsError>>()?;
    Ok(TlsSet { upstreams })
}

/// The function's certificate, offered whatever the server asks for (the mesh has one CA).
#[derive(Debug)]
struct Identity(Arc<CertifiedKey>);

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
