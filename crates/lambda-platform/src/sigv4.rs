//! SigV4 as the platform answers it: [`verify`] runs `aws-wire`'s verification and turns a
//! refusal into the [`ApiError`] AWS sends (its 403 exceptions, or 400 for a body hash that does
//! not match). The algorithm, signing and the path helpers live in `aws_wire::sigv4` and are
//! re-exported here for the platform's request parsing and its client.

use time::OffsetDateTime;

pub use aws_wire::sigv4::{
    AuthParseError, Authorization, RequestView, Scope, VerifyError, canonical_query, canonical_uri,
    parse_authorization, percent_decode, sign, uri_encode,
};

use crate::{Credentials, wire::ApiError};

/// Verifies `req` against `creds`, for `service` in `region`, at time `now`.
///
/// # Errors
/// AWS's exceptions: `MissingAuthenticationTokenException`, `IncompleteSignatureException`,
/// `UnrecognizedClientException`, `InvalidSignatureException` (403) and
/// `XAmzContentSHA256Mismatch` (400).
pub fn verify(
    req: &RequestView<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    aws_wire::sigv4::verify(req, creds, region, service, now)
        .map_err(|e| ApiError::new(e.status(), e.code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_refusal_is_awss_error() {
        let creds = Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        };
        let headers = http::HeaderMap::new();
        let view = RequestView {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let e = verify(
            &view,
            &creds,
            "us-east-1",
            "lambda",
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            ApiError::new(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token"
            )
        );
    }
}
