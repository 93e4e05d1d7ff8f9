use serde_json::json;

use super::*;
use crate::config_entry::decode_value;

fn sn(ns: &str, name: &str) -> ServiceName {
    ServiceName::new(name, EntMeta::new(None, Some(ns)))
}

fn set_of(entries: Vec<Value>) -> ConfigEntrySet {
    let mut s = ConfigEntrySet::default();
    for v in entries {
        let e = decode_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        s.validate_upsert(&e).unwrap_or_else(|e| panic!("{v}: {e}"));
        s.insert(e);
    }
    s
}

fn ixn(dest: &str, sources: Value) -> Value {
    json!({"Kind": "service-intentions", "Name": dest, "Sources": sources})
}

#[test]
fn precedence_table_all_nine_cases() {
    // (source ns, source name, destination ns, destination name, precedence), reference §5.1.
    let table = [
        ("a", "web", "b", "db", 9),
        ("a", "*", "b", "db", 8),
        ("*", "*", "b", "db", 7),
        ("a", "web", "b", "*", 6),
        ("a", "*", "b", "*", 5),
        ("*", "*", "b", "*", 4),
        ("a", "web", "*", "*", 3),
        ("a", "*", "*", "*", 2),
        ("*", "*", "*", "*", 1),
    ];
    for (sns, s, dns, d, want) in table {
        assert_eq!(
            precedence(&sn(sns, s), &sn(dns, d)),
            want,
            "{sns}/{s} -> {dns}/{d}"
        );
    }
}

