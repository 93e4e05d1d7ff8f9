//! Consul's CLI uses Go's flag package, where `-flag value` and `--flag value` mean the same. clap
//! only knows `--flag`, so single-dash long flags are rewritten before parsing. Single-letter flags
//! (`-h`) and negative numbers are left alone.

use std::ffi::OsString;

/// Rewrites `-long-flag[=v]` into `--long-flag[=v]`; everything after `--` is left untouched.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let is_single_dash_long = s.len() > 2
            && s.starts_with('-')
            && !s.starts_with("--")
            && s.as_bytes().get(1).is_some_and(|b| b.is_ascii_alphabetic());
        if is_single_dash_long {
            out.push(OsString::from(format!("-{s}")));
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            n(&[
                "lm",
                "agent",
                "-dev",
                "-http-addr=x",
                "-h",
                "-5",
                "--x",
                "--",
                "-keep"
            ]),
            vec![
                "lm",
                "agent",
                "--dev",
                "--http-addr=x",
                "-h",
                "-5",
                "--x",
                "--",
                "-keep"
            ]
        );
    }
}
