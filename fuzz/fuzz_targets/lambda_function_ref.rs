//! Function names, ARNs and qualifiers: parsing never panics and accepted names round-trip.
#![no_main]

use lambda_platform::arn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = arn::parse_function_ref(text) {
        assert!(arn::valid_name(&r.name));
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{}", r.name);
        assert_eq!(arn::parse_function_ref(&arn).map(|x| x.name), Ok(r.name));
    }
    let _ = arn::parse_layer_version_arn(text);
    let _ = arn::function_name_error(text);
});
