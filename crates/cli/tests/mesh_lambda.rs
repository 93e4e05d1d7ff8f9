//! Mesh → Lambda (issue 5): real Envoy sidecars and terminating gateways sign and invoke Python
//! functions (awslambdaric) on the local Lambda platform, which verifies every SigV4 signature.
//!
//! - the caller's sidecar path, with both Consul markings, the §2.5 request/response shapes,
//!   passthrough and asynchronous modes, aliases, and function errors, timeouts and throttles
//!   reaching the caller as HTTP errors;
//! - the terminating-gateway path, where the gateway enforces intentions;
//! - a splitter between an ordinary service and a function, with weights changed live.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mesh::{
    Backend, Envoy, Guard, free_port, gateway_enforces_intention, get, get_json, put, python,
    start_moto, start_platform, wait_until,
};
use common::{BIN, Proc, stderr};
use serde_json::{Value, json};

const ACCOUNT_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function";
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// The local platform and a dev server pointed at it.
struct LambdaMesh {
    dir: tempfile::TempDir,
    endpoint: String,
    server: Proc,
    _platform: Guard,
}

impl LambdaMesh {
    fn start() -> LambdaMesh {
        let dir = tempfile::tempdir().unwrap();
        let (platform, endpoint) = start_platform(&dir.path().join("data"));
        let server = Proc::start(&["agent", "-dev", "-lambda-endpoint", &endpoint]);
        LambdaMesh {
            dir,
            endpoint,
            server,
            _platform: platform,
        }
    }

    fn http(&self) -> &str {
        &self.server.http
    }

    /// Creates function `name` from a Python `app.py`.
    fn function(&self, name: &str, source: &str, extra: &[&str]) {
        let code = self.dir.path().join(format!("code-{name}"));
        std::fs::create_dir_all(&code).unwrap();
        std::fs::write(code.join("app.py"), source).unwrap();
        let o = Command::new(BIN)
            .args(["lambda", "create", name, "--dir", code.to_str().unwrap()])
            .args(["--runtime", "python3.11", "--handler", "app.handler"])
            .args(extra)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .output()
            .unwrap();
        assert!(o.status.success(), "create {name}: {}", stderr(&o));
    }

