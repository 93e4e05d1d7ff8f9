//! Lambda → mesh (issue 15) end to end, with no stand-in on the path: functions on the local
//! Lambda platform, with the `lambdamesh-extension` layer published by `lambdamesh lambda
//! layer-extension`, call `127.0.0.1:<port>`; the extension dials a real Envoy mesh gateway
//! (`connect envoy -gateway mesh`) with the function's leaf and the upstream's SNI; the gateway
//! passes the session by SNI to the service's real Envoy sidecar, which checks the certificate
//! and the intentions and forwards to the service.
//!
//! - a Python (awslambdaric) and a Rust (`lambda_runtime`) function get the service's answer,
//!   as themselves (the sidecar's XFCC names the function); an intention deny blocks them live
//!   and allow restores them; material in the Go registrator's exact JSON works;
//! - a peer presenting another service's identity is refused;
//! - material written by lambdamesh's registrator works; Parameter Store down for longer than
//!   the refresh interval costs no request; a CA root rotation with the registrator refreshing
//!   costs no request, and new connections then present the new leaf.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::mesh::{Envoy, free_port, get_json, put, python, wait_until};
use common::{BIN, PY_CALLER, Proc, extension_binary, stderr, stdout};
use lambda_platform::{Credentials, PlatformConfig, client::Client};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Digest;

const PREFIX: &str = "/lambdamesh";
const TAG: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled=true";

/// The control plane, a service behind its sidecar, a mesh gateway and the Lambda platform.
struct World {
    dir: tempfile::TempDir,
    server: Proc,
    service: XfccBackend,
    gateway_port: u16,
    platform: Platform,
    layer: String,
    _envoys: Vec<Envoy>,
}

