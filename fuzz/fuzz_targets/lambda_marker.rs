//! Pagination markers from clients: decoding never panics.
#![no_main]

use lambda_platform::functions::decode_marker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = decode_marker(Some(text));
});