    /// Runs boto3 against the platform (`lam` is a Lambda client).
    fn boto(&self, script: &str) {
        let prelude = format!(
            "import boto3\nlam = boto3.client('lambda', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n",
            self.endpoint
        );
        let o = Command::new(python())
            .args(["-c", &format!("{prelude}{script}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "boto3: {}", stderr(&o));
    }

    /// Marks `service` as the Lambda `arn` with the 1.15+ extension.
    fn mark(&self, service: &str, arguments: Value) {
        put(
            self.http(),
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": service, "Protocol": "http",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": arguments}]}),
        );
    }

    /// Registers `api` with one upstream per name (bind ports returned in order) and starts its
    /// sidecar with AWS credentials in its environment.
    fn caller(&self, upstreams: &[&str]) -> (Envoy, Vec<u16>) {
        let ports: Vec<u16> = upstreams.iter().map(|_| free_port()).collect();
        let ups: Vec<Value> = upstreams
            .iter()
            .zip(&ports)
            .map(|(u, p)| json!({"DestinationName": u, "LocalBindPort": p}))
            .collect();
        put(
            self.http(),
            "/v1/agent/service/register",
            &json!({"Name": "api", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": ups}}}}),
        );
        let envoy = Envoy::start_with_env(
            self.http(),
            &self.server.grpc,
            &["-sidecar-for", "api"],
            &AWS_ENV,
        );
        (envoy, ports)
    }
}

/// Any-status HTTP client with the response headers.
fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build(),
    );
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = agent.run(req.body(body.to_vec()).unwrap()).unwrap();
    Response {
        status: r.status().as_u16(),
        headers: r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: r.body_mut().read_to_vec().unwrap_or_default(),
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

const ECHO: &str = r#"
import base64, json
def handler(event, context):
    if event['raw_path'].startswith('/bin'):
        return {'statusCode': 200, 'headers': {'content-type': 'application/octet-stream'},
                'body': base64.b64encode(b'\x00\x01bin').decode(), 'isBase64Encoded': True}
    seen = {k: event[k] for k in ('method', 'raw_path', 'headers', 'query_string_parameters', 'body', 'is_base64_encoded')}
    return {'statusCode': 201, 'headers': {'x-from': 'lambda', 'content-type': 'application/json'},
            'cookies': ['a=1; HttpOnly', 'b=2'], 'body': json.dumps(seen)}
"#;

fn wait_for_mark(path: &Path) {
    wait_until(30, "the asynchronous invocation ran", || path.exists());
}

#[test]
fn sidecar_path_shapes_modes_aliases_and_errors() {
    let m = LambdaMesh::start();
    let marks = m.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let marks_env = format!("MARKS={}", marks.display());
    m.function("echo", ECHO, &[]);
    m.function(
        "raw",
        "def handler(event, context):\n    return {'got': event}\n",
        &[],
    );
    m.function(
        "later",
        "import os, time\ndef handler(event, context):\n    time.sleep(0.5)\n    open(os.path.join(os.environ['MARKS'], 'later'), 'w').write(event['body'])\n",
        &["--env", &marks_env],
    );
    m.function(
        "boom",
        "def handler(event, context):\n    raise ValueError('kaput')\n",
        &[],
    );
    m.function(
        "slow",
        "import time\ndef handler(event, context):\n    time.sleep(10)\n",
        &["--timeout", "1"],
    );
    m.function(
        "throttled",
        "def handler(event, context):\n    return {'statusCode': 200}\n",
        &[],
    );
    m.function(
        "versioned",
        "import os\ndef handler(event, context):\n    return {'statusCode': 200, 'body': 'v1 ' + os.environ['AWS_LAMBDA_FUNCTION_VERSION']}\n",
        &[],
    );
    // versioned:prod → version 1; $LATEST then gets new code.
    m.boto(
        r#"
import io, zipfile
v = lam.publish_version(FunctionName='versioned')['Version']
lam.create_alias(FunctionName='versioned', Name='prod', FunctionVersion=v)
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('app.py', "import os\ndef handler(event, context):\n    return {'statusCode': 200, 'body': 'v2 ' + os.environ['AWS_LAMBDA_FUNCTION_VERSION']}\n")
lam.update_function_code(FunctionName='versioned', ZipFile=buf.getvalue())
lam.put_function_concurrency(FunctionName='throttled', ReservedConcurrentExecutions=0)
"#,
    );
    m.mark("echo", json!({"arn": format!("{ACCOUNT_ARN}:echo")}));
    // The ≤1.14 marking of the same function, under another service name.
    let p = "serverless.consul.hashicorp.com/v1alpha1/lambda/";
    put(
        m.http(),
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "legacy", "Protocol": "http", "Meta": {
            format!("{p}enabled"): "true", format!("{p}arn"): format!("{ACCOUNT_ARN}:echo"),
            format!("{p}region"): "us-east-1"}}),
    );
    m.mark(
        "raw",
        json!({"ARN": format!("{ACCOUNT_ARN}:raw"), "PayloadPassthrough": true}),
    );
    // Upper case, as the registrator writes it: really asynchronous here.
    m.mark(
        "later",
        json!({"ARN": format!("{ACCOUNT_ARN}:later"), "InvocationMode": "ASYNCHRONOUS"}),
    );
    for f in ["boom", "slow", "throttled", "versioned"] {
        m.mark(f, json!({"ARN": format!("{ACCOUNT_ARN}:{f}")}));
    }
    m.mark(
        "versioned-prod",
        json!({"ARN": format!("{ACCOUNT_ARN}:versioned:prod")}),
    );
    let names = [
        "echo",
        "legacy",
        "raw",
        "later",
        "boom",
        "slow",
        "throttled",
        "versioned",
        "versioned-prod",
    ];
    let (_envoy, ports) = m.caller(&names);
    let url = |name: &str, path: &str| {
        let i = names.iter().position(|n| *n == name).unwrap();
        format!("http://127.0.0.1:{}{path}", ports[i])
    };
    for name in ["echo", "legacy"] {
        wait_until(30, "the function answers through the sidecar", || {
            get(&url(name, "/")).0 == 201
        });
    }

    // The §2.5 request shape, and the response's status, headers, cookies.
    for name in ["echo", "legacy"] {
        let r = call(
            "POST",
            &url(name, "/login/x?user=ann&user=bob&z=1"),
            &[("content-type", "application/json"), ("x-custom", "abc")],
            br#"{"k":1}"#,
        );
        assert_eq!(r.status, 201, "{name}: {}", r.text());
        assert_eq!(r.header("x-from"), Some("lambda"));
        assert_eq!(r.all("set-cookie"), ["a=1; HttpOnly", "b=2"]);
        let seen: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["raw_path"], "/login/x?user=ann&user=bob&z=1");
        assert_eq!(seen["headers"]["x-custom"], "abc");
        assert_eq!(seen["headers"]["content-type"], "application/json");
        // Envoy keeps the first value of a repeated query parameter.
        assert_eq!(
            seen["query_string_parameters"],
            json!({"user": "ann", "z": "1"})
        );
        assert_eq!(seen["body"], r#"{"k":1}"#);
        assert_eq!(seen["is_base64_encoded"], false);
    }
    // A binary request body travels base64-encoded; a base64 response body is decoded.
    let r = call(
        "PUT",
        &url("echo", "/up"),
        &[("content-type", "application/octet-stream")],
        b"\x00\xffraw",
    );
    let seen: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["is_base64_encoded"], true);
    assert_eq!(seen["body"], "AP9yYXc=");
    let r = call("GET", &url("echo", "/bin"), &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"\x00\x01bin"[..]));

    // Passthrough: the raw body is the event, the function's result is the raw response.
    let r = call(
        "POST",
        &url("raw", "/ignored"),
        &[("content-type", "application/json")],
        br#"{"order":7}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({"got": {"order": 7}})
    );

    // Asynchronous: 202 before the function has run; then it runs.
    let r = call(
        "POST",
        &url("later", "/job"),
        &[("content-type", "text/plain")],
        b"job-42",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    wait_for_mark(&marks.join("later"));
    assert_eq!(
        std::fs::read_to_string(marks.join("later")).unwrap(),
        "job-42"
    );

    // Aliases: the alias service invokes the published version, the plain one $LATEST.
    wait_until(30, "the alias answers", || {
        get(&url("versioned-prod", "/")) == (200, "v1 1".to_owned())
    });
    assert_eq!(get(&url("versioned", "/")), (200, "v2 $LATEST".to_owned()));

    // Errors reach the caller as HTTP errors with the function's body, never as a hang.
    let r = call("GET", &url("boom", "/"), &[], b"");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    assert!(
        r.text().contains("kaput") && r.text().contains("ValueError"),
        "{}",
        r.text()
    );
    let r = call("GET", &url("slow", "/"), &[], b"");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("Sandbox.Timedout"), "{}", r.text());
    // A sidecar signing with the wrong secret: AWS's 403 and its message reach the caller.
    let rogue_port = free_port();
    put(
        m.http(),
        "/v1/agent/service/register",
        &json!({"Name": "rogue", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
            {"DestinationName": "echo", "LocalBindPort": rogue_port}]}}}}),
    );
    let _rogue = Envoy::start_with_env(
        m.http(),
        &m.server.grpc,
        &["-sidecar-for", "rogue"],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let rogue_url = format!("http://127.0.0.1:{rogue_port}/");
    wait_until(30, "the rogue sidecar is configured", || {
        get(&rogue_url).0 == 403
    });
    let (_, body) = get(&rogue_url);
    assert!(body.contains("signature"), "{body}");
    let r = call("GET", &url("throttled", "/"), &[], b"");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text()
            .contains("ReservedFunctionConcurrentInvocationLimitExceeded"),
        "{}",
        r.text()
    );
}

