//! Fault injection: the real engine over the real server and the real local platform (both
//! in-process on 127.0.0.1:0), with 20 % of AWS and Consul calls failing or throttled by a
//! seeded RNG — half before the call reaches the service, half after it took effect (the
//! client never learns it succeeded). The sync must converge, delete nothing it should not,
//! and never touch a service it does not own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use lambda_platform::{Credentials, PlatformConfig, client::Client};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use registrator::{
    Config, Engine,
    aws::{Aws, AwsError, HttpAws, Message, Page},
    config::Tier,
    consul::{Consul, ConsulError, HttpConsul, Leaf, NodeServices},
    plan::Ca,
    tags::{Function, Scope},
};
use serde_json::{Value, json};

const PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda";
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

// --- the services under test ---------------------------------------------------------------

struct Services {
    consul: String,
    aws: String,
    // Stopped (on drop) before the data dir goes.
    _platform: lambda_platform::Background,
    _server: server::Background,
    _dir: tempfile::TempDir,
}

impl Services {
    fn start() -> Services {
        let dir = tempfile::tempdir().unwrap();
        let config = server::ServerConfig::for_tests(&dir.path().join("server"));
        let mut pconfig = PlatformConfig::new(dir.path().join("platform"));
        pconfig.python = "python3".into();
        let server = server::Background::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            config,
        )
        .unwrap();
        let platform = lambda_platform::Background::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            pconfig,
        )
        .unwrap();
        Services {
            consul: format!("http://{}", server.http_addr()),
            aws: platform.endpoint().to_owned(),
            _platform: platform,
            _server: server,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::new(
            &self.aws,
            Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
            },
            "us-east-1",
        )
        .unwrap()
    }

    fn vars(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut v: BTreeMap<String, String> = [
            ("CONSUL_HTTP_ADDR", self.consul.as_str()),
            ("AWS_ENDPOINT_URL", self.aws.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("CONSUL_EXTENSION_DATA_PREFIX", "/mesh"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, val) in extra {
            v.insert((*k).to_owned(), (*val).to_owned());
        }
        v
    }

    fn consul_get(&self, path: &str) -> Value {
        let mut r = ureq::get(&format!("{}{path}", self.consul)).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    fn consul_put(&self, path: &str, body: Value) {
        ureq::put(&format!("{}{path}", self.consul))
            .send(body.to_string())
            .unwrap();
    }

    fn node_services(&self) -> BTreeMap<String, Value> {
        let v = self.consul_get("/v1/catalog/node/lambdas");
        v["Services"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// A zip holding one small file (stored, no compression), base64-encoded for CreateFunction.
fn zip_b64() -> String {
    use base64::Engine as _;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    z.start_file(
        "app.py",
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    )
    .unwrap();
    std::io::Write::write_all(&mut z, b"def handler(e, c):\n    return e\n").unwrap();
    z.finish().unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

async fn create(c: &Client, name: &str, tags: Value, zip: &str) {
    c.lambda(
        "POST",
        "/2015-03-31/functions",
        Some(&json!({"FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
                     "Role": "arn:aws:iam::123456789012:role/lambda", "Code": {"ZipFile": zip}, "Tags": tags})),
    )
    .await
    .unwrap();
}

// --- fault injection -----------------------------------------------------------------------

/// Shared fault state: the RNG, the failure rate, and a log of every destructive call that
/// reached a service.
struct Faults {
    rng: Mutex<StdRng>,
    rate: f64,
    deleted: Mutex<Vec<String>>,
    written: Mutex<Vec<String>>,
    /// A function whose tags can never be read.
    unreadable: Option<String>,
}

enum Fate {
    Ok,
    Before,
    After,
}

impl Faults {
    fn new(seed: u64, rate: f64, unreadable: Option<&str>) -> Arc<Faults> {
        Arc::new(Faults {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            rate,
            deleted: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
            unreadable: unreadable.map(str::to_owned),
        })
    }

    fn fate(&self) -> Fate {
        let mut r = self.rng.lock();
        if r.random_bool(self.rate) {
            if r.random_bool(0.5) {
                Fate::Before
            } else {
                Fate::After
            }
        } else {
            Fate::Ok
        }
    }

    fn aws_error(&self) -> AwsError {
        if self.rng.lock().random_bool(0.5) {
            AwsError::Throttled("ThrottlingException (400): Rate exceeded (injected)".into())
        } else {
            AwsError::Transient("ServiceException (500): injected".into())
        }
    }
}

struct FaultyAws {
    inner: HttpAws,
    f: Arc<Faults>,
}

impl FaultyAws {
    async fn run<T>(&self, fut: impl Future<Output = Result<T, AwsError>>) -> Result<T, AwsError> {
        match self.f.fate() {
            Fate::Ok => fut.await,
            Fate::Before => Err(self.f.aws_error()),
            Fate::After => {
                let _ = fut.await;
                Err(self.f.aws_error())
            }
        }
    }

    fn readable(&self, arn_or_name: &str) -> Result<(), AwsError> {
        match &self.f.unreadable {
            Some(n) if registrator::tags::function_name(arn_or_name) == n => Err(AwsError::Failed(
                "AccessDeniedException (403): injected".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl Aws for FaultyAws {
    async fn get_resources(&self, token: Option<String>) -> Result<Page<Function>, AwsError> {
        self.run(self.inner.get_resources(token)).await
    }
    async fn list_functions(
        &self,
        marker: Option<String>,
        max_items: u32,
    ) -> Result<Page<(String, String)>, AwsError> {
        self.run(self.inner.list_functions(marker, max_items)).await
    }
    async fn list_tags(&self, arn: String) -> Result<BTreeMap<String, String>, AwsError> {
        self.readable(&arn)?;
        self.run(self.inner.list_tags(arn)).await
    }
    async fn get_function(&self, name: String) -> Result<Option<Function>, AwsError> {
        self.readable(&name)?;
        self.run(self.inner.get_function(name)).await
    }
    async fn get_parameter(&self, name: String) -> Result<Option<String>, AwsError> {
        self.run(self.inner.get_parameter(name)).await
    }
    async fn parameters_by_path(
        &self,
        path: String,
        token: Option<String>,
    ) -> Result<Page<(String, String)>, AwsError> {
        self.run(self.inner.parameters_by_path(path, token)).await
    }
    async fn put_parameter(
        &self,
        name: String,
        value: String,
        tier: Option<Tier>,
    ) -> Result<(), AwsError> {
        self.f.written.lock().push(format!("param {name}"));
        self.run(self.inner.put_parameter(name, value, tier)).await
    }
    async fn delete_parameter(&self, name: String) -> Result<(), AwsError> {
        self.f.deleted.lock().push(format!("param {name}"));
        self.run(self.inner.delete_parameter(name)).await
    }
    async fn receive_messages(&self, q: String, w: u32) -> Result<Vec<Message>, AwsError> {
        self.run(self.inner.receive_messages(q, w)).await
    }
    async fn delete_message(&self, q: String, r: String) -> Result<(), AwsError> {
        self.run(self.inner.delete_message(q, r)).await
    }
}

struct FaultyConsul {
    inner: HttpConsul,
    f: Arc<Faults>,
}

impl FaultyConsul {
    async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, ConsulError>>,
    ) -> Result<T, ConsulError> {
        match self.f.fate() {
            Fate::Ok => fut.await,
            Fate::Before => Err(ConsulError::Transient("injected: connection reset".into())),
            Fate::After => {
                let _ = fut.await;
                Err(ConsulError::Transient(
                    "injected: 500 after the write".into(),
                ))
            }
        }
    }
}

impl Consul for FaultyConsul {
    async fn local_datacenter(&self) -> Result<String, ConsulError> {
        self.run(self.inner.local_datacenter()).await
    }
    async fn node_services(&self, scope: Scope, node: String) -> Result<NodeServices, ConsulError> {
        self.run(self.inner.node_services(scope, node)).await
    }
    async fn service_defaults(&self, scope: Scope) -> Result<BTreeMap<String, Value>, ConsulError> {
        self.run(self.inner.service_defaults(scope)).await
    }
    async fn service_default(
        &self,
        scope: Scope,
        name: String,
    ) -> Result<Option<Value>, ConsulError> {
        self.run(self.inner.service_default(scope, name)).await
    }
    async fn namespaces(&self, partition: String) -> Result<Vec<String>, ConsulError> {
        self.run(self.inner.namespaces(partition)).await
    }
    async fn put_config(&self, scope: Scope, entry: Value) -> Result<(), ConsulError> {
        self.f.written.lock().push(format!(
            "config {}",
            entry["Name"].as_str().unwrap_or_default()
        ));
        self.run(self.inner.put_config(scope, entry)).await
    }
    async fn delete_config(&self, scope: Scope, name: String) -> Result<(), ConsulError> {
        self.f.deleted.lock().push(format!("config {name}"));
        self.run(self.inner.delete_config(scope, name)).await
    }
    async fn register(&self, scope: Scope, body: Value) -> Result<(), ConsulError> {
        self.f.written.lock().push(format!(
            "register {}",
            body["Service"]["ID"].as_str().unwrap_or_default()
        ));
        self.run(self.inner.register(scope, body)).await
    }
    async fn deregister(
        &self,
        scope: Scope,
        node: String,
        service_id: String,
    ) -> Result<(), ConsulError> {
        self.f
            .deleted
            .lock()
            .push(format!("deregister {service_id}"));
        self.run(self.inner.deregister(scope, node, service_id))
            .await
    }
    async fn ca(&self) -> Result<Ca, ConsulError> {
        self.run(self.inner.ca()).await
    }
    async fn leaf(&self, service: String) -> Result<Leaf, ConsulError> {
        self.run(self.inner.leaf(service)).await
    }
}

fn faulty_engine(
    s: &Services,
    f: &Arc<Faults>,
    extra: &[(&str, &str)],
) -> Engine<FaultyAws, FaultyConsul> {
    let vars = s.vars(extra);
    let cfg = Config::from_vars(&vars).unwrap();
    let aws = HttpAws::from_vars(&vars, &cfg.region).unwrap();
    let consul = HttpConsul::new(&cfg.consul_url(), None, None).unwrap();
    Engine::new(
        cfg,
        FaultyAws {
            inner: aws,
            f: f.clone(),
        },
        FaultyConsul {
            inner: consul,
            f: f.clone(),
        },
    )
}

/// 90 functions: every third enabled, every tenth with two aliases, `f007` enabled with a bad
/// tag (and already registered from before), plus an owned `ghost` whose function is gone and
/// two services the registrator does not own.
async fn seed(s: &Services) -> BTreeSet<String> {
    let c = s.client();
    let zip = zip_b64();
    let mut expected = BTreeSet::new();
    for i in 0..90 {
        let name = format!("f{i:03}");
        let mut tags = serde_json::Map::new();
        if i % 3 == 0 || i == 7 {
            tags.insert(format!("{PREFIX}/enabled"), json!("true"));
        }
        if i % 10 == 0 {
            tags.insert(format!("{PREFIX}/aliases"), json!("blue+green"));
        }
        if i == 7 {
            tags.insert(format!("{PREFIX}/invocation-mode"), json!("WHENEVER"));
        }
        create(&c, &name, Value::Object(tags), &zip).await;
        if i % 3 == 0 {
            expected.insert(name.clone());
            if i % 10 == 0 {
                expected.insert(format!("{name}-blue"));
                expected.insert(format!("{name}-green"));
            }
        }
    }
    for (node, id, tags) in [
        ("lambdas", "ghost", json!(["managed-by-lambda-registrator"])),
        ("lambdas", "f007", json!(["managed-by-lambda-registrator"])),
        ("lambdas", "legacy", json!(["hand-made"])),
        ("other", "web", json!(["managed-by-lambda-registrator"])),
    ] {
        s.consul_put(
            "/v1/catalog/register",
            json!({"Node": node, "Address": "10.0.0.9", "Service": {"ID": id, "Service": id, "Tags": tags}}),
        );
    }
    s.consul_put(
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "f007", "Protocol": "http",
               "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"arn": format!("{ARN}f007")}}]}),
    );
    s.consul_put(
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "legacy", "Protocol": "grpc"}),
    );
    expected.insert("f007".into()); // kept: protected by its bad tag
    expected.insert("legacy".into()); // kept: not ours
    expected
}

fn assert_untouched(s: &Services, f: &Faults) {
    let legacy = &s.node_services()["legacy"];
    assert_eq!(legacy["Tags"], json!(["hand-made"]));
    assert_eq!(
        s.consul_get("/v1/config/service-defaults/legacy")["Protocol"],
        json!("grpc")
    );
    assert_eq!(
        s.consul_get("/v1/catalog/service/web")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for w in f.written.lock().iter().chain(f.deleted.lock().iter()) {
        assert!(
            !w.ends_with(" legacy") && !w.ends_with(" web") && !w.ends_with("/legacy"),
            "touched a service it does not own: {w}"
        );
    }
}

#[test]
fn full_sync_converges_under_twenty_percent_faults() {
    let s = Services::start();
    let rt = runtime();
    rt.block_on(async {
        let expected = seed(&s).await;
        for (seed, mode) in [(1, "auto"), (2, "functions")] {
            let f = Faults::new(seed, 0.2, None);
            let engine = faulty_engine(&s, &f, &[("LIST_MODE", mode), ("PAGE_SIZE", "7")]);
            let mut converged = false;
            for _ in 0..10 {
                let r = engine.full_sync().await;
                if r.writes == 0 && r.complete {
                    converged = true;
                    break;
                }
            }
            assert!(converged, "{mode}: no write-free sync within 10 syncs");
            let owned: BTreeSet<String> = s.node_services().keys().cloned().collect();
            assert_eq!(owned, expected, "{mode}");
            // 0 wrong deletions: only the ghost (and its data) was ever deleted.
            for d in f.deleted.lock().iter() {
                assert!(d.ends_with("ghost"), "{mode}: wrong deletion {d}");
            }
            assert_untouched(&s, &f);
            // A clean engine agrees: nothing left to write.
            let clean = faulty_engine(&s, &Faults::new(0, 0.0, None), &[]);
            let r = clean.full_sync().await;
            assert_eq!((r.writes, r.upserts, r.deletes), (0, 0, 0), "{mode}: {r:?}");
            let m = engine.metrics();
            assert!(registrator::metrics::get(&m.retries) > 0);
        }
    });
}

#[test]
fn unreadable_function_is_never_deregistered() {
    let s = Services::start();
    let rt = runtime();
    rt.block_on(async {
        let expected = seed(&s).await;
        let clean = faulty_engine(&s, &Faults::new(0, 0.0, None), &[]);
        clean.full_sync().await;
        assert!(s.node_services().contains_key("f030-blue"));
        // f030's tags cannot be read (e.g. a missing lambda:ListTags permission): the listing
        // without the tagging API must keep its services, aliases included.
        let f = Faults::new(3, 0.2, Some("f030"));
        let engine = faulty_engine(&s, &f, &[("LIST_MODE", "functions")]);
        for _ in 0..3 {
            let r = engine.full_sync().await;
            assert!(r.errors > 0);
        }
        let owned: BTreeSet<String> = s.node_services().keys().cloned().collect();
        assert_eq!(owned, expected);
        assert!(
            f.deleted.lock().iter().all(|d| d.ends_with("ghost")),
            "{:?}",
            f.deleted.lock()
        );
        // An event for it fails without deleting anything.
        let ev = json!({"source": "aws.lambda", "detail": {"eventName": "UntagResource20170331v2",
                        "requestParameters": {"resource": format!("{ARN}f030")}}});
        assert!(engine.handle(&ev).await.is_err());
        assert!(s.node_services().contains_key("f030"));
        assert_untouched(&s, &f);
    });
}

#[test]
fn events_converge_under_faults() {
    let s = Services::start();
    let rt = runtime();
    rt.block_on(async {
        let c = s.client();
        let zip = zip_b64();
        create(
            &c,
            "ev",
            json!({format!("{PREFIX}/enabled"): "true", format!("{PREFIX}/aliases"): "a"}),
            &zip,
        )
        .await;
        s.consul_put(
            "/v1/catalog/register",
            json!({"Node": "lambdas", "Address": "", "Service": {"ID": "legacy", "Service": "legacy", "Tags": ["hand-made"]}}),
        );
        s.consul_put(
            "/v1/catalog/register",
            json!({"Node": "other", "Address": "10.0.0.1", "Service": {"ID": "web", "Service": "web", "Tags": ["managed-by-lambda-registrator"]}}),
        );
        s.consul_put(
            "/v1/config",
            json!({"Kind": "service-defaults", "Name": "legacy", "Protocol": "grpc"}),
        );
        let f = Faults::new(4, 0.2, None);
        let engine = faulty_engine(&s, &f, &[]);
        let trail = |name: &str, key: &str, value: &str| {
            json!({"source": "aws.lambda", "detail": {"eventName": name,
                   "requestParameters": {key: value}, "responseElements": {"functionArn": format!("{ARN}ev")}}})
        };
        // An event is retried until it succeeds, as Lambda's async retries or SQS redelivery do.
        let deliver = async |ev: Value| {
            for _ in 0..10 {
                if engine.handle(&ev).await.is_ok() {
                    return;
                }
            }
            panic!("event never succeeded: {ev}");
        };
        deliver(trail("CreateFunction20150331", "functionName", "ev")).await;
        let names: BTreeSet<String> = s.node_services().keys().cloned().collect();
        assert_eq!(
            names,
            BTreeSet::from(["ev".into(), "ev-a".into(), "legacy".into()])
        );
        c.lambda(
            "DELETE",
            &format!(
                "/2017-03-31/tags/{}?tagKeys={}",
                lambda_platform::sigv4::uri_encode(&format!("{ARN}ev"), true),
                lambda_platform::sigv4::uri_encode(&format!("{PREFIX}/aliases"), true)
            ),
            None,
        )
        .await
        .unwrap();
        deliver(trail("UntagResource20170331v2", "resource", &format!("{ARN}ev"))).await;
        let names: BTreeSet<String> = s.node_services().keys().cloned().collect();
        assert_eq!(names, BTreeSet::from(["ev".into(), "legacy".into()]));
        c.lambda("DELETE", "/2015-03-31/functions/ev", None)
            .await
            .unwrap();
        deliver(trail("DeleteFunction20150331", "functionName", "ev")).await;
        let names: BTreeSet<String> = s.node_services().keys().cloned().collect();
        assert_eq!(names, BTreeSet::from(["legacy".into()]));
        for d in f.deleted.lock().iter() {
            assert!(d.ends_with("ev") || d.ends_with("ev-a"), "wrong deletion {d}");
        }
        assert_untouched(&s, &f);
    });
}

#[test]
fn mtls_material_follows_a_root_rotation() {
    let s = Services::start();
    let rt = runtime();
    rt.block_on(async {
        let c = s.client();
        let zip = zip_b64();
        for name in ["r1", "r2", "r3"] {
            create(&c, name, json!({format!("{PREFIX}/enabled"): "true"}), &zip).await;
        }
        let engine = faulty_engine(&s, &Faults::new(0, 0.0, None), &[]);
        let r = engine.full_sync().await;
        assert_eq!((r.upserts, r.writes), (3, 9), "{r:?}");
        let read = async |name: &str| -> Value {
            let v = c
                .target(
                    "ssm",
                    "AmazonSSM.GetParameter",
                    &json!({"Name": format!("/mesh/default/default/{name}"), "WithDecryption": true}),
                )
                .await
                .unwrap();
            serde_json::from_str(v["Parameter"]["Value"].as_str().unwrap()).unwrap()
        };
        let before = read("r1").await;
        assert_eq!(engine.full_sync().await.writes, 0);

        // A PUT with a new private key rotates the root (consul's built-in provider rule).
        let key = ca::generate_root(
            "x.consul",
            99,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(86400),
            None,
        )
        .unwrap()
        .key_pem;
        s.consul_put(
            "/v1/connect/ca/configuration",
            json!({"Provider": "consul", "Config": {"PrivateKey": key}}),
        );
        let roots = s.consul_get("/v1/agent/connect/ca/roots");
        let active = roots["Roots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ID"] == roots["ActiveRootID"])
            .unwrap()["RootCert"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(before["rootCertPEM"].as_str().unwrap().trim(), active.trim());

        // The first sync sees the new root; the agent may still hand out leaves of the old one
        // for a short grace period, which later syncs notice (issuer ≠ root) and replace.
        let r = engine.full_sync().await;
        assert_eq!((r.upserts, r.writes), (3, 3), "only the material: {r:?}");
        let mut converged = false;
        for _ in 0..100 {
            if engine.full_sync().await.writes == 0 {
                converged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(converged, "material never settled on the new root");
        for name in ["r1", "r2", "r3"] {
            let after = read(name).await;
            assert_eq!(after["rootCertPEM"].as_str().unwrap().trim(), active.trim());
            assert_eq!(
                registrator::plan::issued_by(after["certPEM"].as_str().unwrap(), &active),
                Some(true),
                "{name}"
            );
        }
        assert_eq!(
            registrator::plan::issued_by(before["certPEM"].as_str().unwrap(), &active),
            Some(false)
        );
        assert_eq!(
            registrator::plan::issued_by(
                before["certPEM"].as_str().unwrap(),
                before["rootCertPEM"].as_str().unwrap()
            ),
            Some(true)
        );
    });
}

/// The runtime the engine runs on in these tests.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
