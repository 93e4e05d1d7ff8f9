//! The engine against small in-memory fakes of AWS and Consul, for paths the real services
//! here cannot show: Enterprise partitions and namespaces, the `datacenter` tag naming the
//! local datacenter, and the tagging API failing or looping.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::collections::BTreeMap;

use parking_lot::Mutex;
use registrator::{
    Config, Engine,
    aws::{Aws, AwsError, Message, Page},
    config::Tier,
    consul::{Consul, ConsulError, Leaf, NodeServices},
    plan::Ca,
    tags::{Function, MANAGED_TAG, Scope},
};
use serde_json::Value;

const PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda";
const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:";

#[derive(Default)]
struct FakeAws {
    functions: Vec<Function>,
    /// `Some(e)`: GetResources fails with this; `"loop"`: it repeats its token forever.
    tagging: Option<&'static str>,
    calls: Mutex<Vec<String>>,
}

impl Aws for FakeAws {
    async fn get_resources(&self, token: Option<String>) -> Result<Page<Function>, AwsError> {
        self.calls.lock().push("GetResources".into());
        match self.tagging {
            Some("loop") => Ok(Page {
                items: Vec::new(),
                next: Some("same".into()),
            }),
            Some(e) => Err(AwsError::Failed(e.into())),
            None => {
                assert!(token.is_none());
                Ok(Page {
                    items: self
                        .functions
                        .iter()
                        .filter(|f| f.tags.contains_key(&format!("{PREFIX}/enabled")))
                        .cloned()
                        .collect(),
                    next: None,
                })
            }
        }
    }
    async fn list_functions(
        &self,
        _marker: Option<String>,
        _max: u32,
    ) -> Result<Page<(String, String)>, AwsError> {
        self.calls.lock().push("ListFunctions".into());
        Ok(Page {
            items: self
                .functions
                .iter()
                .map(|f| (f.arn.clone(), f.name.clone()))
                .collect(),
            next: None,
        })
    }
    async fn list_tags(&self, arn: String) -> Result<BTreeMap<String, String>, AwsError> {
        self.calls.lock().push("ListTags".into());
        Ok(self
            .functions
            .iter()
            .find(|f| f.arn == arn)
            .map(|f| f.tags.clone())
            .unwrap_or_default())
    }
    async fn get_function(&self, name: String) -> Result<Option<Function>, AwsError> {
        Ok(self
            .functions
            .iter()
            .find(|f| f.name == registrator::tags::function_name(&name))
            .cloned())
    }
    async fn get_parameter(&self, _n: String) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
    async fn parameters_by_path(
        &self,
        _p: String,
        _t: Option<String>,
    ) -> Result<Page<(String, String)>, AwsError> {
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }
    async fn put_parameter(
        &self,
        _n: String,
        _v: String,
        _t: Option<Tier>,
    ) -> Result<(), AwsError> {
        Ok(())
    }
    async fn delete_parameter(&self, _n: String) -> Result<(), AwsError> {
        Ok(())
    }
    async fn receive_messages(&self, _q: String, _w: u32) -> Result<Vec<Message>, AwsError> {
        Ok(Vec::new())
    }
    async fn delete_message(&self, _q: String, _r: String) -> Result<(), AwsError> {
        Ok(())
    }
}

#[derive(Default)]
struct ConsulState {
    /// Scope → service name → tags (all on the registrator's node).
    catalog: Mutex<BTreeMap<Scope, BTreeMap<String, Vec<String>>>>,
    entries: Mutex<BTreeMap<Scope, BTreeMap<String, Value>>>,
    writes: Mutex<Vec<String>>,
}

#[derive(Default)]
struct FakeConsul {
    local_dc: String,
    /// Partition → namespaces; a partition missing here fails its listing.
    namespaces: BTreeMap<String, Vec<String>>,
    state: std::sync::Arc<ConsulState>,
}

impl std::ops::Deref for FakeConsul {
    type Target = ConsulState;
    fn deref(&self) -> &ConsulState {
        &self.state
    }
}

fn scope(dc: &str, ap: &str, ns: &str) -> Scope {
    Scope {
        dc: dc.into(),
        partition: ap.into(),
        namespace: ns.into(),
    }
}

