//! Catalog tables (nodes, instances, checks): their keys, the apply functions for catalog ops,
//! and the read queries the HTTP API serves.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use mesh_model::EntMeta;
use mesh_model::catalog::{CheckStatus, HealthCheck, Node, NodeService, ServiceKind};
use mesh_model::names::ServiceName;

use super::{ApplyError, State, WatchKey};

/// A node: partition (never empty) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    partition: String,
    node: String,
}

impl NodeKey {
    /// An empty `partition` is `default`.
    pub fn new(partition: &str, node: &str) -> Self {
        Self {
            partition: or_default(partition),
            node: node.to_owned(),
        }
    }
    pub(crate) fn of(n: &Node) -> Self {
        Self::new(&n.partition, &n.node)
    }
    pub fn partition(&self) -> &str {
        &self.partition
    }
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// An instance: its node, namespace (never empty) and ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    partition: String,
    node: String,
    namespace: String,
    id: String,
}

impl ServiceKey {
    /// An empty `partition` or `namespace` is `default`.
    pub fn new(partition: &str, node: &str, namespace: &str, id: &str) -> Self {
        Self {
            partition: or_default(partition),
            node: node.to_owned(),
            namespace: or_default(namespace),
            id: id.to_owned(),
        }
    }
    pub(crate) fn of(node: &str, s: &NodeService) -> Self {
        Self::new(&s.partition, node, &s.namespace, &s.id)
    }
    pub fn partition(&self) -> &str {
        &self.partition
    }
    pub fn node(&self) -> &str {
        &self.node
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A service name in its tenancy: (partition, namespace, name), partition and namespace never
/// empty.
pub(crate) type NameKey = (String, String, String);

fn name_key(key: &ServiceKey, s: &NodeService) -> NameKey {
    (
        key.partition.clone(),
        key.namespace.clone(),
        s.service.clone(),
    )
}

/// The names an instance is mesh-capable for (`NodeService::is_mesh_capable_for`): a sidecar's
/// destination, a connect-native instance's own name.
fn mesh_names(key: &ServiceKey, s: &NodeService) -> Vec<NameKey> {
    let mut names = Vec::new();
    if s.is_connect_proxy() {
        names.push((
            key.partition.clone(),
            key.namespace.clone(),
            s.proxy.destination_service_name.clone(),
        ));
    }
    if s.connect.native {
        names.push(name_key(key, s));
    }
    names
}

/// The first key of a node in maps ordered by (partition, node, ..): a node's entries are the
/// range from it while partition and node match.
fn node_start(partition: &str, node: &str) -> ServiceKey {
    ServiceKey {
        partition: partition.to_owned(),
        node: node.to_owned(),
        namespace: String::new(),
        id: String::new(),
    }
}

/// A check: its node, namespace (never empty) and ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckKey {
    partition: String,
    node: String,
    namespace: String,
    check_id: String,
}

impl CheckKey {
    /// An empty `partition` or `namespace` is `default`.
    pub fn new(partition: &str, node: &str, namespace: &str, check_id: &str) -> Self {
        Self {
            partition: or_default(partition),
            node: node.to_owned(),
            namespace: or_default(namespace),
            check_id: check_id.to_owned(),
        }
    }
    pub(crate) fn of(c: &HealthCheck) -> Self {
        Self::new(&c.partition, &c.node, &c.namespace, &c.check_id)
    }
    pub fn partition(&self) -> &str {
        &self.partition
    }
    pub fn node(&self) -> &str {
        &self.node
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn check_id(&self) -> &str {
        &self.check_id
    }
}

fn or_default(s: &str) -> String {
    if s.is_empty() {
        mesh_model::names::DEFAULT.to_owned()
    } else {
        s.to_owned()
    }
}

/// A registration: what `catalog/register` and `agent/service/register` write, in one op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub node: Node,
    /// Keep an existing node record as is (Consul's `SkipNodeUpdate`).
    pub skip_node_update: bool,
    pub services: Vec<NodeService>,
    pub checks: Vec<HealthCheck>,
    /// Service IDs whose checks not listed in `checks` are removed (agent re-registration with
    /// `replace-existing-checks`).
    pub replace_checks_of: Vec<String>,
}

/// Catalog counts ([`State::usage`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogUsage {
    pub nodes: u64,
    /// Distinct service names (per partition and namespace).
    pub services: u64,
    pub service_instances: u64,
    /// Instances by Consul's connect kind (`connect-proxy`, `mesh-gateway`, ...,
    /// `connect-native`), kinds without instances left out.
    pub connect_instances: BTreeMap<&'static str, u64>,
}

