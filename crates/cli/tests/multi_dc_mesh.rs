//! Service traffic across two datacenters on loopback (`docs/multi-dc.md`, issue 19 items 4–5),
//! with real Envoys: dc1 (the primary) and dc2 each have a server, a mesh gateway
//! (`-expose-servers`), and their own local Lambda platform. A dc1 service calls
//! `authentication`, a function of dc2 behind dc2's terminating gateway: dc1 sidecar → dc1 mesh
//! gateway → dc2 mesh gateway → dc2 terminating gateway → the function, with intentions enforced
//! at dc2's gateway; a function of dc1 fails over to dc2's when the catalog says it is down; and
//! killing dc2's mesh gateway cuts only cross-datacenter traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::dcs::{mesh_gateway, primary_with, roots_file, secondary_with};
use common::mesh::{Envoy, Guard, free_port, get, get_json, put, start_platform, wait_until};
use common::{BIN, PY_CALLER, Proc, stderr};
use serde_json::json;

/// One ARN in both datacenters: config entries are global (replicated from the primary), so a
/// function registered under one name in two datacenters carries one marking
/// (`docs/multi-dc.md`); each datacenter invokes its own platform with it.
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:authentication";
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// Answers `<greeting> <path>`, denies nothing: intentions are the gateways' business.
fn function_source(greeting: &str) -> String {
    format!(
        "def handler(event, context):\n    return {{'statusCode': 200, 'body': '{greeting} ' + event['raw_path']}}\n"
    )
}

struct Dc {
    server: Proc,
    platform: String,
    gateway_port: u16,
    gateway: Option<Envoy>,
    _platform: Guard,
}

impl Dc {
    fn http(&self) -> &str {
        &self.server.http
    }

    /// Creates `name` on this datacenter's platform.
    fn function(&self, dir: &Path, name: &str, source: &str) {
        let code = dir.join(format!("code-{name}-{}", self.gateway_port));
        std::fs::create_dir_all(&code).unwrap();
        std::fs::write(code.join("app.py"), source).unwrap();
        let o = Command::new(BIN)
            .args(["lambda", "create", name, "--dir", code.to_str().unwrap()])
            .args(["--runtime", "python3.11", "--handler", "app.handler"])
            .env("AWS_ENDPOINT_URL", &self.platform)
            .output()
            .unwrap();
        assert!(o.status.success(), "create {name}: {}", stderr(&o));
    }

    /// Registers `name` as the registrator does (no address, no port), with a check whose
    /// status the test sets.
    fn register_function(&self, name: &str, status: &str) {
        put(
            self.http(),
            "/v1/catalog/register",
            &json!({"Node": "lambdas", "SkipNodeUpdate": true,
                "NodeMeta": {"external-node": "true", "external-probe": "true"},
                "Service": {"ID": name, "Service": name, "Tags": ["managed-by-lambda-registrator"]},
                "Check": {"CheckID": format!("{name}-alive"), "Name": "alive", "ServiceID": name,
                    "Status": status}}),
        );
    }

    /// Registers `service` (port 1: it only calls) with a sidecar whose upstreams are
    /// `(name, datacenter)`, and starts that sidecar; returns it with the bind ports.
    fn caller(&self, service: &str, upstreams: &[(&str, &str)]) -> (Envoy, Vec<u16>) {
        let ports: Vec<u16> = upstreams.iter().map(|_| free_port()).collect();
        let ups: Vec<serde_json::Value> = upstreams
            .iter()
            .zip(&ports)
            .map(|((name, dc), port)| {
                json!({"DestinationName": name, "Datacenter": dc, "LocalBindPort": port})
            })
            .collect();
        put(
            self.http(),
            "/v1/agent/service/register",
            &json!({"Name": service, "Port": 1, "Connect": {"SidecarService": {
                "Port": free_port(), "Proxy": {"Upstreams": ups}}}}),
        );
        let envoy = Envoy::start_with_env(
            self.http(),
            &self.server.grpc,
            &["-sidecar-for", service],
            &AWS_ENV,
        );
        (envoy, ports)
    }

