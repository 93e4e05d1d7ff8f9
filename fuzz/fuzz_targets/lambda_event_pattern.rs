//! EventBridge patterns: parsing never panics; matching any event against any pattern never panics.
#![no_main]

use lambda_platform::events::EventPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, event) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(p) = EventPattern::parse(pattern) else { return };
    if let Ok(ev) = serde_json::from_str::<serde_json::Value>(event) {
        let _ = p.matches(&ev);
    }
});