impl World {
    fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = Proc::start(&["agent", "-dev"]);
        let http = server.http.clone();
        let service = XfccBackend::start("hello from example-service");
        put(
            &http,
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": "example-service", "Protocol": "http"}),
        );
        put(
            &http,
            "/v1/agent/service/register",
            &json!({"Name": "example-service", "Port": service.port,
                "Connect": {"SidecarService": {"Port": free_port()}}}),
        );
        let sidecar = Envoy::start(&http, &server.grpc, &["-sidecar-for", "example-service"]);
        let gateway_port = free_port();
        let gateway = Envoy::start(
            &http,
            &server.grpc,
            &[
                "-gateway",
                "mesh",
                "-register",
                "-service",
                "mesh-gateway",
                "-address",
                &format!("127.0.0.1:{gateway_port}"),
            ],
        );
        let platform = Platform::start(&dir.path().join("lambda"));
        // The layer, packaged and published by the CLI in one step; the zip also written out.
        let zip = dir.path().join("layer.zip");
        let o = Command::new(BIN)
            .args([
                "lambda",
                "layer-extension",
                "--publish",
                "lambdamesh-extension",
            ])
            .arg("--binary")
            .arg(extension_binary(dir.path()))
            .arg("--out")
            .arg(&zip)
            .env("AWS_ENDPOINT_URL", &platform.endpoint)
            .output()
            .unwrap();
        assert!(o.status.success(), "layer-extension: {}", stderr(&o));
        let published: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let layer = published["LayerVersionArn"].as_str().unwrap().to_owned();
        assert!(layer.ends_with(":layer:lambdamesh-extension:1"), "{layer}");
        let listing = Command::new(python())
            .args([
                "-c",
                "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
                 print([(i.filename, oct(i.external_attr >> 16 & 0o777)) for i in z.infolist()])",
            ])
            .arg(&zip)
            .output()
            .unwrap();
        assert_eq!(
            stdout(&listing).trim(),
            "[('extensions/lambdamesh-extension', '0o755')]"
        );
        World {
            dir,
            server,
            service,
            gateway_port,
            platform,
            layer,
            _envoys: vec![sidecar, gateway],
        }
    }

    fn http(&self) -> &str {
        &self.server.http
    }

    /// The server's trust domain and active root.
    fn roots(&self) -> (String, String) {
        let roots = get_json(self.http(), "/v1/agent/connect/ca/roots");
        let active = roots["ActiveRootID"].as_str().unwrap();
        let root = roots["Roots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ID"] == active)
            .unwrap()["RootCert"]
            .as_str()
            .unwrap()
            .to_owned();
        (roots["TrustDomain"].as_str().unwrap().to_owned(), root)
    }

    /// Writes `function`'s material as the Go registrator does: Consul's leaf (its key as
    /// SEC1, as a Consul agent answers), the active root, Go's JSON.
    fn write_go_material(&self, function: &str) {
        let leaf = get_json(
            self.http(),
            &format!("/v1/agent/connect/ca/leaf/{function}"),
        );
        let (td, root) = self.roots();
        let value = lambdamesh_extension::testing::go_json(
            &lambdamesh_extension::testing::pkcs8_to_sec1_pem(
                leaf["PrivateKeyPEM"].as_str().unwrap(),
            ),
            leaf["CertPEM"].as_str().unwrap(),
            &root,
            &td,
        );
        self.platform
            .put_parameter(&format!("{PREFIX}/default/default/{function}"), &value);
    }

    /// The extension's variables for one upstream of `example-service` on `port`.
    fn extension_env(&self, port: u16, gateway_port: u16, extra: &[String]) -> Vec<String> {
        let mut env = vec![
            format!("CONSUL_MESH_GATEWAY_URI=127.0.0.1:{gateway_port}"),
            format!("CONSUL_EXTENSION_DATA_PREFIX={PREFIX}"),
            format!("CONSUL_SERVICE_UPSTREAMS=example-service:{port}"),
        ];
        env.extend(extra.iter().cloned());
        env
    }

    /// `lambdamesh lambda create` with the layer.
    fn create(&self, name: &str, code: &Path, runtime: &str, env: &[String], extra: &[&str]) {
        let handler = if runtime.starts_with("python") {
            "app.handler"
        } else {
            "bootstrap"
        };
        let mut cmd = Command::new(BIN);
        cmd.args(["lambda", "create", name, "--dir"])
            .arg(code)
            .args([
                "--runtime",
                runtime,
                "--handler",
                handler,
                "--timeout",
                "30",
            ])
            .args(["--layer", &self.layer])
            .args(extra)
            .env("AWS_ENDPOINT_URL", &self.platform.endpoint);
        for e in env {
            cmd.args(["--env", e]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "create {name}: {}", stderr(&o));
    }

    fn python_code(&self) -> PathBuf {
        let code = self.dir.path().join("py");
        std::fs::create_dir_all(&code).unwrap();
        std::fs::write(code.join("app.py"), PY_CALLER).unwrap();
        code
    }

    fn rust_code(&self) -> PathBuf {
        let code = self.dir.path().join("rust");
        std::fs::create_dir_all(&code).unwrap();
        let bootstrap = code.join("bootstrap");
        std::fs::write(
            &bootstrap,
            format!(
                "#!/bin/sh\nexec {} \"$@\"\n",
                example_bin("mesh_caller_rust").display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&bootstrap).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&bootstrap, perms).unwrap();
        code
    }
}

/// The platform on its own runtime thread (embedded, so its sandboxes are this test's
/// children); stopped on drop.
struct Platform {
    endpoint: String,
    data: PathBuf,
    _platform: lambda_platform::Background,
}

impl Platform {
    fn start(data: &Path) -> Platform {
        let mut config = PlatformConfig::new(data.to_owned());
        config.python = python().into();
        let platform =
            lambda_platform::Background::start(TcpListener::bind("127.0.0.1:0").unwrap(), config)
                .unwrap();
        Platform {
            endpoint: platform.endpoint().to_owned(),
            data: data.to_owned(),
            _platform: platform,
        }
    }