    fn terminating_gateway(&self) -> Envoy {
        Envoy::start_with_env(
            self.http(),
            &self.server.grpc,
            &[
                "-gateway",
                "terminating",
                "-register",
                "-service",
                "tgw",
                "-address",
                &format!("127.0.0.1:{}", free_port()),
            ],
            &AWS_ENV,
        )
    }

    fn start_gateway(&mut self) {
        self.gateway = Some(mesh_gateway(&self.server, self.gateway_port));
    }
}

/// dc1 and dc2, joined through their mesh gateways, with mesh gateway mode `local` everywhere
/// and `authentication` on dc2's platform behind dc2's terminating gateway.
struct TwoDcs {
    dir: tempfile::TempDir,
    dc1: Dc,
    dc2: Dc,
    _dc2_tgw: Envoy,
}

impl TwoDcs {
    fn start() -> TwoDcs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (p1, endpoint1) = start_platform(&d.join("platform1"));
        let (p2, endpoint2) = start_platform(&d.join("platform2"));
        let dc1_server = primary_with(
            d,
            free_port(),
            &format!("lambda_endpoint = {endpoint1:?}\n"),
        );
        let mut dc1 = Dc {
            server: dc1_server,
            platform: endpoint1,
            gateway_port: free_port(),
            gateway: None,
            _platform: p1,
        };
        dc1.start_gateway();
        let ca_file = roots_file(d, dc1.http());
        let dc2_server = secondary_with(
            d,
            "dc2",
            &ca_file,
            &[format!("127.0.0.1:{}", dc1.gateway_port)],
            &format!("lambda_endpoint = {endpoint2:?}\n"),
        );
        let mut dc2 = Dc {
            server: dc2_server,
            platform: endpoint2,
            gateway_port: free_port(),
            gateway: None,
            _platform: p2,
        };
        dc2.start_gateway();
        wait_until(60, "dc2 to join dc1", || {
            get_json(dc2.http(), "/v1/internal/federation/status")["ConfigEntryReplication"]
                ["LastSuccessUnix"]
                .is_number()
                && !get_json(dc2.http(), "/v1/agent/connect/ca/roots")["Roots"]
                    .as_array()
                    .unwrap()
                    .is_empty()
        });
        // Written in dc1 (the primary), replicated to dc2.
        for entry in [
            json!({"Kind": "proxy-defaults", "Name": "global", "MeshGateway": {"Mode": "local"}}),
            json!({"Kind": "service-defaults", "Name": "authentication", "Protocol": "http",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
            json!({"Kind": "service-defaults", "Name": "name", "Protocol": "http"}),
            json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "authentication"}]}),
        ] {
            put(dc1.http(), "/v1/config", &entry);
        }
        dc2.function(d, "authentication", &function_source("dc2 token for"));
        dc2.register_function("authentication", "passing");
        let tgw = dc2.terminating_gateway();
        wait_until(60, "dc2's gateway fronts the function", || {
            get_json(dc2.http(), "/v1/health/connect/authentication")
                .as_array()
                .is_some_and(|a| a.len() == 1)
        });
        wait_until(60, "each datacenter knows the other's gateway", || {
            let known = |dc: &Dc, other: &str| {
                get_json(dc.http(), "/v1/internal/federation/status")["MeshGateways"][other]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            };
            known(&dc1, "dc2") && known(&dc2, "dc1")
        });
        TwoDcs {
            dir,
            dc1,
            dc2,
            _dc2_tgw: tgw,
        }
    }
}

fn intention(http: &str, source: &str, destination: &str, action: &str) {
    put(
        http,
        &format!("/v1/connect/intentions/exact?source={source}&destination={destination}"),
        &json!({"Action": action}),
    );
}

