//! Just enough DER to read a certificate's validity: a PEM certificate made by any CA (ours, or
//! one a caller brings) can be checked for expiry without pulling in a full X.509 parser.

use base64::Engine as _;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Why a certificate's validity could not be read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DerError {
    #[error("not a PEM certificate")]
    NotPem,
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_0: u8 = 0xa0;

/// One tag-length-value: `(tag, content, rest)`.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let bad = DerError::Malformed;
    let (&tag, rest) = input.split_first().ok_or(bad("truncated"))?;
    let (&first, mut rest) = rest.split_first().ok_or(bad("truncated"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad("bad length"));
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return Err(bad("truncated"));
    }
    let (content, tail) = rest.split_at(len);
    Ok((tag, content, tail))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), DerError> {
    let (tag, content, rest) = tlv(input)?;
    if tag != want {
        return Err(DerError::Malformed("unexpected tag"));
    }
    Ok((content, rest))
}

fn digits(s: &[u8]) -> Result<u32, DerError> {
    s.iter().try_fold(0u32, |acc, b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u32::from(b - b'0'))
        } else {
            Err(DerError::Malformed("bad time"))
        }
    })
}

/// `YYMMDDHHMMSSZ` (UTCTime, years 1950..2049) or `YYYYMMDDHHMMSSZ` (GeneralizedTime).
fn der_time(tag: u8, s: &[u8]) -> Result<OffsetDateTime, DerError> {
    let bad = || DerError::Malformed("bad time");
    let (year, rest) = match (tag, s.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&s[..4])?, &s[4..]),
        _ => return Err(bad()),
    };
    if rest.last() != Some(&b'Z') {
        return Err(bad());
    }
    let field = |i: usize| digits(&rest[i..i + 2]).and_then(|v| u8::try_from(v).map_err(|_| bad()));
    let month = Month::try_from(field(0)?).map_err(|_| bad())?;
    let year = i32::try_from(year).map_err(|_| bad())?;
    let date = Date::from_calendar_date(year, month, field(2)?).map_err(|_| bad())?;
    let time = Time::from_hms(field(4)?, field(6)?, field(8)?).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

/// `(NotBefore, NotAfter)` of the first certificate in a PEM text.
///
/// # Errors
/// No `CERTIFICATE` block, bad base64, or DER that is not a certificate.
pub fn cert_validity(pem: &str) -> Result<(OffsetDateTime, OffsetDateTime), DerError> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).ok_or(DerError::NotPem)? + begin.len();
    let len = pem[start..]
        .find("-----END CERTIFICATE-----")
        .ok_or(DerError::NotPem)?;
    let b64: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| DerError::NotPem)?;
    let (cert, _) = expect(&der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let (tag, _, mut rest) = tlv(tbs)?;
    // The version is optional ([0] EXPLICIT); the serial follows it.
    if tag == EXPLICIT_0 {
        (_, _, rest) = tlv(rest)?;
    }
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, _, rest) = tlv(rest)?; // issuer
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (t1, c1, rest) = tlv(validity)?;
    let (t2, c2, _) = tlv(rest)?;
    Ok((der_time(t1, c1)?, der_time(t2, c2)?))
}

const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
/// `[3] EXPLICIT Extensions`.
const EXTENSIONS: u8 = 0xa3;
/// `uniformResourceIdentifier [6] IA5String` of a GeneralName.
const URI_NAME: u8 = 0x86;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The URI SANs of a DER certificate, in order: a peer's SPIFFE identity (webpki checks chains
/// and DNS names but does not expose URIs). A peer's certificate is outside input: anything this
/// walker does not follow is an error, never a panic.
///
/// # Errors
/// Any structure it cannot follow.
pub fn uri_sans(der: &[u8]) -> Result<Vec<String>, DerError> {
    let bad = DerError::Malformed;
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&EXPLICIT_0) {
        rest = tlv(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    for _ in 0..6 {
        rest = tlv(rest)?.2;
    }
    while !rest.is_empty() {
        let (tag, content, tail) = tlv(rest)?;
        rest = tail;
        if tag != EXTENSIONS {
            continue;
        }
        let (mut list, _) = expect(content, SEQUENCE)?;
        while !list.is_empty() {
            let (ext, tail) = expect(list, SEQUENCE)?;
            list = tail;
            let (oid, mut body) = expect(ext, OID)?;
            if oid != SUBJECT_ALT_NAME {
                continue;
            }
            if body.first() == Some(&BOOLEAN) {
                body = tlv(body)?.2;
            }
            let (value, _) = expect(body, OCTET_STRING)?;
            let (mut names, _) = expect(value, SEQUENCE)?;
            let mut uris = Vec::new();
            while !names.is_empty() {
                let (tag, content, tail) = tlv(names)?;
                names = tail;
                if tag == URI_NAME {
                    let uri = std::str::from_utf8(content).map_err(|_| bad("URI SAN"))?;
                    uris.push(uri.to_owned());
                }
            }
            return Ok(uris);
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn junk_is_refused_not_panicking() {
        assert_eq!(cert_validity("nope"), Err(DerError::NotPem));
        let junk = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert!(cert_validity(junk).is_err());
        assert!(der_time(UTC_TIME, b"991332000000Z").is_err());
        assert!(uri_sans(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(uri_sans(&[]).is_err());
        assert_eq!(der_time(UTC_TIME, b"491231235959Z").unwrap().year(), 2049);
        assert_eq!(
            der_time(GENERALIZED_TIME, b"20500101000000Z")
                .unwrap()
                .year(),
            2050
        );
    }
}
