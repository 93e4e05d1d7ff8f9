//! `lambdamesh registrator` end to end: the real server (`agent -dev`), the real local Lambda
//! platform (in-process, with a short "minute" so `rate()` rules fire quickly) and moto server.
//! The registrator runs as a Lambda function on the platform (event rule + `rate()` rule), as a
//! daemon reading an SQS queue fed by EventBridge (moto), and as a one-shot `sync`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::mesh::{Guard, free_port, get, get_json, put, python, start_moto, wait_until};
use common::{BIN, Proc, stderr, terminate};
use lambda_platform::{Credentials, PlatformConfig, client::Client};
use serde_json::{Value, json};

const PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda";
const ACCOUNT_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

/// The local platform on its own runtime thread; stopped on drop.
struct Platform {
    endpoint: String,
    // Dropped before the data dir.
    _platform: lambda_platform::Background,
    _dir: tempfile::TempDir,
}

impl Platform {
    fn start(minute: Duration) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PlatformConfig::new(dir.path().join("data"));
        config.python = python().into();
        config.minute = minute;
        let platform = lambda_platform::Background::start(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            config,
        )
        .unwrap();
        Platform {
            endpoint: platform.endpoint().to_owned(),
            _platform: platform,
            _dir: dir,
        }
    }

    /// Runs `f` with a signing client on a throw-away runtime.
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

    fn lambda(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(async |c| c.lambda(method, path, body.as_ref()).await)
            .map_err(|e| e.to_string())
    }

    fn target(&self, service: &str, target: &str, body: Value) -> Result<Value, String> {
        self.call(async |c| c.target(service, target, &body).await)
            .map_err(|e| e.to_string())
    }

    fn tag(&self, function: &str, tags: Value) {
        let arn = format!("{ACCOUNT_ARN}{function}");
        self.lambda(
            "POST",
            &format!("/2017-03-31/tags/{}", enc(&arn)),
            Some(json!({ "Tags": tags })),
        )
        .unwrap();
    }

    fn untag(&self, function: &str, key: &str) {
        let arn = format!("{ACCOUNT_ARN}{function}");
        self.lambda(
            "DELETE",
            &format!("/2017-03-31/tags/{}?tagKeys={}", enc(&arn), enc(key)),
            None,
        )
        .unwrap();
    }

    fn parameter(&self, name: &str) -> Option<String> {
        self.target(
            "ssm",
            "AmazonSSM.GetParameter",
            json!({"Name": name, "WithDecryption": true}),
        )
        .ok()
        .and_then(|v| v["Parameter"]["Value"].as_str().map(str::to_owned))
    }

    /// A Python function from `code`, tagged for the registrator
    /// (`serverless.consul.hashicorp.com/v1alpha1/lambda/enabled=true`).
    fn create_enabled(&self, name: &str, code: &std::path::Path) {
        self.create(
            name,
            code,
            "python3.11",
            &["--tag", &format!("{PREFIX}/enabled=true")],
        );
    }

    /// `lambdamesh lambda create` (zips `dir`), with tags and environment.
    fn create(&self, name: &str, dir: &std::path::Path, runtime: &str, extra: &[&str]) {
        let handler = if runtime.starts_with("python") {
            "app.handler"
        } else {
            "bootstrap"
        };
        let o = Command::new(BIN)
            .args(["lambda", "create", name, "--dir", dir.to_str().unwrap()])
            .args([
                "--runtime",
                runtime,
                "--handler",
                handler,
                "--timeout",
                "30",
            ])
            .args(extra)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        assert!(o.status.success(), "create {name}: {}", stderr(&o));
    }
}

fn enc(s: &str) -> String {
    lambda_platform::sigv4::uri_encode(s, true)
}

fn python_code(dir: &std::path::Path) -> std::path::PathBuf {
    let code = dir.join("py");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::write(code.join("app.py"), "def handler(e, c):\n    return e\n").unwrap();
    code
}

