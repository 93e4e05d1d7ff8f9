//! The Lambda extension's configuration: `CONSUL_SERVICE_UPSTREAMS` lists and whole environments
//! (`KEY=VALUE` lines). Parsing never panics; an accepted upstream has a port, no other upstream
//! on it, and an SNI that is a DNS name; every refused entry is named in its message.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use lambdamesh_extension::{config::Config, upstream};

const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match upstream::parse_list(text, "dc1") {
        Ok(list) => {
            let mut ports = BTreeSet::new();
            for u in &list {
                assert!(u.port > 0);
                assert!(ports.insert(u.port), "port {} twice", u.port);
                let sni = u.sni(TD);
                assert!(
                    rustls::pki_types::ServerName::try_from(sni.as_str()).is_ok(),
                    "{sni}"
                );
                assert!(u.spiffe_id(TD).starts_with("spiffe://"));
            }
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
    let mut vars: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // Credentials missing from the input would send the parser to the machine's AWS files.
    vars.insert("HOME".into(), "/nonexistent".into());
    vars.remove("AWS_CONFIG_FILE");
    vars.remove("AWS_SHARED_CREDENTIALS_FILE");
    if let Err(e) = Config::from_vars(&vars) {
        assert!(!e.0.is_empty());
    }
});
