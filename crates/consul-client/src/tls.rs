//! HTTPS towards Consul with a private CA (`CONSUL_CACERT`): the file's certificates replace the
//! built-in roots.

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read CONSUL_CACERT {path}: {source}")]
    CaCert {
        path: String,
        source: std::io::Error,
    },
    #[error("CONSUL_CACERT {0} holds no PEM certificate")]
    NoCert(String),
}

/// The TLS configuration trusting the certificates of the PEM file at `path`.
pub(crate) fn config(path: &str) -> Result<ureq::tls::TlsConfig, SetupError> {
    let pem = std::fs::read_to_string(path).map_err(|source| SetupError::CaCert {
        path: path.to_owned(),
        source,
    })?;
    let certs = pem_certs(&pem);
    if certs.is_empty() {
        return Err(SetupError::NoCert(path.to_owned()));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}

/// Every parsable `CERTIFICATE` block of a PEM text (other blocks and junk are skipped).
fn pem_certs(pem: &str) -> Vec<ureq::tls::Certificate<'static>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let tail = &rest[start..];
        let Some(end) = tail.find(END) else {
            break;
        };
        let block = &tail[..end + END.len()];
        if let Ok(c) = ureq::tls::Certificate::from_pem(block.as_bytes()) {
            out.push(c.to_owned());
        }
        rest = &tail[block.len()..];
    }
    out
}
