//! Test harness: an embedded platform on 127.0.0.1:0 with a temp data dir, and helpers to run
//! boto3 scripts against it. A missing Python venv fails tests loudly (never skips).

use std::{path::PathBuf, time::Duration};

use lambda_platform::{Credentials, PlatformConfig, client::Client};
use serde_json::Value;

/// The interpreter with awslambdaric/boto3: `LAMBDAMESH_PYTHON` or `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    let p = test_support::venv_python();
    assert!(
        p.exists(),
        "Python venv not found at {} — run scripts/setup.sh (or set LAMBDAMESH_PYTHON)",
        p.display()
    );
    p
}

/// Path of an example binary built by `cargo test` (fixtures under tests/fixtures).
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("examples").join(name);
    assert!(
        p.exists(),
        "example binary {} missing: build with cargo test -p lambda-platform",
        p.display()
    );
    p
}

pub struct TestPlatform {
    pub endpoint: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    platform: Option<lambda_platform::Background>,
}

impl TestPlatform {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut PlatformConfig)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = PlatformConfig::new(tmp.path().join("data"));
        config.python = python();
        f(&mut config);
        let mut p = Self::start_in(config).await;
        p._tmp = Some(tmp);
        p
    }

    /// Starts a platform on an existing data dir (for restart tests), on its own thread and
    /// single-threaded runtime, as `lambdamesh lambda serve` runs it.
    pub async fn start_in(config: PlatformConfig) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let platform = lambda_platform::Background::start(listener, config.clone()).unwrap();
        Self {
            endpoint: platform.endpoint().to_owned(),
            data_dir: config.data_dir.clone(),
            _tmp: None,
            platform: Some(platform),
        }
    }

    /// Graceful stop (SHUTDOWN to extensions, sandboxes killed).
    pub async fn stop(mut self) {
        if let Some(p) = self.platform.take() {
            tokio::time::timeout(
                Duration::from_secs(15),
                tokio::task::spawn_blocking(move || p.stop()),
            )
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        }
    }

    pub fn client(&self) -> Client {
        Client::new(
            &self.endpoint,
            Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
            },
            "us-east-1",
        )
        .unwrap()
    }

    /// Runs a boto3 script; `lam`, `ssm`, `tagging`, `events` clients and helpers are predefined.
    /// The script prints one JSON document, returned here.
    pub async fn boto3(&self, script: &str) -> Value {
        self.boto3_env(script, &[]).await
    }

    pub async fn boto3_env(&self, script: &str, env: &[(&str, &str)]) -> Value {
        let preamble = format!(
            r#"
import boto3, botocore, json, io, zipfile, base64, os, sys, time
from botocore.config import Config
cfg = Config(retries={{"max_attempts": 1, "mode": "standard"}}, read_timeout=60)
kw = dict(endpoint_url="{ep}", region_name="us-east-1", aws_access_key_id=os.environ.get("TEST_AK", "test"), aws_secret_access_key=os.environ.get("TEST_SK", "test"), config=cfg)
lam = boto3.client("lambda", **kw)
ssm = boto3.client("ssm", **kw)
tagging = boto3.client("resourcegroupstaggingapi", **kw)
events = boto3.client("events", **kw)
ROLE = "arn:aws:iam::123456789012:role/lambda"
def zip_files(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 << 16)
            z.writestr(info, data)
    return buf.getvalue()
def wait_for(path, timeout=20):
    end = time.time() + timeout
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.02)
def err(fn, *a, **k):
    try:
        fn(*a, **k)
    except botocore.exceptions.ClientError as e:
        return {{"code": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"], "message": e.response["Error"].get("Message", "")}}
    return None
"#,
            ep = self.endpoint
        );
        let full = format!("{preamble}\n{script}");
        let mut cmd = tokio::process::Command::new(python());
        cmd.arg("-c")
            .arg(full)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("boto3 script timed out")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "boto3 script failed:\n{}\n--- stdout\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().last().unwrap_or("null");
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}"))
    }
}

impl Drop for TestPlatform {
    fn drop(&mut self) {
        // A test that did not call `stop` must not block its runtime on the drain.
        if let Some(p) = self.platform.take() {
            std::thread::spawn(move || drop(p));
        }
    }
}

/// Python source of the test handler module `app.py`.
pub const PY_APP: &str = r#"
import os, time, json
print("module loaded")
def handler(event, context):
    print("got", json.dumps(event))
    if event.get("fail"):
        raise ValueError("requested failure")
    if event.get("marker"):
        open(event["marker"], "w").write("started")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(3)
    if event.get("pidfile"):
        with open(event["pidfile"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(30)
    return {"echo": event, "fn": context.function_name, "version": context.function_version,
            "arn": context.invoked_function_arn, "left": context.get_remaining_time_in_millis(),
            "env": {k: os.environ.get(k) for k in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "LAMBDA_TASK_ROOT", "_HANDLER", "GREETING", "AWS_LAMBDA_RUNTIME_API"]}}
"#;
