//! AWS Signature Version 4: verification of incoming requests and signing for our own client.
//!
//! The canonical URI is the path *as it appears on the wire*, percent-encoded once more (every
//! byte except unreserved characters and `/`). That single rule matches both botocore, which puts
//! `arn%3Aaws%3A...` on the wire and signs `arn%253Aaws...`, and Envoy's `aws_lambda` filter,
//! which puts the raw `arn:aws:...` on the wire and signs `arn%3Aaws...` (components §1).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime, macros::format_description};

use crate::{Credentials, wire::ApiError};

type HmacSha256 = Hmac<Sha256>;

/// Largest accepted difference between the signature's date and our clock (AWS uses 15 min).
const MAX_SKEW_SECS: i64 = 15 * 60;

/// The parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id.
    pub access_key: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    /// Region of the credential scope.
    pub region: String,
    /// Service of the credential scope.
    pub service: String,
    /// Lowercase signed header names, in the header's order.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Why an `Authorization` header could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthParseError {
    /// Not the `AWS4-HMAC-SHA256` scheme.
    #[error("unsupported authorization scheme")]
    Scheme,
    /// A required component is missing.
    #[error("authorization header requires '{0}' parameter")]
    Missing(&'static str),
    /// The credential scope is not `key/date/region/service/aws4_request`.
    #[error("malformed credential scope")]
    Credential,
}

