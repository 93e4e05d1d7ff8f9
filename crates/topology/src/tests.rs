#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use crate::{GatewayKind, Health, PartKind, parse};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn problems(text: &str) -> Vec<String> {
    match parse(Path::new("/x/top.hcl"), text) {
        Ok(_) => Vec::new(),
        Err(p) => p.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_greeter_example_parses_and_orders_its_parts() {
    let t = crate::load(&examples().join("greeter")).unwrap();
    assert_eq!(t.primary().server.http.to_string(), "127.0.0.1:8500");
    assert_eq!(t.primary().services.len(), 4);
    assert_eq!(t.primary().functions[0].name, "greeter-lambda");
    assert!(t.primary().functions[0].mesh_enabled());
    assert_eq!(
        t.primary().functions[0].extension.as_ref().unwrap().upstreams.len(),
        2
    );
    assert_eq!(t.primary().gateways[1].kind, GatewayKind::Mesh);
    assert_eq!(t.primary().config_entries.len(), 2);
    assert_eq!(t.primary().config_entries[1].label, "service-splitter/greeter");
    assert_eq!(t.primary().intentions.len(), 7);
    assert!(!t.primary().intentions[6].allow);
    assert_eq!(t.primary().services[0].health, Health::Http("/health".into()));
    let parts = t.parts();
    let pos = |k: PartKind| parts.iter().position(|p| p.kind == k).unwrap();
    // Each part after what it needs.
    for (i, p) in parts.iter().enumerate() {
        for n in &p.needs {
            assert!(pos(n.kind) < i, "{} before what it needs", p.name);
        }
    }
    assert_eq!(parts.last().unwrap().kind, PartKind::ConfigEntries);
    assert!(pos(PartKind::Registrator) < pos(PartKind::Function(0)));
    assert!(pos(PartKind::Gateway(1)) < pos(PartKind::Function(0)));
}

#[test]
fn the_authentication_example_parses() {
    let t = crate::load(&examples().join("authentication")).unwrap();
    assert_eq!(t.primary().functions[0].name, "authentication");
    assert!(t.primary().services[0].command.is_empty(), "api is registered only");
}

#[test]
fn json_is_accepted_in_hcls_json_form() {
    let text = r#"{
  "server": {"http_addr": "127.0.0.1:18500"},
  "service": {
    "web": {"command": ["sh", "-c", "sleep 1"], "port": 7000, "sidecar": {"upstreams": {"api": 7001}}},
    "api": {"command": ["sh"], "port": 7002, "sidecar": {}}
  },
  "intention": {"web": {"api": {"action": "allow"}}},
  "config_entry": [{"Kind": "service-defaults", "Name": "api", "Protocol": "http"}]
}"#;
    let t = parse(Path::new("/x/t.json"), text).unwrap();
    assert_eq!(t.primary().server.http.port(), 18500);
    assert_eq!(
        t.primary().services[0].sidecar.as_ref().unwrap().upstreams[0].port,
        7001
    );
    assert_eq!(t.primary().intentions[0].destination, "api");
    assert_eq!(t.primary().config_entries[0].label, "service-defaults/api");

    let bad = "{\n  \"service\": {\n    \"web\": {\"port\": \"x\", \"colour\": 1}\n  }\n}";
    let p = problems_at("/x/t.json", bad);
    assert!(
        p.contains(
            &"/x/t.json:3: service \"web\": port must be a whole number, found a string".to_owned()
        ),
        "{p:?}"
    );
    assert!(
        p.contains(&"/x/t.json:3: service \"web\": unknown field \"colour\"".to_owned()),
        "{p:?}"
    );
}

