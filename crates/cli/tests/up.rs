//! `lambdamesh up` with the real parts (issue 16): the greeter example as the README runs it
//! (server, platform, Python services with real Envoy sidecars, terminating and mesh gateways,
//! the registrator as a function fed by CloudTrail-shaped events, greeter-lambda with the
//! extension layer), on free ports (`--free-ports`) with a state directory of the test's own.
//!
//! - the split follows the splitter's weights, every Lambda greeting carries a name and a
//!   greeting from the `name` and `greeting` services (reached only through the mesh), and a
//!   `lambdamesh config write` of new weights shows within seconds;
//! - deleting the intention greeter-lambda → name makes the Lambda answers fail with the
//!   sidecar's refusal in them while the container greeter keeps answering;
//! - `down` leaves no process of the run and no listener on its ports;
//! - `kill -9` of `up`: its parts die with it, the next `up` starts, reusing the state;
//! - a part that fails is reported with its log lines and nothing is left running;
//! - a bad topology is refused before anything starts, each problem with file and line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::mesh::{get, python, wait_until};
use common::up::{Up, endpoint_ports, lambdamesh, listening, run_processes};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

const NAMES: &[&str] = &[
    "Jennifer", "Mary", "Ahmed", "Yuki", "Olga", "Kwame", "Lucia", "Wei",
];
const GREETINGS: &[&str] = &[
    "Hi",
    "Hello",
    "Hola",
    "Bonjour",
    "Hallo",
    "Ciao",
    "Konnichiwa",
    "Namaste",
];

/// One answer of `ingress`, classified.
#[derive(Debug, PartialEq)]
enum Answer {
    Container,
    /// A Lambda greeting: (greeting, greeting host, name, name host).
    Lambda(String, String, String, String),
    Failed(String),
}

fn ask(ingress: &str) -> Answer {
    let (status, body) = get(ingress);
    let body = body.trim().to_owned();
    if status != 200 {
        return Answer::Failed(format!("{status} {body}"));
    }
    // `From <ingress host>: <greeter's answer>`.
    let Some((_, inner)) = body.split_once(": ") else {
        return Answer::Failed(body);
    };
    if let Some(l) = inner
        .strip_prefix("\"From lambda: ")
        .and_then(|s| s.strip_suffix('"'))
    {
        // `<greeting> (<host>) <name> (<host>)`
        let parts: Vec<&str> = l.split(['(', ')']).map(str::trim).collect();
        if parts.len() >= 4 {
            let g = parts[0].to_owned();
            let gh = parts[1].to_owned();
            let n = parts[2].to_owned();
            let nh = parts[3].to_owned();
            return Answer::Lambda(g, gh, n, nh);
        }
        return Answer::Failed(body);
    }
    if inner.starts_with("From ") && !inner.contains("error") {
        return Answer::Container;
    }
    Answer::Failed(body)
}

fn write_splitter(dir: &Path, greeter: u32, lambda: u32) -> PathBuf {
    let f = dir.join(format!("splitter-{greeter}-{lambda}.hcl"));
    std::fs::write(
        &f,
        format!(
            "Kind = \"service-splitter\"\nName = \"greeter\"\nSplits = [\n  {{ Weight = {greeter}, Service = \"greeter\" }},\n  {{ Weight = {lambda}, Service = \"greeter-lambda\" }},\n]\n"
        ),
    )
    .unwrap();
    f
}

