//! The `lambdamesh` CLI against a real `lambdamesh agent -dev` process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use common::{Proc, lm, stderr, stdout};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn services_and_catalog_commands() {
    let server = Proc::start(&["agent", "-dev"]);
    let o = lm(&server.http, &["services", "register", &fixture("api.hcl")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "Registered service: api");

    let o = lm(&server.http, &["catalog", "services"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert!(
        names.contains(&"api".to_owned()) && names.contains(&"api-sidecar-proxy".to_owned()),
        "{names:?}"
    );

    // -http-addr flag wins over the environment (single-dash, as Consul spells it).
    let o = std::process::Command::new(common::BIN)
        .args(["catalog", "services", "-http-addr", &server.http])
        .env("CONSUL_HTTP_ADDR", "127.0.0.1:1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let o = lm(&server.http, &["services", "deregister", "-id", "api"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lm(&server.http, &["catalog", "services"]);
    assert!(!stdout(&o).contains("api"), "{}", stdout(&o));
}

#[test]
fn config_commands_and_server_errors() {
    let server = Proc::start(&["agent", "-dev"]);
    let o = lm(
        &server.http,
        &["config", "write", &fixture("web-defaults.hcl")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "Config entry written: service-defaults/web"
    );
    let o = lm(
        &server.http,
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "web",
        ],
    );
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["Protocol"], "http");
    let o = lm(
        &server.http,
        &["config", "list", "-kind", "service-defaults"],
    );
    assert_eq!(stdout(&o).trim(), "web");

    // Weights that do not sum to 100: refused locally with the reason, exit 1.
    let o = lm(
        &server.http,
        &["config", "write", &fixture("bad-splitter.hcl")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("100"), "{}", stderr(&o));

    // A server-side refusal (protocol check against other entries) prints the server's message.
    let tcp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        tcp.path(),
        "Kind = \"service-splitter\"\nName = \"db\"\nSplits = [{ Weight = 100 }]\n",
    )
    .unwrap();
    let o = lm(
        &server.http,
        &["config", "write", tcp.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("400"), "{}", stderr(&o));
    assert!(stderr(&o).contains("protocol"), "{}", stderr(&o));

    let o = lm(
        &server.http,
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "nope",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));

    let o = lm(
        &server.http,
        &[
            "config",
            "delete",
            "-kind",
            "service-defaults",
            "-name",
            "web",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "Config entry deleted: service-defaults/web"
    );

    // A file that does not parse.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "service {\n  name = \n}\n").unwrap();
    let o = lm(
        &server.http,
        &["services", "register", bad.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Error parsing"), "{}", stderr(&o));

    // Nothing listening: a clear transport error.
    let o = lm("127.0.0.1:1", &["catalog", "services"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
}

#[test]
fn server_needs_a_data_dir_and_shuts_down_gracefully() {
    let o = std::process::Command::new(common::BIN)
        .args(["server"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("data_dir"), "{}", stderr(&o));

    let o = std::process::Command::new(common::BIN)
        .args(["agent", "-dev", "-datacenter", "bad dc!"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("datacenter"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let mut server = Proc::start(&[
        "server",
        "-data-dir",
        dir.path().to_str().unwrap(),
        "-datacenter",
        "east",
    ]);
    let o = lm(&server.http, &["catalog", "nodes"]);
    assert!(stdout(&o).contains("east"), "{}", stdout(&o));
    assert!(server.terminate(), "SIGTERM must stop the server cleanly");
}

#[test]
fn intention_and_acl_commands() {
    let server = Proc::start(&["agent", "-dev"]);
    let o = lm(&server.http, &["intention", "create", "-deny", "*", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "Created: * => web (deny)");
    let o = lm(
        &server.http,
        &["intention", "create", "-allow", "api", "web"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lm(&server.http, &["intention", "check", "api", "web"]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim().to_owned()),
        (Some(0), "Allowed".to_owned())
    );
    let o = lm(&server.http, &["intention", "check", "other", "web"]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim().to_owned()),
        (Some(2), "Denied".to_owned())
    );
    // Creating an existing pair again needs -replace.
    let o = lm(
        &server.http,
        &["intention", "create", "-deny", "api", "web"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("-replace"), "{}", stderr(&o));
    let o = lm(
        &server.http,
        &["intention", "create", "-deny", "-replace", "api", "web"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lm(&server.http, &["intention", "check", "api", "web"])
            .status
            .code(),
        Some(2)
    );

    // ACLs are off in -dev: bootstrap reports it and fails.
    let o = lm(&server.http, &["acl", "bootstrap"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("ACL support disabled"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn acl_bootstrap_and_token_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("acl.hcl");
    std::fs::write(
        &cfg,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Proc::start(&[
        "server",
        "-data-dir",
        data.to_str().unwrap(),
        "-config-file",
        cfg.to_str().unwrap(),
    ]);
    let o = lm(&server.http, &["acl", "bootstrap"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(out.contains("global-management"), "{out}");

    // Without a token the write is refused with the server's message; with -token it works;
    // CONSUL_HTTP_TOKEN works too.
    let o = lm(
        &server.http,
        &["config", "write", &fixture("web-defaults.hcl")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    let o = lm(
        &server.http,
        &[
            "config",
            "write",
            "-token",
            &secret,
            &fixture("web-defaults.hcl"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = std::process::Command::new(common::BIN)
        .args(["config", "list", "-kind", "service-defaults"])
        .env("CONSUL_HTTP_ADDR", &server.http)
        .env("CONSUL_HTTP_TOKEN", &secret)
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "web");
}
