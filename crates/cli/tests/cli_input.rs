//! What a user gets for bad input at the CLI, against a real `lambdamesh agent -dev`: errors
//! name the field's path, are printed with one prefix, misspelt Lambda arguments are refused by
//! name, and Consul's HCL 1 one-line blocks are read as Consul reads them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use common::{Proc, lm, stderr, stdout};

fn file(text: &str, ext: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn a_bad_value_names_its_path_with_one_error_prefix() {
    let server = Proc::start(&["agent", "-dev"]);
    for (text, ext) in [
        (r#"{"Service": {"Name": "web", "Port": "abc"}}"#, ".json"),
        ("service {\n  name = \"web\"\n  port = \"abc\"\n}\n", ".hcl"),
    ] {
        let f = file(text, ext);
        let o = lm(
            &server.http,
            &["services", "register", f.path().to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with("Error parsing ")
                && err.contains(r#"Service.Port: invalid type: string "abc", expected i64"#),
            "{err}"
        );
        assert!(!err.contains("Error: Error"), "one prefix only: {err}");
    }
    // The second definition of a file is named by its place.
    let f = file(
        r#"{"Services": [{"Name": "a", "Port": 1}, {"Name": "b", "Port": true}]}"#,
        ".json",
    );
    let o = lm(
        &server.http,
        &["services", "register", f.path().to_str().unwrap()],
    );
    assert!(
        stderr(&o).contains("Services[1].Port: invalid type: boolean"),
        "{}",
        stderr(&o)
    );
    // An error without Consul's own wording gets one `Error: ` prefix.
    let o = lm(&server.http, &["services", "deregister"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "Error: exactly one of -id or a file must be given"
    );
}

#[test]
fn one_line_nested_hcl_blocks_are_read_as_consul_reads_them() {
    let server = Proc::start(&["agent", "-dev"]);
    let f = file(
        "service { name = \"web\" port = 8080 connect { sidecar_service {} } }\n",
        ".hcl",
    );
    let o = lm(
        &server.http,
        &["services", "register", f.path().to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "Registered service: web");
    let o = lm(&server.http, &["catalog", "services"]);
    let listed = stdout(&o);
    let names: Vec<&str> = listed.lines().map(str::trim).collect();
    assert!(
        names.contains(&"web") && names.contains(&"web-sidecar-proxy"),
        "the one-line sidecar_service block registered a sidecar: {names:?}"
    );
}

#[test]
fn a_misspelt_lambda_argument_is_refused_by_name() {
    let server = Proc::start(&["agent", "-dev"]);
    let entry = |args: &str| {
        file(
            &format!(
                "Kind = \"service-defaults\"\nName = \"greeter\"\nProtocol = \"http\"\nEnvoyExtensions = [\n  {{\n    Name = \"builtin/aws/lambda\"\n    Arguments = {{\n      ARN = \"arn:aws:lambda:us-east-1:123456789012:function:greeter\"\n      {args}\n    }}\n  }}\n]\n"
            ),
            ".hcl",
        )
    };
    let bad = entry("PayloadPasthrough = true");
    let o = lm(
        &server.http,
        &["config", "write", bad.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("EnvoyExtensions[0].Arguments")
            && err.contains("\"PayloadPasthrough\"")
            && err.contains("did you mean \"PayloadPassthrough\""),
        "{err}"
    );
    let o = lm(
        &server.http,
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "greeter",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "nothing was written");
    let good = entry("PayloadPassthrough = true");
    let o = lm(
        &server.http,
        &["config", "write", good.path().to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lm(
        &server.http,
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "greeter",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["EnvoyExtensions"][0]["Arguments"]["PayloadPassthrough"],
        true
    );
}
