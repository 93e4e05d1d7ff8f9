//! Reading what is: the function listing (tagging API or ListFunctions + ListTags), the
//! Consul scopes and services the registrator manages, the Parameter Store prefix and the CA.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use tokio::{sync::Semaphore, task::JoinSet};
use tracing::warn;

use super::Engine;
use crate::{
    aws::{Aws, AwsError},
    config::ListMode,
    consul::Consul,
    metrics::add,
    plan::{Ca, ScopeState},
    tags::{Function, Scope, Service},
};

/// A function listing.
pub(super) struct Listing {
    pub(super) functions: Vec<Function>,
    pub(super) complete: bool,
    /// Functions whose tags could not be read.
    pub(super) unreadable: Vec<(String, String)>,
}

impl<A: Aws, C: Consul> Engine<A, C> {
    pub(super) async fn list_tagging(&self) -> Result<Vec<Function>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let page = self
                .aws_call("GetResources", |a| a.get_resources(token.clone()))
                .await?;
            out.extend(page.items);
            match page.next {
                // A token seen before would loop forever: the listing is not trustworthy.
                Some(t) if !seen.insert(t.clone()) => {
                    return Err(AwsError::Failed(format!("GetResources repeated token {t}")));
                }
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    pub(super) async fn list_functions(&self) -> Listing {
        let mut arns = Vec::new();
        let mut marker: Option<String> = None;
        let mut seen = BTreeSet::new();
        let page_size = self.inner.cfg.page_size;
        let mut complete = true;
        loop {
            match self
                .aws_call("ListFunctions", |a| {
                    a.list_functions(marker.clone(), page_size)
                })
                .await
            {
                Ok(page) => {
                    arns.extend(page.items);
                    match page.next {
                        Some(m) if !seen.insert(m.clone()) => {
                            warn!(marker = %m, "ListFunctions repeated a marker; listing incomplete");
                            complete = false;
                            break;
                        }
                        Some(m) => marker = Some(m),
                        None => break,
                    }
                }
                Err(e) => {
                    warn!(error = %e, "ListFunctions failed; listing incomplete, nothing will be deleted");
                    add(&self.inner.metrics.errors, 1);
                    complete = false;
                    break;
                }
            }
        }
        // Tags of each function at bounded concurrency.
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency));
        let mut set = JoinSet::new();
        for (arn, name) in arns {
            let me = self.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let tags = me.aws_call("ListTags", |a| a.list_tags(arn.clone())).await;
                (arn, name, tags)
            });
        }
        let mut functions = Vec::new();
        let mut unreadable = Vec::new();
        while let Some(r) = set.join_next().await {
            let Ok((arn, name, tags)) = r else { continue };
            match tags {
                Ok(tags) => functions.push(Function { arn, name, tags }),
                // Deleted between the listing and this call: simply gone.
                Err(AwsError::NotFound(_)) => {}
                Err(e) => unreadable.push((name, e.to_string())),
            }
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Listing {
            functions,
            complete,
            unreadable,
        }
    }

    pub(super) async fn list(&self) -> Listing {
        match self.inner.cfg.list_mode {
            ListMode::Functions => self.list_functions().await,
            mode => match self.list_tagging().await {
                Ok(functions) => Listing {
                    functions,
                    complete: true,
                    unreadable: Vec::new(),
                },
                Err(e) if mode == ListMode::Auto => {
                    warn!(error = %e, "tagging API unavailable; listing with ListFunctions + ListTags");
                    self.list_functions().await
                }
                Err(e) => {
                    warn!(error = %e, "GetResources failed; listing incomplete, nothing will be deleted");
                    add(&self.inner.metrics.errors, 1);
                    Listing {
                        functions: Vec::new(),
                        complete: false,
                        unreadable: Vec::new(),
                    }
                }
            },
        }
    }

    // --- actual state ----------------------------------------------------------------------

    /// The scopes the registrator manages (OSS: one; Enterprise: partitions × namespaces).
    /// `false` when a namespace listing failed.
    pub(super) async fn base_scopes(&self) -> (BTreeSet<Scope>, bool) {
        let cfg = &self.inner.cfg;
        if !cfg.enterprise {
            return (BTreeSet::from([Scope::default()]), true);
        }
        let mut out = BTreeSet::new();
        let mut ok = true;
        for p in &cfg.partitions {
            match self
                .consul_call("Namespaces", |c| c.namespaces(p.clone()))
                .await
            {
                Ok(list) => out.extend(list.into_iter().map(|ns| Scope {
                    dc: String::new(),
                    partition: p.clone(),
                    namespace: ns,
                })),
                Err(e) => {
                    warn!(partition = %p, error = %e, "cannot list namespaces");
                    add(&self.inner.metrics.errors, 1);
                    ok = false;
                }
            }
        }
        (out, ok)
    }

    pub(super) async fn read_scopes(
        &self,
        scopes: &BTreeSet<Scope>,
    ) -> (BTreeMap<Scope, ScopeState>, usize) {
        let node = self.inner.cfg.node_name.clone();
        let mut out = BTreeMap::new();
        let mut errors = 0;
        for scope in scopes {
            let services = self
                .consul_call("CatalogNode", |c| {
                    c.node_services(scope.clone(), node.clone())
                })
                .await;
            let entries = self
                .consul_call("ListServiceDefaults", |c| c.service_defaults(scope.clone()))
                .await;
            match (services, entries) {
                (Ok(s), Ok(entries)) => {
                    out.insert(
                        scope.clone(),
                        ScopeState {
                            owned: s.owned,
                            foreign: s.foreign,
                            entries,
                        },
                    );
                }
                (Err(e), _) | (_, Err(e)) => {
                    warn!(?scope, error = %e, "cannot read Consul state of scope; skipped");
                    errors += 1;
                }
            }
        }
        add(&self.inner.metrics.errors, errors as u64);
        (out, errors)
    }

    /// Like [`Self::read_scopes`] for one function's event: the node's services, but only the
    /// entries of names that can be that function's (its name, `<fn>-*`, and `extra`), so an
    /// event costs the same with 10 or 10,000 services.
    pub(super) async fn read_scopes_for(
        &self,
        scopes: &BTreeSet<Scope>,
        function: &str,
        extra: &BTreeSet<String>,
    ) -> (BTreeMap<Scope, ScopeState>, usize) {
        let node = self.inner.cfg.node_name.clone();
        let mut out = BTreeMap::new();
        let mut errors = 0;
        let alias_prefix = format!("{function}-");
        for scope in scopes {
            let services = match self
                .consul_call("CatalogNode", |c| {
                    c.node_services(scope.clone(), node.clone())
                })
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    warn!(?scope, error = %e, "cannot read Consul state of scope; skipped");
                    errors += 1;
                    continue;
                }
            };
            let mut names: BTreeSet<String> = services
                .owned
                .iter()
                .filter(|n| *n == function || n.starts_with(&alias_prefix))
                .cloned()
                .collect();
            names.extend(extra.iter().cloned());
            let mut entries = BTreeMap::new();
            let mut ok = true;
            for name in names {
                match self
                    .consul_call("ReadServiceDefaults", |c| {
                        c.service_default(scope.clone(), name.clone())
                    })
                    .await
                {
                    Ok(Some(e)) => {
                        entries.insert(name, e);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(?scope, service = %name, error = %e, "cannot read service-defaults");
                        ok = false;
                    }
                }
            }
            if !ok {
                errors += 1;
                continue;
            }
            out.insert(
                scope.clone(),
                ScopeState {
                    owned: services.owned,
                    foreign: services.foreign,
                    entries,
                },
            );
        }
        add(&self.inner.metrics.errors, errors as u64);
        (out, errors)
    }

    pub(super) async fn read_params(&self) -> Option<BTreeMap<String, String>> {
        let prefix = self.inner.cfg.extension_data_prefix.clone()?;
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let page = self
                .aws_call("GetParametersByPath", |a| {
                    a.parameters_by_path(format!("{prefix}/"), token.clone())
                })
                .await;
            match page {
                Ok(p) => {
                    out.extend(p.items);
                    match p.next {
                        Some(t) if seen.insert(t.clone()) => token = Some(t),
                        Some(_) | None => return Some(out),
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot read extension data; mTLS material left as is");
                    add(&self.inner.metrics.errors, 1);
                    return None;
                }
            }
        }
    }

    pub(super) async fn read_ca(&self) -> Option<Ca> {
        if !self.inner.cfg.manages_tls() {
            return None;
        }
        match self.consul_call("CaRoots", |c| c.ca()).await {
            Ok(ca) => Some(ca),
            Err(e) => {
                warn!(error = %e, "cannot read CA roots; mTLS material left as is");
                add(&self.inner.metrics.errors, 1);
                None
            }
        }
    }

    /// Maps a `datacenter` tag equal to the agent's own datacenter to the local scope, so one
    /// catalog is never scanned under two names. `None` when the agent cannot tell.
    pub(super) async fn normalise_dcs(&self, services: &mut [Service]) -> bool {
        if services.iter().all(|s| s.scope.dc.is_empty()) {
            return true;
        }
        match self
            .consul_call("AgentSelf", |c| c.local_datacenter())
            .await
        {
            Ok(local) => {
                for s in services.iter_mut().filter(|s| s.scope.dc == local) {
                    s.scope.dc.clear();
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot read the local datacenter");
                add(&self.inner.metrics.errors, 1);
                false
            }
        }
    }
}
