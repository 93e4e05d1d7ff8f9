//! Journal files as a crash (or a bad disk) may leave them: reading never panics, reads only
//! whole records, and framing those records again gives back exactly the bytes they covered.
#![no_main]

use lambda_platform::journal::{frame, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (records, len) = parse(data);
    assert!(len <= data.len());
    let mut again = Vec::new();
    for r in &records {
        frame(&mut again, r);
    }
    assert_eq!(&again[..], &data[..len]);
});