#[test]
fn terminating_gateway_invokes_and_enforces_intentions() {
    let m = LambdaMesh::start();
    m.function(
        "authentication",
        "def handler(event, context):\n    if event['raw_path'] == '/crash':\n        raise ValueError('kaput')\n    caller = event['headers'].get('x-forwarded-client-cert', '')\n    return {'statusCode': 200, 'headers': {'x-caller': caller}, 'body': 'token for ' + event['raw_path']}\n",
        &[],
    );
    m.mark(
        "authentication",
        json!({"arn": format!("{ACCOUNT_ARN}:authentication")}),
    );
    // Registered the way the registrator registers a function: no address, no port.
    put(
        m.http(),
        "/v1/catalog/register",
        &json!({"Node": "lambdas", "SkipNodeUpdate": true,
            "NodeMeta": {"external-node": "true", "external-probe": "true"},
            "Service": {"ID": "authentication", "Service": "authentication", "Tags": ["managed-by-lambda-registrator"]}}),
    );
    put(
        m.http(),
        "/v1/config",
        &json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "authentication"}]}),
    );
    put(
        m.http(),
        "/v1/connect/intentions/exact?source=api&destination=authentication",
        &json!({"Action": "allow"}),
    );
    let gw = Envoy::start_with_env(
        m.http(),
        &m.server.grpc,
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
    );
    wait_until(20, "the gateway fronts the function", || {
        get_json(m.http(), "/v1/health/connect/authentication")
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    // The caller has no AWS credentials at all: only the gateway signs.
    let ports = [free_port()];
    put(
        m.http(),
        "/v1/agent/service/register",
        &json!({"Name": "api", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
            {"DestinationName": "authentication", "LocalBindPort": ports[0]}]}}}}),
    );
    let caller = Envoy::start(m.http(), &m.server.grpc, &["-sidecar-for", "api"]);
    let url = format!("http://127.0.0.1:{}/login?u=1", ports[0]);
    wait_until(30, "api → sidecar → gateway → function", || {
        get(&url) == (200, "token for /login?u=1".to_owned())
    });
    assert!(gw.stat("http.terminating_gateway.authentication.rbac.allowed") >= 1);
    // The function learns who called (the caller's SPIFFE ID), without the PEM certificate and
    // chain that would double the size of every invoke.
    let r = call("GET", &url, &[], b"");
    let caller_id = r.header("x-caller").unwrap_or_default().to_owned();
    assert!(
        caller_id.contains(";URI=spiffe://") && caller_id.ends_with("/svc/api"),
        "{caller_id}"
    );
    assert!(!caller_id.contains("Cert="), "{caller_id}");
    // The gateway turns a function error into a 502 carrying the function's error body.
    let r = call(
        "GET",
        &format!("http://127.0.0.1:{}/crash", ports[0]),
        &[],
        b"",
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    assert!(r.text().contains("kaput"), "{}", r.text());
    // Linked to a gateway, the function is reached over mesh mTLS: the caller is not patched.
    let (_, dump) = get(&format!(
        "http://127.0.0.1:{}/config_dump?resource=dynamic_listeners",
        caller.admin
    ));
    assert!(dump.contains("authentication"), "{dump}");
    assert!(!dump.contains("aws_lambda"), "{dump}");
    gateway_enforces_intention(m.http(), &gw, "api", "authentication", &url);
}

