//! CloudTrail and scheduled events given to the registrator: decoding never panics, and a
//! decoded function event always names a function.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrator::event::{Event, base_call_name, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = base_call_name(text);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(Event::Function { function, .. }) = decode(&v) {
        assert!(!function.is_empty());
    }
});
