use super::*;

fn rules(text: &str) -> Rules {
    parse_rules(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn authz(texts: &[&str], default_allow: bool) -> Authorizer {
    let rs: Vec<Rules> = texts.iter().map(|t| rules(t)).collect();
    Authorizer::new(&rs, default_allow)
}

#[test]
fn parses_hcl_rules() {
    let r = rules(
        r#"
service "web" {
  policy     = "write"
  intentions = "read"
}
service "db" { policy = "read" }
service_prefix "" { policy = "read" }
node_prefix "" {
  policy = "read"
}
node "n1" { policy = "write" }
agent "a1" { policy = "read" }
agent_prefix "" { policy = "deny" }
key_prefix "app/" { policy = "list" }
session_prefix "" { policy = "write" }
event_prefix "" { policy = "read" }
query_prefix "" { policy = "read" }
operator = "read"
acl      = "write"
keyring  = "deny"
mesh     = "write"
peering  = "read"
"#,
    );
    // Labels come back in name order (the HCL value is a JSON object).
    assert_eq!(
        r.services,
        vec![
            ServiceRule {
                name: "db".into(),
                policy: Access::Read,
                intentions: None
            },
            ServiceRule {
                name: "web".into(),
                policy: Access::Write,
                intentions: Some(Access::Read)
            },
        ]
    );
    assert_eq!(r.service_prefixes[0].name, "");
    assert_eq!(
        r.nodes,
        vec![NameRule {
            name: "n1".into(),
            policy: Access::Write
        }]
    );
    assert_eq!(r.node_prefixes[0].policy, Access::Read);
    assert_eq!(r.agents[0].name, "a1");
    assert_eq!(r.agent_prefixes[0].policy, Access::Deny);
    assert_eq!(r.key_prefixes[0].policy, Access::List);
    assert_eq!(
        r.session_prefixes.len() + r.event_prefixes.len() + r.query_prefixes.len(),
        3
    );
    assert_eq!(
        (r.operator, r.acl, r.keyring, r.mesh, r.peering),
        (
            Some(Access::Read),
            Some(Access::Write),
            Some(Access::Deny),
            Some(Access::Write),
            Some(Access::Read)
        )
    );
}

#[test]
fn parses_hcl1_style_single_line_blocks() {
    let r = rules(r#"service "web" { policy = "read" intentions = "write" }"#);
    assert_eq!(r.services[0].intentions, Some(Access::Write));
}

#[test]
fn parses_json_rules() {
    let r = rules(
        r#"{"service": {"web": {"policy": "write"}, "db": [{"policy": "read"}]},
            "service_prefix": [{"": {"policy": "read", "intentions": "deny"}}],
            "node_prefix": {"": {"policy": "read"}}, "operator": "write", "acl": "read"}"#,
    );
    let mut names: Vec<_> = r
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.policy))
        .collect();
    names.sort();
    assert_eq!(names, vec![("db", Access::Read), ("web", Access::Write)]);
    assert_eq!(r.service_prefixes[0].intentions, Some(Access::Deny));
    assert_eq!(r.node_prefixes.len(), 1);
    assert_eq!(r.operator, Some(Access::Write));
    assert_eq!(r.acl, Some(Access::Read));
    // Repeated HCL blocks for one name are all kept (merged later).
    let r = rules(
        "service \"web\" {\n policy = \"read\"\n}\nservice \"web\" {\n policy = \"deny\"\n}\n",
    );
    assert_eq!(r.services.len(), 2);
    assert_eq!(rules(""), Rules::default());
    assert_eq!(rules("  \n"), Rules::default());
}