/// One row of `catalog/service/:name` / `health/service/:name`: an instance with its node and checks.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    pub node: &'a Node,
    pub service: &'a NodeService,
    pub checks: Vec<&'a HealthCheck>,
}

impl Instance<'_> {
    /// Aggregated status: critical beats warning beats passing (Consul's rule).
    pub fn status(&self) -> CheckStatus {
        CheckStatus::aggregate(self.checks.iter().map(|c| c.status))
    }
}

fn service_keys(s: &NodeService) -> Vec<WatchKey> {
    let meta = s.ent_meta();
    let mut keys = vec![
        WatchKey::Services(meta.clone()),
        WatchKey::Service(ServiceName::new(&s.service, meta.clone())),
    ];
    if s.is_connect_proxy() && !s.proxy.destination_service_name.is_empty() {
        keys.push(WatchKey::Connect(ServiceName::new(
            &s.proxy.destination_service_name,
            meta.clone(),
        )));
    }
    if s.connect.native {
        keys.push(WatchKey::Connect(ServiceName::new(&s.service, meta)));
    }
    keys
}

fn node_keys(partition: &str, node: &str) -> Vec<WatchKey> {
    vec![
        WatchKey::Nodes,
        WatchKey::Node(NodeKey::new(partition, node)),
    ]
}

impl State {
    /// Adds or replaces an instance, keeping the indexes (by name, mesh-capable by name).
    pub(crate) fn insert_service(&mut self, key: ServiceKey, s: NodeService) {
        if let Some(old) = self.services.remove(&key) {
            self.unindex(&key, &old);
        }
        self.services_by_name
            .entry(name_key(&key, &s))
            .or_default()
            .insert(key.clone());
        for name in mesh_names(&key, &s) {
            self.mesh_instances_of
                .entry(name)
                .or_default()
                .insert(key.clone());
        }
        self.services.insert(key, s);
    }

    /// Removes an instance, keeping the indexes.
    fn remove_service(&mut self, key: &ServiceKey) -> Option<NodeService> {
        let s = self.services.remove(key)?;
        self.unindex(key, &s);
        Some(s)
    }

    fn unindex(&mut self, key: &ServiceKey, s: &NodeService) {
        fn drop_from(
            index: &mut std::collections::HashMap<NameKey, BTreeSet<ServiceKey>>,
            name: &NameKey,
            key: &ServiceKey,
        ) {
            if let Some(keys) = index.get_mut(name) {
                keys.remove(key);
                if keys.is_empty() {
                    index.remove(name);
                }
            }
        }
        drop_from(&mut self.services_by_name, &name_key(key, s), key);
        for name in mesh_names(key, s) {
            drop_from(&mut self.mesh_instances_of, &name, key);
        }
    }

