//! Runs the real `lambdamesh` binary: servers as owned child processes (killed on drop) bound
//! to 127.0.0.1:0, and CLI commands with their exit codes and output.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_lambdamesh");

pub mod dcs;
pub mod mesh;
pub mod up;

/// A running `lambdamesh` server process.
pub struct Proc {
    pub child: Child,
    /// `127.0.0.1:PORT` of the HTTP API.
    pub http: String,
    /// `127.0.0.1:PORT` of the xDS (gRPC) listener.
    pub grpc: String,
    pub log: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
    /// The data dir of a `-dev` server, owned here: a server killed with SIGKILL cannot remove
    /// the temporary dir it would make itself, and every test run left one behind in /tmp.
    _dev_dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Starts `lambdamesh <args> -http-addr 127.0.0.1:0` and waits for it to serve.
    pub fn start(args: &[&str]) -> Proc {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0"]);
        Self::start_exact(&all)
    }

    /// Starts `lambdamesh <args>` as given (the caller chooses the addresses).
    pub fn start_exact(args: &[&str]) -> Proc {
        let dev_dir = (args.contains(&"-dev") && !args.contains(&"-data-dir"))
            .then(|| tempfile::tempdir().unwrap());
        let mut child = Command::new(BIN)
            .args(args)
            .args(
                dev_dir
                    .iter()
                    .flat_map(|d| ["-data-dir".as_ref(), d.path().as_os_str()]),
            )
            .env("LAMBDAMESH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lambdamesh");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addresses) = test_support::server_addresses(&line) {
                    let _ = tx.send(addresses);
                }
                log2.lock().push(line);
            }
        });
        let (http, grpc) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().join("\n"));
            }
        };
        Proc {
            child,
            http,
            grpc,
            log,
            _dev_dir: dev_dir,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        terminate(&mut self.child, 5)
    }
}

/// SIGTERM to `child`, then up to `secs` seconds for it to exit; whether it exited successfully.
pub fn terminate(child: &mut Child, secs: u64) -> bool {
    // SAFETY-free: the `kill` command keeps this crate free of unsafe code.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..secs * 20 {
        if let Ok(Some(st)) = child.try_wait() {
            return st.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a CLI command against `http` and returns its output.
pub fn lm(http: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CONSUL_HTTP_ADDR", http)
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .expect("run lambdamesh")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The extension binary as built for these tests, stripped of debug info (a debug build is too
/// large for a layer upload). `cargo nextest run --workspace` builds it; when only this package
/// was built, it is built here.
pub fn extension_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let built = std::path::Path::new(BIN).with_file_name("lambdamesh-extension");
    if !built.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "lambdamesh-extension"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cannot build lambdamesh-extension");
    }
    let copy = dir.join("lambdamesh-extension");
    std::fs::copy(&built, &copy).unwrap();
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&copy)
        .status();
    copy
}

/// A Python function that GETs `event["url"]` (through its extension's upstream) and returns
/// the status and body, or the error.
pub const PY_CALLER: &str = r#"
import json, urllib.request, urllib.error
def handler(event, context):
    try:
        with urllib.request.urlopen(event['url'], timeout=10) as r:
            return {'status': r.status, 'body': r.read().decode()}
    except urllib.error.HTTPError as e:
        return {'status': e.code, 'body': e.read().decode()}
    except Exception as e:
        return {'status': 0, 'error': repr(e)}
"#;
