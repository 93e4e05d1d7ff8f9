//! The CA configuration PUT body parser never panics, and whatever it accepts is within the
//! bounds the CA relies on (LeafCertTTL 1h..8760h, a 256-bit ec key, the consul provider).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = server::api::connect_ca::parse_config_body(data) else {
        return;
    };
    assert_eq!(c.provider, "consul");
    assert!((3600..=8760 * 3600).contains(&c.leaf_cert_ttl_secs));
    assert!(c.intermediate_cert_ttl_secs >= 3 * c.leaf_cert_ttl_secs);
    assert!(c.root_cert_ttl_secs >= c.intermediate_cert_ttl_secs);
    assert_eq!((c.private_key_type.as_str(), c.private_key_bits), ("ec", 256));
});
