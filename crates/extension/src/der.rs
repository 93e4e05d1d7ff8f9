//! The two facts the extension reads from an X.509 certificate itself: its URI SANs (a mesh
//! identity is the one `spiffe://` URI SAN; webpki checks chains but does not expose URIs) and
//! its validity (for the logs). A minimal DER walker over RFC 5280's `TBSCertificate`; anything
//! it does not understand is an error, never a panic. Pure.

/// Why a certificate could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct DerError(&'static str);

/// What the extension reads from a certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertFacts {
    /// The URI SANs, in order.
    pub uris: Vec<String>,
    /// `notBefore` and `notAfter`, seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` of the TBSCertificate.
const VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions`.
const EXTENSIONS: u8 = 0xa3;
/// `uniformResourceIdentifier [6] IA5String` of a GeneralName.
const URI_NAME: u8 = 0x86;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads the URI SANs and validity of a DER certificate.
///
/// # Errors
/// Any structure it cannot follow.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, DerError> {
    let (cert, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(cert, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (validity, after_validity) = expect(rest, SEQUENCE, "validity")?;
    let (not_before, validity) = time(validity)?;
    let (not_after, _) = time(validity)?;
    // subject, subjectPublicKeyInfo, then optional [1] [2] [3]
    rest = tlv(tlv(after_validity)?.2)?.2;
    let mut uris = Vec::new();
    while !rest.is_empty() {
        let (tag, content, tail) = tlv(rest)?;
        rest = tail;
        if tag == EXTENSIONS {
            let (list, _) = expect(content, SEQUENCE, "extensions")?;
            uris = uri_sans(list)?;
        }
    }
    Ok(CertFacts {
        uris,
        not_before,
        not_after,
    })
}

fn uri_sans(mut list: &[u8]) -> Result<Vec<String>, DerError> {
    while !list.is_empty() {
        let (ext, tail) = expect(list, SEQUENCE, "extension")?;
        list = tail;
        let (oid, mut rest) = expect(ext, OID, "extension id")?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        if rest.first() == Some(&BOOLEAN) {
            rest = tlv(rest)?.2;
        }
        let (value, _) = expect(rest, OCTET_STRING, "extension value")?;
        let (mut names, _) = expect(value, SEQUENCE, "subjectAltName")?;
        let mut uris = Vec::new();
        while !names.is_empty() {
            let (tag, content, tail) = tlv(names)?;
            names = tail;
            if tag == URI_NAME {
                let uri = std::str::from_utf8(content).map_err(|_| DerError("URI SAN"))?;
                uris.push(uri.to_owned());
            }
        }
        return Ok(uris);
    }
    Ok(Vec::new())
}

/// One tag-length-value: (tag, content, rest). Single-byte tags only (all X.509 uses here).
pub(crate) fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let short = DerError("truncated");
    let (&tag, rest) = input.split_first().ok_or(short)?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(short)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerError("length"));
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return Err(short);
    }
    let (content, tail) = rest.split_at(len);
    Ok((tag, content, tail))
}

pub(crate) fn expect<'a>(
    input: &'a [u8],
    want: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), DerError> {
    match tlv(input)? {
        (tag, content, rest) if tag == want => Ok((content, rest)),
        _ => Err(DerError(what)),
    }
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as epoch seconds.
fn time(input: &[u8]) -> Result<(i64, &[u8]), DerError> {
    let bad = DerError("time");
    let (tag, content, rest) = tlv(input)?;
    let text = std::str::from_utf8(content).map_err(|_| bad)?;
    let digits = text.strip_suffix('Z').ok_or(bad)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad);
    let (year, tail) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return Err(bad),
    };
    let (mo, d, h, mi, s) = (
        num(&tail[0..2])?,
        num(&tail[2..4])?,
        num(&tail[4..6])?,
        num(&tail[6..8])?,
        num(&tail[8..10])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad);
    }
    Ok((
        days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + s,
        rest,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_spiffe_uri_and_validity_of_a_generated_leaf() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://td.consul/ns/default/dc/dc1/svc/web")
                .unwrap(),
        ));
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let facts = cert_facts(cert.der()).unwrap();
        assert_eq!(facts.uris, ["spiffe://td.consul/ns/default/dc/dc1/svc/web"]);
        assert_eq!(facts.not_before, 1_709_164_800);
        assert_eq!(facts.not_after, 2_556_144_000);
    }

    #[test]
    fn a_certificate_without_sans_has_no_uris() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(cert_facts(cert.der()).unwrap().uris.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in 0..der.len() {
            let _ = cert_facts(&der[..cut]);
        }
        for bad in [&b""[..], b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x1f\x00"] {
            assert!(cert_facts(bad).is_err());
        }
    }

    #[test]
    fn epoch_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
