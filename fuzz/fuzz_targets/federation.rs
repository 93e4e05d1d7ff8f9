//! The inter-server protocol's inputs from another server (or anyone who reaches the port):
//! request and answer frames, a peer certificate's URI SANs, and the names and addresses it
//! carries (`primary_gateways` entries, server SNIs and SPIFFE IDs). Invariants: a name that
//! parses is formed back to the same name; a gateway address that parses prints as one that
//! parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_model::federation;

fuzz_target!(|data: &[u8]| {
    let _ = server::federation::wire::decode_request(data);
    let _ = server::federation::wire::decode_answer(data);
    let _ = ca::uri_sans(data);
    let _ = ca::federation::P256PublicKey::from_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = federation::parse_gateway_addr(text) {
            assert_eq!(federation::parse_gateway_addr(&a.to_string()), Ok(a));
        }
        if let Some(s) = federation::parse_server_sni(text, federation::DEFAULT_DOMAIN) {
            let back = federation::server_sni(&s.datacenter, s.node.as_deref(), "consul");
            assert_eq!(back, text.to_ascii_lowercase());
        }
        if let Some(dc) = federation::parse_server_spiffe_id(text, "td.consul") {
            assert_eq!(federation::server_spiffe_id("td.consul", &dc).to_ascii_lowercase(), text.to_ascii_lowercase());
        }
        let _ = federation::validate_datacenter(text);
    }
});
