//! The set of all config entries and the checks that need more than one entry.
//!
//! Graph checks work on the would-be state: the set with the write (or delete) applied is
//! checked, and only problems that the change introduces are reported. A pre-existing problem
//! elsewhere (say, written before a rule existed) never blocks an unrelated write, but the entry
//! being written must itself be clean.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ConfigEntry, ConfigEntryError, DEFAULT_PROTOCOL, EntryKey, Kind, MeshGatewayMode,
    PROXY_DEFAULTS_GLOBAL, ServiceResolver, is_http_like,
};
use crate::names::{DEFAULT, EntMeta, ServiceName};

/// All config entries, keyed and ordered by (kind, partition, namespace, name).
#[derive(Debug, Clone, Default)]
pub struct ConfigEntrySet {
    entries: BTreeMap<EntryKey, ConfigEntry>,
}

/// One graph problem, attributed to the entry that has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    key: EntryKey,
    message: String,
}

impl ConfigEntrySet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &EntryKey) -> Option<&ConfigEntry> {
        self.entries.get(key)
    }

    /// Entries of one kind across all tenancies, sorted by key.
    pub fn list(&self, kind: Kind) -> Vec<&ConfigEntry> {
        self.entries
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(_, e)| e)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigEntry> {
        self.entries.values()
    }

    /// Inserts or replaces by key; no validation (see [`Self::validate_upsert`]).
    pub fn insert(&mut self, entry: ConfigEntry) -> Option<ConfigEntry> {
        self.entries.insert(entry.key(), entry)
    }

    pub fn remove(&mut self, key: &EntryKey) -> Option<ConfigEntry> {
        self.entries.remove(key)
    }

    /// The entry of `kind` for a service, if any.
    pub fn for_service(&self, kind: Kind, svc: &ServiceName) -> Option<&ConfigEntry> {
        self.entries.get(&EntryKey {
            kind,
            meta: svc.meta.clone(),
            name: svc.name.clone(),
        })
    }

    /// The service's resolver, if any.
    pub fn resolver_of(&self, svc: &ServiceName) -> Option<&ServiceResolver> {
        self.view().resolver_of(svc)
    }

    /// The service's protocol: its service-defaults `Protocol`, else the partition's
    /// proxy-defaults `global` `Config["protocol"]`, else `tcp`.
    pub fn protocol_of(&self, svc: &ServiceName) -> String {
        self.view().protocol_of(svc)
    }

    /// The service's mesh gateway mode: its service-defaults `MeshGateway.Mode`, else the
    /// partition's proxy-defaults `global` one. Reads the keys of [`Self::protocol_keys`].
    pub fn mesh_gateway_mode_of(&self, svc: &ServiceName) -> MeshGatewayMode {
        let service = match self.get(&EntryKey {
            kind: Kind::ServiceDefaults,
            meta: svc.meta.clone(),
            name: svc.name.clone(),
        }) {
            Some(ConfigEntry::ServiceDefaults(sd)) => sd.mesh_gateway.mode(),
            _ => MeshGatewayMode::Default,
        };
        let proxy = match self.get(&proxy_defaults_global(&svc.meta)) {
            Some(ConfigEntry::ProxyDefaults(pd)) => pd.mesh_gateway.mode(),
            _ => MeshGatewayMode::Default,
        };
        service.or(proxy)
    }

    /// The keys [`Self::protocol_of`] looks up, present or not: writing or deleting any other
    /// entry never changes the service's protocol.
    pub fn protocol_keys(svc: &ServiceName) -> [EntryKey; 2] {
        [
            EntryKey {
                kind: Kind::ServiceDefaults,
                meta: svc.meta.clone(),
                name: svc.name.clone(),
            },
            proxy_defaults_global(&svc.meta),
        ]
    }

    /// Validates `entry` on its own, then against the other entries as if it were written.
    ///
    /// # Errors
    /// [`ConfigEntryError::Invalid`] from [`ConfigEntry::validate`], or
    /// [`ConfigEntryError::Conflict`] naming the entry that the write would break.
    pub fn validate_upsert(&self, entry: &ConfigEntry) -> Result<(), ConfigEntryError> {
        entry.validate()?;
        let key = entry.key();
        let scope = self.affected_by(&key);
        let before = self.view().violations(&scope);
        let after = View {
            set: self,
            changed: Some((&key, Some(entry))),
        }
        .violations(&scope);
        // The written entry must be clean even if it was already broken; elsewhere only new
        // problems count.
        let fresh = after
            .iter()
            .filter(|v| v.key == key)
            .chain(after.iter().filter(|v| v.key != key && !before.contains(v)))
            .next();
        match fresh {
            None => Ok(()),
            Some(v) => Err(conflict(&key, v)),
        }
    }

    /// Checks that removing `key` breaks no other entry.
    ///
    /// # Errors
    /// [`ConfigEntryError::Conflict`] naming the entry that would break.
    pub fn validate_delete(&self, key: &EntryKey) -> Result<(), ConfigEntryError> {
        if !self.entries.contains_key(key) {
            return Ok(());
        }
        let scope = self.affected_by(key);
        let before = self.view().violations(&scope);
        let after = View {
            set: self,
            changed: Some((key, None)),
        }
        .violations(&scope);
        match after.difference(&before).next() {
            None => Ok(()),
            Some(v) => Err(conflict(key, v)),
        }
    }

    fn view(&self) -> View<'_> {
        View {
            set: self,
            changed: None,
        }
    }

    /// The entries whose graph checks can change when `key` is written or deleted: the entry
    /// itself, plus, when it is a service's defaults or resolver (the only entries other checks
    /// read), every entry that refers to that service; a proxy-defaults change can move any
    /// protocol, so it scopes everything. Checking only these keeps a write linear in the
    /// number of entries instead of recomputing (and copying) the whole graph, which made bulk
    /// writes quadratic.
    fn affected_by(&self, key: &EntryKey) -> BTreeSet<EntryKey> {
        let mut out = BTreeSet::from([key.clone()]);
        match key.kind {
            Kind::ProxyDefaults => out.extend(self.entries.keys().cloned()),
            Kind::ServiceDefaults | Kind::ServiceResolver => {
                let svc = ServiceName::new(key.name.clone(), key.meta.clone());
                out.extend(
                    self.entries
                        .iter()
                        .filter(|(k, e)| graph_refs(k, e).iter().any(|r| r.service == svc))
                        .map(|(k, _)| k.clone()),
                );
            }
            _ => {}
        }
        out
    }
}