impl Consul for FakeConsul {
    async fn local_datacenter(&self) -> Result<String, ConsulError> {
        Ok(self.local_dc.clone())
    }
    async fn node_services(
        &self,
        scope: Scope,
        _node: String,
    ) -> Result<NodeServices, ConsulError> {
        let mut out = NodeServices::default();
        for (name, tags) in self.catalog.lock().get(&scope).into_iter().flatten() {
            if tags.iter().any(|t| t == MANAGED_TAG) {
                out.owned.insert(name.clone());
            } else {
                out.foreign.insert(name.clone());
            }
        }
        Ok(out)
    }
    async fn service_defaults(&self, scope: Scope) -> Result<BTreeMap<String, Value>, ConsulError> {
        Ok(self.entries.lock().get(&scope).cloned().unwrap_or_default())
    }
    async fn service_default(
        &self,
        scope: Scope,
        name: String,
    ) -> Result<Option<Value>, ConsulError> {
        Ok(self
            .entries
            .lock()
            .get(&scope)
            .and_then(|e| e.get(&name).cloned()))
    }
    async fn namespaces(&self, partition: String) -> Result<Vec<String>, ConsulError> {
        self.namespaces
            .get(&partition)
            .cloned()
            .ok_or_else(|| ConsulError::Failed("403 Permission denied".into()))
    }
    async fn put_config(&self, scope: Scope, entry: Value) -> Result<(), ConsulError> {
        let name = entry["Name"].as_str().unwrap().to_owned();
        self.writes
            .lock()
            .push(format!("config {name} {}", scope.query()));
        self.entries
            .lock()
            .entry(scope)
            .or_default()
            .insert(name, entry);
        Ok(())
    }
    async fn delete_config(&self, scope: Scope, name: String) -> Result<(), ConsulError> {
        self.writes
            .lock()
            .push(format!("delete-config {name} {}", scope.query()));
        self.entries.lock().entry(scope).or_default().remove(&name);
        Ok(())
    }
    async fn register(&self, scope: Scope, body: Value) -> Result<(), ConsulError> {
        let name = body["Service"]["ID"].as_str().unwrap().to_owned();
        self.writes
            .lock()
            .push(format!("register {name} {}", scope.query()));
        self.catalog
            .lock()
            .entry(scope)
            .or_default()
            .insert(name, vec![MANAGED_TAG.into()]);
        Ok(())
    }
    async fn deregister(&self, scope: Scope, _node: String, id: String) -> Result<(), ConsulError> {
        self.writes
            .lock()
            .push(format!("deregister {id} {}", scope.query()));
        self.catalog.lock().entry(scope).or_default().remove(&id);
        Ok(())
    }
    async fn ca(&self) -> Result<Ca, ConsulError> {
        Err(ConsulError::Failed("not used".into()))
    }
    async fn leaf(&self, _s: String) -> Result<Leaf, ConsulError> {
        Err(ConsulError::Failed("not used".into()))
    }
}

fn function(name: &str, tags: &[(&str, &str)]) -> Function {
    Function {
        arn: format!("{ARN}{name}"),
        name: name.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (format!("{PREFIX}/{k}"), (*v).to_owned()))
            .collect(),
    }
}