    fn call<T>(&self, f: impl AsyncFnOnce(Client) -> T) -> T {
        let client = Client::new(
            &self.endpoint,
            Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
            },
            "us-east-1",
        )
        .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f(client))
    }

    fn put_parameter(&self, name: &str, value: &str) {
        let body = json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true});
        self.call(async |c| c.target("ssm", "AmazonSSM.PutParameter", &body).await)
            .unwrap();
    }

    fn parameter(&self, name: &str) -> Option<Value> {
        let body = json!({"Name": name, "WithDecryption": true});
        self.call(async |c| c.target("ssm", "AmazonSSM.GetParameter", &body).await)
            .ok()
            .and_then(|v| v["Parameter"]["Value"].as_str().map(str::to_owned))
            .and_then(|v| serde_json::from_str(&v).ok())
    }

    /// Invokes `function` to GET `url` through its extension: the function's answer.
    fn get(&self, function: &str, url: &str) -> Value {
        let payload = bytes::Bytes::from(json!({"url": url}).to_string());
        let resp = self
            .call(async |c| c.invoke(function, payload, &[]).await)
            .unwrap();
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        assert!(
            resp.header("x-amz-function-error").is_none(),
            "{function} failed: {v}"
        );
        v
    }

    fn log(&self, function: &str) -> String {
        std::fs::read_to_string(self.data.join("logs").join(format!("{function}.log")))
            .unwrap_or_default()
    }
}

/// An example binary of this package (tests/fixtures).
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(p.exists(), "{} missing: build with cargo test", p.display());
    p
}

/// The service: answers `<greeting> caller=<XFCC URI> hash=<XFCC Hash>`, so a test sees which
/// identity and which certificate reached it through the sidecar.
struct XfccBackend {
    port: u16,
    requests: Arc<AtomicUsize>,
    /// The XFCC `Hash` of the last request: the client certificate that reached the sidecar.
    last_hash: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl XfccBackend {
    fn start(greeting: &str) -> XfccBackend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let last_hash = Arc::new(Mutex::new(String::new()));
        let (stop2, requests2, last2, greeting) = (
            stop.clone(),
            requests.clone(),
            last_hash.clone(),
            greeting.to_owned(),
        );
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (greeting, requests, last) =
                            (greeting.clone(), requests2.clone(), last2.clone());
                        std::thread::spawn(move || serve_xfcc(s, &greeting, &requests, &last));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        XfccBackend {
            port,
            requests,
            last_hash,
            stop,
        }
    }
}

impl Drop for XfccBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_xfcc(mut s: TcpStream, greeting: &str, requests: &AtomicUsize, last: &Mutex<String>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut req = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&req[..end]).to_string();
        req.drain(..end + 4);
        requests.fetch_add(1, Ordering::SeqCst);
        let xfcc = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-client-cert"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let field = |name: &str| {
            xfcc.split(';')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_owned())
                .next_back()
                .unwrap_or_default()
        };
        *last.lock() = field("Hash");
        let body = format!("{greeting} caller={} hash={}", field("URI"), field("Hash"));
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Hex SHA-256 of a PEM certificate's DER (what Envoy's XFCC `Hash` shows).
fn cert_sha256(pem: &str) -> String {
    use base64::Engine as _;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    hex::encode(sha2::Sha256::digest(der))
}

fn body(v: &Value) -> &str {
    v["body"].as_str().unwrap_or_default()
}