/// One service an entry's graph checks look at, and how.
struct GraphRef<'a> {
    /// `Routes[0].Destination`, `Splits[1]`, ...; empty for the entry's own service.
    field: String,
    service: ServiceName,
    subset: &'a str,
}

/// The services an entry's graph checks read (their defaults for the protocol, their resolver
/// for subsets): its own service first, then its targets.
fn graph_refs<'a>(key: &EntryKey, entry: &'a ConfigEntry) -> Vec<GraphRef<'a>> {
    let own = |name: &str| GraphRef {
        field: String::new(),
        service: ServiceName::new(name.to_owned(), key.meta.clone()),
        subset: "",
    };
    let mut out = Vec::new();
    match entry {
        ConfigEntry::ServiceRouter(r) => {
            out.push(own(&r.name));
            let chain = &out[0].service.clone();
            out.extend(r.routes.iter().enumerate().filter_map(|(i, route)| {
                route.destination.as_ref().map(|d| GraphRef {
                    field: format!("Routes[{i}].Destination"),
                    service: target(chain, &d.service, &d.namespace, &d.partition),
                    subset: d.service_subset.as_str(),
                })
            }));
        }
        ConfigEntry::ServiceSplitter(sp) => {
            out.push(own(&sp.name));
            let chain = &out[0].service.clone();
            out.extend(sp.splits.iter().enumerate().map(|(i, split)| GraphRef {
                field: format!("Splits[{i}]"),
                service: target(chain, &split.service, &split.namespace, &split.partition),
                subset: split.service_subset.as_str(),
            }));
        }
        ConfigEntry::ServiceResolver(r) => {
            out.push(own(&r.name));
            let me = &out[0].service.clone();
            // Peers have their own config entries: nothing to check them against.
            if let Some(rd) = &r.redirect
                && rd.peer.is_empty()
            {
                out.push(GraphRef {
                    field: "Redirect".to_owned(),
                    service: target(me, &rd.service, &rd.namespace, &rd.partition),
                    subset: rd.service_subset.as_str(),
                });
            }
            for (k, f) in &r.failover {
                if f.targets.is_empty() {
                    out.push(GraphRef {
                        field: format!("Failover[{k:?}]"),
                        service: target(me, &f.service, &f.namespace, ""),
                        subset: f.service_subset.as_str(),
                    });
                }
                for (i, ft) in f.targets.iter().enumerate() {
                    if ft.peer.is_empty() {
                        out.push(GraphRef {
                            field: format!("Failover[{k:?}].Targets[{i}]"),
                            service: target(me, &ft.service, &ft.namespace, &ft.partition),
                            subset: ft.service_subset.as_str(),
                        });
                    }
                }
            }
        }
        ConfigEntry::ServiceDefaults(sd) if sd.is_lambda() => out.push(own(&sd.name)),
        ConfigEntry::ServiceIntentions(ixn) if ixn.has_any_permissions() => {
            out.push(own(&ixn.name));
        }
        _ => {}
    }
    out
}