/// Parses an `Authorization` header value. Pure; fuzzed.
///
/// # Errors
/// Returns which part is missing or malformed.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthParseError> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or(AuthParseError::Scheme)?;
    if !rest.starts_with(' ') {
        return Err(AuthParseError::Scheme);
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or(AuthParseError::Missing("Credential"))?;
    let signed = signed.ok_or(AuthParseError::Missing("SignedHeaders"))?;
    let signature = signature.ok_or(AuthParseError::Missing("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, terminator] = scope.as_slice() else {
        return Err(AuthParseError::Credential);
    };
    if *terminator != "aws4_request" || key.is_empty() || date.len() != 8 {
        return Err(AuthParseError::Credential);
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(AuthParseError::Missing("SignedHeaders"));
    }
    Ok(Authorization {
        access_key: (*key).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// The request parts that SigV4 covers.
pub struct RequestView<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Raw path as received (not decoded).
    pub path: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    /// All headers.
    pub headers: &'a http::HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Verifies `req` against `creds`, for `service` in `region`, at time `now`.
///
/// # Errors
/// AWS's 403 exceptions: `MissingAuthenticationTokenException`, `IncompleteSignatureException`,
/// `UnrecognizedClientException`, `InvalidSignatureException`.
pub fn verify(
    req: &RequestView<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let header = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            )
        })?;
    let auth = parse_authorization(header).map_err(|e| {
        ApiError::new(
            403,
            "IncompleteSignatureException",
            format!("Authorization header is invalid: {e}"),
        )
    })?;
    if auth.access_key != creds.access_key {
        return Err(ApiError::new(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if auth.service != service {
        return Err(invalid_signature(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if auth.region != region {
        return Err(invalid_signature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(invalid_signature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    let amz_date = header_str(req.headers, "x-amz-date").ok_or_else(|| {
        ApiError::new(
            403,
            "IncompleteSignatureException",
            "Missing X-Amz-Date header.",
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        ApiError::new(
            403,
            "IncompleteSignatureException",
            "Invalid X-Amz-Date header.",
        )
    })?;
    if (now - signed_at).whole_seconds().abs() > MAX_SKEW_SECS {
        return Err(invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier or later than allowed."
        )));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(invalid_signature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.".into()));
    }
    let body_hash = hex::encode(Sha256::digest(req.body));
    let payload_hash = match header_str(req.headers, "x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_owned(),
        Some(h) if h != body_hash => {
            return Err(ApiError::new(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
        _ => body_hash,
    };
    let canonical = canonical_request(req, &auth.signed_headers, &payload_hash);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let expected = signature(
        &creds.secret_key,
        &auth.date,
        &auth.region,
        &auth.service,
        amz_date,
        &scope,
        &canonical,
    );
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
                .into(),
        ));
    }
    Ok(())
}

/// Who signs, for which region and service.
pub struct Scope<'a> {
    /// Credentials.
    pub creds: &'a Credentials,
    /// Region.
    pub region: &'a str,
    /// Service (`lambda`, `ssm`, ...).
    pub service: &'a str,
}

/// Signs a request: adds `x-amz-date`, `x-amz-content-sha256` and `authorization` to
/// `headers`, which must already hold `host` and every other header to sign.
/// `path_and_query` is the request target as sent (already percent-encoded).
///
/// # Errors
/// A credential or scope that cannot stand in a header value.
pub fn sign(
    method: &str,
    path_and_query: &str,
    headers: &mut http::HeaderMap,
    body: &[u8],
    scope: &Scope<'_>,
    now: OffsetDateTime,
) -> Result<(), http::header::InvalidHeaderValue> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let Scope {
        creds,
        region,
        service,
    } = *scope;
    let amz_date = format_amz_date(now);
    let date = amz_date.get(..8).unwrap_or_default().to_owned();
    let payload_hash = hex::encode(Sha256::digest(body));
    headers.insert("x-amz-date", http::HeaderValue::from_str(&amz_date)?);
    headers.insert(
        "x-amz-content-sha256",
        http::HeaderValue::from_str(&payload_hash)?,
    );
    let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    let view = RequestView {
        method,
        path,
        query,
        headers,
        body,
    };
    let canonical = canonical_request(&view, &names, &payload_hash);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sig = signature(
        &creds.secret_key,
        &date,
        region,
        service,
        &amz_date,
        &scope,
        &canonical,
    );
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        creds.access_key,
        names.join(";")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&auth)?,
    );
    Ok(())
}

fn invalid_signature(message: String) -> ApiError {
    ApiError::new(403, "InvalidSignatureException", message)
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn format_amz_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(fmt).unwrap_or_default()
}

fn canonical_request(req: &RequestView<'_>, signed: &[String], payload_hash: &str) -> String {
    let mut headers = String::new();
    for name in signed {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        signed.join(";"),
        payload_hash
    )
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical URI of a raw wire path (see the module docs). Pure; fuzzed.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    uri_encode(path, false)
}

/// The canonical query string of a raw query: pairs decoded, re-encoded strictly, sorted.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes every byte but RFC 3986 unreserved ones (and `/` unless `encode_slash`).
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` is kept literally, as AWS does in paths); invalid escapes stay.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so construction cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    scope: &str,
    canonical: &str,
) -> String {
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_botocore_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=test/20261122/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(a.access_key, "test");
        assert_eq!(a.service, "lambda");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(parse_authorization("Basic x"), Err(AuthParseError::Scheme));
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request"),
            Err(AuthParseError::Missing("SignedHeaders"))
        );
    }

    #[test]
    fn canonical_uri_encodes_the_wire_path_once() {
        // Envoy: raw ARN on the wire, signs it single-encoded.
        assert_eq!(
            canonical_uri(
                "/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:f/invocations"
            ),
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations"
        );
        // botocore: escaped ARN on the wire, signs it escaped again.
        assert_eq!(canonical_uri("/x/arn%3Aaws"), "/x/arn%253Aaws");
    }

    #[test]
    fn sign_then_verify_round_trips_and_wrong_key_fails() {
        let creds = Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("host", http::HeaderValue::from_static("127.0.0.1:9001"));
        let now = OffsetDateTime::now_utc();
        let body = b"{}";
        sign(
            "POST",
            "/a/b%3Ac?x=1&a=2",
            &mut headers,
            body,
            &Scope {
                creds: &creds,
                region: "us-east-1",
                service: "lambda",
            },
            now,
        )
        .unwrap();
        let view = RequestView {
            method: "POST",
            path: "/a/b%3Ac",
            query: "x=1&a=2",
            headers: &headers,
            body,
        };
        verify(&view, &creds, "us-east-1", "lambda", now).unwrap();
        let wrong = Credentials {
            access_key: "test".into(),
            secret_key: "nope".into(),
        };
        assert_eq!(
            verify(&view, &wrong, "us-east-1", "lambda", now)
                .unwrap_err()
                .code,
            "InvalidSignatureException"
        );
        let err = verify(&view, &creds, "us-east-1", "ssm", now).unwrap_err();
        assert_eq!(err.code, "InvalidSignatureException");
    }

    #[test]
    fn percent_decode_handles_truncated_escapes() {
        assert_eq!(percent_decode("a%3Ab%"), "a:b%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
