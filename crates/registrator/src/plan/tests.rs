#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::config::Markings;
use crate::tags::{InvocationMode, Scope, Service};
use mesh_model::config_entry::LAMBDA_EXTENSION;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

fn svc(function: &str, alias: Option<&str>) -> Service {
    Service {
        name: alias.map_or(function.to_owned(), |a| format!("{function}-{a}")),
        function: function.into(),
        arn: alias.map_or(format!("{ARN}{function}"), |a| {
            format!("{ARN}{function}:{a}")
        }),
        scope: Scope::default(),
        payload_passthrough: false,
        invocation_mode: InvocationMode::Synchronous,
    }
}

fn state(owned: &[&Service]) -> ScopeState {
    ScopeState {
        owned: owned.iter().map(|s| s.name.clone()).collect(),
        foreign: BTreeSet::new(),
        entries: owned
            .iter()
            .map(|s| (s.name.clone(), expected_entry(s, Markings::Extensions)))
            .collect(),
    }
}

fn actual(st: ScopeState) -> Actual {
    Actual {
        scopes: BTreeMap::from([(Scope::default(), st)]),
        params: None,
    }
}

fn inputs<'a>(desired: &'a [Service], protect: &'a BTreeSet<String>, d: Deletions) -> Inputs<'a> {
    Inputs {
        desired,
        protect,
        deletions: d,
        prefix: None,
        ca: None,
        legacy_meta: Markings::Extensions,
        now: OffsetDateTime::now_utc(),
    }
}

#[test]
fn in_sync_is_a_no_op() {
    let d = [svc("a", None), svc("a", Some("prod"))];
    let p = plan(
        &inputs(&d, &BTreeSet::new(), Deletions::All),
        &actual(state(&[&d[0], &d[1]])),
    );
    assert_eq!(p, Plan::default());
    assert_eq!(p.writes(), 0);
}

#[test]
fn new_service_gets_config_and_registration() {
    let d = [svc("a", None)];
    let p = plan(
        &inputs(&d, &BTreeSet::new(), Deletions::All),
        &actual(ScopeState::default()),
    );
    assert_eq!(
        p.upserts,
        [Upsert {
            service: d[0].clone(),
            config: true,
            register: true,
            tls: false
        }]
    );
}

#[test]
fn drifted_config_is_rewritten_without_reregistering() {
    let d = [svc("a", None)];
    let mut st = state(&[&d[0]]);
    st.entries.insert(
        "a".into(),
        json!({"Kind": "service-defaults", "Name": "a", "Protocol": "tcp",
               "EnvoyExtensions": [{"Name": LAMBDA_EXTENSION, "Arguments": {"arn": d[0].arn}}]}),
    );
    let p = plan(&inputs(&d, &BTreeSet::new(), Deletions::All), &actual(st));
    assert_eq!(p.upserts.len(), 1);
    assert!(p.upserts[0].config && !p.upserts[0].register);
}

#[test]
fn entry_comparison_ignores_bookkeeping_and_key_case() {
    let s = svc("a", None);
    let mut e = expected_entry(&s, Markings::Extensions);
    e["CreateIndex"] = json!(5);
    e["ModifyIndex"] = json!(9);
    e["Namespace"] = json!("default");
    e["TransparentProxy"] = json!({});
    e["EnvoyExtensions"][0]["Arguments"] =
        json!({"ARN": s.arn, "InvocationMode": "synchronous", "PayloadPassthrough": false});
    assert!(entry_matches(&e, &expected_entry(&s, Markings::Extensions)));
    e["MaxInboundConnections"] = json!(3);
    assert!(!entry_matches(
        &e,
        &expected_entry(&s, Markings::Extensions)
    ));
    assert!(!entry_matches(
        &expected_entry(&s, Markings::Extensions),
        &expected_entry(&s, Markings::Both)
    ));
}

#[test]
fn removed_services_are_deleted_only_when_allowed() {
    let gone = svc("gone", None);
    let alias = svc("keep", Some("old"));
    let st = state(&[&gone, &alias]);
    let d = [svc("keep", None)];
    let none = BTreeSet::new();
    let all = plan(&inputs(&d, &none, Deletions::All), &actual(st.clone()));
    let names: Vec<&str> = all.deletes.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["gone", "keep-old"]);
    assert!(all.deletes.iter().all(|d| d.config && d.param.is_none()));

    let incomplete = plan(&inputs(&d, &none, Deletions::None), &actual(st.clone()));
    assert!(incomplete.deletes.is_empty());

    // An event for `keep` deletes its stale alias (found through the entry's ARN) only.
    let only = plan(
        &inputs(
            &d,
            &none,
            Deletions::Only {
                functions: BTreeSet::from(["keep".to_owned()]),
                names: BTreeSet::new(),
            },
        ),
        &actual(st.clone()),
    );
    let names: Vec<&str> = only.deletes.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["keep-old"]);

    // A protected (unreadable) function keeps its services, aliases included.
    let protect = BTreeSet::from(["gone".to_owned(), "keep".to_owned()]);
    let p = plan(&inputs(&d, &protect, Deletions::All), &actual(st));
    assert!(p.deletes.is_empty(), "{p:?}");
}

#[test]
fn foreign_services_are_never_touched() {
    let d = [svc("a", None)];
    let mut st = ScopeState::default();
    st.foreign.insert("a".into());
    st.foreign.insert("web".into());
    let p = plan(&inputs(&d, &BTreeSet::new(), Deletions::All), &actual(st));
    assert!(p.upserts.is_empty() && p.deletes.is_empty());
    assert_eq!(p.conflicts, [(Scope::default(), "a".to_owned())]);
}

