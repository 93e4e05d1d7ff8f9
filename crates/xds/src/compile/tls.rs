//! TLS transport sockets: mesh mTLS on both sides.

use crate::compile::CertPair;
use crate::pb::{self, core, pack_any, tls};

fn common(leaf: &CertPair, roots: &[String], san: Option<&str>) -> tls::CommonTlsContext {
    let validation = tls::CertificateValidationContext {
        trusted_ca: Some(pb::inline(&roots.join("\n"))),
        match_typed_subject_alt_names: san
            .map(|s| {
                vec![tls::SubjectAltNameMatcher {
                    san_type: tls::subject_alt_name_matcher::SanType::Uri as i32,
                    matcher: Some(pb::exact_matcher(s)),
                    ..Default::default()
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    tls::CommonTlsContext {
        tls_certificates: vec![tls::TlsCertificate {
            certificate_chain: Some(pb::inline(&leaf.cert_pem)),
            private_key: Some(pb::inline(&leaf.key_pem)),
            ..Default::default()
        }],
        validation_context_type: Some(
            tls::common_tls_context::ValidationContextType::ValidationContext(validation),
        ),
        ..Default::default()
    }
}

/// Client side of mesh mTLS: present `leaf`, send `sni`, require the peer to be `spiffe_id`.
pub fn upstream(
    leaf: &CertPair,
    roots: &[String],
    sni: &str,
    spiffe_id: &str,
) -> core::TransportSocket {
    let ctx = tls::UpstreamTlsContext {
        common_tls_context: Some(common(leaf, roots, Some(spiffe_id))),
        sni: sni.to_owned(),
        ..Default::default()
    };
    core::TransportSocket {
        name: "tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
            ctx,
        ))),
    }
}

/// Server side of mesh mTLS: present `leaf`, require a client certificate from the roots.
pub fn downstream(leaf: &CertPair, roots: &[String]) -> core::TransportSocket {
    let ctx = tls::DownstreamTlsContext {
        common_tls_context: Some(common(leaf, roots, None)),
        require_client_certificate: Some(pb::BoolValue { value: true }),
        ..Default::default()
    };
    core::TransportSocket {
        name: "tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
            ctx,
        ))),
    }
}