    fn services_on_node<'a>(
        &'a self,
        partition: &'a str,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a ServiceKey, &'a NodeService)> + 'a {
        self.services
            .range(node_start(partition, node)..)
            .take_while(move |(k, _)| k.partition == partition && k.node == node)
    }

    /// A node's checks (node-level and its services'), from the checks map's order.
    fn checks_on_node<'a>(
        &'a self,
        partition: &str,
        node: &str,
    ) -> impl Iterator<Item = (&'a CheckKey, &'a HealthCheck)> + 'a {
        let start = CheckKey {
            partition: partition.to_owned(),
            node: node.to_owned(),
            namespace: String::new(),
            check_id: String::new(),
        };
        let (partition, node) = (start.partition.clone(), start.node.clone());
        self.checks
            .range(start..)
            .take_while(move |(k, _)| k.partition == partition && k.node == node)
    }

    /// Keys touched when something node-wide (a node check, the node itself) changes.
    fn node_wide_keys(&self, partition: &str, node: &str) -> Vec<WatchKey> {
        let mut keys = node_keys(partition, node);
        for (_, s) in self.services_on_node(partition, node) {
            keys.extend(service_keys(s));
        }
        keys
    }

    pub(super) fn apply_register(
        &mut self,
        reg: &Registration,
        index: u64,
    ) -> Result<Vec<WatchKey>, ApplyError> {
        let partition = or_default(&reg.node.partition);
        let node_name = reg.node.node.clone();
        let nkey = NodeKey::new(&partition, &node_name);
        // Validate first: checks must reference services that exist after this write.
        let new_ids: BTreeSet<(String, String)> = reg
            .services
            .iter()
            .map(|s| (or_default(&s.namespace), s.id.clone()))
            .collect();
        for c in &reg.checks {
            if c.service_id.is_empty() {
                continue;
            }
            let ns = or_default(&c.namespace);
            let exists = new_ids.contains(&(ns.clone(), c.service_id.clone()))
                || self.services.contains_key(&ServiceKey {
                    partition: partition.clone(),
                    node: node_name.clone(),
                    namespace: ns,
                    id: c.service_id.clone(),
                });
            if !exists {
                return Err(ApplyError::Invalid(format!(
                    "Missing service for check: check {:?} refers to service ID {:?}, which is not registered on node {:?}",
                    c.check_id, c.service_id, node_name
                )));
            }
        }

        let mut touched = Vec::new();
        // Node.
        let existing = self.nodes.get(&nkey).cloned();
        match existing {
            Some(_) if reg.skip_node_update => {}
            Some(old) => {
                let mut n = reg.node.clone();
                n.partition = partition.clone();
                n.create_index = old.create_index;
                n.modify_index = old.modify_index;
                if n.id.is_empty() {
                    n.id = old.id.clone();
                }
                if n != old {
                    n.modify_index = index;
                    self.nodes.insert(nkey.clone(), n);
                    touched.extend(self.node_wide_keys(&partition, &node_name));
                }
            }
            None => {
                let mut n = reg.node.clone();
                n.partition = partition.clone();
                n.create_index = index;
                n.modify_index = index;
                self.nodes.insert(nkey.clone(), n);
                touched.extend(node_keys(&partition, &node_name));
            }
        }
        // Services.
        for s in &reg.services {
            let mut s = s.clone();
            s.partition = partition.clone();
            s.namespace = or_default(&s.namespace);
            let key = ServiceKey::of(&node_name, &s);
            let old = self.services.get(&key).cloned();
            s.create_index = old.as_ref().map_or(index, |o| o.create_index);
            s.modify_index = old.as_ref().map_or(0, |o| o.modify_index);
            if old.as_ref() == Some(&s) {
                continue;
            }
            s.modify_index = index;
            if let Some(o) = &old {
                // A rename or a new destination changes what old watchers see as well.
                touched.extend(service_keys(o));
            }
            touched.extend(service_keys(&s));
            touched.extend(node_keys(&partition, &node_name));
            self.insert_service(key, s);
        }
        // Checks to replace.
        for sid in &reg.replace_checks_of {
            let keep: BTreeSet<&str> = reg
                .checks
                .iter()
                .filter(|c| &c.service_id == sid)
                .map(|c| c.check_id.as_str())
                .collect();
            let stale: Vec<CheckKey> = self
                .checks
                .iter()
                .filter(|(k, c)| {
                    k.partition == partition
                        && k.node == node_name
                        && &c.service_id == sid
                        && !keep.contains(c.check_id.as_str())
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                if let Some(c) = self.checks.remove(&k) {
                    touched.extend(self.check_keys(&partition, &c));
                }
            }
        }
        // Checks.
        for c in &reg.checks {
            let mut c = c.clone();
            c.node = node_name.clone();
            c.partition = partition.clone();
            c.namespace = or_default(&c.namespace);
            if !c.service_id.is_empty() {
                let skey = ServiceKey {
                    partition: partition.clone(),
                    node: node_name.clone(),
                    namespace: c.namespace.clone(),
                    id: c.service_id.clone(),
                };
                if let Some(s) = self.services.get(&skey) {
                    c.service_name = s.service.clone();
                    c.service_tags = s.tags.clone();
                }
            }
            let key = CheckKey::of(&c);
            let old = self.checks.get(&key);
            c.create_index = old.map_or(index, |o| o.create_index);
            c.modify_index = old.map_or(0, |o| o.modify_index);
            if old == Some(&c) {
                continue;
            }
            c.modify_index = index;
            touched.extend(self.check_keys(&partition, &c));
            self.checks.insert(key, c);
        }
        Ok(touched)
    }

    fn check_keys(&self, partition: &str, c: &HealthCheck) -> Vec<WatchKey> {
        if c.service_id.is_empty() {
            return self.node_wide_keys(partition, &c.node);
        }
        let skey = ServiceKey {
            partition: partition.to_owned(),
            node: c.node.clone(),
            namespace: or_default(&c.namespace),
            id: c.service_id.clone(),
        };
        let mut keys = node_keys(partition, &c.node);
        if let Some(s) = self.services.get(&skey) {
            keys.extend(service_keys(s));
        }
        keys
    }

    /// Removes a node with its instances and checks. An unknown node is a success that
    /// changes nothing, as in Consul.
    pub(super) fn apply_deregister_node(&mut self, key: &NodeKey) -> Vec<WatchKey> {
        if !self.nodes.contains_key(key) {
            return Vec::new();
        }
        let (partition, node) = (key.partition.as_str(), key.node.as_str());
        let touched = self.node_wide_keys(partition, node);
        self.nodes.remove(key);
        let gone: Vec<ServiceKey> = self
            .services_on_node(partition, node)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.remove_service(k);
        }
        self.checks
            .retain(|k, _| !(k.partition == partition && k.node == node));
        touched
    }

    /// Removes an instance and its checks (an unknown one changes nothing).
    pub(super) fn apply_deregister_service(&mut self, key: &ServiceKey) -> Vec<WatchKey> {
        let Some(s) = self.remove_service(key) else {
            return Vec::new();
        };
        let mut touched = service_keys(&s);
        touched.extend(node_keys(&key.partition, &key.node));
        self.checks.retain(|k, c| {
            !(k.partition == key.partition
                && k.node == key.node
                && c.service_id == key.id
                && k.namespace == key.namespace)
        });
        touched
    }

    /// Removes a check (an unknown one changes nothing).
    pub(super) fn apply_deregister_check(&mut self, key: &CheckKey) -> Vec<WatchKey> {
        let Some(c) = self.checks.get(key).cloned() else {
            return Vec::new();
        };
        let touched = self.check_keys(&key.partition, &c);
        self.checks.remove(key);
        touched
    }

    pub(super) fn apply_update_check(
        &mut self,
        node: &NodeKey,
        check_id: &str,
        status: CheckStatus,
        output: &str,
        index: u64,
    ) -> Result<Vec<WatchKey>, ApplyError> {
        let found = self
            .checks
            .iter()
            .find(|(k, _)| {
                k.partition == node.partition && k.node == node.node && k.check_id == check_id
            })
            .map(|(k, c)| (k.clone(), c.clone()));
        let Some((key, mut c)) = found else {
            return Err(ApplyError::NotFound(format!(
                "Unknown check ID {check_id:?}. Ensure that the check ID is passed, not the check name."
            )));
        };
        if c.status == status && c.output == output {
            return Ok(Vec::new());
        }
        c.status = status;
        c.output = output.to_owned();
        c.modify_index = index;
        let touched = self.check_keys(&node.partition, &c);
        self.checks.insert(key, c);
        Ok(touched)
    }

    // === queries ===

    /// What the catalog holds, counted as Consul's usage metrics count it (`consul.state.*`):
    /// one pass over the instances, for a metrics scrape.
    pub fn usage(&self) -> CatalogUsage {
        let mut names = BTreeSet::new();
        let mut connect: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (k, s) in &self.services {
            names.insert((
                k.partition.as_str(),
                k.namespace.as_str(),
                s.service.as_str(),
            ));
            let kind = match s.kind {
                ServiceKind::Typical if s.connect.native => Some("connect-native"),
                ServiceKind::Typical => None,
                other => Some(other.as_str()),
            };
            if let Some(kind) = kind {
                *connect.entry(kind).or_default() += 1;
            }
        }
        CatalogUsage {
            nodes: self.nodes.len() as u64,
            services: names.len() as u64,
            service_instances: self.services.len() as u64,
            connect_instances: connect,
        }
    }

    pub fn node(&self, partition: &str, node: &str) -> Option<&Node> {
        self.nodes.get(&NodeKey::new(partition, node))
    }

    pub fn nodes(&self, partition: &str) -> impl Iterator<Item = &Node> {
        let partition = or_default(partition);
        self.nodes
            .iter()
            .filter(move |(k, _)| k.partition == partition)
            .map(|(_, n)| n)
    }

    /// Instances with service ID `id` in a partition, on any node, in node order: one pass over
    /// the instances (an ADS node ID is a service ID without its node).
    pub fn services_with_id<'a>(
        &'a self,
        partition: &str,
        id: &'a str,
    ) -> impl Iterator<Item = (&'a Node, &'a NodeService)> + 'a {
        let partition = or_default(partition);
        self.services
            .iter()
            .filter(move |(k, _)| k.id == id && k.partition == partition)
            .filter_map(|(k, s)| Some((self.nodes.get(&NodeKey::new(&k.partition, &k.node))?, s)))
    }

    /// Services on one node, in ID order.
    pub fn node_services<'a>(
        &'a self,
        partition: &'a str,
        node: &'a str,
    ) -> impl Iterator<Item = &'a NodeService> + 'a {
        self.services_on_node(partition, node).map(|(_, s)| s)
    }

    /// `catalog/services`: name → union of tags, for one tenancy.
    pub fn service_tags(&self, meta: &EntMeta) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, s) in &self.services {
            if k.partition == meta.partition && k.namespace == meta.namespace {
                out.entry(s.service.clone())
                    .or_default()
                    .extend(s.tags.iter().cloned());
            }
        }
        out
    }

    fn instance<'a>(&'a self, key: &ServiceKey, s: &'a NodeService) -> Option<Instance<'a>> {
        let node = self.nodes.get(&NodeKey::new(&key.partition, &key.node))?;
        let checks = self
            .checks_on_node(&key.partition, &key.node)
            .filter(|(ck, c)| {
                c.service_id.is_empty() || (c.service_id == s.id && ck.namespace == key.namespace)
            })
            .map(|(_, c)| c)
            .collect();
        Some(Instance {
            node,
            service: s,
            checks,
        })
    }

    /// Instances of one service (catalog/service, health/service), ordered by node then ID.
    pub fn instances(&self, name: &ServiceName) -> Vec<Instance<'_>> {
        let key = (
            name.meta.partition.clone(),
            name.meta.namespace.clone(),
            name.name.clone(),
        );
        self.services_by_name
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.instance(k, self.services.get(k)?))
            .collect()
    }

    /// Mesh-capable instances for a service: its sidecars, its native instances, and, when the
    /// service is linked to a terminating gateway, that gateway's instances (as Consul answers).
    pub fn connect_instances(&self, name: &ServiceName) -> Vec<Instance<'_>> {
        let tuple = |n: &ServiceName| {
            (
                n.meta.partition.clone(),
                n.meta.namespace.clone(),
                n.name.clone(),
            )
        };
        // In the catalog's order, as a scan of it would list them.
        let mut keys: BTreeSet<&ServiceKey> = self
            .mesh_instances_of
            .get(&tuple(name))
            .into_iter()
            .flatten()
            .collect();
        for gateway in self.gateways_for(name) {
            keys.extend(
                self.services_by_name
                    .get(&tuple(&gateway))
                    .into_iter()
                    .flatten()
                    .filter(|k| {
                        self.services
                            .get(*k)
                            .is_some_and(|s| s.kind == ServiceKind::TerminatingGateway)
                    }),
            );
        }
        keys.into_iter()
            .filter_map(|k| self.instance(k, self.services.get(k)?))
            .collect()
    }

    /// Terminating gateways (by service name) whose config entry links `name` (or `*`).
    pub fn gateways_for(&self, name: &ServiceName) -> Vec<ServiceName> {
        self.config
            .list(mesh_model::config_entry::Kind::TerminatingGateway)
            .into_iter()
            .filter_map(|e| match e {
                mesh_model::config_entry::ConfigEntry::TerminatingGateway(tg) => {
                    let gw_meta = e.ent_meta();
                    let links = tg.services.iter().any(|s| {
                        let ns = if s.namespace.is_empty() {
                            &gw_meta.namespace
                        } else {
                            &s.namespace
                        };
                        let ap = if s.partition.is_empty() {
                            &gw_meta.partition
                        } else {
                            &s.partition
                        };
                        (s.name == name.name || s.name == mesh_model::names::WILDCARD)
                            && *ns == name.meta.namespace
                            && *ap == name.meta.partition
                    });
                    links.then(|| ServiceName::new(&tg.name, gw_meta))
                }
                _ => None,
            })
            .collect()
    }

    /// Checks of all instances of a service (`health/checks/:service`).
    pub fn service_checks(&self, name: &ServiceName) -> Vec<&HealthCheck> {
        self.checks
            .iter()
            .filter(|(k, c)| {
                k.partition == name.meta.partition
                    && k.namespace == name.meta.namespace
                    && c.service_name == name.name
                    && !c.service_id.is_empty()
            })
            .map(|(_, c)| c)
            .collect()
    }

    /// Checks on one node (node-level and service-level).
    pub fn node_checks<'a>(
        &'a self,
        partition: &'a str,
        node: &'a str,
    ) -> impl Iterator<Item = &'a HealthCheck> + 'a {
        self.checks
            .iter()
            .filter(move |(k, _)| k.partition == partition && k.node == node)
            .map(|(_, c)| c)
    }

    /// Ports already used by instances on a node (for sidecar port assignment).
    pub fn used_ports(&self, partition: &str, node: &str) -> BTreeSet<u16> {
        let partition = or_default(partition);
        self.services_on_node(&partition, node)
            .map(|(_, s)| s.port)
            .filter(|p| *p != 0)
            .collect()
    }

    /// One instance by node and ID.
    pub fn service_by_id(
        &self,
        partition: &str,
        node: &str,
        namespace: &str,
        id: &str,
    ) -> Option<&NodeService> {
        self.services
            .get(&ServiceKey::new(partition, node, namespace, id))
    }
}
