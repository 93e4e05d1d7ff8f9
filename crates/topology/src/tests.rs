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
        t.primary().functions[0]
            .extension
            .as_ref()
            .unwrap()
            .upstreams
            .len(),
        2
    );
    assert_eq!(t.primary().gateways[1].kind, GatewayKind::Mesh);
    assert_eq!(t.primary().config_entries.len(), 2);
    assert_eq!(
        t.primary().config_entries[1].label,
        "service-splitter/greeter"
    );
    assert_eq!(t.primary().intentions.len(), 7);
    assert!(!t.primary().intentions[6].allow);
    assert_eq!(
        t.primary().services[0].health,
        Health::Http("/health".into())
    );
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
    assert!(
        t.primary().services[0].command.is_empty(),
        "api is registered only"
    );
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

#[test]
fn the_multi_dc_example_parses_into_two_datacenters_joined_first() {
    let t = crate::load(&examples().join("multi-dc")).unwrap();
    assert!(t.federated);
    let names: Vec<&str> = t.datacenters.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["dc1", "dc2"]);
    assert_eq!(t.primary().name, "dc1");
    let (dc1, dc2) = (&t.datacenters[0], &t.datacenters[1]);
    assert_eq!(dc2.server.http.to_string(), "127.0.0.1:8510");
    assert_eq!(dc2.platform.region, "us-west-2");
    assert_eq!(dc1.platform.region, "us-east-1");
    let web = dc1.services.iter().find(|s| s.name == "web").unwrap();
    let ups = &web.sidecar.as_ref().unwrap().upstreams;
    assert_eq!(
        ups.iter()
            .map(|u| (u.name.as_str(), u.datacenter.as_deref(), u.port))
            .collect::<Vec<_>>(),
        [("users", None, 9201), ("authentication", Some("dc2"), 9203)]
    );
    let profile = dc2.functions.iter().find(|f| f.name == "profile").unwrap();
    let ext = &profile.extension.as_ref().unwrap().upstreams[0];
    assert_eq!(ext.label(), "users:dc1");
    assert_eq!(dc1.config_entries[0].label, "proxy-defaults/global");
    assert_eq!(
        dc1.config_entries[0].json["MeshGateway"]["Mode"],
        serde_json::json!("local")
    );

    // The order: dc1's server and mesh gateway, dc2's server (after dc1's gateway) and mesh
    // gateway, then each datacenter's other parts; names carry the datacenter.
    let parts = t.parts();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        [
            "dc1/server",
            "dc1/gateway mesh-gateway",
            "dc2/server",
            "dc2/gateway mesh-gateway"
        ]
    );
    assert_eq!(
        parts[2].needs,
        [crate::PartId {
            dc: 0,
            kind: PartKind::Gateway(0)
        }]
    );
    let pos = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(pos("dc1/platform") < pos("dc2/platform"));
    assert!(pos("dc2/registrator") < pos("dc2/function profile"));
    assert!(pos("dc2/function authentication") < pos("dc2/config entries"));
    for (i, p) in parts.iter().enumerate() {
        for n in &p.needs {
            let at = parts.iter().position(|q| q.id() == *n).unwrap();
            assert!(at < i, "{} before what it needs", p.name);
        }
    }
    assert_eq!(parts.len(), names.len());
}

