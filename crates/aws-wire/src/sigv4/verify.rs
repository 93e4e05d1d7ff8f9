//! Checking an incoming request's SigV4 signature the way AWS does, with AWS's exception names
//! and messages in [`VerifyError`] (a server renders them in its own protocol's error shape).

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{canonical_request, parse_amz_date, signature};
use crate::Credentials;

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

/// Why a request's signature was refused. The display text is AWS's message; [`Self::code`]
/// and [`Self::status`] are the exception name and HTTP status AWS answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `Authorization` header.
    #[error("Missing Authentication Token")]
    MissingToken,
    /// The header, or the date the signature needs, is malformed or missing.
    #[error("{0}")]
    Incomplete(String),
    /// The access key is not the one accepted.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// Wrong scope, expired, or a signature that does not match.
    #[error("{0}")]
    InvalidSignature(String),
    /// `x-amz-content-sha256` does not match the body.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
}

impl VerifyError {
    /// AWS's exception name.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingToken => "MissingAuthenticationTokenException",
            VerifyError::Incomplete(_) => "IncompleteSignatureException",
            VerifyError::UnrecognizedClient => "UnrecognizedClientException",
            VerifyError::InvalidSignature(_) => "InvalidSignatureException",
            VerifyError::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::ContentSha256Mismatch => 400,
            _ => 403,
        }
    }
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
/// Which check failed, with AWS's wording.
pub fn verify(
    req: &RequestView<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let header = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::MissingToken)?;
    let auth = parse_authorization(header)
        .map_err(|e| VerifyError::Incomplete(format!("Authorization header is invalid: {e}")))?;
    if auth.access_key != creds.access_key {
        return Err(VerifyError::UnrecognizedClient);
    }
    if auth.service != service {
        return Err(VerifyError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if auth.region != region {
        return Err(VerifyError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(VerifyError::InvalidSignature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    let amz_date = header_str(req.headers, "x-amz-date")
        .ok_or_else(|| VerifyError::Incomplete("Missing X-Amz-Date header.".into()))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| VerifyError::Incomplete("Invalid X-Amz-Date header.".into()))?;
    if (now - signed_at).whole_seconds().abs() > MAX_SKEW_SECS {
        return Err(VerifyError::InvalidSignature(format!(
            "Signature expired: {amz_date} is now earlier or later than allowed."
        )));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(VerifyError::InvalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.".into()));
    }
    let body_hash = hex::encode(Sha256::digest(req.body));
    let payload_hash = match header_str(req.headers, "x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") => "UNSIGNED-PAYLOAD".to_owned(),
        Some(h) if h != body_hash => return Err(VerifyError::ContentSha256Mismatch),
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
        return Err(VerifyError::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
                .into(),
        ));
    }
    Ok(())
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sigv4::{Scope, sign};

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
                .code(),
            "InvalidSignatureException"
        );
        let err = verify(&view, &creds, "us-east-1", "ssm", now).unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
        assert_eq!(err.status(), 403);
    }

    #[test]
    fn each_refusal_has_awss_name_status_and_words() {
        let creds = Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        };
        let now = OffsetDateTime::now_utc();
        let headers = http::HeaderMap::new();
        fn view(headers: &http::HeaderMap) -> RequestView<'_> {
            RequestView {
                method: "GET",
                path: "/",
                query: "",
                headers,
                body: b"x",
            }
        }
        let e = verify(&view(&headers), &creds, "r", "s", now).unwrap_err();
        assert_eq!(
            (e.status(), e.code(), e.to_string().as_str()),
            (
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token"
            )
        );
        let mut h = http::HeaderMap::new();
        h.insert("authorization", http::HeaderValue::from_static("Basic x"));
        let e = verify(&view(&h), &creds, "r", "s", now).unwrap_err();
        assert_eq!(e.code(), "IncompleteSignatureException");
        assert_eq!(
            e.to_string(),
            "Authorization header is invalid: unsupported authorization scheme"
        );
        h.insert(
            "authorization",
            http::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=other/20261122/r/s/aws4_request, SignedHeaders=host, Signature=x",
            ),
        );
        let e = verify(&view(&h), &creds, "r", "s", now).unwrap_err();
        assert_eq!(e, VerifyError::UnrecognizedClient);
        let mut h = http::HeaderMap::new();
        h.insert("host", http::HeaderValue::from_static("h"));
        sign(
            "GET",
            "/",
            &mut h,
            b"x",
            &Scope {
                creds: &creds,
                region: "r",
                service: "s",
            },
            now,
        )
        .unwrap();
        h.insert("x-amz-content-sha256", http::HeaderValue::from_static("00"));
        let e = verify(&view(&h), &creds, "r", "s", now).unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "XAmzContentSHA256Mismatch"));
    }
}
