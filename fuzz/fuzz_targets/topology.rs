//! `lambdamesh up` topology files (HCL and HCL's JSON form), as users write them: parsing and
//! the checks across parts must report problems, never panic, whatever the bytes. Config entry
//! file references name files that do not exist here, which is reported like any problem.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = topology::parse(std::path::Path::new("/nonexistent/fuzz.hcl"), text) {
            let parts = t.parts();
            assert!(parts.len() >= 2);
            let _ = topology::probe::ports(&t);
        }
    }
});