#[test]
fn an_entry_someone_else_wrote_is_not_overwritten() {
    let d = [svc("a", None), svc("b", None)];
    let mut st = ScopeState::default();
    // `a`: a plain entry for a non-Lambda service; `b`: a Lambda entry left by the Go
    // registrator for this very function (registration lost) — repaired.
    st.entries.insert(
        "a".into(),
        json!({"Kind": "service-defaults", "Name": "a", "Protocol": "grpc"}),
    );
    st.entries.insert(
        "b".into(),
        json!({"Kind": "service-defaults", "Name": "b", "Protocol": "http",
               "EnvoyExtensions": [{"Name": LAMBDA_EXTENSION, "Arguments": {"arn": d[1].arn, "invocationMode": "SYNCHRONOUS"}}]}),
    );
    let p = plan(&inputs(&d, &BTreeSet::new(), Deletions::All), &actual(st));
    assert_eq!(p.conflicts, [(Scope::default(), "a".to_owned())]);
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].service.name, "b");
    assert!(p.upserts[0].config && p.upserts[0].register);
    // The legacy Meta marking names the function as well.
    let legacy = expected_entry(&d[0], Markings::MetaOnly);
    assert_eq!(entry_arn(&legacy), Some(d[0].arn.as_str()));
}

#[test]
fn duplicate_names_keep_the_function_itself() {
    // Function `a` with alias `b` and a function named `a-b` both want service `a-b`.
    let d = [svc("a", Some("b")), svc("a-b", None)];
    let p = plan(
        &inputs(&d, &BTreeSet::new(), Deletions::All),
        &actual(ScopeState::default()),
    );
    assert_eq!(p.upserts.len(), 1);
    assert_eq!(p.upserts[0].service.function, "a-b");
    assert_eq!(p.conflicts.len(), 1);
}

#[test]
fn unreadable_scope_gets_nothing() {
    let mut s = svc("a", None);
    s.scope.dc = "dc2".into();
    let d = [s];
    let p = plan(
        &inputs(&d, &BTreeSet::new(), Deletions::All),
        &actual(ScopeState::default()),
    );
    assert!(p.upserts.is_empty());
    assert!(p.unreadable.contains(&Scope {
        dc: "dc2".into(),
        ..Scope::default()
    }));
}

fn material(ca: &Ca, cert: &str) -> String {
    json!({"privateKeyPEM": "k", "certPEM": cert, "rootCertPEM": ca.root_pem, "trustDomain": ca.trust_domain}).to_string()
}

#[test]
fn tls_material_is_refreshed_at_two_thirds_and_on_root_change() {
    let t0 = OffsetDateTime::now_utc();
    // Any certificate carries a validity; a 3-day root stands in for a leaf.
    let leaf = ca::generate_root("td.consul", 1, t0, Duration::from_secs(3 * 86400), None).unwrap();
    let ca = Ca {
        root_pem: "ROOT".into(),
        trust_domain: "td.consul".into(),
    };
    let v = material(&ca, &leaf.cert_pem);
    assert!(tls_fresh(&v, &ca, t0 + time::Duration::days(1)));
    assert!(!tls_fresh(&v, &ca, t0 + time::Duration::hours(49)));
    let rotated = Ca {
        root_pem: "ROOT2".into(),
        ..ca.clone()
    };
    assert!(!tls_fresh(&v, &rotated, t0));
    assert!(!tls_fresh("not json", &ca, t0));

    let d = [svc("a", None), svc("b", None)];
    let mut st = state(&[&d[0], &d[1]]);
    st.owned.insert("old".into());
    let mut a = actual(st);
    a.params = Some(BTreeMap::from([
        ("/p/default/default/a".to_owned(), v.clone()),
        ("/p/default/default/old".to_owned(), v.clone()),
        ("/p/default/default/stray".to_owned(), v.clone()),
        ("/p/notes".to_owned(), v.clone()),
        ("/p/default/default/deeper/x".to_owned(), v.clone()),
        ("/p/team/ns1/unread-scope".to_owned(), v),
    ]));
    let none = BTreeSet::new();
    let mut i = inputs(&d, &none, Deletions::All);
    i.prefix = Some("/p");
    i.ca = Some(&ca);
    i.now = t0 + time::Duration::hours(1);
    let p = plan(&i, &a);
    let tls: Vec<(&str, bool)> = p
        .upserts
        .iter()
        .map(|u| (u.service.name.as_str(), u.tls))
        .collect();
    assert_eq!(tls, [("b", true)]);
    assert_eq!(p.deletes.len(), 1);
    assert_eq!(
        p.deletes[0].param.as_deref(),
        Some("/p/default/default/old")
    );
    assert_eq!(p.orphan_params, ["/p/default/default/stray"]);
}

#[test]
fn legacy_markings() {
    let s = svc("a", None);
    let both = expected_entry(&s, Markings::Both);
    assert_eq!(
        both["Meta"]["serverless.consul.hashicorp.com/v1alpha1/lambda/region"],
        json!("us-east-1")
    );
    assert!(both.get("EnvoyExtensions").is_some());
    let only = expected_entry(&s, Markings::MetaOnly);
    assert!(only.get("EnvoyExtensions").is_none());
    assert_eq!(
        only["Meta"]["serverless.consul.hashicorp.com/v1alpha1/lambda/arn"],
        json!(s.arn)
    );
}

#[test]
fn registration_body_is_the_references() {
    let r = registration("lambdas", "a");
    assert_eq!(
        r["Service"]["Tags"],
        json!(["managed-by-lambda-registrator"])
    );
    assert_eq!(r["SkipNodeUpdate"], json!(true));
    assert_eq!(r["NodeMeta"]["external-node"], json!("true"));
}