#[test]
fn rule_errors_name_the_problem() {
    let cases = [
        (
            r#"servce "web" { policy = "read" }"#,
            "unknown resource \"servce\"",
        ),
        (
            r#"service "web" { policy = "admin" }"#,
            "invalid service policy \"admin\" for \"web\": must be one of \"read\", \"write\" or \"deny\"",
        ),
        (
            r#"service "web" { policy = "list" }"#,
            "invalid service policy \"list\"",
        ),
        (
            r#"service "web" { intentions = "read" }"#,
            "invalid service policy \"\" for \"web\"",
        ),
        (
            r#"service "web" { policy = "read" intentions = "all" }"#,
            "invalid service intentions policy \"all\"",
        ),
        (
            r#"service "web" { policy = "read" color = "red" }"#,
            "unknown field in rule block \"service \\\"web\\\" color\"",
        ),
        (
            r#"key_prefix "" { policy = "sudo" }"#,
            "must be one of \"read\", \"list\", \"write\" or \"deny\"",
        ),
        (r#"operator = "list""#, "invalid operator policy \"list\""),
        (r#"acl = "manage""#, "invalid acl policy \"manage\""),
        (r#"service = "read""#, "service must be a block with a name"),
        ("service \"web\" {", "failed to parse ACL rules"),
        (r#"{"service": 3}"#, "service must be a block with a name"),
        (r#"{"operator": 1}"#, "invalid operator policy \"1\""),
        (r#"{"nodes": {}}"#, "unknown resource \"nodes\""),
        ("{not json", "invalid JSON"),
        // Deep nesting is refused before hcl-rs can backtrack on it.
        (
            "a{w=d+s<ds<{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
            "nested more than 16 levels",
        ),
    ];
    for (text, want) in cases {
        let err = parse_rules(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}\n  want: {want}\n  got:  {err}");
    }
}

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    let a = authz(
        &[r#"
service_prefix "" { policy = "read" }
service_prefix "api" { policy = "write" }
service_prefix "api-internal" { policy = "deny" }
service "api-internal-ok" { policy = "read" }
"#],
        false,
    );
    assert!(a.service_read("web") && !a.service_write("web"));
    assert!(a.service_write("api-gateway"));
    assert!(!a.service_read("api-internal-x"));
    assert!(a.service_read("api-internal-ok") && !a.service_write("api-internal-ok"));
}

#[test]
fn merging_equal_keys_deny_over_write_over_read() {
    // Two policies naming the same service: the stronger level wins regardless of order.
    for order in [
        [
            r#"service "web" { policy = "read" }"#,
            r#"service "web" { policy = "write" }"#,
        ],
        [
            r#"service "web" { policy = "write" }"#,
            r#"service "web" { policy = "read" }"#,
        ],
    ] {
        let a = authz(&order, false);
        assert!(a.service_write("web"), "{order:?}");
    }
    let a = authz(
        &[
            r#"service "web" { policy = "write" }"#,
            r#"service "web" { policy = "deny" }"#,
        ],
        true,
    );
    assert!(!a.service_read("web"));
    let a = authz(&[r#"operator = "read""#, r#"operator = "write""#], false);
    assert!(a.operator_write());
    let a = authz(&[r#"operator = "write""#, r#"operator = "deny""#], true);
    assert!(!a.operator_read());
    // Merging happens per name: a deny on a prefix does not beat an exact write.
    let a = authz(
        &[
            r#"service_prefix "" { policy = "deny" }"#,
            r#"service "web" { policy = "write" }"#,
        ],
        true,
    );
    assert!(a.service_write("web") && !a.service_read("db"));
}

#[test]
fn default_policy_fills_undecided() {
    let none: [&str; 0] = [];
    let allow = authz(&none, true);
    let deny = authz(&none, false);
    for (a, want) in [(&allow, true), (&deny, false)] {
        assert_eq!(a.service_read("x"), want);
        assert_eq!(a.service_write("x"), want);
        assert_eq!(a.node_read("x"), want);
        assert_eq!(a.node_write("x"), want);
        assert_eq!(a.agent_read("x"), want);
        assert_eq!(a.agent_write("x"), want);
        assert_eq!(a.operator_read(), want);
        assert_eq!(a.operator_write(), want);
        assert_eq!(a.intention_read("x"), want);
        assert_eq!(a.intention_write("x"), want);
        // The default policy never grants ACL management (Consul's allowAll).
        assert!(!a.acl_read() && !a.acl_write());
    }
    // A rule decides over the default in both directions.
    let a = authz(
        &[
            r#"node "n1" { policy = "deny" }"#,
            r#"agent_prefix "" { policy = "read" }"#,
        ],
        true,
    );
    assert!(!a.node_read("n1") && a.node_read("n2"));
    assert!(a.agent_read("any") && !a.agent_write("any"));
    let a = authz(&[r#"acl = "read""#], false);
    assert!(a.acl_read() && !a.acl_write());
}

#[test]
fn management_allows_everything() {
    let m = Authorizer::management();
    assert!(m.is_management());
    assert!(
        m.acl_write()
            && m.acl_read()
            && m.operator_write()
            && m.service_write("x")
            && m.intention_write("*")
    );
    assert!(m.node_write("n") && m.agent_write("a") && m.service_read_all());
}

#[test]
fn intentions_derive_from_service_policy() {
    let a = authz(
        &[r#"
service "web" { policy = "write" }
service "db" { policy = "read" intentions = "write" }
service "blocked" { policy = "deny" }
service_prefix "ro-" { policy = "read" }
"#],
        true,
    );
    // write/read service policy → intention read only.
    assert!(a.intention_read("web") && !a.intention_write("web"));
    assert!(a.intention_write("db"));
    assert!(!a.intention_read("blocked"));
    assert!(a.intention_read("ro-x") && !a.intention_write("ro-x"));
    // Unnamed destinations fall to the default.
    assert!(a.intention_write("other"));
    // Explicit intentions merge across policies like policies do.
    let a = authz(
        &[
            r#"service "web" { policy = "write" }"#,
            r#"service "web" { policy = "read" intentions = "write" }"#,
        ],
        false,
    );
    assert!(a.service_write("web") && a.intention_write("web"));
}

#[test]
fn wildcard_intention_access_is_any_read_all_write() {
    let a = authz(
        &[r#"service "web" { policy = "read" intentions = "write" }"#],
        false,
    );
    // Some destination is readable → "*" read allowed; not every one is writable.
    assert!(a.intention_read("*"));
    assert!(!a.intention_write("*"));
    let a = authz(
        &[r#"service_prefix "" { policy = "write" intentions = "write" }"#],
        false,
    );
    assert!(a.intention_write("*"));
    let a = authz(
        &[
            r#"service_prefix "" { policy = "write" intentions = "write" }"#,
            r#"service "db" { policy = "read" intentions = "deny" }"#,
        ],
        false,
    );
    assert!(!a.intention_write("*"));
    assert!(a.intention_read("*"));
    let none: [&str; 0] = [];
    assert!(!authz(&none, false).intention_read("*"));
    assert!(authz(&none, true).intention_write("*"));
}

#[test]
fn service_read_all() {
    assert!(authz(&[r#"service_prefix "" { policy = "read" }"#], false).service_read_all());
    assert!(
        !authz(
            &[
                r#"service_prefix "" { policy = "read" }"#,
                r#"service "x" { policy = "deny" }"#
            ],
            true
        )
        .service_read_all()
    );
    assert!(!authz(&[r#"service "x" { policy = "read" }"#], false).service_read_all());
}

#[test]
fn policy_and_token_records() {
    let req = PolicyRequest::decode_json(br#"{"Name": "web-policy", "Description": "d", "Rules": "service \"web\" { policy = \"write\" }", "Datacenters": ["dc1"], "Hash": "x", "CreateIndex": 1}"#).unwrap();
    let rs = req.validate().unwrap();
    assert_eq!(rs.services[0].name, "web");
    let p = req.into_policy("11111111-2222-3333-4444-555555555555".into(), 7, 8);
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["ID"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(j["Name"], "web-policy");
    assert_eq!(j["Datacenters"], serde_json::json!(["dc1"]));
    assert_eq!(j["CreateIndex"], 7);
    assert_eq!(p.hash, policy_hash(&p));
    assert_eq!(p.hash.len(), 12);
    let mut other = p.clone();
    other.rules.push(' ');
    assert_ne!(policy_hash(&other), p.hash);

    let err = PolicyRequest::decode_json(br#"{"Name": "bad name!"}"#)
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(
        err.to_string().contains("only alphanumeric characters"),
        "{err}"
    );
    let err = PolicyRequest::decode_json(
        br#"{"Name": "p", "Rules": "nope \"x\" { policy = \"read\" }"}"#,
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown resource \"nope\""),
        "{err}"
    );
    let err = PolicyRequest::decode_json(br#"{"Name": "p", "Rulez": ""}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `Rulez`"), "{err}");
    assert!(validate_policy_name(&"a".repeat(128)).is_ok());
    assert!(validate_policy_name(&"a".repeat(129)).is_err());
    assert!(validate_policy_name("").is_err());

    let t = TokenRequest::decode_json(br#"{"description": "agent", "policies": [{"name": "web-policy"}, {"ID": "11111111-2222-3333-4444-555555555555"}], "ServiceIdentities": [{"ServiceName": "web"}], "Local": true}"#).unwrap();
    t.validate().unwrap();
    assert_eq!(t.policies[0].name, "web-policy");
    for (body, want) in [
        (
            r#"{"AccessorID": "nope"}"#,
            "AccessorID: \"nope\" is not a valid UUID",
        ),
        (
            r#"{"Policies": [{}]}"#,
            "Policies[0]: ID or Name is required",
        ),
        (
            r#"{"ServiceIdentities": [{"ServiceName": "Web!"}]}"#,
            "ServiceIdentities[0].ServiceName",
        ),
        (
            r#"{"NodeIdentities": [{"NodeName": "n1", "Datacenter": ""}]}"#,
            "NodeIdentities[0].Datacenter: is required",
        ),
        (
            r#"{"Roles": [{"Name": "r"}]}"#,
            "Roles: ACL roles are not supported",
        ),
    ] {
        let err = TokenRequest::decode_json(body.as_bytes())
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{body}: {err}");
    }
    assert!(
        TokenRequest::decode_json(br#"{"Secret": "x"}"#)
            .unwrap_err()
            .to_string()
            .contains("unknown field `Secret`")
    );

    let token = AclToken {
        accessor_id: "a".into(),
        secret_id: "s".into(),
        description: "d".into(),
        policies: vec![PolicyLink {
            id: "p1".into(),
            name: "web-policy".into(),
        }],
        service_identities: vec![ServiceIdentity {
            service_name: "web".into(),
            datacenters: vec![],
        }],
        local: false,
        create_time: "2026-11-22T02:00:00Z".into(),
        ..AclToken::default()
    }
    .with_hash();
    let j = serde_json::to_value(&token).unwrap();
    assert_eq!(j["AccessorID"], "a");
    assert_eq!(j["SecretID"], "s");
    assert_eq!(
        j["Policies"],
        serde_json::json!([{"ID": "p1", "Name": "web-policy"}])
    );
    assert_eq!(j["CreateTime"], "2026-11-22T02:00:00Z");
    assert!(!token.hash.is_empty());
    let back: AclToken = serde_json::from_value(j).unwrap();
    assert_eq!(back, token);
    // The service identity grants write on the service and its sidecar, read on the rest.
    let a = Authorizer::new(&token.identity_rules(), false);
    assert!(a.service_write("web") && a.service_write("web-sidecar-proxy"));
    assert!(a.service_read("db") && !a.service_write("db") && a.node_read("n"));
    assert!(is_uuid("00000000-0000-0000-0000-000000000002") && !is_uuid("0000-0000"));
}

#[test]
fn key_rules_decide_reads_writes_and_prefix_deletes() {
    let a = authz(
        &[r#"
key_prefix "lambdamesh/" { policy = "write" }
key_prefix "lambdamesh/locked/" { policy = "read" }
key "app/config" { policy = "read" }
"#],
        false,
    );
    assert!(a.key_write("lambdamesh/migrations/greeter"));
    assert!(a.key_read("app/config"));
    assert!(!a.key_write("app/config"));
    assert!(!a.key_read("other"));
    assert!(!a.key_write("lambdamesh/locked/x"));
    // A recursive delete needs write on everything under the prefix.
    assert!(a.key_write_prefix("lambdamesh/migrations/"));
    assert!(!a.key_write_prefix("lambdamesh/"));
    assert!(Authorizer::management().key_write_prefix(""));
}