#[test]
fn all_is_sorted_by_precedence_then_names() {
    let set = set_of(vec![
        ixn(
            "db",
            json!([{"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "allow"}]),
        ),
        ixn(
            "api",
            json!([{"Name": "web", "Action": "allow"}, {"Name": "admin", "Action": "allow"}]),
        ),
        // Name "*" in the default namespace: the namespace is exact, so */default → 5.
        ixn("*", json!([{"Name": "*", "Action": "deny"}])),
    ]);
    let got: Vec<(String, String, u32)> = all(&set)
        .into_iter()
        .map(|i| (i.source.name, i.destination.name, i.precedence))
        .collect();
    let want = [
        ("admin", "api", 9),
        ("web", "api", 9),
        ("web", "db", 9),
        ("*", "db", 8),
        ("*", "*", 5),
    ];
    let want: Vec<(String, String, u32)> = want
        .iter()
        .map(|(a, b, p)| (a.to_string(), b.to_string(), *p))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn match_by_destination_includes_wildcard_entries() {
    let set = set_of(vec![
        ixn(
            "db",
            json!([{"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}]),
        ),
        ixn("*", json!([{"Name": "admin", "Action": "allow"}])),
        ixn("api", json!([{"Name": "web", "Action": "deny"}])),
        json!({"Kind": "service-intentions", "Name": "db", "Namespace": "other", "Sources": [{"Name": "x", "Action": "allow"}]}),
    ]);
    let got: Vec<(String, u32)> = match_by(&set, MatchBy::Destination, &sn("default", "db"))
        .into_iter()
        .map(|i| (i.source.name, i.precedence))
        .collect();
    assert_eq!(
        got,
        vec![("web".into(), 9), ("*".into(), 8), ("admin".into(), 6)]
    );
    // By source: "web" is matched by the exact and the wildcard sources, across destinations.
    let got: Vec<(String, String)> = match_by(&set, MatchBy::Source, &sn("default", "web"))
        .into_iter()
        .map(|i| (i.source.name, i.destination.name))
        .collect();
    assert_eq!(
        got,
        vec![
            ("web".into(), "api".into()),
            ("web".into(), "db".into()),
            ("*".into(), "db".into())
        ]
    );
    // Namespaces are part of the name: the "*" entry lives in "default", so it does not cover
    // other/db.
    let other: Vec<String> = match_by(&set, MatchBy::Destination, &sn("other", "db"))
        .into_iter()
        .map(|i| i.source.name)
        .collect();
    assert_eq!(other, vec!["x".to_owned()]);
}

#[test]
fn destination_matches_read_only_the_destination_entry_keys() {
    let set = set_of(vec![
        ixn("db", json!([{"Name": "web", "Action": "allow"}])),
        ixn("*", json!([{"Name": "admin", "Action": "allow"}])),
        json!({"Kind": "service-intentions", "Name": "*", "Namespace": "*", "Sources": [{"Name": "ops", "Action": "deny"}]}),
        json!({"Kind": "service-intentions", "Name": "db", "Namespace": "other", "Sources": [{"Name": "x", "Action": "allow"}]}),
        json!({"Kind": "service-intentions", "Name": "*", "Namespace": "other", "Sources": [{"Name": "y", "Action": "allow"}]}),
        ixn("api", json!([{"Name": "web", "Action": "deny"}])),
    ]);
    for dst in [
        sn("default", "db"),
        sn("other", "db"),
        sn("default", "api"),
        sn("third", "x"),
    ] {
        let mut only = ConfigEntrySet::default();
        for key in destination_entry_keys(&dst) {
            if let Some(e) = set.get(&key) {
                only.insert(e.clone());
            }
        }
        assert_eq!(
            match_by(&only, MatchBy::Destination, &dst),
            match_by(&set, MatchBy::Destination, &dst),
            "{dst:?}"
        );
    }
    // An exact name under a wildcard namespace is refused, so it needs no key.
    let bad = json!({"Kind": "service-intentions", "Name": "db", "Namespace": "*", "Sources": [{"Name": "x", "Action": "allow"}]});
    let e = decode_value(bad).unwrap();
    assert!(ConfigEntrySet::default().validate_upsert(&e).is_err());
}

#[test]
fn check_takes_the_highest_precedence_match() {
    let set = set_of(vec![
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
        ixn(
            "db",
            json!([{"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}]),
        ),
        ixn(
            "*",
            json!([{"Name": "admin", "Action": "allow"}, {"Name": "*", "Action": "deny"}]),
        ),
        ixn(
            "api",
            json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]),
        ),
    ]);
    let d = |s: &str, t: &str, default_allow: bool| {
        check(&set, &sn("default", s), &sn("default", t), default_allow)
    };
    // Exact allow beats the wildcard deny on the same destination.
    let w = d("web", "db", false);
    assert!(w.allowed && !w.has_permissions);
    assert_eq!(
        w.reason,
        "Matched L4 intention: web => db (Precedence: 9, Action: ALLOW)"
    );
    // Wildcard source deny on db beats the */* allow-for-admin (precedence 8 > 6).
    assert!(!d("admin", "db", true).allowed);
    // On a service without its own entry, the * destination decides.
    assert!(d("admin", "cache", false).allowed);
    assert!(!d("web", "cache", true).allowed);
    // L7 intention: counted as deny, flagged.
    let l7 = d("web", "api", true);
    assert!(!l7.allowed && l7.has_permissions, "{l7:?}");
    assert!(
        l7.reason
            .starts_with("Matched L7 intention: web => api (Precedence: 9, Permissions: 1)"),
        "{}",
        l7.reason
    );
    // A source the api entry does not name falls to the */* deny.
    assert!(!d("other", "api", true).allowed);
    // Nothing matches at all: default policy.
    let empty = ConfigEntrySet::default();
    let x = check(&empty, &sn("default", "a"), &sn("default", "b"), true);
    assert!(x.allowed);
    assert_eq!(x.reason, "Default behavior configured by ACLs");
    assert!(!check(&empty, &sn("default", "a"), &sn("default", "b"), false).allowed);
}

#[test]
fn peer_sources_never_match_local_checks() {
    let set = set_of(vec![ixn(
        "db",
        json!([{"Name": "web", "Peer": "p1", "Action": "allow"}]),
    )]);
    assert!(!check(&set, &sn("default", "web"), &sn("default", "db"), false).allowed);
    assert!(exact(&set, &sn("default", "web"), &sn("default", "db")).is_none());
    assert_eq!(all(&set)[0].source_peer, "p1");
}

#[test]
fn exact_and_api_json() {
    let set = set_of(vec![
        json!({"Kind": "service-intentions", "Name": "db", "Meta": {"team": "x"},
        "Sources": [{"Name": "web", "Action": "allow", "Description": "web may read"}, {"Name": "*", "Action": "deny"}]}),
    ]);
    let i = exact(&set, &sn("default", "web"), &sn("default", "db")).unwrap();
    assert_eq!(
        i.to_api_json(5, 7),
        json!({"ID": "", "Description": "web may read", "SourceNS": "default", "SourceName": "web",
            "DestinationNS": "default", "DestinationName": "db", "SourceType": "consul", "Action": "allow",
            "Precedence": 9, "Meta": {"team": "x"}, "CreateIndex": 5, "ModifyIndex": 7})
    );
    // Wildcards are compared literally by exact.
    assert_eq!(
        exact(&set, &sn("default", "*"), &sn("default", "db"))
            .unwrap()
            .precedence,
        8
    );
    assert!(exact(&set, &sn("default", "api"), &sn("default", "db")).is_none());
    assert!(exact(&set, &sn("default", "web"), &sn("default", "other")).is_none());
}

#[test]
fn api_json_for_l7_and_partitions() {
    let set = set_of(vec![
        json!({"Kind": "service-defaults", "Name": "api", "Partition": "ap1", "Protocol": "http"}),
        json!({"Kind": "service-intentions", "Name": "api", "Partition": "ap1", "Sources": [{"Name": "web", "Permissions": [{"Action": "deny", "HTTP": {"PathExact": "/admin"}}]}]}),
    ]);
    let i = &all(&set)[0];
    let j = i.to_api_json(1, 1);
    assert_eq!(j["Action"], "");
    assert_eq!(j["SourcePartition"], "ap1");
    assert_eq!(j["DestinationPartition"], "ap1");
    assert_eq!(
        j["Permissions"],
        json!([{"Action": "deny", "HTTP": {"PathExact": "/admin"}}])
    );
}

#[test]
fn request_decoding() {
    let r = IntentionRequest::decode_json(br#"{"SourceName": "web", "DestinationName": "db", "Action": "allow", "Description": "d", "Meta": {"k": "v"}, "ID": "", "Precedence": 9, "CreateIndex": 3}"#).unwrap();
    assert_eq!(r.action, Some(IntentionAction::Allow));
    assert_eq!(r.description, "d");
    let r = IntentionRequest::decode_json(br#"{"action": "", "permissions": [{"action": "deny", "http": {"header": [{"name": "x", "present": true}]}}]}"#).unwrap();
    assert_eq!(r.action, None);
    assert_eq!(r.permissions[0].http.as_ref().unwrap().header[0].name, "x");
    let err = IntentionRequest::decode_json(br#"{"Action": "allow", "Bogus": 1}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `Bogus`"), "{err}");
    let err = IntentionRequest::decode_json(br#"{"Action": "permit"}"#).unwrap_err();
    assert!(
        err.to_string().contains("Action: unknown variant `permit`"),
        "{err}"
    );
    assert!(IntentionRequest::decode_json(b"nope").is_err());
}

fn req(action: &str) -> IntentionRequest {
    IntentionRequest::decode_value(json!({"Action": action})).unwrap()
}

#[test]
fn upsert_creates_then_replaces_then_appends() {
    let mut set = ConfigEntrySet::default();
    let (web, db) = (sn("default", "web"), sn("default", "db"));
    let e = upsert_exact(&set, &web, &db, req("allow")).unwrap();
    assert_eq!(e.key().name, "db");
    set.insert(e);
    assert_eq!(
        exact(&set, &web, &db).unwrap().action,
        Some(IntentionAction::Allow)
    );
    // Replace: still one source.
    let e = upsert_exact(&set, &web, &db, req("deny")).unwrap();
    set.insert(e);
    assert_eq!(all(&set).len(), 1);
    assert_eq!(
        exact(&set, &web, &db).unwrap().action,
        Some(IntentionAction::Deny)
    );
    // Append a wildcard source: sorted by precedence in the entry.
    let e = upsert_exact(&set, &sn("default", "*"), &db, req("allow")).unwrap();
    let ConfigEntry::ServiceIntentions(si) = &e else {
        panic!()
    };
    assert_eq!(
        si.sources.iter().map(|s| s.precedence).collect::<Vec<_>>(),
        vec![9, 8]
    );
    set.insert(e);
    assert_eq!(all(&set).len(), 2);
}

#[test]
fn upsert_validates() {
    let set = ConfigEntrySet::default();
    let (web, api) = (sn("default", "web"), sn("default", "api"));
    let err = upsert_exact(&set, &web, &api, IntentionRequest::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("Sources[0].Action: must be set to 'allow' or 'deny'"),
        "{err}"
    );
    let l7 = IntentionRequest::decode_value(
        json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}),
    )
    .unwrap();
    // L7 needs an HTTP destination.
    let err = upsert_exact(&set, &web, &api, l7.clone()).unwrap_err();
    assert!(
        err.to_string()
            .contains("L7 intention Permissions require http"),
        "{err}"
    );
    let set = set_of(vec![
        json!({"Kind": "service-defaults", "Name": "api", "Protocol": "http"}),
    ]);
    upsert_exact(&set, &web, &api, l7).unwrap();
    let err = upsert_exact(&set, &sn("*", "web"), &api, req("allow")).unwrap_err();
    assert!(
        err.to_string()
            .contains("exact value cannot follow wildcard namespace"),
        "{err}"
    );
}

#[test]
fn delete_exact_outcomes() {
    let set = set_of(vec![ixn(
        "db",
        json!([{"Name": "web", "Action": "allow"}, {"Name": "api", "Action": "allow"}]),
    )]);
    let (web, db) = (sn("default", "web"), sn("default", "db"));
    let DeleteOutcome::Write(e) = delete_exact(&set, &web, &db) else {
        panic!("expected a write")
    };
    let ConfigEntry::ServiceIntentions(si) = &e else {
        panic!()
    };
    assert_eq!(si.sources.len(), 1);
    assert_eq!(si.sources[0].name, "api");
    assert_eq!(
        delete_exact(&set, &sn("default", "nobody"), &db),
        DeleteOutcome::NotFound
    );
    assert_eq!(
        delete_exact(&set, &web, &sn("default", "zzz")),
        DeleteOutcome::NotFound
    );
    let single = set_of(vec![ixn("db", json!([{"Name": "web", "Action": "allow"}]))]);
    match delete_exact(&single, &web, &db) {
        DeleteOutcome::Delete(k) => {
            assert_eq!((k.kind, k.name.as_str()), (Kind::ServiceIntentions, "db"))
        }
        other => panic!("expected delete, got {other:?}"),
    }
}
