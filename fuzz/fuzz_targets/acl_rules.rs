//! ACL rule parsing never panics, and whatever parses builds an authorizer that answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_model::acl::{Authorizer, parse_rules};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = parse_rules(text) else { return };
    for default_allow in [false, true] {
        let a = Authorizer::new(std::slice::from_ref(&rules), default_allow);
        for name in ["", "web", "web-sidecar-proxy", "*", "é"] {
            // Write implies read for every resource.
            if a.service_write(name) {
                assert!(a.service_read(name));
            }
            if a.node_write(name) {
                assert!(a.node_read(name));
            }
            let _ = (
                a.intention_read(name),
                a.intention_write(name),
                a.agent_write(name),
            );
        }
        let _ = (a.operator_read(), a.acl_write(), a.service_read_all());
    }
});