fn config(vars: &[(&str, &str)]) -> Config {
    Config::from_vars(
        &vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn enterprise_partitions_and_namespaces() {
    let aws = FakeAws {
        functions: vec![
            function("a", &[("enabled", "true")]),
            function(
                "b",
                &[
                    ("enabled", "true"),
                    ("partition", "team"),
                    ("namespace", "ns1"),
                ],
            ),
            function("c", &[("enabled", "true"), ("partition", "elsewhere")]),
        ],
        ..FakeAws::default()
    };
    let consul = FakeConsul {
        namespaces: BTreeMap::from([
            ("default".into(), vec!["default".into()]),
            ("team".into(), vec!["ns1".into(), "ns2".into()]),
        ]),
        ..FakeConsul::default()
    };
    // A stale owned service in team/ns2, and one in an unmanaged partition.
    consul.catalog.lock().insert(
        scope("", "team", "ns2"),
        BTreeMap::from([("gone".into(), vec![MANAGED_TAG.into()])]),
    );
    consul.catalog.lock().insert(
        scope("", "elsewhere", "default"),
        BTreeMap::from([("theirs".into(), vec![MANAGED_TAG.into()])]),
    );
    let state = consul.state.clone();
    let engine = Engine::new(
        config(&[("ENTERPRISE", "true"), ("PARTITIONS", "default,team")]),
        aws,
        consul,
    );
    let r = rt().block_on(engine.full_sync());
    assert!(r.complete, "{r:?}");
    assert_eq!((r.upserts, r.deletes), (2, 1), "{r:?}");
    // Writes carry the partition and namespace of the tags; nothing went to `elsewhere`.
    let writes = state.writes.lock().clone();
    assert!(
        writes.contains(&"register a ?partition=default&ns=default".to_owned()),
        "{writes:?}"
    );
    assert!(
        writes.contains(&"register b ?partition=team&ns=ns1".to_owned()),
        "{writes:?}"
    );
    assert!(
        writes.contains(&"deregister gone ?partition=team&ns=ns2".to_owned()),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .all(|w| !w.contains("elsewhere") && !w.contains(" c ")),
        "{writes:?}"
    );
    assert!(state.catalog.lock()[&scope("", "elsewhere", "default")].contains_key("theirs"));
}

#[test]
fn a_failed_namespace_listing_means_no_deletions() {
    let consul = FakeConsul {
        // `team` cannot be listed.
        namespaces: BTreeMap::from([("default".into(), vec!["default".into()])]),
        ..FakeConsul::default()
    };
    consul.catalog.lock().insert(
        scope("", "default", "default"),
        BTreeMap::from([("gone".into(), vec![MANAGED_TAG.into()])]),
    );
    let state = consul.state.clone();
    let aws = FakeAws {
        functions: vec![function("a", &[("enabled", "true")])],
        ..FakeAws::default()
    };
    let engine = Engine::new(
        config(&[("ENTERPRISE", "true"), ("PARTITIONS", "default,team")]),
        aws,
        consul,
    );
    let r = rt().block_on(engine.full_sync());
    assert!(!r.complete);
    assert_eq!((r.upserts, r.deletes), (1, 0), "{r:?}");
    assert!(state.catalog.lock()[&scope("", "default", "default")].contains_key("gone"));
}

#[test]
fn datacenter_tag_naming_the_local_dc_is_the_local_catalog() {
    let consul = FakeConsul {
        local_dc: "dc1".into(),
        ..FakeConsul::default()
    };
    let state = consul.state.clone();
    let aws = FakeAws {
        functions: vec![
            function("here", &[("enabled", "true"), ("datacenter", "dc1")]),
            function("there", &[("enabled", "true"), ("datacenter", "dc2")]),
        ],
        ..FakeAws::default()
    };
    let engine = Engine::new(config(&[]), aws, consul);
    let r = rt().block_on(engine.full_sync());
    assert_eq!((r.upserts, r.deletes), (2, 0), "{r:?}");
    let r = rt().block_on(engine.full_sync());
    // Without the mapping, `here` would be scanned as local and as dc1 and deleted from one.
    assert_eq!((r.writes, r.deletes), (0, 0), "{r:?}");
    let writes = state.writes.lock().clone();
    assert!(writes.contains(&"register here ".to_owned()), "{writes:?}");
    assert!(
        writes.contains(&"register there ?dc=dc2".to_owned()),
        "{writes:?}"
    );
}

#[test]
fn tagging_api_failures_fall_back_to_list_functions() {
    for failure in ["AccessDeniedException (403): no tag:GetResources", "loop"] {
        let aws = FakeAws {
            functions: vec![
                function("a", &[("enabled", "true")]),
                function("b", &[("team", "x")]),
            ],
            tagging: Some(failure),
            ..FakeAws::default()
        };
        let consul = FakeConsul::default();
        let state = consul.state.clone();
        let engine = Engine::new(config(&[]), aws, consul);
        let r = rt().block_on(engine.full_sync());
        assert!(r.complete, "{failure}: {r:?}");
        assert_eq!(r.upserts, 1, "{failure}: {r:?}");
        assert!(state.catalog.lock()[&Scope::default()].contains_key("a"));
        // The tagging-only mode does not fall back: incomplete, nothing deleted.
        let aws = FakeAws {
            tagging: Some(failure),
            ..FakeAws::default()
        };
        let consul = FakeConsul::default();
        consul.catalog.lock().insert(
            Scope::default(),
            BTreeMap::from([("kept".into(), vec![MANAGED_TAG.into()])]),
        );
        let engine = Engine::new(config(&[("LIST_MODE", "tagging")]), aws, consul);
        let r = rt().block_on(engine.full_sync());
        assert!(!r.complete && r.deletes == 0, "{failure}: {r:?}");
    }
}
