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
    let answer = stdout(&o);
    assert!(
        answer.ends_with("}\n"),
        "the answer ends its line: {answer:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v, serde_json::json!({"echo": {"x": 1}}));
    let o = lm(&[
        "lambda",
        "invoke",
        "echo",
        "--payload",
        r#"{"x":1}"#,
        "-raw",
    ]);
    assert_eq!(
        stdout(&o),
        answer.trim_end(),
        "-raw: the bytes only, no newline added"
    );
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

/// Starts `lambda serve` in `cwd` without `-python`, `LAMBDAMESH_PYTHON` or an active venv
/// (plus `extra` flags), and a function `echo` on it; returns the platform and the client env.
fn serve_without_python_flag(
    dir: &std::path::Path,
    cwd: &std::path::Path,
    extra: &[&str],
) -> (common::mesh::Guard, String) {
    let port = common::mesh::free_port();
    let guard = common::mesh::Guard(
        Command::new(BIN)
            .args(["lambda", "serve", "-addr", &format!("127.0.0.1:{port}")])
            .args(["-data-dir", dir.join("data").to_str().unwrap()])
            .args(extra)
            .current_dir(cwd)
            .env_remove("LAMBDAMESH_PYTHON")
            .env_remove("VIRTUAL_ENV")
            // No cache venv to fall back on: only the `.venv` of `cwd` can be found.
            .env("LAMBDAMESH_CACHE", dir.join("no-cache"))
            .env("PATH", "/usr/bin:/bin")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::mesh::wait_until(30, "the platform listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    let code = dir.join("code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(
        code.join("app.py"),
        "def handler(event, context):\n    return {'echo': event}\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["lambda", "create", "echo", "--dir", code.to_str().unwrap()])
        .args(["--handler", "app.handler"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    (guard, endpoint)
}

fn invoke_echo(endpoint: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["lambda", "invoke", "echo", "--payload", r#"{"x":1}"#])
        .env("AWS_ENDPOINT_URL", endpoint)
        .output()
        .unwrap()
}

/// Run from a checkout (a directory with `.venv`), `lambda serve` finds the venv's Python
/// without being told, and Python functions work.
#[test]
fn serve_finds_the_project_venv_python() {
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("checkout");
    let venv = std::path::Path::new(&common::mesh::python())
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(checkout.join("sub")).unwrap();
    std::os::unix::fs::symlink(&venv, checkout.join(".venv")).unwrap();
    let (_platform, endpoint) = serve_without_python_flag(dir.path(), &checkout.join("sub"), &[]);
    let o = invoke_echo(&endpoint);
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, serde_json::json!({"echo": {"x": 1}}));
}

/// Without a usable interpreter, the invoke itself says so and how to fix it (not only a
/// start-up warning), as a function error of type `Runtime.Unavailable`.
#[test]
fn an_invoke_without_a_usable_python_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (_platform, endpoint) =
        serve_without_python_flag(dir.path(), dir.path(), &["-python", "/nonexistent/python3"]);
    let o = invoke_echo(&endpoint);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["errorType"], "Runtime.Unavailable", "{v}");
    let message = v["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("/nonexistent/python3") && message.contains("pass -python"),
        "{message}"
    );
}
