//! Schedule expressions: `rate()` / `cron()` parsing never panics, and parsed crons evaluate.
#![no_main]

use lambda_platform::events::Schedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Schedule::Cron(c)) = Schedule::parse(text) {
        let _ = c.matches(&time::OffsetDateTime::UNIX_EPOCH);
    }
});