/// A `provided.al2023` package whose bootstrap execs this very binary in Lambda mode.
fn registrator_package(dir: &std::path::Path) -> std::path::PathBuf {
    let pkg = dir.join("registrator");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("bootstrap"),
        format!("#!/bin/sh\nexec {BIN} registrator lambda\n"),
    )
    .unwrap();
    let mut perms = std::fs::metadata(pkg.join("bootstrap"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(pkg.join("bootstrap"), perms).unwrap();
    pkg
}

/// Owned services on the node `lambdas` (name → tags).
fn node_services(http: &str) -> serde_json::Map<String, Value> {
    let v = get_json(http, "/v1/catalog/node/lambdas");
    v["Services"].as_object().cloned().unwrap_or_default()
}

fn registered(http: &str, name: &str) -> bool {
    node_services(http).contains_key(name)
}

fn entry(http: &str, name: &str) -> Option<Value> {
    let (status, body) = get(&format!("http://{http}/v1/config/service-defaults/{name}"));
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

/// Services the registrator must never touch: one on its node without the managed tag, one
/// on another node with the tag.
fn add_foreign_services(http: &str) {
    put(
        http,
        "/v1/catalog/register",
        &json!({"Node": "lambdas", "Address": "", "SkipNodeUpdate": true,
                "Service": {"ID": "legacy", "Service": "legacy", "Tags": ["hand-made"]}}),
    );
    put(
        http,
        "/v1/catalog/register",
        &json!({"Node": "other-node", "Address": "10.0.0.1",
                "Service": {"ID": "web", "Service": "web", "Tags": ["managed-by-lambda-registrator"]}}),
    );
}

fn assert_foreign_untouched(http: &str) {
    let legacy = &node_services(http)["legacy"];
    assert_eq!(legacy["Tags"], json!(["hand-made"]));
    let web = get_json(http, "/v1/catalog/service/web");
    assert_eq!(web.as_array().unwrap().len(), 1, "{web}");
}

#[test]
fn lambda_function_mode_follows_events_and_schedule() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    add_foreign_services(&http);
    // One platform "minute" is 3 s, so `rate(1 minute)` fires every 3 s.
    let platform = Platform::start(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let code = python_code(dir.path());
    let pkg = registrator_package(dir.path());
    platform.create(
        "registrator",
        &pkg,
        "provided.al2023",
        &[
            "--env",
            &format!("CONSUL_HTTP_ADDR={http}"),
            "--env",
            "CONSUL_EXTENSION_DATA_PREFIX=/mesh",
            "--env",
            "LOG_LEVEL=debug",
        ],
    );
    let registrator_arn = format!("{ACCOUNT_ARN}registrator");
    // The reference module's CloudTrail rule (all eight names are in our pattern, plus ours).
    platform
        .target(
            "events",
            "AWSEvents.PutRule",
            json!({"Name": "registrator-lambda-events", "EventPattern": json!({
                "source": ["aws.lambda"], "detail-type": ["AWS API Call via CloudTrail"],
                "detail": {"eventSource": ["lambda.amazonaws.com"]}}).to_string()}),
        )
        .unwrap();
    platform
        .target(
            "events",
            "AWSEvents.PutTargets",
            json!({"Rule": "registrator-lambda-events", "Targets": [{"Id": "r", "Arn": registrator_arn}]}),
        )
        .unwrap();

    // Create a tagged function → registered through the event path.
    platform.create_enabled("pay", &code);
    wait_until(30, "pay registered by the CreateFunction event", || {
        registered(&http, "pay")
    });
    let e = entry(&http, "pay").expect("service-defaults of pay");
    assert_eq!(
        e["EnvoyExtensions"][0]["Arguments"]["arn"],
        json!(format!("{ACCOUNT_ARN}pay"))
    );
    assert_eq!(
        node_services(&http)["pay"]["Tags"],
        json!(["managed-by-lambda-registrator"])
    );
    wait_until(30, "mTLS material of pay", || {
        platform.parameter("/mesh/default/default/pay").is_some()
    });
    let material: Value =
        serde_json::from_str(&platform.parameter("/mesh/default/default/pay").unwrap()).unwrap();
    let roots = get_json(&http, "/v1/agent/connect/ca/roots");
    assert_eq!(material["trustDomain"], roots["TrustDomain"]);
    assert!(
        material["certPEM"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(
        material["privateKeyPEM"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // Tag an alias → the alias service appears; async mode is spelled as Consul compares it.
    platform.tag(
        "pay",
        json!({format!("{PREFIX}/aliases"): "live", format!("{PREFIX}/invocation-mode"): "ASYNCHRONOUS"}),
    );
    wait_until(30, "pay-live registered", || registered(&http, "pay-live"));
    let e = entry(&http, "pay-live").unwrap();
    assert_eq!(
        e["EnvoyExtensions"][0]["Arguments"]["arn"],
        json!(format!("{ACCOUNT_ARN}pay:live"))
    );
    wait_until(30, "pay switched to async", || {
        entry(&http, "pay").unwrap()["EnvoyExtensions"][0]["Arguments"]["invocationMode"]
            == json!("asynchronous")
    });

    // Untag the alias → alias service deregistered, the function stays.
    platform.untag("pay", &format!("{PREFIX}/aliases"));
    wait_until(30, "pay-live deregistered", || {
        !registered(&http, "pay-live")
    });
    assert!(registered(&http, "pay"));
    assert!(entry(&http, "pay-live").is_none());

    // A bad tag fails that function only and never deletes it.
    platform.tag(
        "pay",
        json!({format!("{PREFIX}/invocation-mode"): "sometimes"}),
    );
    let log = platform._dir.path().join("data/logs/registrator.log");
    wait_until(30, "the bad tag reported", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("invalid invocation mode"))
    });
    assert!(registered(&http, "pay"), "a bad tag must not deregister");
    // Untag enabled → deregistered.
    platform.tag(
        "pay",
        json!({format!("{PREFIX}/invocation-mode"): "SYNCHRONOUS"}),
    );
    platform.untag("pay", &format!("{PREFIX}/enabled"));
    wait_until(30, "pay deregistered after untag", || {
        !registered(&http, "pay")
    });
    assert!(entry(&http, "pay").is_none());

    // Tag again, then delete the function → deregistered and its parameter removed.
    platform.tag("pay", json!({format!("{PREFIX}/enabled"): "true"}));
    wait_until(30, "pay registered again", || registered(&http, "pay"));
    platform
        .lambda("DELETE", "/2015-03-31/functions/pay", None)
        .unwrap();
    wait_until(30, "pay deregistered after DeleteFunction", || {
        !registered(&http, "pay")
    });
    wait_until(30, "pay's parameter removed", || {
        platform.parameter("/mesh/default/default/pay").is_none()
    });

    // The schedule: a hand-edited entry is repaired by the next full sync.
    platform.create_enabled("orders", &code);
    wait_until(30, "orders registered", || registered(&http, "orders"));
    put(
        &http,
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "orders", "Protocol": "tcp"}),
    );
    assert_eq!(entry(&http, "orders").unwrap()["Protocol"], json!("tcp"));
    platform
        .target(
            "events",
            "AWSEvents.PutRule",
            json!({"Name": "registrator-cron", "ScheduleExpression": "rate(1 minute)"}),
        )
        .unwrap();
    platform
        .target(
            "events",
            "AWSEvents.PutTargets",
            json!({"Rule": "registrator-cron", "Targets": [{"Id": "r", "Arn": registrator_arn}]}),
        )
        .unwrap();
    wait_until(60, "the scheduled full sync repairs orders", || {
        entry(&http, "orders").is_some_and(|e| {
            e["Protocol"] == json!("http")
                && e["EnvoyExtensions"][0]["Name"] == json!("builtin/aws/lambda")
        })
    });
    assert_foreign_untouched(&http);
}

#[test]
fn daemon_syncs_the_local_platform_periodically() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    add_foreign_services(&http);
    let platform = Platform::start(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let code = python_code(dir.path());
    platform.create_enabled("a", &code);
    // The token and CA come from Parameter Store, as with the reference's _PATH variables.
    let root = get_json(&http, "/v1/agent/connect/ca/roots")["Roots"][0]["RootCert"]
        .as_str()
        .unwrap()
        .to_owned();
    for (name, value) in [("/reg/token", "any-token"), ("/reg/ca", root.as_str())] {
        platform
            .target(
                "ssm",
                "AmazonSSM.PutParameter",
                json!({"Name": name, "Value": value, "Type": "SecureString"}),
            )
            .unwrap();
    }
    let o = Command::new(BIN)
        .args(["registrator", "sync", "-token-path", "/reg/missing"])
        .env("CONSUL_HTTP_ADDR", &http)
        .env("AWS_ENDPOINT_URL", &platform.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read CONSUL_HTTP_TOKEN_PATH parameter /reg/missing"),
        "{}",
        stderr(&o)
    );
    let metrics = free_port();
    let mut daemon = Guard(
        Command::new(BIN)
            .args(["registrator", "run", "-sync-interval", "1s"])
            .args(["-metrics-addr", &format!("127.0.0.1:{metrics}")])
            .env("CONSUL_HTTP_TOKEN_PATH", "/reg/token")
            .env("CONSUL_CACERT_PATH", "/reg/ca")
            .env("CONSUL_HTTP_ADDR", &http)
            .env("AWS_ENDPOINT_URL", &platform.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(30, "a registered by the daemon", || registered(&http, "a"));
    platform.create(
        "b",
        &code,
        "python3.11",
        &[
            "--tag",
            &format!("{PREFIX}/enabled=true"),
            "--tag",
            &format!("{PREFIX}/aliases=x+y"),
        ],
    );
    wait_until(30, "b and its aliases registered", || {
        ["b", "b-x", "b-y"].iter().all(|n| registered(&http, n))
    });
    platform
        .lambda("DELETE", "/2015-03-31/functions/a", None)
        .unwrap();
    wait_until(30, "a removed", || !registered(&http, "a"));
    let (status, text) = get(&format!("http://127.0.0.1:{metrics}/metrics"));
    assert_eq!(status, 200);
    assert!(
        text.contains("lambda_registrator_full_syncs_total"),
        "{text}"
    );
    assert!(
        !text.contains("lambda_registrator_upserts_total 0\n"),
        "{text}"
    );
    assert_foreign_untouched(&http);
    // SIGTERM ends the daemon cleanly.
    assert!(
        terminate(&mut daemon.0, 30),
        "the daemon exits with 0 on SIGTERM"
    );
}

#[test]
fn daemon_takes_events_from_the_platforms_sqs_queue() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    add_foreign_services(&http);
    let platform = Platform::start(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let code = python_code(dir.path());
    // EventBridge → SQS on the platform, as the reference module's rule with a queue target.
    let queue = platform
        .target(
            "sqs",
            "AmazonSQS.CreateQueue",
            json!({"QueueName": "registrator-events"}),
        )
        .unwrap()["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue_arn = platform
        .target(
            "sqs",
            "AmazonSQS.GetQueueAttributes",
            json!({"QueueUrl": queue, "AttributeNames": ["QueueArn"]}),
        )
        .unwrap()["Attributes"]["QueueArn"]
        .as_str()
        .unwrap()
        .to_owned();
    platform
        .target(
            "events",
            "AWSEvents.PutRule",
            json!({"Name": "to-queue", "EventPattern": json!({"source": ["aws.lambda"]}).to_string()}),
        )
        .unwrap();
    let r = platform
        .target(
            "events",
            "AWSEvents.PutTargets",
            json!({"Rule": "to-queue", "Targets": [{"Id": "q", "Arn": queue_arn}]}),
        )
        .unwrap();
    assert_eq!(r["FailedEntryCount"], json!(0));
    // A full sync only once an hour: whatever happens below comes through the queue.
    let mut daemon = Guard(
        Command::new(BIN)
            .args([
                "registrator",
                "run",
                "-sync-interval",
                "1h",
                "-queue-url",
                &queue,
            ])
            .env("CONSUL_HTTP_ADDR", &http)
            .env("AWS_ENDPOINT_URL", &platform.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("CONSUL_EXTENSION_DATA_PREFIX", "/mesh")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    platform.create_enabled("queued", &code);
    wait_until(30, "queued registered from the queue", || {
        registered(&http, "queued")
    });
    platform.tag("queued", json!({format!("{PREFIX}/aliases"): "v1"}));
    wait_until(30, "queued-v1 registered", || {
        registered(&http, "queued-v1")
    });
    platform
        .lambda("DELETE", "/2015-03-31/functions/queued", None)
        .unwrap();
    wait_until(30, "queued and its alias removed", || {
        !registered(&http, "queued") && !registered(&http, "queued-v1")
    });
    wait_until(30, "its parameters removed", || {
        platform.parameter("/mesh/default/default/queued").is_none()
            && platform
                .parameter("/mesh/default/default/queued-v1")
                .is_none()
    });
    // Every message was consumed (handled or dropped as unhandleable).
    wait_until(30, "the queue drained", || {
        let a = platform
            .target(
                "sqs",
                "AmazonSQS.GetQueueAttributes",
                json!({"QueueUrl": queue}),
            )
            .unwrap();
        a["Attributes"]["ApproximateNumberOfMessages"] == json!("0")
            && a["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == json!("0")
    });
    assert_foreign_untouched(&http);
    // SIGTERM in the middle of a 20 s long poll: the daemon exits without waiting it out (a
    // bound well under the poll, not a speed target).
    assert!(
        terminate(&mut daemon.0, 10),
        "the daemon exits with 0 during its long poll"
    );
}

#[test]
fn bad_configuration_is_reported_and_exits_nonzero() {
    let o = Command::new(BIN)
        .args(["registrator", "sync", "-page-size", "500"])
        .env("ENTERPRISE", "maybe")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("PAGE_SIZE: must be a number from 1 to 50"),
        "{err}"
    );
    assert!(err.contains("ENTERPRISE: must be a boolean"), "{err}");
    // No keys in the environment and no shared files (whatever this machine's ~/.aws holds).
    let nowhere = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["registrator", "sync"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("HOME", nowhere.path())
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_CONFIG_FILE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no AWS credentials"), "{}", stderr(&o));
    let o = Command::new(BIN)
        .args(["registrator", "lambda"])
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("AWS_LAMBDA_RUNTIME_API"));
}

#[test]
fn credentials_from_a_shared_file_profile() {
    let server = Proc::start(&["agent", "-dev"]);
    let platform = Platform::start(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let code = python_code(dir.path());
    platform.create_enabled("from-profile", &code);
    // The platform verifies every signature with the secret `test`.
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[mesh]\naws_access_key_id = test\naws_secret_access_key = test\n\n\
         [stale]\naws_access_key_id = test\naws_secret_access_key = not-the-secret\n",
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile sso]\nsso_session = corp\n").unwrap();
    let sync = |profile: &str| {
        Command::new(BIN)
            .args(["registrator", "sync"])
            .env("CONSUL_HTTP_ADDR", &server.http)
            .env("AWS_ENDPOINT_URL", &platform.endpoint)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_PROFILE", profile)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .output()
            .unwrap()
    };
    let o = sync("stale");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("SignatureDoesNotMatch") || stderr(&o).contains("signature"),
        "the platform's refusal should be reported: {}",
        stderr(&o)
    );
    assert!(!registered(&server.http, "from-profile"));
    let o = sync("sso");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"sso\" gets its credentials through sso_session"),
        "{}",
        stderr(&o)
    );
    let o = sync("mesh");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(registered(&server.http, "from-profile"));
}

/// Runs a boto3 script against `endpoint`; returns its last stdout line as JSON.
fn boto3(endpoint: &str, script: &str) -> Value {
    let full = format!(
        r#"
import boto3, json, io, zipfile
kw = dict(endpoint_url="{endpoint}", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
lam = boto3.client("lambda", **kw); ssm = boto3.client("ssm", **kw)
sqs = boto3.client("sqs", **kw); events = boto3.client("events", **kw); iam = boto3.client("iam", **kw)
P = "{PREFIX}"
def code():
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("app.py", "def handler(e, c):\n    return e\n")
    return b.getvalue()
def create(name, tags):
    return lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": code()}}, Tags=tags)
try:
    ROLE = iam.get_role(RoleName="lambda")["Role"]["Arn"]
except Exception:
    ROLE = iam.create_role(RoleName="lambda", AssumeRolePolicyDocument="{{}}")["Role"]["Arn"]
{script}
"#
    );
    let out = Command::new(python())
        .args(["-c", &full])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3 failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap()
}

fn registrator_against(endpoint: &str, http: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("registrator")
        .args(args)
        .env("CONSUL_HTTP_ADDR", http)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("CONSUL_EXTENSION_DATA_PREFIX", "/mesh")
        .output()
        .unwrap()
}

#[test]
fn moto_full_sync_parameter_store_and_sqs_events() {
    let server = Proc::start(&["agent", "-dev"]);
    let http = server.http.clone();
    add_foreign_services(&http);
    let (_moto, endpoint) = start_moto();
    boto3(
        &endpoint,
        r#"
for i in range(7):
    tags = {P + "/enabled": "true"} if i % 2 == 0 else {"team": "x"}
    if i == 0:
        tags[P + "/aliases"] = "prod+dev"
    create(f"fn{i}", tags)
print(json.dumps(len(lam.list_functions()["Functions"])))
"#,
    );
    // moto ignores MaxItems (components §2): a page size of 3 must still see every function.
    for mode in ["functions", "auto"] {
        let o = registrator_against(
            &endpoint,
            &http,
            &["sync", "-list-mode", mode, "-page-size", "3"],
        );
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
    }
    for name in ["fn0", "fn0-prod", "fn0-dev", "fn2", "fn4", "fn6"] {
        assert!(registered(&http, name), "{name} not registered");
    }
    for name in ["fn1", "fn3", "fn5"] {
        assert!(!registered(&http, name), "{name} registered");
    }
    let params = boto3(
        &endpoint,
        r#"
ps = ssm.get_parameters_by_path(Path="/mesh/", Recursive=True, WithDecryption=True)["Parameters"]
print(json.dumps({p["Name"]: json.loads(p["Value"]) for p in ps}))
"#,
    );
    for name in ["fn0", "fn0-prod", "fn0-dev", "fn2", "fn4", "fn6"] {
        let p = &params[format!("/mesh/default/default/{name}")];
        assert!(
            p["certPEM"]
                .as_str()
                .unwrap_or_default()
                .contains("CERTIFICATE"),
            "{name}: {params}"
        );
    }

    // The daemon: EventBridge (moto) → SQS → `registrator run`.
    let queue = boto3(
        &endpoint,
        r#"
url = sqs.create_queue(QueueName="registrator")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
events.put_rule(Name="lambda-events", EventPattern=json.dumps({"source": ["aws.lambda"]}))
events.put_targets(Rule="lambda-events", Targets=[{"Id": "q", "Arn": arn}])
print(json.dumps(url))
"#,
    );
    let queue = queue.as_str().unwrap().to_owned();
    let _daemon = Guard(
        Command::new(BIN)
            .args([
                "registrator",
                "run",
                "-sync-interval",
                "1h",
                "-queue-url",
                &queue,
            ])
            .env("CONSUL_HTTP_ADDR", &http)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("CONSUL_EXTENSION_DATA_PREFIX", "/mesh")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // moto emits no CloudTrail events, so the test puts the event CloudTrail would have sent.
    boto3(
        &endpoint,
        r#"
create("late", {P + "/enabled": "true"})
arn = lam.get_function(FunctionName="late")["Configuration"]["FunctionArn"]
lam.untag_resource(Resource=lam.get_function(FunctionName="fn2")["Configuration"]["FunctionArn"], TagKeys=[P + "/enabled"])
def trail(name, req, resp):
    return {"Source": "aws.lambda", "DetailType": "AWS API Call via CloudTrail",
            "Detail": json.dumps({"eventSource": "lambda.amazonaws.com", "eventName": name, "requestParameters": req, "responseElements": resp})}
r = events.put_events(Entries=[
    {"Source": "aws.lambda", "DetailType": "junk", "Detail": json.dumps({"eventName": "NoSuchCall"})},
    trail("CreateFunction20150331", {"functionName": "late"}, {"functionArn": arn}),
    trail("UntagResource20170331v2", {"resource": arn.replace("late", "fn2"), "tagKeys": [P + "/enabled"]}, None),
])
print(json.dumps(r["FailedEntryCount"]))
"#,
    );
    wait_until(60, "late registered from the queue", || {
        registered(&http, "late")
    });
    wait_until(60, "fn2 deregistered from the queue", || {
        !registered(&http, "fn2")
    });
    let left = boto3(
        &endpoint,
        r#"
print(json.dumps([p["Name"] for p in ssm.get_parameters_by_path(Path="/mesh/", Recursive=True)["Parameters"]]))
"#,
    );
    let left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(left.contains(&"/mesh/default/default/late"), "{left:?}");
    assert!(!left.contains(&"/mesh/default/default/fn2"), "{left:?}");
    assert_foreign_untouched(&http);
}