fn problems_at(file: &str, text: &str) -> Vec<String> {
    match parse(Path::new(file), text) {
        Ok(_) => Vec::new(),
        Err(p) => p.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let text = r#"
server {
  http_addr = "nowhere"
}
service "a" {
  command = ["sh"]
  port    = 7000
  colour  = "red"
  depends_on = ["b"]
  sidecar {
    upstreams = { ghost = 7001, b = 7000 }
  }
}
service "b" {
  command = ["sh"]
  port    = 70000
  depends_on = ["a"]
  sidecar {}
}
function "f" {
  runtime = "python3.11"
  handler = "app.handler"
  extension {
    upstreams = { a = 7100 }
  }
}
gateway "g" {
  kind = "ingress"
  port = 7200
}
intention "a" "nobody" {}
config_entry {
  Kind = "service-splitter"
  Name = "a"
  Splits = [{ Weight = 60, Service = "a" }]
}
wat {}
"#;
    let p = problems(text);
    let want = [
        "/x/top.hcl:3: server: http_addr \"nowhere\" is not an IP:port address",
        "/x/top.hcl:8: service \"a\": unknown field \"colour\"",
        "/x/top.hcl:11: service \"a\": upstream \"ghost\" is not a mesh service here",
        "/x/top.hcl:11: port 7000: service \"a\"'s upstream \"b\" clashes with service \"a\" (line 5)",
        "/x/top.hcl:16: service \"b\": port 70000 is out of range 1..=65535",
        "/x/top.hcl:20: function \"f\": code is required",
        "/x/top.hcl:20: function \"f\": a mesh function needs a registrator block",
        "/x/top.hcl:23: function \"f\": the extension needs a gateway with kind = \"mesh\"",
        "/x/top.hcl:28: gateway \"g\": kind must be \"terminating\" or \"mesh\", found \"ingress\"",
        "/x/top.hcl:31: intention \"a\" → \"nobody\": \"nobody\" is not a mesh service here",
        "/x/top.hcl:32: config_entry: ",
        "/x/top.hcl:37: topology: unknown block \"wat\"",
        "dependency cycle: a → b → a",
    ];
    for w in want {
        assert!(
            p.iter().any(|m| m.starts_with(w) || m.contains(w)),
            "missing {w:?} in {p:#?}"
        );
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let p = problems("service \"a\" {\n  port = 1\n  command = [\"sh\"\n}\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("/x/top.hcl:"), "{p:?}");
    let p = problems_at("/x/t.json", "{\n \"service\": {\n  \"a\": [1,}\n}");
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("/x/t.json:3:"), "{p:?}");
}

#[test]
fn expressions_are_refused_not_evaluated() {
    let p = problems("service \"a\" {\n  command = [\"sh\"]\n  port = var.port\n}\n");
    assert!(
        p.iter().any(
            |m| m.contains(":3: service \"a\": port must be a whole number, found a traversal")
        ),
        "{p:?}"
    );
}

#[test]
fn remapped_ports_stay_distinct() {
    let mut t = crate::load(&examples().join("greeter")).unwrap();
    let mut next = 30000u16;
    t.remap_ports(|| {
        next += 1;
        next
    });
    let ports = crate::probe::ports(&t);
    let mut seen: Vec<u16> = ports.iter().map(|(a, _, _)| a.port()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), ports.len());
    assert!(seen.iter().all(|p| *p > 30000));
}

#[test]
fn a_listener_already_open_is_a_clash() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.hcl");
    let text = format!(
        "server {{\n  http_addr = \"127.0.0.1:{port}\"\n  grpc_addr = \"127.0.0.1:0\"\n}}\nplatform {{\n  addr = \"127.0.0.1:0\"\n}}\nservice \"a\" {{\n  command = [\"no-such-program-here\"]\n  port = 1\n}}\n"
    );
    let t = parse(&file, &text).unwrap();
    let p = crate::probe::check(&t).unwrap_err().problems;
    let msgs: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains(":1: port") && m.contains("the server's HTTP API cannot listen")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains(":8: service \"a\": command \"no-such-program-here\" not found")),
        "{msgs:?}"
    );
}