/// A dc1 service calls dc2's function through dc1's mesh gateway, dc2's mesh gateway and dc2's
/// terminating gateway (which invokes it); an intention written in dc1 takes effect at dc2's
/// gateway, both ways.
#[test]
fn a_dc1_service_invokes_a_dc2_function_through_both_mesh_gateways() {
    let w = TwoDcs::start();
    intention(w.dc1.http(), "web", "authentication", "allow");
    let (_web, ports) = w.dc1.caller("web", &[("authentication", "dc2")]);
    let url = format!("http://127.0.0.1:{}/login", ports[0]);
    wait_until(
        60,
        "web → dc1 gw → dc2 gw → dc2 tgw → function",
        || get(&url) == (200, "dc2 token for /login".to_owned()),
    );
    // Both mesh gateways carried it: dc1's to dc2's cluster, dc2's to the service's.
    let td = get_json(w.dc1.http(), "/v1/agent/connect/ca/roots")["TrustDomain"]
        .as_str()
        .unwrap()
        .to_owned();
    let gw1 = w.dc1.gateway.as_ref().unwrap();
    let gw2 = w.dc2.gateway.as_ref().unwrap();
    assert!(gw1.stat(&format!("cluster.dc2.internal.{td}.upstream_cx_total")) >= 1);
    assert!(
        gw2.stat(&format!(
            "cluster.authentication.default.dc2.internal.{td}.upstream_cx_total"
        )) >= 1
    );
    // A deny written in dc1 reaches dc2's terminating gateway, which refuses; then allowed.
    intention(w.dc1.http(), "web", "authentication", "deny");
    wait_until(60, "the deny enforced in dc2", || get(&url).0 == 403);
    assert!(
        w._dc2_tgw
            .stat("http.terminating_gateway.authentication.rbac.denied")
            >= 1
    );
    intention(w.dc1.http(), "web", "authentication", "allow");
    wait_until(60, "allowed again", || get(&url).0 == 200);
}

/// A request loop against `url` counting answers by body prefix and failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    by_dc: Arc<[AtomicU64; 2]>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(url: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let by_dc: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let thread = {
            let (stop, failed, by_dc) = (stop.clone(), failed.clone(), by_dc.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(&url) {
                        (200, body) if body.starts_with("dc1 ") => {
                            by_dc[0].fetch_add(1, Ordering::Relaxed);
                        }
                        (200, body) if body.starts_with("dc2 ") => {
                            by_dc[1].fetch_add(1, Ordering::Relaxed);
                        }
                        (status, body) => {
                            eprintln!("request failed: {status} {body}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Traffic {
            stop,
            failed,
            by_dc,
            thread: Some(thread),
        }
    }

    fn count(&self, dc: usize) -> u64 {
        self.by_dc[dc].load(Ordering::Relaxed)
    }

    /// Waits until `n` more answers came from `dc` (0: dc1, 1: dc2).
    fn wait_for(&self, dc: usize, n: u64, what: &str) {
        let from = self.count(dc);
        wait_until(90, what, || self.count(dc) >= from + n);
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.failed.load(Ordering::Relaxed)
    }
}

/// dc1's `authentication` (a function dc1's sidecar invokes itself) fails over to dc2's when the
/// catalog says it is down (its check critical, or deregistered), and back when it recovers,
/// with no failed request: the control plane moves the route, Envoy drains the old one.
#[test]
fn a_function_fails_over_to_the_other_datacenter_and_back() {
    let w = TwoDcs::start();
    let d = w.dir.path();
    put(
        w.dc1.http(),
        "/v1/config",
        &json!({"Kind": "service-resolver", "Name": "authentication",
            "Failover": {"*": {"Datacenters": ["dc2"]}}}),
    );
    intention(w.dc1.http(), "web", "authentication", "allow");
    w.dc1
        .function(d, "authentication", &function_source("dc1 token for"));
    w.dc1.register_function("authentication", "passing");
    let (_web, ports) = w.dc1.caller("web", &[("authentication", "")]);
    let url = format!("http://127.0.0.1:{}/login", ports[0]);
    wait_until(60, "web invokes dc1's function", || {
        get(&url) == (200, "dc1 token for /login".to_owned())
    });
    let traffic = Traffic::start(url.clone());
    traffic.wait_for(0, 20, "traffic to dc1's function");
    w.dc1.register_function("authentication", "critical");
    traffic.wait_for(1, 50, "failover to dc2's function");
    w.dc1.register_function("authentication", "passing");
    traffic.wait_for(0, 50, "back to dc1's function");
    // Deregistered: dc2 again; registered again: back.
    put(
        w.dc1.http(),
        "/v1/catalog/deregister",
        &json!({"Node": "lambdas", "ServiceID": "authentication"}),
    );
    traffic.wait_for(1, 50, "failover after deregistration");
    w.dc1.register_function("authentication", "passing");
    traffic.wait_for(0, 50, "back after registration");
    let (dc1, dc2) = (traffic.count(0), traffic.count(1));
    let failed = traffic.finish();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across four switches",
        dc1 + dc2 + failed
    );
}

