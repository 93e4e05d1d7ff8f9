//! The Lambda extension's Parameter Store value (the registrator's JSON) and the certificate
//! reader behind its SPIFFE check: decoding, parsing the PEMs and keys, and reading URI SANs
//! never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lambdamesh_extension::{der, material};

fuzz_target!(|data: &[u8]| {
    let _ = der::cert_facts(data);
    if let Ok(fields) = material::decode(data) {
        let provider = rustls::crypto::ring::default_provider();
        let _ = material::Material::from_data(fields, &provider);
    }
});
