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

/// When a transport error is a certificate problem, what to tell the user: which certificate
/// failed and the setting that decides trust (`CONSUL_CACERT`, naming the file in use). Other
/// failures (refused, reset, timeout) are `None`: they may pass, a certificate problem will not.
pub(crate) fn certificate_problem(e: &ureq::Error, ca_file: Option<&str>) -> Option<String> {
    let tls = match e {
        ureq::Error::Rustls(t) => t,
        // The handshake runs inside I/O, so rustls's error usually arrives wrapped in one.
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    let trust = match ca_file {
        Some(path) => format!("the CA certificates in CONSUL_CACERT ({path})"),
        None => "the built-in roots (CONSUL_CACERT is not set)".to_owned(),
    };
    match tls {
        rustls::Error::InvalidCertificate(why) => Some(format!(
            "the server's certificate is not accepted ({why}) by {trust}: set CONSUL_CACERT (-ca-file) to the PEM file of the CA that signed the server's certificate, and address the server by a name its certificate holds"
        )),
        rustls::Error::AlertReceived(alert) if refuses_our_certificate(*alert) => Some(format!(
            "the server refused the client's certificate ({alert:?}): it requires a client certificate its CA signed (Consul's verify_incoming)"
        )),
        _ => None,
    }
}

fn refuses_our_certificate(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
    )
}
