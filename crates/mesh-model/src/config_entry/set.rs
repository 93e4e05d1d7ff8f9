//! The set of all config entries and the checks that need more than one entry.
//!
//! Graph checks work on the would-be state: the set with the write (or delete) applied is
//! checked, and only problems that the change introduces are reported. A pre-existing problem
//! elsewhere (say, written before a rule existed) never blocks an unrelated write, but the entry
//! being written must itself be clean.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ConfigEntry, ConfigEntryError, DEFAULT_PROTOCOL, EntryKey, Kind, PROXY_DEFAULTS_GLOBAL,
    ServiceResolver, is_http_like,
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
        match self.for_service(Kind::ServiceResolver, svc) {
            Some(ConfigEntry::ServiceResolver(r)) => Some(r),
            _ => None,
        }
    }

    /// The service's protocol: its service-defaults `Protocol`, else the partition's
    /// proxy-defaults `global` `Config["protocol"]`, else `tcp`.
    pub fn protocol_of(&self, svc: &ServiceName) -> String {
        if let Some(ConfigEntry::ServiceDefaults(sd)) = self.for_service(Kind::ServiceDefaults, svc)
            && !sd.protocol.is_empty()
        {
            return sd.protocol.to_ascii_lowercase();
        }
        let global = EntryKey {
            kind: Kind::ProxyDefaults,
            meta: EntMeta::new(Some(&svc.meta.partition), Some(DEFAULT)),
            name: PROXY_DEFAULTS_GLOBAL.to_owned(),
        };
        if let Some(ConfigEntry::ProxyDefaults(pd)) = self.entries.get(&global) {
            let p = pd.config_protocol();
            if !p.is_empty() {
                return p;
            }
        }
        DEFAULT_PROTOCOL.to_owned()
    }

    /// Validates `entry` on its own, then against the other entries as if it were written.
    ///
    /// # Errors
    /// [`ConfigEntryError::Invalid`] from [`ConfigEntry::validate`], or
    /// [`ConfigEntryError::Conflict`] naming the entry that the write would break.
    pub fn validate_upsert(&self, entry: &ConfigEntry) -> Result<(), ConfigEntryError> {
        entry.validate()?;
        let key = entry.key();
        let before = self.violations();
        let mut after_set = self.clone();
        after_set.insert(entry.clone());
        let after = after_set.violations();
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
        let before = self.violations();
        let mut after_set = self.clone();
        after_set.remove(key);
        let after = after_set.violations();
        match after.difference(&before).next() {
            None => Ok(()),
            Some(v) => Err(conflict(key, v)),
        }
    }

    /// Every graph problem in the set.
    fn violations(&self) -> BTreeSet<Violation> {
        let mut out = BTreeSet::new();
        for (key, entry) in &self.entries {
            let mut push = |message: String| {
                out.insert(Violation {
                    key: key.clone(),
                    message,
                });
            };
            match entry {
                ConfigEntry::ServiceRouter(r) => {
                    let chain = ServiceName::new(r.name.clone(), key.meta.clone());
                    let targets = r.routes.iter().enumerate().filter_map(|(i, route)| {
                        route.destination.as_ref().map(|d| {
                            (
                                format!("Routes[{i}].Destination"),
                                target(&chain, &d.service, &d.namespace, &d.partition),
                                d.service_subset.as_str(),
                            )
                        })
                    });
                    self.check_chain(&chain, targets, &mut push);
                }
                ConfigEntry::ServiceSplitter(s) => {
                    let chain = ServiceName::new(s.name.clone(), key.meta.clone());
                    let targets = s.splits.iter().enumerate().map(|(i, sp)| {
                        (
                            format!("Splits[{i}]"),
                            target(&chain, &sp.service, &sp.namespace, &sp.partition),
                            sp.service_subset.as_str(),
                        )
                    });
                    self.check_chain(&chain, targets, &mut push);
                }
                ConfigEntry::ServiceResolver(r) => {
                    let me = ServiceName::new(r.name.clone(), key.meta.clone());
                    // Peers have their own config entries: nothing to check them against.
                    let mut targets = Vec::new();
                    if let Some(rd) = &r.redirect
                        && rd.peer.is_empty()
                    {
                        let t = target(&me, &rd.service, &rd.namespace, &rd.partition);
                        targets.push(("Redirect".to_owned(), t, rd.service_subset.as_str()));
                    }
                    for (k, f) in &r.failover {
                        if f.targets.is_empty() {
                            let t = target(&me, &f.service, &f.namespace, "");
                            targets.push((
                                format!("Failover[{k:?}]"),
                                t,
                                f.service_subset.as_str(),
                            ));
                        }
                        for (i, ft) in f.targets.iter().enumerate() {
                            if ft.peer.is_empty() {
                                let t = target(&me, &ft.service, &ft.namespace, &ft.partition);
                                targets.push((
                                    format!("Failover[{k:?}].Targets[{i}]"),
                                    t,
                                    ft.service_subset.as_str(),
                                ));
                            }
                        }
                    }
                    let proto = self.protocol_of(&me);
                    for (field, t, subset) in targets {
                        // Subsets of the resolver's own service were checked by `validate`.
                        if t == me {
                            continue;
                        }
                        self.check_same_protocol(&field, &me, &proto, &t, &mut push);
                        self.check_subset(&field, &t, subset, &mut push);
                    }
                }
                ConfigEntry::ServiceDefaults(sd) if sd.is_lambda() => {
                    // Envoy's aws_lambda filter lives in an HTTP connection manager: a Lambda
                    // marking on a TCP service would never invoke anything (reference §1.2).
                    let me = ServiceName::new(sd.name.clone(), key.meta.clone());
                    let proto = self.protocol_of(&me);
                    if proto != "http" && proto != "http2" {
                        push(format!(
                            "Protocol: service {:?} is an AWS Lambda function and must use protocol \"http\", but its protocol is {proto:?}",
                            sd.name
                        ));
                    }
                }
                ConfigEntry::ServiceIntentions(ixn) if ixn.has_any_permissions() => {
                    let dest = ServiceName::new(ixn.name.clone(), key.meta.clone());
                    let proto = self.protocol_of(&dest);
                    if !is_http_like(&proto) {
                        push(format!(
                            "service {:?} has protocol {proto:?}, but L7 intention Permissions require http, http2 or grpc",
                            dest.name
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
    fn check_chain<'a>(
        &self,
        chain: &ServiceName,
        targets: impl Iterator<Item = (String, ServiceName, &'a str)>,
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
        for (field, t, subset) in targets {
            if t != *chain {
                self.check_same_protocol(&field, chain, &proto, &t, push);
            }
            self.check_subset(&field, &t, subset, push);
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
