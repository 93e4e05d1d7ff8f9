//! The registrator's environment (`KEY=VALUE` lines): parsing never panics and every error
//! names a variable.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use registrator::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut vars: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // Without a region in the input, the configuration reads the shared AWS files: keep the
    // fuzzer off the machine's files (their parser has its own target, `registrator_profile`).
    vars.insert("HOME".into(), "/nonexistent".into());
    vars.remove("AWS_CONFIG_FILE");
    vars.remove("AWS_SHARED_CREDENTIALS_FILE");
    if let Err(e) = Config::from_vars(&vars) {
        assert!(e.0.iter().all(|e| !e.name.is_empty()));
    }
    let _ = registrator::config::parse_duration(text);
});