/// dc2's mesh gateway killed under traffic: dc-local traffic in both datacenters goes on;
/// cross-datacenter traffic fails until the gateway is back on its address, then resumes.
#[test]
fn killing_the_dc2_mesh_gateway_cuts_only_cross_datacenter_traffic() {
    let mut w = TwoDcs::start();
    intention(w.dc1.http(), "*", "*", "allow");
    // dc1-local: web → name (a dc1 service with a sidecar). dc2-local: api → authentication
    // through dc2's terminating gateway. Cross: web → dc2's authentication.
    let name = common::mesh::Backend::start("dc1 name");
    put(
        w.dc1.http(),
        "/v1/agent/service/register",
        &json!({"Name": "name", "Port": name.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    let _name_sidecar = Envoy::start(w.dc1.http(), &w.dc1.server.grpc, &["-sidecar-for", "name"]);
    let (_web, web_ports) = w
        .dc1
        .caller("web", &[("name", ""), ("authentication", "dc2")]);
    let (_api, api_ports) = w.dc2.caller("api", &[("authentication", "")]);
    let local1 = format!("http://127.0.0.1:{}/", web_ports[0]);
    let cross = format!("http://127.0.0.1:{}/x", web_ports[1]);
    let local2 = format!("http://127.0.0.1:{}/y", api_ports[0]);
    wait_until(60, "all three paths answer", || {
        get(&local1).0 == 200 && get(&cross).0 == 200 && get(&local2).0 == 200
    });
    let local1_traffic = Traffic::start(local1.clone());
    let local2_traffic = Traffic::start(local2.clone());
    std::thread::sleep(Duration::from_millis(500));
    w.dc2.gateway = None; // killed
    wait_until(30, "cross-datacenter calls fail", || get(&cross).0 != 200);
    std::thread::sleep(Duration::from_secs(2));
    w.dc2.start_gateway();
    wait_until(90, "cross-datacenter calls resume", || {
        get(&cross) == (200, "dc2 token for /x".to_owned())
    });
    assert_eq!(local1_traffic.finish(), 0, "dc1-local traffic failed");
    assert_eq!(local2_traffic.finish(), 0, "dc2-local traffic failed");
}

/// boto3 against a platform: `script` runs with `lam` (Lambda) and `ssm` clients; its stdout.
fn boto(endpoint: &str, script: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import boto3, json, sys\nkw = dict(endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test')\n\
         lam = boto3.client('lambda', **kw)\nssm = boto3.client('ssm', **kw)\n"
    );
    let o = Command::new(common::mesh::python())
        .args(["-c", &format!("{prelude}{script}")])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "boto3: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A function of dc2 with the extension layer calls `name`, a dc1 service, as `name:port:dc1`:
/// the extension dials dc2's mesh gateway with the SNI of dc1's `name`, dc2's gateway forwards
/// to dc1's, dc1's to `name`'s sidecar, which checks the function's dc2 leaf (chained to the
/// one root through dc2's intermediate) and the intentions.
#[test]
fn a_dc2_function_with_the_extension_calls_a_dc1_service() {
    let w = TwoDcs::start();
    let d = w.dir.path();
    let name = common::mesh::Backend::start("dc1 name");
    put(
        w.dc1.http(),
        "/v1/agent/service/register",
        &json!({"Name": "name", "Port": name.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    let _sidecar = Envoy::start(w.dc1.http(), &w.dc1.server.grpc, &["-sidecar-for", "name"]);
    intention(w.dc1.http(), "greeter", "name", "allow");
    // The layer, published on dc2's platform.
    let o = Command::new(BIN)
        .args([
            "lambda",
            "layer-extension",
            "--publish",
            "lambdamesh-extension",
        ])
        .arg("--binary")
        .arg(common::extension_binary(d))
        .arg("--out")
        .arg(d.join("layer.zip"))
        .env("AWS_ENDPOINT_URL", &w.dc2.platform)
        .output()
        .unwrap();
    assert!(o.status.success(), "layer-extension: {}", stderr(&o));
    let layer =
        serde_json::from_str::<serde_json::Value>(&common::stdout(&o)).unwrap()["LayerVersionArn"]
            .as_str()
            .unwrap()
            .to_owned();
    // The function's material, as the Go registrator writes it, from dc2.
    let leaf = get_json(w.dc2.http(), "/v1/agent/connect/ca/leaf/greeter");
    let roots = get_json(w.dc2.http(), "/v1/agent/connect/ca/roots");
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
    let material = lambdamesh_extension::testing::go_json(
        &lambdamesh_extension::testing::pkcs8_to_sec1_pem(leaf["PrivateKeyPEM"].as_str().unwrap()),
        leaf["CertPEM"].as_str().unwrap(),
        &root,
        roots["TrustDomain"].as_str().unwrap(),
    );
    boto(
        &w.dc2.platform,
        "ssm.put_parameter(Name=sys.argv[1], Value=sys.argv[2], Type='SecureString', Overwrite=True)",
        &["/lambdamesh/default/default/greeter", &material],
    );
    let port = free_port();
    let code = d.join("greeter");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("app.py"), PY_CALLER).unwrap();
    let o = Command::new(BIN)
        .args([
            "lambda",
            "create",
            "greeter",
            "--dir",
            code.to_str().unwrap(),
        ])
        .args([
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--timeout",
            "30",
        ])
        .args(["--layer", &layer])
        .args([
            "--env",
            &format!("CONSUL_MESH_GATEWAY_URI=127.0.0.1:{}", w.dc2.gateway_port),
            "--env",
            "CONSUL_EXTENSION_DATA_PREFIX=/lambdamesh",
            "--env",
            &format!("CONSUL_SERVICE_UPSTREAMS=name:{port}:dc1"),
            "--env",
            "CONSUL_DATACENTER=dc2",
        ])
        .env("AWS_ENDPOINT_URL", &w.dc2.platform)
        .output()
        .unwrap();
    assert!(o.status.success(), "create greeter: {}", stderr(&o));
    let invoke = || -> serde_json::Value {
        let out = boto(
            &w.dc2.platform,
            "r = lam.invoke(FunctionName='greeter', Payload=sys.argv[1].encode())\n\
             print(r['Payload'].read().decode())",
            &[&json!({"url": format!("http://127.0.0.1:{port}/hello")}).to_string()],
        );
        serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null)
    };
    let mut answer = serde_json::Value::Null;
    wait_until(
        90,
        "greeter (dc2) → dc2 gw → dc1 gw → name's sidecar → name",
        || {
            answer = invoke();
            answer["status"] == 200
        },
    );
    assert!(
        answer["body"].as_str().unwrap().starts_with("dc1 name"),
        "{answer}"
    );
    // The deny written in dc1 is enforced by name's sidecar in dc1; then allowed again.
    intention(w.dc1.http(), "greeter", "name", "deny");
    wait_until(60, "the deny enforced in dc1", || invoke()["status"] == 403);
    intention(w.dc1.http(), "greeter", "name", "allow");
    wait_until(60, "allowed again", || invoke()["status"] == 200);
}
