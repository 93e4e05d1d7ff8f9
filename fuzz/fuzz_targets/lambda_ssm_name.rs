//! Parameter Store names: validation never panics and accepted names are within AWS's rules.
#![no_main]

use lambda_platform::ssm::validate_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if validate_name(text).is_ok() {
        assert!(!text.is_empty());
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b)));
    }
});
