//! Scaffolding: the real local Lambda platform (embedded, on 127.0.0.1:0), the extension binary
//! published as a layer, signed AWS calls (aws-wire + ureq), a Python function that calls a URL
//! it is given, and a mutual-TLS peer standing where the mesh gateway would be. The peer is a
//! rustls server with a leaf of the test CA (the CLI's end-to-end tests use real Envoy
//! gateways and sidecars); it answers HTTP with what it saw of the client.

#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use aws_wire::{Credentials, Endpoint, JsonProtocol, Signer};
use lambdamesh_extension::testing::{Leaf, Mesh};
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use sha2::Digest;

pub const EXTENSION: &str = env!("CARGO_BIN_EXE_lambdamesh-extension");

/// A Python function that GETs `event["url"]` and returns what came back.
pub const CALLER: &str = r#"
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

/// The platform, embedded.
pub struct Platform {
    pub endpoint: String,
    pub data: PathBuf,
    signer: Signer,
    agent: ureq::Agent,
    _platform: lambda_platform::Background,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub fn start(idle_timeout: Duration) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = lambda_platform::PlatformConfig::new(data.clone());
        config.python = test_support::venv_python();
        assert!(
            config.python.exists(),
            "Python venv missing at {} (run scripts/setup.sh)",
            config.python.display()
        );
        config.idle_timeout = idle_timeout;
        let platform =
            lambda_platform::Background::start(TcpListener::bind("127.0.0.1:0").unwrap(), config)
                .unwrap();
        Platform {
            endpoint: platform.endpoint().to_owned(),
            data,
            signer: Signer::new(
                Credentials {
                    access_key: "test".into(),
                    secret_key: "test".into(),
                },
                None,
                "us-east-1",
            ),
            agent: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build(),
            ),
            _platform: platform,
            _dir: dir,
        }
    }

    fn send(&self, req: http::Request<Vec<u8>>) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut r = self.agent.run(req).unwrap();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        (
            r.status().as_u16(),
            headers,
            r.body_mut().read_to_vec().unwrap(),
        )
    }

    /// A signed Lambda REST call; panics unless 2xx.
    pub fn lambda(&self, method: &str, path: &str, body: &Value) -> Value {
        let endpoint = Endpoint::parse(&self.endpoint).unwrap();
        let req = self
            .signer
            .request(
                &endpoint,
                "lambda",
                method,
                path,
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        let (status, _, body) = self.send(req);
        assert!(
            status < 300,
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }

    /// A signed SSM call.
    pub fn ssm(&self, target: &str, body: &Value) -> (u16, Value) {
        let endpoint = Endpoint::parse(&self.endpoint).unwrap();
        let req = self
            .signer
            .json_request(
                &endpoint,
                "ssm",
                JsonProtocol::V1_1,
                &format!("AmazonSSM.{target}"),
                body.to_string().into_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        let (status, _, body) = self.send(req);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub fn put_parameter(&self, name: &str, value: &str) {
        let (status, body) = self.ssm(
            "PutParameter",
            &json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true}),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// Publishes the extension binary as a layer; returns its version ARN.
    pub fn publish_extension_layer(&self) -> String {
        let staging = tempfile::tempdir().unwrap();
        let dir = staging.path().join("extensions");
        std::fs::create_dir(&dir).unwrap();
        let target = dir.join("lambdamesh-extension");
        std::fs::copy(EXTENSION, &target).unwrap();
        // A debug build carries ~80 MB of debug info, more than a layer upload takes.
        let _ = std::process::Command::new("strip")
            .arg("--strip-debug")
            .arg(&target)
            .status();
        let zip = lambda_platform::code::zip_dir(staging.path()).unwrap();
        let out = self.lambda(
            "POST",
            "/2018-10-31/layers/lambdamesh-extension/versions",
            &json!({"Content": {"ZipFile": b64(&zip)}}),
        );
        out["LayerVersionArn"].as_str().unwrap().to_owned()
    }

    /// Creates the Python caller `name` with `layer` and `env`.
    pub fn create_caller(&self, name: &str, layer: &str, env: &[(&str, String)]) {
        let staging = tempfile::tempdir().unwrap();
        std::fs::write(staging.path().join("app.py"), CALLER).unwrap();
        let zip = lambda_platform::code::zip_dir(staging.path()).unwrap();
        let vars: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        self.lambda(
            "POST",
            "/2015-03-31/functions",
            &json!({"FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
                "Role": "arn:aws:iam::123456789012:role/r", "Timeout": 30,
                "Code": {"ZipFile": b64(&zip)}, "Layers": [layer],
                "Environment": {"Variables": vars}}),
        );
    }

    /// Invokes `name` with `payload`: (function error header, payload).
    pub fn invoke(&self, name: &str, payload: &Value) -> (Option<String>, Value) {
        let endpoint = Endpoint::parse(&self.endpoint).unwrap();
        let req = self
            .signer
            .request(
                &endpoint,
                "lambda",
                "POST",
                &format!("/2015-03-31/functions/{name}/invocations"),
                &[("content-type", "application/json")],
                payload.to_string().into_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        let (status, headers, body) = self.send(req);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let error = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-function-error"))
            .map(|(_, v)| v.clone());
        (error, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Invokes the caller with `url`; the function's answer.
    pub fn call(&self, name: &str, url: &str) -> Value {
        let (error, payload) = self.invoke(name, &json!({"url": url}));
        assert_eq!(error, None, "{payload}");
        payload
    }

    /// The function's log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Polls `f` until true or `secs` pass.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// What the peer saw of one connection.
#[derive(Clone, Debug)]
pub struct Seen {
    pub sni: String,
    pub client_uri: String,
    /// Hex SHA-256 of the client certificate.
    pub client_sha256: String,
    pub resumed: bool,
}

/// A mutual-TLS HTTP server standing where the mesh gateway would be: requires a client
/// certificate of the test CA, presents `leaf`, answers `peer <sni> <client uri>`.
pub struct TlsPeer {
    pub port: u16,
    config: Arc<Mutex<Arc<rustls::ServerConfig>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    pub open: Arc<AtomicUsize>,
}

impl TlsPeer {
    pub fn start(mesh: &Mesh, leaf: &Leaf) -> TlsPeer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let config = Arc::new(Mutex::new(server_config(mesh, leaf)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let (config2, seen2, stop2, open2) =
            (config.clone(), seen.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let cfg = config2.lock().clone();
                        let (seen, open) = (seen2.clone(), open2.clone());
                        std::thread::spawn(move || serve_tls(s, cfg, &seen, &open));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsPeer {
            port,
            config,
            seen,
            stop,
            open,
        }
    }

    /// Presents `leaf` from now on.
    pub fn present(&self, mesh: &Mesh, leaf: &Leaf) {
        *self.config.lock() = server_config(mesh, leaf);
    }
}

impl Drop for TlsPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn server_config(mesh: &Mesh, leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(mesh.root.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn serve_tls(
    tcp: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    seen: &Mutex<Vec<Seen>>,
    open: &AtomicUsize,
) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    open.fetch_add(1, Ordering::SeqCst);
    let mut req = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        req.extend_from_slice(&buf[..n]);
        let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        req.drain(..end + 4);
        let c = &tls.conn;
        let cert = c.peer_certificates().and_then(|p| p.first()).cloned();
        let s = Seen {
            sni: c.server_name().unwrap_or_default().to_owned(),
            client_uri: cert
                .as_ref()
                .and_then(|d| lambdamesh_extension::der::cert_facts(d).ok())
                .and_then(|f| f.uris.into_iter().next())
                .unwrap_or_default(),
            client_sha256: cert
                .map(|d| hex::encode(sha2::Sha256::digest(d.as_ref())))
                .unwrap_or_default(),
            resumed: matches!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        };
        let body = format!("peer {} {}", s.sni, s.client_uri);
        seen.lock().push(s);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if tls.write_all(resp.as_bytes()).is_err() {
            break;
        }
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// A TCP forwarder to `target` that can be switched off (open connections cut, new ones
/// dropped) and on: Parameter Store "going down" for the extension while the platform serves
/// everything else.
pub struct Switch {
    pub port: u16,
    on: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Switch {
    pub fn start(target: &str) -> Switch {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let on = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (on2, stop2, open2, target) =
            (on.clone(), stop.clone(), open.clone(), target.to_owned());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) if on2.load(Ordering::Relaxed) => {
                        if let Ok(server) = TcpStream::connect(&target) {
                            open2.lock().push(client.try_clone().unwrap());
                            forward(client, server);
                        }
                    }
                    // Off: the connection is dropped at once, as by a dead endpoint.
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Switch {
            port,
            on,
            open,
            stop,
        }
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        if !on {
            for s in self.open.lock().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward(client: TcpStream, server: TcpStream) {
    let _ = client.set_nonblocking(false);
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// The material parameter name for a function (prefix `/lambdamesh`, default tenancy).
pub fn parameter(function: &str) -> String {
    format!("/lambdamesh/default/default/{function}")
}