#[test]
fn the_primary_is_the_first_block_unless_named() {
    let dcs = r#"
datacenter "east" {
  gateway "m" {
    kind = "mesh"
    port = 7001
  }
}
datacenter "west" {
  server {
    http_addr = "127.0.0.1:7510"
    grpc_addr = "127.0.0.1:7512"
  }
  platform { addr = "127.0.0.1:7511" }
  gateway "m" {
    kind = "mesh"
    port = 7002
  }
}
"#;
    let t = parse(Path::new("/x/t.hcl"), dcs).unwrap();
    assert_eq!(t.primary().name, "east");
    let t = parse(
        Path::new("/x/t.hcl"),
        &format!("primary_datacenter = \"west\"\n{dcs}"),
    )
    .unwrap();
    assert_eq!(t.primary().name, "west");
    assert_eq!(t.parts()[0].name, "west/server");
    assert_eq!(t.scoped(0, "sidecar api"), "east/sidecar api");

    // The same in JSON, HCL's JSON form.
    let json = r#"{
  "primary_datacenter": "west",
  "datacenter": {
    "east": {"gateway": {"m": {"kind": "mesh", "port": 7001}},
             "service": {"a": {"port": 7003, "sidecar": {"upstreams": {"b:west": 7004}}}}},
    "west": {"server": {"http_addr": "127.0.0.1:7510", "grpc_addr": "127.0.0.1:7512", "server_port": 7513},
             "platform": {"addr": "127.0.0.1:7511"},
             "gateway": {"m": {"kind": "mesh", "port": 7002}},
             "service": {"b": {"port": 7005, "sidecar": {}}}}
  }
}"#;
    let t = parse(Path::new("/x/t.json"), json).unwrap();
    assert_eq!(t.primary, 1);
    assert_eq!(t.datacenters[1].server.server_port, Some(7513));
    let u = &t.datacenters[0].services[0]
        .sidecar
        .as_ref()
        .unwrap()
        .upstreams[0];
    assert_eq!(
        (u.name.as_str(), u.datacenter.as_deref()),
        ("b", Some("west"))
    );
}

#[test]
fn a_file_of_one_datacenter_is_unchanged() {
    let t = crate::load(&examples().join("authentication")).unwrap();
    assert!(!t.federated);
    assert_eq!(t.datacenters.len(), 1);
    assert_eq!(t.primary().name, "dc1");
    assert_eq!(t.parts()[0].name, "server");
    assert_eq!(t.scoped(0, "sidecar api"), "sidecar api");
}

#[test]
fn every_multi_dc_problem_is_reported_before_anything_starts() {
    let text = r#"primary_datacenter = "dc1"

service "stray" {
  port = 7000
}
datacenter "dc1" {
  service "web" {
    command = ["sh"]
    port    = 7100
    sidecar {
      upstreams = { "auth:dc9" = 7101, "auth:dc2" = 7102, "ghost:dc2" = 7103, "a:b:c" = 7104 }
    }
  }
  gateway "m" {
    kind = "mesh"
    port = 7105
  }
  config_entry {
    Kind = "proxy-defaults"
    Name = "global"
  }
  intention "web" "auth" {}
}
datacenter "dc2" {
  service "auth" {
    port = 7100
    sidecar {}
  }
  config_entry {
    Kind = "proxy-defaults"
    Name = "global"
  }
  intention "web" "auth" {}
  intention "web" "nobody" {}
}
datacenter "dc2" {
}
datacenter "DC3" {
  server {
    http_addr   = "127.0.0.1:7300"
    grpc_addr   = "127.0.0.1:7301"
    server_port = 7300
  }
  platform { addr = "127.0.0.1:7302" }
  gateway "m" {
    kind = "mesh"
    port = 7303
  }
}
"#;
    let p = problems(text);
    let want = [
        "/x/top.hcl:3: service block outside a datacenter block",
        "/x/top.hcl:11: service \"web\" sidecar: upstream \"a:b:c\" must be NAME or NAME:DATACENTER",
        "/x/top.hcl:11: service \"web\": upstream \"auth:dc9\": there is no datacenter \"dc9\" in this file (dc1, dc2, DC3)",
        "/x/top.hcl:11: service \"web\": upstream \"ghost:dc2\" is not a mesh service in datacenter \"dc2\"",
        // dc2's server and platform are the defaults, as dc1's.
        "/x/top.hcl:24: port 8500: the server's HTTP API in dc2 clashes with the server's HTTP API in dc1 (line 6)",
        "/x/top.hcl:24: port 9001: the platform in dc2 clashes with the platform in dc1 (line 6)",
        "/x/top.hcl:24: datacenter \"dc2\" has no gateway with kind = \"mesh\"",
        "/x/top.hcl:25: port 7100: service \"auth\" in dc2 clashes with service \"web\" in dc1 (line 7)",
        "/x/top.hcl:29: config entry proxy-defaults/global is also declared in datacenter \"dc1\" (line 18)",
        "/x/top.hcl:33: intention \"web\" → \"auth\" is also declared in datacenter \"dc1\" (line 22)",
        "/x/top.hcl:34: intention \"web\" → \"nobody\": \"nobody\" is not a mesh service in any datacenter",
        "/x/top.hcl:36: datacenter \"dc2\" is declared twice (first on line 24)",
        "/x/top.hcl:38: datacenter \"DC3\": invalid datacenter name \"DC3\"",
        "/x/top.hcl:39: port 7300: the server's server_port in DC3 clashes with the server's HTTP API in DC3",
    ];
    for w in want {
        assert!(
            p.iter().any(|m| m.starts_with(w)),
            "missing {w:?} in {p:#?}"
        );
    }
    // A cross-datacenter upstream to a mesh service there is fine; so is the intention naming
    // services of two datacenters.
    assert!(
        !p.iter().any(|m| m.contains("\"auth:dc2\" is not")),
        "{p:#?}"
    );
    assert!(
        !p.iter().any(|m| m.contains("\"web\" → \"auth\": \"auth\"")),
        "{p:#?}"
    );
}