/// The set as it is, or as it would be with one key written (`Some`) or deleted (`None`),
/// without copying it.
struct View<'a> {
    set: &'a ConfigEntrySet,
    changed: Option<(&'a EntryKey, Option<&'a ConfigEntry>)>,
}

impl<'a> View<'a> {
    fn get(&self, key: &EntryKey) -> Option<&'a ConfigEntry> {
        match self.changed {
            Some((k, entry)) if k == key => entry,
            _ => self.set.entries.get(key),
        }
    }

    fn for_service(&self, kind: Kind, svc: &ServiceName) -> Option<&'a ConfigEntry> {
        self.get(&EntryKey {
            kind,
            meta: svc.meta.clone(),
            name: svc.name.clone(),
        })
    }

    fn resolver_of(&self, svc: &ServiceName) -> Option<&'a ServiceResolver> {
        match self.for_service(Kind::ServiceResolver, svc) {
            Some(ConfigEntry::ServiceResolver(r)) => Some(r),
            _ => None,
        }
    }

    fn protocol_of(&self, svc: &ServiceName) -> String {
        if let Some(ConfigEntry::ServiceDefaults(sd)) = self.for_service(Kind::ServiceDefaults, svc)
            && !sd.protocol.is_empty()
        {
            return sd.protocol.to_ascii_lowercase();
        }
        if let Some(ConfigEntry::ProxyDefaults(pd)) = self.get(&proxy_defaults_global(&svc.meta)) {
            let p = pd.config_protocol();
            if !p.is_empty() {
                return p;
            }
        }
        DEFAULT_PROTOCOL.to_owned()
    }

    /// The graph problems of the entries at `keys` (absent ones have none).
    fn violations(&self, keys: &BTreeSet<EntryKey>) -> BTreeSet<Violation> {
        let mut out = BTreeSet::new();
        for key in keys {
            let Some(entry) = self.get(key) else { continue };
            let mut push = |message: String| {
                out.insert(Violation {
                    key: key.clone(),
                    message,
                });
            };
            let refs = graph_refs(key, entry);
            let Some((own, targets)) = refs.split_first() else {
                continue;
            };
            let me = &own.service;
            match entry {
                ConfigEntry::ServiceRouter(_) | ConfigEntry::ServiceSplitter(_) => {
                    self.check_chain(me, targets, &mut push);
                }
                ConfigEntry::ServiceResolver(_) => {
                    let proto = self.protocol_of(me);
                    for t in targets {
                        // Subsets of the resolver's own service were checked by `validate`.
                        if t.service == *me {
                            continue;
                        }
                        self.check_same_protocol(&t.field, me, &proto, &t.service, &mut push);
                        self.check_subset(&t.field, &t.service, t.subset, &mut push);
                    }
                }
                ConfigEntry::ServiceDefaults(_) => {
                    // Envoy's aws_lambda filter lives in an HTTP connection manager: a Lambda
                    // marking on a TCP service would never invoke anything (reference §1.2).
                    let proto = self.protocol_of(me);
                    if proto != "http" && proto != "http2" {
                        push(format!(
                            "Protocol: service {:?} is an AWS Lambda function and must use protocol \"http\", but its protocol is {proto:?}",
                            me.name
                        ));
                    }
                }
                ConfigEntry::ServiceIntentions(_) => {
                    let proto = self.protocol_of(me);
                    if !is_http_like(&proto) {
                        push(format!(
                            "service {:?} has protocol {proto:?}, but L7 intention Permissions require http, http2 or grpc",
                            me.name
                        ));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Router/splitter rules: the chain's protocol is HTTP-like, every target service speaks
    /// the same protocol, and named subsets exist.
    fn check_chain(
        &self,
        chain: &ServiceName,
        targets: &[GraphRef<'_>],
        push: &mut impl FnMut(String),
    ) {
        let proto = self.protocol_of(chain);
        if !is_http_like(&proto) {
            push(format!(
                "discovery chain {:?} uses a protocol {proto:?} that does not permit advanced routing or splitting behavior",
                chain.name
            ));
            return;
        }
        for t in targets {
            if t.service != *chain {
                self.check_same_protocol(&t.field, chain, &proto, &t.service, push);
            }
            self.check_subset(&t.field, &t.service, t.subset, push);
        }
    }

    /// Every service a chain reaches must speak the chain's protocol (Consul's
    /// `recordProtocol`), with Consul's message.
    fn check_same_protocol(
        &self,
        field: &str,
        chain: &ServiceName,
        proto: &str,
        t: &ServiceName,
        push: &mut impl FnMut(String),
    ) {
        let tp = self.protocol_of(t);
        if tp != proto {
            push(format!(
                "{field}: discovery chain {:?} uses inconsistent protocols; service {:?} has {tp:?} which is not {proto:?}",
                chain.name, t.name
            ));
        }
    }

    fn check_subset(
        &self,
        field: &str,
        t: &ServiceName,
        subset: &str,
        push: &mut impl FnMut(String),
    ) {
        if subset.is_empty() {
            return;
        }
        match self.resolver_of(t) {
            // A redirecting resolver hands the subset to another service; Consul resolves it
            // there at compile time, so we do not second-guess it here.
            Some(r) if r.redirect.is_some() => {}
            Some(r) if r.subset_exists(subset) => {}
            _ => push(format!(
                "{field}.ServiceSubset: service {:?} does not have a subset named {subset:?}",
                t.name
            )),
        }
    }
}

/// The key of the partition's proxy-defaults `global` (it lives in the `default` namespace).
fn proxy_defaults_global(meta: &EntMeta) -> EntryKey {
    EntryKey {
        kind: Kind::ProxyDefaults,
        meta: EntMeta::new(Some(&meta.partition), Some(DEFAULT)),
        name: PROXY_DEFAULTS_GLOBAL.to_owned(),
    }
}

/// The service a route/split/redirect points at: empty fields inherit from the chain's service.
fn target(chain: &ServiceName, service: &str, namespace: &str, partition: &str) -> ServiceName {
    let name = if service.is_empty() {
        &chain.name
    } else {
        service
    };
    let ns = if namespace.is_empty() {
        &chain.meta.namespace
    } else {
        namespace
    };
    let ap = if partition.is_empty() {
        &chain.meta.partition
    } else {
        partition
    };
    ServiceName::new(name, EntMeta::new(Some(ap), Some(ns)))
}

fn conflict(written: &EntryKey, v: &Violation) -> ConfigEntryError {
    let message = if &v.key == written {
        v.message.clone()
    } else {
        format!(
            "would invalidate {} {:?}: {}",
            v.key.kind, v.key.name, v.message
        )
    };
    ConfigEntryError::Conflict {
        kind: written.kind,
        name: written.name.clone(),
        message,
    }
}
