//! The registrator's environment (`KEY=VALUE` lines): parsing never panics and every error
//! names a variable.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use registrator::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let vars: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Err(e) = Config::from_vars(&vars) {
        assert!(e.0.iter().all(|e| !e.name.is_empty()));
    }
    let _ = registrator::config::parse_duration(text);
});