/// Share of `n` sequential requests answered by the function.
fn lambda_share(url: &str, n: usize) -> f64 {
    let mut lambda = 0usize;
    for _ in 0..n {
        let (status, body) = get(url);
        assert_eq!(status, 200, "{body}");
        if body.starts_with("lambda") {
            lambda += 1;
        } else {
            assert!(body.starts_with("service"), "{body}");
        }
    }
    lambda as f64 / n as f64
}

#[test]
fn splitter_between_a_service_and_a_function() {
    let m = LambdaMesh::start();
    m.function(
        "greeter",
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'lambda ' + event['raw_path']}\n",
        &[],
    );
    let svc = Backend::start("service");
    put(
        m.http(),
        "/v1/agent/service/register",
        &json!({"Name": "greeter", "Port": svc.port, "Connect": {"SidecarService": {"Port": free_port()}}}),
    );
    let _greeter = Envoy::start(m.http(), &m.server.grpc, &["-sidecar-for", "greeter"]);
    put(
        m.http(),
        "/v1/config",
        &json!({"Kind": "service-defaults", "Name": "greeter", "Protocol": "http"}),
    );
    m.mark(
        "greeter-lambda",
        json!({"ARN": format!("{ACCOUNT_ARN}:greeter")}),
    );
    let split = |lambda_weight: f64| {
        put(
            m.http(),
            "/v1/config",
            &json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
                {"Weight": 100.0 - lambda_weight, "Service": "greeter"},
                {"Weight": lambda_weight, "Service": "greeter-lambda"}]}),
        );
    };
    split(50.0);
    let (_api, ports) = m.caller(&["greeter"]);
    let url = format!("http://127.0.0.1:{}/hi", ports[0]);
    wait_until(30, "both sides answer", || {
        let (mut saw_fn, mut saw_svc) = (false, false);
        for _ in 0..20 {
            let (s, b) = get(&url);
            saw_fn |= s == 200 && b.starts_with("lambda");
            saw_svc |= s == 200 && b.starts_with("service");
        }
        saw_fn && saw_svc
    });
    let share = lambda_share(&url, 1000);
    assert!((0.45..=0.55).contains(&share), "lambda share {share}");

    // Live change: 20 % to the function.
    split(20.0);
    wait_until(30, "the new weights apply", || {
        lambda_share(&url, 100) < 0.35
    });
    let share = lambda_share(&url, 1000);
    assert!((0.15..=0.25).contains(&share), "lambda share {share}");

    // Two functions behind one upstream: one aws_lambda filter, each weight naming its ARN.
    m.function(
        "greeter2",
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'second ' + event['raw_path']}\n",
        &[],
    );
    m.mark(
        "greeter-lambda2",
        json!({"ARN": format!("{ACCOUNT_ARN}:greeter2")}),
    );
    put(
        m.http(),
        "/v1/config",
        &json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 50, "Service": "greeter-lambda"},
            {"Weight": 50, "Service": "greeter-lambda2"}]}),
    );
    wait_until(30, "each function answers its own share", || {
        let bodies: Vec<String> = (0..40).map(|_| get(&url).1).collect();
        bodies.iter().any(|b| b == "lambda /hi")
            && bodies.iter().any(|b| b == "second /hi")
            && bodies
                .iter()
                .all(|b| b == "lambda /hi" || b == "second /hi")
    });

    // A function with resolver failover is still invoked, and its failover is decided from the
    // catalog: Envoy would pick an aggregate cluster's member after the aws_lambda filter ran
    // (those requests went out unsigned: 403), so the control plane moves the routes to the
    // failover service while the function's check is critical, and back when it passes.
    // The resolver is written before the splitter, so once the split shows, both apply.
    let register = |status: &str| {
        put(
            m.http(),
            "/v1/catalog/register",
            &json!({"Node": "lambdas", "SkipNodeUpdate": true,
                "NodeMeta": {"external-node": "true", "external-probe": "true"},
                "Service": {"ID": "greeter-lambda", "Service": "greeter-lambda"},
                "Check": {"CheckID": "greeter-lambda-alive", "Name": "alive",
                    "ServiceID": "greeter-lambda", "Status": status}}),
        );
    };
    register("passing");
    put(
        m.http(),
        "/v1/config",
        &json!({"Kind": "service-resolver", "Name": "greeter-lambda",
            "Failover": {"*": {"Service": "greeter"}}}),
    );
    put(
        m.http(),
        "/v1/config",
        &json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 100, "Service": "greeter-lambda"}]}),
    );
    wait_until(30, "the function with failover answers", || {
        (0..20).all(|_| get(&url) == (200, "lambda /hi".to_owned()))
    });
    register("critical");
    wait_until(
        30,
        "the failover service answers for the down function",
        || (0..20).all(|_| get(&url) == (200, "service /hi".to_owned())),
    );
    register("passing");
    wait_until(30, "the function answers again", || {
        (0..20).all(|_| get(&url) == (200, "lambda /hi".to_owned()))
    });
}