#[test]
fn python_and_rust_functions_call_a_mesh_service_through_the_gateway() {
    let w = World::start();
    let (td, _) = w.roots();
    let port_py = free_port();
    let port_rs = free_port();
    w.write_go_material("greeter-py");
    w.write_go_material("greeter-rs");
    w.create(
        "greeter-py",
        &w.python_code(),
        "python3.11",
        &w.extension_env(port_py, w.gateway_port, &[]),
        &[],
    );
    w.create(
        "greeter-rs",
        &w.rust_code(),
        "provided.al2023",
        &w.extension_env(port_rs, w.gateway_port, &[]),
        &[],
    );
    for (function, port) in [("greeter-py", port_py), ("greeter-rs", port_rs)] {
        let url = format!("http://127.0.0.1:{port}/greeting");
        let mut answer = Value::Null;
        wait_until(60, "the function reaches the service", || {
            answer = w.platform.get(function, &url);
            answer["status"] == 200
        });
        let caller = format!("spiffe://{td}/ns/default/dc/dc1/svc/{function}");
        assert!(
            body(&answer).starts_with(&format!("hello from example-service caller={caller} ")),
            "{answer}"
        );
    }

    // Intentions apply to the function's identity, live.
    for function in ["greeter-py", "greeter-rs"] {
        let port = if function == "greeter-py" {
            port_py
        } else {
            port_rs
        };
        let url = format!("http://127.0.0.1:{port}/");
        let path =
            format!("/v1/connect/intentions/exact?source={function}&destination=example-service");
        put(w.http(), &path, &json!({"Action": "deny"}));
        wait_until(30, "denied", || {
            w.platform.get(function, &url)["status"] == 403
        });
        put(w.http(), &path, &json!({"Action": "allow"}));
        wait_until(30, "allowed again", || {
            w.platform.get(function, &url)["status"] == 200
        });
    }

    // A peer with another identity: the "gateway" is in fact another service's sidecar, which
    // presents that service's certificate. The extension refuses it; nothing reaches it.
    let impostor = XfccBackend::start("impostor");
    let impostor_port = free_port();
    put(
        w.http(),
        "/v1/agent/service/register",
        &json!({"Name": "impostor", "Port": impostor.port,
            "Connect": {"SidecarService": {"Port": impostor_port}}}),
    );
    let _impostor_sidecar = Envoy::start(w.http(), &w.server.grpc, &["-sidecar-for", "impostor"]);
    wait_until(30, "the impostor's sidecar listens", || {
        TcpStream::connect(("127.0.0.1", impostor_port)).is_ok()
    });
    let port_mis = free_port();
    w.write_go_material("misrouted");
    w.create(
        "misrouted",
        &w.python_code(),
        "python3.11",
        &w.extension_env(port_mis, impostor_port, &[]),
        &[],
    );
    let answer = w
        .platform
        .get("misrouted", &format!("http://127.0.0.1:{port_mis}/"));
    assert_eq!(answer["status"], 0, "{answer}");
    let log = w.platform.log("misrouted");
    assert!(
        log.contains("connection refused: the mesh peer failed verification")
            && log.contains(&format!(
                "peer is spiffe://{td}/ns/default/dc/dc1/svc/impostor, expected spiffe://{td}/ns/default/dc/dc1/svc/example-service"
            )),
        "{log}"
    );
    assert_eq!(impostor.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn registrator_material_parameter_store_outage_and_root_rotation_lose_no_request() {
    let w = World::start();
    let port = free_port();
    // Parameter Store through a switch, so it can go down alone.
    let ssm = Switch::start(w.platform.endpoint.trim_start_matches("http://"));
    w.create(
        "greeter",
        &w.python_code(),
        "python3.11",
        &w.extension_env(
            port,
            w.gateway_port,
            &[
                "CONSUL_REFRESH_FREQUENCY=1s".to_owned(),
                // Room for the registrator's run while the mesh is ahead of the material.
                "CONSUL_EXTENSION_PROXY_TIMEOUT=10s".to_owned(),
                format!("AWS_ENDPOINT_URL_SSM=http://127.0.0.1:{}", ssm.port),
            ],
        ),
        &["--tag", TAG],
    );
    // lambdamesh's registrator writes the material (a full sync, as its schedule runs it).
    let sync = || {
        let o = Command::new(BIN)
            .args(["registrator", "sync"])
            .env("CONSUL_HTTP_ADDR", w.http())
            .env("CONSUL_EXTENSION_DATA_PREFIX", PREFIX)
            .env("AWS_ENDPOINT_URL", &w.platform.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        assert!(o.status.success(), "registrator sync: {}", stderr(&o));
    };
    sync();
    let parameter = format!("{PREFIX}/default/default/greeter");
    wait_until(30, "the registrator wrote the material", || {
        w.platform.parameter(&parameter).is_some()
    });
    let url = format!("http://127.0.0.1:{port}/");
    wait_until(60, "the function reaches the service", || {
        w.platform.get("greeter", &url)["status"] == 200
    });
    // Only the traffic thread below invokes the function from here on: a second sandbox of
    // the same function would share the host's loopback (the platform has no network
    // namespaces) and could not bind the extension's port.
    let hash_now = || w.service.last_hash.lock().clone();
    let written_hash = || {
        cert_sha256(
            w.platform.parameter(&parameter).unwrap()["certPEM"]
                .as_str()
                .unwrap(),
        )
    };
    assert_eq!(
        hash_now(),
        written_hash(),
        "the registrator's leaf is presented"
    );

    // Steady traffic from here on: one request per invoke, each a new connection.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let traffic = {
        let (stop, ok, failed, failures) =
            (stop.clone(), ok.clone(), failed.clone(), failures.clone());
        let (endpoint, url) = (w.platform.endpoint.clone(), url.clone());
        std::thread::spawn(move || {
            let p = PlatformClient { endpoint };
            while !stop.load(Ordering::Relaxed) {
                let answer = p.get("greeter", &url);
                if answer["status"] == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.lock().push(answer);
                }
            }
        })
    };

    // Parameter Store down for several refresh intervals.
    ssm.set(false);
    wait_until(30, "failed re-reads logged", || {
        w.platform
            .log("greeter")
            .matches("cannot re-read the mTLS material; keeping the last good")
            .count()
            >= 3
    });
    ssm.set(true);

    // Root rotation; the registrator rewrites the material, the extension picks it up.
    let (_, old_root) = w.roots();
    let service_serial =
        get_json(w.http(), "/v1/agent/connect/ca/leaf/example-service")["SerialNumber"].clone();
    let key = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap();
    assert!(key.status.success());
    put(
        w.http(),
        "/v1/connect/ca/configuration",
        &json!({"Provider": "consul", "Config": {"LeafCertTTL": "72h",
            "PrivateKey": String::from_utf8(key.stdout).unwrap()}}),
    );
    wait_until(30, "a new active root", || w.roots().1 != old_root);
    let (_, new_root) = w.roots();
    // The service's sidecar moves to a leaf of the new root, which the function's material
    // does not know yet: new connections wait for newer material instead of failing.
    wait_until(60, "the service's leaf reissued by the new root", || {
        get_json(w.http(), "/v1/agent/connect/ca/leaf/example-service")["SerialNumber"]
            != service_serial
    });
    std::thread::sleep(Duration::from_secs(2));
    sync();
    let m = w.platform.parameter(&parameter).unwrap();
    assert_eq!(
        m["rootCertPEM"].as_str().map(str::trim),
        Some(new_root.trim())
    );
    wait_until(60, "new connections present the new leaf", || {
        hash_now() == written_hash()
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let log = w.platform.log("greeter");
    assert_eq!(log.matches("INIT_START").count(), 1, "one sandbox: {log}");
    assert!(
        log.contains("mTLS material refreshed; new connections use it"),
        "{log}"
    );
    assert!(
        log.contains("peer failed verification; retrying with refreshed mTLS material"),
        "{log}"
    );
    assert!(ok > 20, "too little traffic: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed: {:?}\n{}",
        ok + failed,
        failures.lock(),
        w.platform.log("greeter")
    );
}

/// A platform client for another thread.
struct PlatformClient {
    endpoint: String,
}

impl PlatformClient {
    fn get(&self, function: &str, url: &str) -> Value {
        let client = Client::new(
            &self.endpoint,
            Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
            },
            "us-east-1",
        )
        .unwrap();
        let payload = bytes::Bytes::from(json!({"url": url}).to_string());
        let resp = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.invoke(function, payload, &[]));
        match resp {
            Ok(r) if r.status == 200 => serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            Ok(r) => {
                json!({"status": -1, "invoke": r.status, "body": String::from_utf8_lossy(&r.body)})
            }
            Err(e) => json!({"status": -1, "error": e.to_string()}),
        }
    }
}

/// A TCP forwarder that can be switched off (open connections cut, new ones dropped).
struct Switch {
    port: u16,
    on: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Switch {
    fn start(target: &str) -> Switch {
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
                    }
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

    fn set(&self, on: bool) {
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

/// The pid of the `lambdamesh-extension` process started from `data` (the platform's data dir).
fn extension_pid(data: &Path) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let cmd = String::from_utf8_lossy(&c);
                cmd.starts_with(data.to_str().unwrap_or("-"))
                    && cmd.contains("extensions/lambdamesh-extension")
            })
        })
}

