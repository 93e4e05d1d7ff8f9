//! AWS shared credentials/config files (`~/.aws/credentials`): parsing never panics, every error
//! names the file and a line that exists, and what parses keeps its keys lower-cased.
#![no_main]

use libfuzzer_sys::fuzz_target;
use aws_wire::profile::{ProfileError, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, "credentials") {
        Ok(sections) => {
            for props in sections.values() {
                assert!(
                    props
                        .keys()
                        .all(|k| !k.is_empty() && *k == k.to_ascii_lowercase())
                );
            }
        }
        Err(ProfileError::Syntax { file, line, .. }) => {
            assert_eq!(file, "credentials");
            assert!(line >= 1 && line <= text.lines().count(), "line {line}");
        }
        Err(e) => panic!("parse gave a non-syntax error: {e}"),
    }
});
