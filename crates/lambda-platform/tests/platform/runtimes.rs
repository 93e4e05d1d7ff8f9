//! Function execution through real runtimes: awslambdaric for Python, a `lambda_runtime` Rust
//! function, a raw Extensions API client; errors, timeouts, crashes, throttling, idle shutdown.

use serde_json::json;

use crate::harness::{PY_APP, TestPlatform, example_bin};

fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_handler_results_errors_timeouts_and_crashes() {
    let p = TestPlatform::start().await;
    let script = format!(
        r#"
code = zip_files({{"app.py": {app}}})
lam.create_function(FunctionName="py", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": code}},
                    Timeout=1, MemorySize=256, Environment={{"Variables": {{"GREETING": "hello"}}}})
def call(payload, **kw):
    r = lam.invoke(FunctionName="py", Payload=json.dumps(payload).encode(), **kw)
    return {{"status": r["StatusCode"], "error": r.get("FunctionError"), "payload": json.loads(r["Payload"].read()), "version": r.get("ExecutedVersion")}}
out = {{}}
out["ok"] = call({{"a": 1}})
out["fail"] = call({{"fail": True}})
out["timeout"] = call({{"sleep": 3}})
out["after_timeout"] = call({{"b": 2}})
out["exit"] = call({{"exit": True}})
out["after_exit"] = call({{"c": 3}})
import threading
pidfile = os.path.join(os.environ["TMPDIR_TEST"], "pid")
res = {{}}
lam.update_function_configuration(FunctionName="py", Timeout=30)
t = threading.Thread(target=lambda: res.update(call({{"pidfile": pidfile}})))
t.start()
for _ in range(200):
    if os.path.exists(pidfile) and open(pidfile).read(): break
    time.sleep(0.05)
os.kill(int(open(pidfile).read()), 9)
t.join(20)
out["killed"] = res
print(json.dumps(out))
"#,
        app = lit(PY_APP)
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = p
        .boto3_env(&script, &[("TMPDIR_TEST", tmp.path().to_str().unwrap())])
        .await;
    let ok = &out["ok"];
    assert_eq!(ok["status"], 200);
    assert!(ok["error"].is_null(), "{ok}");
    assert_eq!(ok["version"], "$LATEST");
    assert_eq!(ok["payload"]["echo"], json!({"a": 1}));
    let env = &ok["payload"]["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "py");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["_HANDLER"], "app.handler");
    assert_eq!(env["GREETING"], "hello");
    assert!(
        env["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let left = ok["payload"]["left"].as_i64().unwrap();
    assert!(left > 200 && left <= 1000, "remaining time {left}");
    assert_eq!(out["fail"]["error"], "Unhandled");
    assert_eq!(out["fail"]["payload"]["errorType"], "ValueError");
    assert_eq!(out["fail"]["payload"]["errorMessage"], "requested failure");
    assert_eq!(out["timeout"]["error"], "Unhandled");
    assert_eq!(out["timeout"]["payload"]["errorType"], "Sandbox.Timedout");
    assert!(
        out["timeout"]["payload"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Task timed out after 1.00 seconds")
    );
    assert_eq!(out["after_timeout"]["payload"]["echo"], json!({"b": 2}));
    assert_eq!(out["exit"]["payload"]["errorType"], "Runtime.ExitError");
    assert!(
        out["exit"]["payload"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status 3"),
        "{}",
        out["exit"]
    );
    assert_eq!(out["after_exit"]["payload"]["echo"], json!({"c": 3}));
    assert_eq!(out["killed"]["error"], "Unhandled", "{}", out["killed"]);
    assert_eq!(out["killed"]["payload"]["errorType"], "Runtime.ExitError");
    assert!(
        out["killed"]["payload"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("signal: 9"),
        "{}",
        out["killed"]
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_failures_are_reported_as_aws_does_and_never_hurt_others() {
    let p = TestPlatform::start().await;
    let script = format!(
        r#"
def mk(name, files, handler="app.handler"):
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler=handler, Code={{"ZipFile": zip_files(files)}}, Timeout=3)
def call(name):
    r = lam.invoke(FunctionName=name, Payload=b'{{"x": 1}}')
    return {{"error": r.get("FunctionError"), "payload": json.loads(r["Payload"].read())}}
mk("good", {{"app.py": {app}}})
mk("nohandler", {{"app.py": {app}}}, handler="app.nope")
mk("syntax", {{"app.py": "def handler(:\n"}})
mk("raises", {{"app.py": "raise RuntimeError('boom at import')\n"}})
mk("exits", {{"app.py": "import os\nos._exit(2)\n"}})
mk("garbage", {{"app.py": "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 4096)\nsys.stdout.flush()\ndef handler(e, c):\n    sys.stdout.buffer.write(b'\\xff\\xfe' * 100000)\n    return 'fine'\n"}})
mk("hangs", {{"app.py": "import time\ntime.sleep(60)\n"}})
lam.create_function(FunctionName="nobootstrap", Runtime="provided.al2023", Role=ROLE, Handler="x", Code={{"ZipFile": zip_files({{"README": "no bootstrap"}})}})
out = {{}}
for n in ["nohandler", "syntax", "raises", "exits", "garbage", "nobootstrap", "good"]:
    out[n] = call(n)
print(json.dumps(out))
"#,
        app = lit(PY_APP)
    );
    let out = p.boto3(&script).await;
    let err_type = |k: &str| {
        out[k]["payload"]["errorType"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        err_type("nohandler"),
        "Runtime.HandlerNotFound",
        "{}",
        out["nohandler"]
    );
    let log = std::fs::read_to_string(p.data_dir.join("logs/nohandler.log")).unwrap();
    assert!(
        log.contains("INIT_START Runtime Version: python3.11"),
        "{log}"
    );
    assert!(
        log.contains("Status: error\tError Type: Runtime.HandlerNotFound"),
        "{log}"
    );
    assert_eq!(
        err_type("syntax"),
        "Runtime.UserCodeSyntaxError",
        "{}",
        out["syntax"]
    );
    assert_eq!(out["raises"]["error"], "Unhandled");
    assert!(
        out["raises"]["payload"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("boom at import"),
        "{}",
        out["raises"]
    );
    assert_eq!(err_type("exits"), "Runtime.ExitError", "{}", out["exits"]);
    assert_eq!(out["garbage"]["payload"], "fine");
    assert_eq!(
        err_type("nobootstrap"),
        "Runtime.InvalidEntrypoint",
        "{}",
        out["nobootstrap"]
    );
    assert_eq!(out["good"]["payload"]["echo"], json!({"x": 1}));
    // A function hanging in INIT is cut off and reported, while others keep serving meanwhile.
    let client = p.client();
    let hang = {
        let c = client.clone();
        tokio::spawn(async move {
            c.invoke("hangs", bytes::Bytes::from_static(b"{}"), &[])
                .await
                .unwrap()
        })
    };
    for _ in 0..5 {
        let r = client
            .invoke("good", bytes::Bytes::from_static(b"{\"y\":2}"), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = hang.await.unwrap();
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["errorType"], "Sandbox.Timedout", "{v}");
    p.stop().await;
}

fn bootstrap_exec(bin: &std::path::Path) -> String {
    format!("#!/bin/sh\nexec {} \"$@\"\n", bin.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_lambda_runtime_function() {
    let p = TestPlatform::start().await;
    let script = format!(
        r#"
lam.create_function(FunctionName="rust", Runtime="provided.al2023", Role=ROLE, Handler="bootstrap",
                    Code={{"ZipFile": zip_files({{"bootstrap": {boot}}})}})
out = {{}}
r = lam.invoke(FunctionName="rust", Payload=b'{{"hello": "rust"}}')
out["ok"] = {{"error": r.get("FunctionError"), "payload": json.loads(r["Payload"].read())}}
r = lam.invoke(FunctionName="rust", Payload=b'{{"fail": 1}}')
out["fail"] = {{"error": r.get("FunctionError"), "payload": json.loads(r["Payload"].read())}}
print(json.dumps(out))
"#,
        boot = lit(&bootstrap_exec(&example_bin("echo_rust")))
    );
    let out = p.boto3(&script).await;
    assert!(out["ok"]["error"].is_null(), "{out}");
    assert_eq!(out["ok"]["payload"]["echo"], json!({"hello": "rust"}));
    assert_eq!(
        out["ok"]["payload"]["function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:rust"
    );
    assert_eq!(
        out["ok"]["payload"]["request_id"].as_str().unwrap().len(),
        36
    );
    assert_eq!(out["fail"]["error"], "Unhandled");
    assert_eq!(out["fail"]["payload"]["errorMessage"], "requested failure");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_concurrency_throttles_with_429() {
    let p = TestPlatform::start().await;
    let script = format!(
        r#"
import threading
lam.create_function(FunctionName="slow", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Timeout=10)
lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
marker = os.path.join(os.environ["TMPDIR_TEST"], "slow-started")
t = threading.Thread(target=lambda: lam.invoke(FunctionName="slow", Payload=json.dumps({{"sleep": 2, "marker": marker}}).encode()))
t.start()
wait_for(marker)
out = {{"busy": None}}
try:
    lam.invoke(FunctionName="slow", Payload=b'{{}}')
except botocore.exceptions.ClientError as e:
    out["busy"] = {{"code": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"], "reason": e.response.get("Reason")}}
t.join()
lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=0)
out["zero"] = err(lam.invoke, FunctionName="slow", Payload=b'{{}}')
lam.delete_function_concurrency(FunctionName="slow")
out["free"] = lam.invoke(FunctionName="slow", Payload=b'{{}}')["StatusCode"]
print(json.dumps(out))
"#,
        app = lit(PY_APP)
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = p
        .boto3_env(&script, &[("TMPDIR_TEST", tmp.path().to_str().unwrap())])
        .await;
    assert_eq!(out["busy"]["code"], "TooManyRequestsException", "{out}");
    assert_eq!(out["busy"]["status"], 429);
    assert_eq!(
        out["busy"]["reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
    assert_eq!(out["zero"]["code"], "TooManyRequestsException");
    assert_eq!(out["free"], 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_extension_delays_init_and_gets_invoke_and_shutdown() {
    let p =
        TestPlatform::start_with(|c| c.idle_timeout = std::time::Duration::from_millis(800)).await;
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let script = format!(
        r#"
layer = lam.publish_layer_version(LayerName="testext", Content={{"ZipFile": zip_files({{"extensions/test_extension": {ext}}})}},
                                  CompatibleRuntimes=["python3.11"])
lam.create_function(FunctionName="withext", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Layers=[layer["LayerVersionArn"]],
                    Environment={{"Variables": {{"TEST_EXT_OUT": {out}, "TEST_EXT_INIT_DELAY_MS": "400"}}}})
t0 = time.time()
r = lam.invoke(FunctionName="withext", Payload=b'{{"n": 1}}')
cold = time.time() - t0
payload = json.loads(r["Payload"].read())
time.sleep(0.5)
print(json.dumps({{"layer": layer["LayerVersionArn"], "version": layer["Version"], "cold": cold, "payload": payload,
  "layers": lam.get_function_configuration(FunctionName="withext")["Layers"],
  "listed": [l["LayerName"] for l in lam.list_layers()["Layers"]]}}))
"#,
        ext = lit(&bootstrap_exec(&example_bin("test_extension"))),
        app = lit(PY_APP),
        out = lit(events.to_str().unwrap()),
    );
    let out = p.boto3(&script).await;
    assert_eq!(
        out["layer"],
        "arn:aws:lambda:us-east-1:123456789012:layer:testext:1"
    );
    assert_eq!(out["listed"], json!(["testext"]));
    assert_eq!(out["payload"]["echo"], json!({"n": 1}), "{out}");
    assert!(
        out["cold"].as_f64().unwrap() >= 0.4,
        "INIT must wait for the extension: {}",
        out["cold"]
    );
    // SHUTDOWN follows the idle timeout; give a loaded machine time to deliver it.
    for _ in 0..100 {
        if std::fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("SHUTDOWN")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| l["event"]["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["REGISTERED", "READY", "INVOKE", "SHUTDOWN"],
        "{lines:?}"
    );
    assert_eq!(lines[0]["event"]["response"]["functionName"], "withext");
    let invoke = &lines[2]["event"];
    assert_eq!(
        invoke["invokedFunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:withext"
    );
    assert!(invoke["deadlineMs"].as_u64().unwrap() > lines[2]["at"].as_u64().unwrap());
    let shutdown = &lines[3]["event"];
    assert_eq!(shutdown["shutdownReason"], "spindown");
    assert!(shutdown["deadlineMs"].as_u64().unwrap() > lines[3]["at"].as_u64().unwrap());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_init_error_fails_init_with_its_error_type() {
    let p = TestPlatform::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
layer = lam.publish_layer_version(LayerName="badext", Content={{"ZipFile": zip_files({{"extensions/test_extension": {ext}}})}})
lam.create_function(FunctionName="badext", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Layers=[layer["LayerVersionArn"]],
                    Environment={{"Variables": {{"TEST_EXT_OUT": {out}, "TEST_EXT_INIT_ERROR": "1"}}}})
r = lam.invoke(FunctionName="badext", Payload=b'{{}}')
print(json.dumps({{"error": r.get("FunctionError"), "payload": json.loads(r["Payload"].read())}}))
"#,
        ext = lit(&bootstrap_exec(&example_bin("test_extension"))),
        app = lit(PY_APP),
        out = lit(tmp.path().join("ev.jsonl").to_str().unwrap()),
    );
    let out = p.boto3(&script).await;
    assert_eq!(out["error"], "Unhandled", "{out}");
    assert_eq!(
        out["payload"]["errorType"], "Extension.ConfigInvalid",
        "{out}"
    );
    assert_eq!(out["payload"]["errorMessage"], "bad extension config");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_invokes_are_retried_twice_after_function_errors() {
    let p = TestPlatform::start_with(|c| c.minute = std::time::Duration::from_millis(200)).await;
    let tmp = tempfile::tempdir().unwrap();
    let attempts = tmp.path().join("attempts");
    let app = "import os\ndef handler(event, context):\n    with open(os.environ['ATTEMPTS'], 'a') as f:\n        f.write(context.aws_request_id + '\\n')\n    raise RuntimeError('always failing')\n";
    let script = format!(
        r#"
lam.create_function(FunctionName="flaky", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Environment={{"Variables": {{"ATTEMPTS": {path}}}}})
print(json.dumps({{"status": lam.invoke(FunctionName="flaky", InvocationType="Event", Payload=b'{{"k": 1}}')["StatusCode"]}}))
"#,
        app = lit(app),
        path = lit(attempts.to_str().unwrap()),
    );
    assert_eq!(p.boto3(&script).await["status"], 202);
    let mut lines = 0;
    for _ in 0..100 {
        lines = std::fs::read_to_string(&attempts)
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(lines, 3, "one attempt plus two retries");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        std::fs::read_to_string(&attempts).unwrap().lines().count(),
        3,
        "no fourth attempt"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_limit_evicts_idle_sandboxes_then_throttles() {
    let p = TestPlatform::start_with(|c| c.max_sandboxes = 1).await;
    let script = format!(
        r#"
import threading
for n in ["a", "b"]:
    lam.create_function(FunctionName=n, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Timeout=10)
out = {{}}
out["a"] = json.loads(lam.invoke(FunctionName="a", Payload=b'{{"n": 1}}')["Payload"].read())["echo"]
out["b"] = json.loads(lam.invoke(FunctionName="b", Payload=b'{{"n": 2}}')["Payload"].read())["echo"]
marker = os.path.join(os.environ["TMPDIR_TEST"], "b-started")
t = threading.Thread(target=lambda: lam.invoke(FunctionName="b", Payload=json.dumps({{"sleep": 1.5, "marker": marker}}).encode()))
t.start()
wait_for(marker)
try:
    lam.invoke(FunctionName="a", Payload=b'{{}}')
    out["busy"] = None
except botocore.exceptions.ClientError as e:
    out["busy"] = {{"code": e.response["Error"]["Code"], "reason": e.response.get("Reason")}}
t.join()
print(json.dumps(out))
"#,
        app = lit(PY_APP)
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = p
        .boto3_env(&script, &[("TMPDIR_TEST", tmp.path().to_str().unwrap())])
        .await;
    assert_eq!(out["a"], json!({"n": 1}));
    assert_eq!(
        out["b"],
        json!({"n": 2}),
        "the idle sandbox of a must make room for b"
    );
    assert_eq!(out["busy"]["code"], "TooManyRequestsException", "{out}");
    assert_eq!(out["busy"]["reason"], "ConcurrentInvocationLimitExceeded");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_busy_sandboxes_promptly() {
    let p = TestPlatform::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("pid");
    p.boto3(&format!(
        r#"
lam.create_function(FunctionName="busy", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Timeout=60)
print("{{}}")
"#,
        app = lit(PY_APP)
    ))
    .await;
    let client = p.client();
    let payload = serde_json::to_vec(&json!({"pidfile": pidfile})).unwrap();
    let call = tokio::spawn(async move {
        client
            .invoke("busy", bytes::Bytes::from(payload), &[])
            .await
    });
    let mut pid = String::new();
    for _ in 0..200 {
        pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if !pid.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!pid.is_empty(), "the function never started");
    let started = std::time::Instant::now();
    p.stop().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The in-flight invoke ended (with an AWS-shaped error, or the connection closing), not hung.
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    if let Ok(r) = r {
        assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    }
    let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists();
    assert!(!alive, "sandbox process {pid} survived shutdown");
}

/// The state letter of process `pid` (`T` when stopped).
fn process_state(pid: u64) -> char {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')')?.1.trim_start().chars().next())
        .unwrap_or('?')
}

async fn wait_state(pid: u64, want: char) {
    for _ in 0..200 {
        if process_state(pid) == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "process {pid} never reached state {want}: {}",
        process_state(pid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_are_frozen_between_invokes_and_thawed_for_each_event() {
    // The idle timeout must outlast the gap between the two invokes (each is a fresh Python
    // with boto3, seconds on a loaded machine), or the second one meets a new sandbox.
    let p = TestPlatform::start_with(|c| c.idle_timeout = std::time::Duration::from_secs(15)).await;
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.jsonl");
    let app = "import os\ndef handler(event, context):\n    return {'pid': os.getpid()}\n";
    let invoke = r#"
r = lam.invoke(FunctionName="frozen", Payload=b'{}')
print(json.dumps({"error": r.get("FunctionError"), "payload": json.loads(r["Payload"].read())}))
"#;
    let create = format!(
        r#"
layer = lam.publish_layer_version(LayerName="freezeext", Content={{"ZipFile": zip_files({{"extensions/test_extension": {ext}}})}})
lam.create_function(FunctionName="frozen", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                    Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Layers=[layer["LayerVersionArn"]],
                    Environment={{"Variables": {{"TEST_EXT_OUT": {out}}}}})
"#,
        ext = lit(&bootstrap_exec(&example_bin("test_extension"))),
        app = lit(app),
        out = lit(events.to_str().unwrap()),
    );
    let first = p.boto3(&format!("{create}{invoke}")).await;
    assert_eq!(first["error"], serde_json::Value::Null, "{first}");
    let runtime = first["payload"]["pid"].as_u64().unwrap();
    let registered: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&events)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let extension = registered["event"]["pid"].as_u64().unwrap();
    // Between invokes the runtime and the extension are stopped ...
    wait_state(runtime, 'T').await;
    wait_state(extension, 'T').await;
    // ... and continued for the next invoke, in the same (warm) sandbox.
    let second = p.boto3(invoke).await;
    assert_eq!(second["payload"]["pid"].as_u64(), Some(runtime), "{second}");
    wait_state(extension, 'T').await;
    // Idle past the timeout: continued for SHUTDOWN, which the extension receives.
    for _ in 0..800 {
        if std::fs::read_to_string(&events)
            .unwrap_or_default()
            .contains("SHUTDOWN")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kinds: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["eventType"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["REGISTERED", "READY", "INVOKE", "INVOKE", "SHUTDOWN"],
        "the extension ran only for its events"
    );
    p.stop().await;
}

/// Concurrent invokes of a function whose layers bring an external extension share one sandbox
/// (an extension listening on the shared loopback could not bind in a second one); they queue
/// and all succeed. Without the extension the same function scales out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invokes_of_a_function_with_an_extension_queue_for_one_sandbox() {
    let p = TestPlatform::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let app = "import os, time\ndef handler(event, context):\n    time.sleep(0.2)\n    return {'pid': os.getpid()}\n";
    let script = format!(
        r#"
from concurrent.futures import ThreadPoolExecutor
layer = lam.publish_layer_version(LayerName="queueext", Content={{"ZipFile": zip_files({{"extensions/test_extension": {ext}}})}})
for name, layers in (("withext", [layer["LayerVersionArn"]]), ("plain", [])):
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler", Timeout=30,
                        Code={{"ZipFile": zip_files({{"app.py": {app}}})}}, Layers=layers,
                        Environment={{"Variables": {{"TEST_EXT_OUT": {out}}}}})
def call(name):
    r = lam.invoke(FunctionName=name, Payload=b'{{}}')
    return r["StatusCode"], r.get("FunctionError"), json.loads(r["Payload"].read()).get("pid")
out = {{}}
for name in ("withext", "plain"):
    with ThreadPoolExecutor(6) as ex:
        res = list(ex.map(call, [name] * 6))
    out[name] = {{"statuses": [r[0] for r in res], "errors": [r[1] for r in res], "pids": sorted({{r[2] for r in res}})}}
print(json.dumps(out))
"#,
        ext = lit(&bootstrap_exec(&example_bin("test_extension"))),
        app = lit(app),
        out = lit(tmp.path().join("ev.jsonl").to_str().unwrap()),
    );
    let out = p.boto3(&script).await;
    let with = &out["withext"];
    assert_eq!(
        with["statuses"],
        json!([200, 200, 200, 200, 200, 200]),
        "{out}"
    );
    assert_eq!(
        with["errors"],
        json!([null, null, null, null, null, null]),
        "{out}"
    );
    assert_eq!(
        with["pids"].as_array().unwrap().len(),
        1,
        "one sandbox: {out}"
    );
    assert!(
        out["plain"]["pids"].as_array().unwrap().len() > 1,
        "without an extension the function scales out: {out}"
    );
    p.stop().await;
}