#[test]
fn one_primary_only() {
    // HCL refuses a second attribute of the same name itself; JSON reads both, and the second
    // is named.
    let p = problems("primary_datacenter = \"dc1\"\nprimary_datacenter = \"dc2\"\n");
    assert!(p.len() == 1 && p[0].starts_with("/x/top.hcl:2:"), "{p:?}");
    let p = problems_at(
        "/x/t.json",
        "{\n \"primary_datacenter\": \"dc1\",\n \"primary_datacenter\": \"dc2\",\n \"datacenter\": {\"dc1\": {}, \"dc2\": {}}\n}",
    );
    assert!(
        p.iter()
            .any(|m| m == "/x/t.json:3: topology: primary_datacenter is set twice"),
        "{p:#?}"
    );
}

#[test]
fn federation_settings_need_datacenter_blocks() {
    let p = problems(
        "primary_datacenter = \"dc1\"\nserver {\n  server_port = 8300\n}\nservice \"a\" {\n  port = 7000\n  sidecar { upstreams = { \"b:dc2\" = 7001 } }\n}\n",
    );
    let want = [
        "/x/top.hcl:1: topology: primary_datacenter needs datacenter \"NAME\" { ... } blocks",
        "/x/top.hcl:2: server: server_port is for files with datacenter blocks",
        "/x/top.hcl:7: service \"a\": upstream \"b:dc2\": there is no datacenter \"dc2\" in this file (dc1)",
    ];
    for w in want {
        assert!(
            p.iter().any(|m| m.starts_with(w)),
            "missing {w:?} in {p:#?}"
        );
    }
    let p = problems(
        "primary_datacenter = \"dc9\"\ndatacenter \"dc1\" {\n  gateway \"m\" {\n    kind = \"mesh\"\n    port = 7001\n  }\n}\n",
    );
    assert!(
        p.iter().any(|m| m.starts_with(
            "/x/top.hcl:1: topology: primary_datacenter \"dc9\" is not a datacenter here (dc1)"
        )),
        "{p:#?}"
    );
}

#[test]
fn a_syntax_error_names_the_problem_not_the_source_line() {
    // Two attributes on one line of a block are not HCL: a block that fits on one line holds
    // one attribute.
    let p = problems("gateway \"t\" { kind = \"terminating\", port = 8443 }\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("/x/top.hcl:1: "), "{p:?}");
    assert!(
        !p[0].contains("gateway \"t\""),
        "the message, not the line: {p:?}"
    );
}