fn process_state(pid: u32) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')')?.1.trim_start().chars().next())
        .unwrap_or('?')
}

#[test]
fn a_frozen_sandbox_refreshes_on_the_invoke_after_the_interval() {
    let w = World::start();
    let port = free_port();
    w.write_go_material("sleeper");
    w.create(
        "sleeper",
        &w.python_code(),
        "python3.11",
        &w.extension_env(
            port,
            w.gateway_port,
            &["CONSUL_REFRESH_FREQUENCY=2s".to_owned()],
        ),
        &[],
    );
    let url = format!("http://127.0.0.1:{port}/");
    wait_until(60, "the function reaches the service", || {
        w.platform.get("sleeper", &url)["status"] == 200
    });
    let pid = extension_pid(&w.platform.data).expect("the extension's process");
    wait_until(30, "the sandbox frozen after the invoke", || {
        process_state(pid) == 'T'
    });
    let reads = |log: &str| log.matches("mTLS material re").count();
    let before = reads(&w.platform.log("sleeper"));
    // New material (the same leaf, lambdamesh's JSON and key form) while the sandbox sleeps
    // for longer than the refresh interval: a frozen extension runs no timer.
    let leaf = get_json(w.http(), "/v1/agent/connect/ca/leaf/sleeper");
    let (td, root) = w.roots();
    w.platform.put_parameter(
        &format!("{PREFIX}/default/default/sleeper"),
        &lambdamesh_extension::testing::our_json(
            leaf["PrivateKeyPEM"].as_str().unwrap(),
            leaf["CertPEM"].as_str().unwrap(),
            &root,
            &td,
        ),
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(process_state(pid), 'T', "still frozen");
    let log = w.platform.log("sleeper");
    assert_eq!(reads(&log), before, "no refresh while frozen: {log}");
    // Thawed for the invoke after the interval: the material is re-read before the call uses
    // it.
    assert_eq!(w.platform.get("sleeper", &url)["status"], 200);
    // The platform writes an invoke's END line after it has answered: wait for the second one.
    wait_until(30, "the second invoke's END line", || {
        w.platform.log("sleeper").matches("END RequestId").count() >= 2
    });
    let log = w.platform.log("sleeper");
    let refreshed = log
        .find("mTLS material refreshed; new connections use it")
        .unwrap_or_else(|| panic!("no refresh after the thaw: {log}"));
    let last_end = log.rfind("END RequestId").unwrap();
    assert!(
        refreshed < last_end,
        "refreshed before the invoke ended: {log}"
    );
    assert_eq!(
        log.matches("INIT_START").count(),
        1,
        "the same sandbox: {log}"
    );
}
