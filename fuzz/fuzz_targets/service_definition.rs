//! Service definitions as users send them: `services register` files (HCL or JSON), agent
//! registration bodies, catalog register/deregister bodies, and Go durations inside checks.
//! None of them may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_model::catalog::{DeregisterRequest, RegisterRequest, ServiceDefinition, ServiceFile, definition};

fuzz_target!(|data: &[u8]| {
    let _ = RegisterRequest::decode_json(data);
    let _ = DeregisterRequest::decode_json(data);
    if let Ok(def) = ServiceDefinition::decode_json(data) {
        let _ = def.sidecar(&Default::default());
        let _ = def.health_checks("node");
        let _ = def.to_node_service("dc1");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(defs) = ServiceFile::parse(text) {
            for d in defs {
                let _ = d.sidecar(&Default::default());
            }
        }
        let _ = definition::parse_go_duration(text);
    }
});