#[test]
fn bad_lambda_markings_are_refused_when_written() {
    let server = Proc::start(&["agent", "-dev"]);
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let put_entry = |body: Value| {
        let mut r = agent
            .put(&format!("http://{}/v1/config", server.http))
            .send(body.to_string())
            .unwrap();
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let p = "serverless.consul.hashicorp.com/v1alpha1/lambda/";
    let cases = [
        (
            json!({"Kind": "service-defaults", "Name": "f", "Protocol": "http",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": "arn:aws:lambda:us-east-1:1:layer:x"}}]}),
            "EnvoyExtensions[0].Arguments.ARN",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "f", "Protocol": "http",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": format!("{ACCOUNT_ARN}:f"), "InvocationMode": "eventually"}}]}),
            "EnvoyExtensions[0].Arguments.InvocationMode",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "f", "Protocol": "tcp",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": format!("{ACCOUNT_ARN}:f")}}]}),
            "Protocol",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "f", "Protocol": "http", "Meta": {
                format!("{p}enabled"): "true", format!("{p}arn"): "not-an-arn"}}),
            "lambda/arn",
        ),
    ];
    for (body, field) in cases {
        let (status, message) = put_entry(body.clone());
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(field), "{body}: {message}");
    }
    // Nothing was stored.
    let (status, _) = get(&format!(
        "http://{}/v1/config/service-defaults/f",
        server.http
    ));
    assert_eq!(status, 404);
}

