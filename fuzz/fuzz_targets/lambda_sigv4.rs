//! SigV4 (`aws-wire`, which the platform verifies with): parsing any Authorization header never
//! panics, canonicalisation of any path/query never panics, and verification of arbitrary
//! requests never panics nor accepts a forged signature.
#![no_main]

use aws_wire::{Credentials, sigv4};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sigv4::parse_authorization(text);
    let _ = sigv4::canonical_uri(text);
    let _ = sigv4::canonical_query(text);
    let _ = sigv4::percent_decode(text);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(text) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    headers.insert("host", http::HeaderValue::from_static("127.0.0.1"));
    headers.insert("x-amz-date", http::HeaderValue::from_static("20261122T000000Z"));
    let creds = Credentials { access_key: "test".into(), secret_key: "test".into() };
    let view = sigv4::RequestView { method: "POST", path: text, query: text, headers: &headers, body: data };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_779);
    // A random header cannot carry the right HMAC.
    assert!(sigv4::verify(&view, &creds, "us-east-1", "lambda", now).is_err());
});