fn cli(http: &str, args: &[&str]) {
    let o = lambdamesh(args)
        .env("CONSUL_HTTP_ADDR", http)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Waits (30 s) until 20 consecutive answers satisfy `ok`; a disagreeing answer starts the run
/// again (connections opened before a change keep the old filter chain while Envoy drains them,
/// at most 2 s with `connect envoy`'s flags).
fn settle(ingress: &str, what: &str, ok: impl Fn(&Answer) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut run = 0;
    let mut last = None;
    while run < 20 {
        assert!(
            Instant::now() < deadline,
            "{what}: no run of 20 in 30 s; last {last:?}"
        );
        let a = ask(ingress);
        if ok(&a) {
            run += 1;
        } else {
            run = 0;
            last = Some(a);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn greeter_example_splits_calls_through_the_mesh_and_follows_live_changes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut up = Up::start(&examples().join("greeter"), &state);
    let record = up.ready(240);
    let eps = &record["endpoints"];
    let ingress = format!("{}/", eps["ingress"].as_str().unwrap());
    let http = eps["http"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let host_of = |svc: &str| {
        format!(
            "{}:{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim(),
            eps[svc].as_str().unwrap().rsplit(':').next().unwrap()
        )
    };
    let (name_host, greeting_host) = (host_of("name"), host_of("greeting"));

    // 2000 answers at 50/50: each share within ±5 points of 50 %. At 400 requests that bound
    // is only 2 σ (σ = 2.5 points; about 1 run in 20 would fail on chance alone); at 2000 it
    // is 4.5 σ (σ = 1.1 points; about 1 in 150 000).
    let total = 2000;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let answers: Vec<Answer> = (0..total).map(|_| ask(&ingress)).collect();
    for a in &answers {
        match a {
            Answer::Container => *counts.entry("container").or_default() += 1,
            Answer::Lambda(g, gh, n, nh) => {
                assert!(GREETINGS.contains(&g.as_str()), "{a:?}");
                assert!(NAMES.contains(&n.as_str()), "{a:?}");
                assert_eq!(
                    gh, &greeting_host,
                    "greeting fetched from the greeting service"
                );
                assert_eq!(nh, &name_host, "name fetched from the name service");
                *counts.entry("lambda").or_default() += 1;
            }
            Answer::Failed(f) => panic!("a request failed: {f}"),
        }
    }
    for kind in ["container", "lambda"] {
        let share = counts.get(kind).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
        assert!(
            (45.0..=55.0).contains(&share),
            "{kind}: {share:.1} % of {total} ({counts:?})"
        );
    }

    // A weight change with `lambdamesh config write` shows within seconds.
    cli(
        &http,
        &[
            "config",
            "write",
            write_splitter(dir.path(), 0, 100).to_str().unwrap(),
        ],
    );
    settle(&ingress, "every answer from Lambda", |a| {
        matches!(a, Answer::Lambda(..))
    });
    cli(
        &http,
        &[
            "config",
            "write",
            write_splitter(dir.path(), 100, 0).to_str().unwrap(),
        ],
    );
    settle(&ingress, "every answer from the container", |a| {
        *a == Answer::Container
    });
    cli(
        &http,
        &[
            "config",
            "write",
            write_splitter(dir.path(), 50, 50).to_str().unwrap(),
        ],
    );

    // greeter-lambda → name denied (the `*` → `*` deny applies): the Lambda answers fail and
    // say why; the container greeter keeps answering.
    cli(&http, &["intention", "delete", "greeter-lambda", "name"]);
    settle(
        &ingress,
        "Lambda answers fail with the refusal",
        |a| match a {
            Answer::Container => true,
            Answer::Failed(f) => f.starts_with("502 ") && f.contains("name: HTTP 403"),
            Answer::Lambda(..) => false,
        },
    );
    let mut container = 0;
    let mut failed = 0;
    for _ in 0..60 {
        match ask(&ingress) {
            Answer::Container => container += 1,
            Answer::Failed(f) => {
                assert!(
                    f.contains("greeter failed") && f.contains("name: HTTP 403"),
                    "{f}"
                );
                failed += 1;
            }
            a => panic!("a Lambda greeting without its intention: {a:?}"),
        }
    }
    assert!(
        container > 10 && failed > 10,
        "container {container}, failed {failed}"
    );

    // `down`: no process of the run, no listener on its ports.
    let ports = endpoint_ports(&record);
    up.down();
    assert_eq!(
        run_processes(&state),
        Vec::<u32>::new(),
        "processes left after down"
    );
    for p in ports {
        assert!(!listening(p), "port {p} still listening after down");
    }
}

#[test]
fn kill9_of_up_takes_its_parts_and_the_next_up_reuses_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = examples().join("authentication");
    let mut up = Up::start(&topo, &state);
    let record = up.ready(180);
    let http = record["endpoints"]["http"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let url = format!(
        "{}/login?user=ann",
        record["endpoints"]["api → authentication"]
            .as_str()
            .unwrap()
    );
    wait_until(30, "api reaches authentication", || get(&url).0 == 200);
    // State written by hand in this run.
    cli(
        &http,
        &[
            "config",
            "write",
            examples()
                .join("dev/greeter-defaults.hcl")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(!run_processes(&state).is_empty());

    up.run.child.kill().unwrap(); // SIGKILL
    up.run.child.wait().unwrap();
    // The parts got SIGTERM from the kernel when `up` died.
    wait_until(30, "the parts die with up", || {
        run_processes(&state).is_empty()
    });
    let o = lambdamesh(&["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "status after kill -9");

    // `up` again: starts (cleaning the dead run's record), and the state is the same.
    let mut again = Up::start(&topo, &state);
    let record = again.ready(180);
    let http = record["endpoints"]["http"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let (status, body) = get(&format!("http://{http}/v1/config/service-defaults/greeter"));
    assert_eq!(
        status, 200,
        "the entry written in the first run is still there: {body}"
    );
    let url = format!(
        "{}/login?user=ann",
        record["endpoints"]["api → authentication"]
            .as_str()
            .unwrap()
    );
    wait_until(60, "api reaches authentication again", || {
        get(&url).0 == 200
    });
    // A second `up` of the same state is refused while this one runs.
    let o = lambdamesh(&["up", "--state-dir"])
        .arg(&state)
        .arg(&topo)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already up"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    again.down();
    assert_eq!(run_processes(&state), Vec::<u32>::new());
    // `down --purge` removes the state.
    let o = lambdamesh(&["down", "--purge", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!state.exists());
}

#[test]
fn a_failing_part_is_reported_with_its_log_and_everything_stops() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lambdamesh.hcl");
    std::fs::write(
        &file,
        r#"
service "fine" {
  command = ["sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 $PORT"]
  port    = 9100
}
service "broken" {
  command    = ["sh", "-c", "echo reading config; echo 'boom: cannot open /etc/broken.conf' >&2; exit 3"]
  port       = 9101
  depends_on = ["fine"]
}
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut up = Up::start(&file, &state);
    let st = up.run.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = up.output();
    assert_eq!(st.code(), Some(1), "{out}");
    assert!(
        out.contains("service broken failed: exited (exit status: 3)"),
        "{out}"
    );
    assert!(out.contains("boom: cannot open /etc/broken.conf"), "{out}");
    assert!(out.contains("reading config"), "{out}");
    assert_eq!(run_processes(&state), Vec::<u32>::new(), "{out}");
}

#[test]
fn a_bad_topology_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.hcl");
    std::fs::write(
        &file,
        "service \"a\" {\n  command = [\"no-such-command-xyz\"]\n  port = 9000\n  sidecar { upstreams = { b = 9000 } }\n}\n",
    )
    .unwrap();
    let o = lambdamesh(&["up", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let f = file.display();
    assert!(
        err.contains(&format!(
            "{f}:4: service \"a\": upstream \"b\" is not a mesh service here"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}:4: port 9000: service \"a\"'s upstream \"b\" clashes with service \"a\" (line 1)"
        )),
        "{err}"
    );
    assert!(err.contains("nothing was started"), "{err}");
}

/// The function's tags as boto3 (an independent AWS client) reads them from the platform.
fn function_tags(lambda_url: &str, name: &str) -> Value {
    let script = format!(
        "import boto3, json\n\
         c = boto3.client('lambda', endpoint_url='{lambda_url}', region_name='us-east-1',\n\
             aws_access_key_id='test', aws_secret_access_key='test')\n\
         arn = c.get_function(FunctionName='{name}')['Configuration']['FunctionArn']\n\
         print(json.dumps(c.list_tags(Resource=arn)['Tags']))\n"
    );
    let o = Command::new(python())
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn up_again_makes_a_kept_functions_tags_the_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("fn")).unwrap();
    std::fs::write(
        dir.path().join("fn/app.py"),
        "def handler(event, context):\n    return 'ok'\n",
    )
    .unwrap();
    let topology = |tags: &str| {
        format!(
            "platform {{}}\nfunction \"tagged\" {{\n  code = \"fn\"\n  runtime = \"python3.11\"\n  handler = \"app.handler\"\n  tags = {{ {tags} }}\n}}\n"
        )
    };
    let file = dir.path().join("lambdamesh.hcl");
    let state = dir.path().join("state");
    std::fs::write(&file, topology("team = \"a\", stale = \"yes\"")).unwrap();
    let mut up = Up::start(&file, &state);
    let record = up.ready(120);
    let lambda = record["endpoints"]["lambda"].as_str().unwrap().to_owned();
    assert_eq!(
        function_tags(&lambda, "tagged"),
        serde_json::json!({"team": "a", "stale": "yes"})
    );
    up.down();

    // The file drops `stale` and changes `team`: the kept function follows it exactly.
    std::fs::write(&file, topology("team = \"b\"")).unwrap();
    let mut up = Up::start(&file, &state);
    let record = up.ready(120);
    let lambda = record["endpoints"]["lambda"].as_str().unwrap().to_owned();
    assert_eq!(
        function_tags(&lambda, "tagged"),
        serde_json::json!({"team": "b"})
    );
    up.down();
}
