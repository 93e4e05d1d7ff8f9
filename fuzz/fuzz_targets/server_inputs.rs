//! The server's own parsers of outside input: the HTTP query string (`?index`, `?wait`, `?ns`,
//! percent-encoding), agent config files (HCL/JSON, the `store { etcd { } }` block included), the
//! etcd encryption key file's text and the web UI's authorization requests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = server::api::decode_access_requests(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = server::query::Query::parse(Some(text));
        let _ = server::config::ConfigFile::parse_str(text, false);
        let _ = server::config::ConfigFile::parse_str(text, true);
        let _ = server::config::store::EncryptionKey::from_hex(text);
    }
});
