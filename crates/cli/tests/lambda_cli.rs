//! `lambdamesh lambda create|list|invoke|tag|logs|rm` against a real `lambdamesh lambda serve`
//! running a Python function under awslambdaric.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::process::Command;
use std::time::Duration;

use common::mesh::start_platform;
use common::{BIN, stderr, stdout};

#[test]
fn lambda_cli_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_platform, endpoint) = start_platform(&data);
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("app.py"),
        "def handler(event, context):\n    print('handling', event)\n    return {'echo': event}\n",
    )
    .unwrap();
    let lm = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };

    let o = lm(&[
        "lambda",
        "create",
        "echo",
        "--dir",
        code.to_str().unwrap(),
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--tag",
        "team=mesh",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lm(&["lambda", "list"]);
    assert!(
        o.status.success() && stdout(&o).contains("echo"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
    let o = lm(&["lambda", "invoke", "echo", "--payload", r#"{"x":1}"#]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v, serde_json::json!({"echo": {"x": 1}}));
    let o = lm(&["lambda", "tag", "echo", "stage=dev"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(300));
    let o = Command::new(BIN)
        .args([
            "lambda",
            "logs",
            "echo",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("handling"),
        "the function's output is in its logs: {}",
        stdout(&o)
    );
    let o = lm(&["lambda", "invoke", "echo", "--payload", "not json"]);
    assert!(!o.status.success(), "invalid JSON payload must fail");
    let o = lm(&["lambda", "rm", "echo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lm(&["lambda", "invoke", "echo"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("ResourceNotFoundException"),
        "{}",
        stderr(&o)
    );
}
