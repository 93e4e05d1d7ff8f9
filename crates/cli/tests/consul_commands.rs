//! The Consul CLI commands people type, against a real server: `intention list|get|match`,
//! `catalog nodes`, `members`, `config delete -kind -name`, `acl token create -policy-name`,
//! `acl policy create -rules @FILE`, with Consul's flags, output and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use common::{Proc, lm, stderr, stdout};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{} {}", stdout(o), stderr(o));
    stdout(o)
}

#[test]
fn intention_list_get_and_match() {
    let server = Proc::start(&["agent", "-dev"]);
    let h = &server.http;
    // No intentions yet: Consul's message and exit code 2.
    let o = lm(h, &["intention", "list"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).trim(), "There are no intentions.");

    ok(&lm(h, &["intention", "create", "-deny", "*", "web"]));
    ok(&lm(h, &["intention", "create", "-allow", "api", "web"]));
    ok(&lm(h, &["intention", "create", "-allow", "api", "db"]));

    let list = ok(&lm(h, &["intention", "list"]));
    let lines: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["ID", "Source", "Action", "Destination", "Precedence"]
    );
    // Intentions kept as service-intentions entries have no ID (as in Consul ≥ 1.9): the ID
    // column may be blank, so rows are read from their last four columns.
    let rows: Vec<(&str, &str, &str, &str)> = lines[1..]
        .iter()
        .map(|r| {
            let n = r.len();
            (r[n - 4], r[n - 3], r[n - 2], r[n - 1])
        })
        .collect();
    for want in [
        ("api", "allow", "web", "9"),
        ("*", "deny", "web", "8"),
        ("api", "allow", "db", "9"),
    ] {
        assert!(rows.contains(&want), "{want:?} in {list}");
    }

    // get SRC DST: Consul's labelled lines.
    let get = ok(&lm(h, &["intention", "get", "api", "web"]));
    let field = |out: &str, label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{label} in {out}"))
    };
    assert_eq!(field(&get, "Source:"), "api");
    assert_eq!(field(&get, "Destination:"), "web");
    assert_eq!(field(&get, "Action:"), "allow");
    // get ID: these intentions have none, so an ID names nothing.
    let o = lm(
        h,
        &["intention", "get", "0b3c5d2e-0000-4000-8000-000000000000"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no intention has ID"), "{}", stderr(&o));
    let o = lm(h, &["intention", "get", "nobody", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));

    // match: by destination (the default) in evaluation order; -source by source.
    let m = ok(&lm(h, &["intention", "match", "web"]));
    assert_eq!(
        m.lines().collect::<Vec<_>>(),
        ["api => web (allow)", "* => web (deny)"]
    );
    let m = ok(&lm(h, &["intention", "match", "-source", "api"]));
    let mut got: Vec<&str> = m.lines().collect();
    got.sort_unstable();
    // The wildcard source matches `api` too, as in Consul.
    assert_eq!(
        got,
        ["* => web (deny)", "api => db (allow)", "api => web (allow)"]
    );
    let o = lm(h, &["intention", "match", "-source", "-destination", "api"]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "only one of -source or -destination"
    );
}

#[test]
fn catalog_nodes_members_and_config_delete() {
    let server = Proc::start(&["agent", "-dev"]);
    let h = &server.http;
    let nodes = ok(&lm(h, &["catalog", "nodes"]));
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["Node", "ID", "Address", "DC"]);
    assert_eq!(lines.len(), 2, "{nodes}");
    assert_eq!(lines[1][3], "dc1");
    // The short ID is the first group of the node's UUID.
    assert_eq!(lines[1][1].len(), 8, "{nodes}");
    let detailed = ok(&lm(h, &["catalog", "nodes", "-detailed"]));
    assert!(
        detailed.starts_with("Node") && detailed.contains("TaggedAddresses"),
        "{detailed}"
    );
    assert_eq!(
        detailed
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .len(),
        36,
        "the full node ID: {detailed}"
    );
    let o = lm(h, &["catalog", "nodes", "-filter", "Node == \"nope\""]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("No nodes match"), "{}", stderr(&o));

    let members = ok(&lm(h, &["members"]));
    let lines: Vec<Vec<&str>> = members
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment"
        ]
    );
    assert_eq!(
        lines[1][0],
        nodes
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    );
    assert_eq!(&lines[1][2..4], ["alive", "server"]);
    assert_eq!(lines[1][6], "dc1");

    let entry = tempfile::Builder::new().suffix(".hcl").tempfile().unwrap();
    std::fs::write(
        entry.path(),
        "Kind = \"service-defaults\"\nName = \"web\"\nProtocol = \"http\"\n",
    )
    .unwrap();
    ok(&lm(h, &["config", "write", entry.path().to_str().unwrap()]));
    let out = ok(&lm(
        h,
        &[
            "config",
            "delete",
            "-kind",
            "service-defaults",
            "-name",
            "web",
        ],
    ));
    assert_eq!(out.trim(), "Config entry deleted: service-defaults/web");
    let o = lm(
        h,
        &[
            "config",
            "read",
            "-kind",
            "service-defaults",
            "-name",
            "web",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn acl_policy_create_from_a_file_and_token_create_by_policy_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("acl.hcl");
    std::fs::write(
        &cfg,
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n",
    )
    .unwrap();
    let server = Proc::start(&[
        "server",
        "-data-dir",
        dir.path().join("data").to_str().unwrap(),
        "-config-file",
        cfg.to_str().unwrap(),
    ]);
    let h = &server.http;
    let boot = ok(&lm(h, &["acl", "bootstrap"]));
    let secret = boot
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .unwrap()
        .trim()
        .to_owned();
    let with_token = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .env("CONSUL_HTTP_ADDR", h)
            .env("CONSUL_HTTP_TOKEN", &secret)
            .output()
            .unwrap()
    };

    let rules = dir.path().join("web.hcl");
    std::fs::write(
        &rules,
        "service \"web\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"read\" }\n",
    )
    .unwrap();
    let out = ok(&with_token(&[
        "acl",
        "policy",
        "create",
        "-name",
        "web-write",
        "-description",
        "registers web",
        "-rules",
        &format!("@{}", rules.display()),
    ]));
    let field = |out: &str, label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{label} in {out}"))
    };
    assert_eq!(field(&out, "Name:"), "web-write");
    assert_eq!(field(&out, "Description:"), "registers web");
    assert_eq!(field(&out, "ID:").len(), 36, "{out}");
    assert!(
        out.contains("Rules:\nservice \"web\" { policy = \"write\" }"),
        "{out}"
    );
    // A missing rules file is named.
    let o = with_token(&[
        "acl",
        "policy",
        "create",
        "-name",
        "x",
        "-rules",
        "@/nonexistent.hcl",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Error loading rules") && stderr(&o).contains("/nonexistent.hcl"),
        "{}",
        stderr(&o)
    );

    let out = ok(&with_token(&[
        "acl",
        "token",
        "create",
        "-description",
        "web's token",
        "-policy-name",
        "web-write",
    ]));
    assert_eq!(field(&out, "Description:"), "web's token");
    assert!(out.contains("Policies:"), "{out}");
    assert!(out.contains(" - web-write"), "{out}");
    let web_token = field(&out, "SecretID:");
    // The new token can do what its policy grants, and no more.
    let register = |token: &str, name: &str| {
        let f = dir.path().join(format!("{name}.json"));
        std::fs::write(
            &f,
            format!(r#"{{"Service": {{"Name": "{name}", "Port": 80}}}}"#),
        )
        .unwrap();
        std::process::Command::new(common::BIN)
            .args(["services", "register", f.to_str().unwrap()])
            .env("CONSUL_HTTP_ADDR", h)
            .env("CONSUL_HTTP_TOKEN", token)
            .output()
            .unwrap()
    };
    assert!(register(&web_token, "web").status.success());
    let o = register(&web_token, "db");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));

    // No policy at all: Consul's refusal, before any request.
    let o = with_token(&["acl", "token", "create"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("-policy-name"), "{}", stderr(&o));
}