#[test]
fn sidecar_invokes_moto_as_a_second_aws_implementation() {
    let (_moto, endpoint) = start_moto();
    // moto without Docker never runs a handler: it answers from a queue of results, or echoes.
    // Its Lambda backend must be switched before anything is created.
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let r = agent
        .post(&format!("{endpoint}/moto-api/config"))
        .send(r#"{"lambda": {"use_docker": false}}"#)
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let script = format!(
        r#"
import boto3, io, json, zipfile
kw = dict(endpoint_url="{endpoint}", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
iam = boto3.client("iam", **kw); lam = boto3.client("lambda", **kw)
role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{{}}")["Role"]["Arn"]
b = io.BytesIO()
with zipfile.ZipFile(b, "w") as z:
    z.writestr("app.py", "def handler(e, c):\n    return e\n")
for name in ("greeter", "later"):
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler", Code={{"ZipFile": b.getvalue()}})
"#
    );
    let o = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "boto3 against moto: {}", stderr(&o));
    let server = Proc::start(&["agent", "-dev", "-lambda-endpoint", &endpoint]);
    let http = server.http.clone();
    for (name, mode) in [("greeter", "synchronous"), ("later", "asynchronous")] {
        put(
            &http,
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": name, "Protocol": "http",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": format!("{ACCOUNT_ARN}:{name}"), "InvocationMode": mode}}]}),
        );
    }
    let ports = [free_port(), free_port()];
    put(
        &http,
        "/v1/agent/service/register",
        &json!({"Name": "api", "Port": 1, "Connect": {"SidecarService": {"Port": free_port(), "Proxy": {"Upstreams": [
            {"DestinationName": "greeter", "LocalBindPort": ports[0]},
            {"DestinationName": "later", "LocalBindPort": ports[1]}]}}}}),
    );
    let _envoy = Envoy::start_with_env(&http, &server.grpc, &["-sidecar-for", "api"], &AWS_ENV);
    let url = format!("http://127.0.0.1:{}/hello", ports[0]);
    // With an empty queue moto echoes Envoy's request JSON, which has no statusCode: 200.
    wait_until(30, "moto answers through the sidecar", || {
        get(&url).0 == 200
    });
    // A queued result is what the function "returned": Envoy turns it into the HTTP answer.
    let queued = json!({"statusCode": 418, "headers": {"x-moto": "1"}, "body": "teapot from moto"});
    let r = agent
        .post(&format!("{endpoint}/moto-api/static/lambda-simple/response"))
        .send(
            json!({"results": [queued.to_string()], "region": "us-east-1", "account_id": "123456789012"})
                .to_string(),
        )
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = call("GET", &url, &[], b"");
    assert_eq!((r.status, r.text().as_str()), (418, "teapot from moto"));
    assert_eq!(r.header("x-moto"), Some("1"));
    // Asynchronous invocations are Event invokes there too.
    let r = call(
        "POST",
        &format!("http://127.0.0.1:{}/job", ports[1]),
        &[("content-type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 202, "{}", r.text());
}
