//! Authorization decisions from merged rules (`acl/policy_authorizer.go`,
//! `acl/policy_merger.go`, `acl/static_authorizer.go`).

use std::collections::{BTreeMap, BTreeSet};

use super::rules::{Access, NameRule, Rules, ServiceRule};

/// What a request may do, built from a token's policies plus the agent's default policy.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// `global-management`: everything, including ACL management.
    management: bool,
    default_allow: bool,
    acl: Option<Access>,
    operator: Option<Access>,
    services: Table,
    intentions: Table,
    nodes: Table,
    agents: Table,
    keys: Table,
}

/// Exact and prefix rules of one resource type, already merged.
#[derive(Debug, Clone, Default)]
struct Table {
    exact: BTreeMap<String, Access>,
    prefix: BTreeMap<String, Access>,
}

/// Consul's three-valued enforcement result; `Default` defers to the default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
    Default,
}

// === impl Table ===

impl Table {
    /// Merges a rule: on the same name the stronger level wins (deny > write > list > read).
    fn merge(map: &mut BTreeMap<String, Access>, name: &str, a: Access) {
        map.entry(name.to_owned())
            .and_modify(|cur| *cur = (*cur).max(a))
            .or_insert(a);
    }

    fn add(&mut self, r: &NameRule, prefix: bool) {
        let map = if prefix {
            &mut self.prefix
        } else {
            &mut self.exact
        };
        Self::merge(map, &r.name, r.policy);
    }

    /// Consul's `getPolicy`: the exact rule, else the longest matching prefix rule.
    fn lookup(&self, name: &str) -> Option<Access> {
        if let Some(a) = self.exact.get(name) {
            return Some(*a);
        }
        // Walk candidate prefixes from longest to shortest; prefix keys are few, and
        // `name[..i]` is a char boundary check away from being a valid key.
        (0..=name.len())
            .rev()
            .filter(|i| name.is_char_boundary(*i))
            .find_map(|i| self.prefix.get(&name[..i]).copied())
    }

    fn decide(&self, name: &str, required: Access) -> Decision {
        match self.lookup(name) {
            Some(a) if a.grants(required) => Decision::Allow,
            Some(_) => Decision::Deny,
            None => Decision::Default,
        }
    }

    fn leaves(&self) -> BTreeSet<&String> {
        self.exact.keys().chain(self.prefix.keys()).collect()
    }

    fn enforce(a: Option<Access>, required: Access) -> Decision {
        match a {
            Some(a) if a.grants(required) => Decision::Allow,
            Some(_) => Decision::Deny,
            None => Decision::Default,
        }
    }

    /// Consul's `anyAllowed`: some name of this type is allowed (used for `*` reads).
    fn any_allowed(&self, required: Access) -> Decision {
        let mut decision = Decision::Default;
        if let Some(p) = self.prefix.get("") {
            decision = Self::enforce(Some(*p), required);
            if decision == Decision::Allow {
                return decision;
            }
        }
        for leaf in self.leaves() {
            let mut d = Self::enforce(self.prefix.get(leaf).copied(), required);
            if d != Decision::Allow && self.exact.contains_key(leaf) {
                d = Self::enforce(self.exact.get(leaf).copied(), required);
            }
            if d == Decision::Allow {
                return Decision::Allow;
            }
        }
        decision
    }

    /// Consul's `allAllowed`: every name of this type is allowed (used for `*` writes).
    fn all_allowed(&self, required: Access) -> Decision {
        let mut decision = Decision::Default;
        if let Some(p) = self.prefix.get("") {
            decision = Self::enforce(Some(*p), required);
            if decision == Decision::Deny {
                return decision;
            }
        }
        for leaf in self.leaves() {
            let prefix_d = Self::enforce(self.prefix.get(leaf).copied(), required);
            let d = match self.exact.get(leaf) {
                Some(a) if prefix_d != Decision::Deny => match Self::enforce(Some(*a), required) {
                    Decision::Default => prefix_d,
                    other => other,
                },
                _ => prefix_d,
            };
            if d == Decision::Deny {
                return Decision::Deny;
            }
        }
        decision
    }
}

// === impl Authorizer ===

impl Authorizer {
    /// The `global-management` policy: everything allowed.
    pub fn management() -> Self {
        Self {
            management: true,
            ..Self::new(&[], true)
        }
    }

    /// Merges `rules` (a token's policies) the way Consul does and falls back to the default
    /// policy for anything they do not decide. As in Consul, the default policy never grants
    /// ACL management: `acl:read`/`acl:write` need a rule (or management).
    pub fn new(rules: &[Rules], default_allow: bool) -> Self {
        let mut a = Self {
            management: false,
            default_allow,
            acl: None,
            operator: None,
            services: Table::default(),
            intentions: Table::default(),
            nodes: Table::default(),
            agents: Table::default(),
            keys: Table::default(),
        };
        // Service policies and their intention overrides merge separately, then the derived
        // intention default is applied (Consul merges raw rules, then loads them).
        let mut svc_intentions: [BTreeMap<String, Access>; 2] = Default::default();
        for r in rules {
            merge_opt(&mut a.acl, r.acl);
            merge_opt(&mut a.operator, r.operator);
            for (list, prefix) in [(&r.services, false), (&r.service_prefixes, true)] {
                for s in list {
                    let ServiceRule {
                        name,
                        policy,
                        intentions,
                    } = s;
                    let map = if prefix {
                        &mut a.services.prefix
                    } else {
                        &mut a.services.exact
                    };
                    Table::merge(map, name, *policy);
                    if let Some(i) = intentions {
                        Table::merge(&mut svc_intentions[usize::from(prefix)], name, *i);
                    }
                }
            }
            for n in &r.nodes {
                a.nodes.add(n, false);
            }
            for n in &r.node_prefixes {
                a.nodes.add(n, true);
            }
            for n in &r.agents {
                a.agents.add(n, false);
            }
            for n in &r.agent_prefixes {
                a.agents.add(n, true);
            }
            for n in &r.keys {
                a.keys.add(n, false);
            }
            for n in &r.key_prefixes {
                a.keys.add(n, true);
            }
        }
        for (prefix, services, explicit) in [
            (false, &a.services.exact, &svc_intentions[0]),
            (true, &a.services.prefix, &svc_intentions[1]),
        ] {
            let target = if prefix {
                &mut a.intentions.prefix
            } else {
                &mut a.intentions.exact
            };
            for (name, policy) in services {
                let derived = match explicit.get(name) {
                    Some(i) => *i,
                    None if matches!(policy, Access::Read | Access::Write) => Access::Read,
                    None => Access::Deny,
                };
                target.insert(name.clone(), derived);
            }
        }
        a
    }

    fn finish(&self, d: Decision) -> bool {
        self.management
            || match d {
                Decision::Allow => true,
                Decision::Deny => false,
                Decision::Default => self.default_allow,
            }
    }

    pub fn is_management(&self) -> bool {
        self.management
    }

    pub fn service_read(&self, name: &str) -> bool {
        self.finish(self.services.decide(name, Access::Read))
    }

    pub fn service_write(&self, name: &str) -> bool {
        self.finish(self.services.decide(name, Access::Write))
    }

    /// `intention:read` on a destination; `*` means "any destination" (Consul's anyAllowed).
    pub fn intention_read(&self, dest: &str) -> bool {
        if dest == "*" {
            return self.finish(self.intentions.any_allowed(Access::Read));
        }
        self.finish(self.intentions.decide(dest, Access::Read))
    }

    /// `intention:write` on a destination; `*` means "every destination" (allAllowed).
    pub fn intention_write(&self, dest: &str) -> bool {
        if dest == "*" {
            return self.finish(self.intentions.all_allowed(Access::Write));
        }
        self.finish(self.intentions.decide(dest, Access::Write))
    }

    /// Whether every service may be read (Consul's `ServiceReadAll`), e.g. to skip filtering.
    pub fn service_read_all(&self) -> bool {
        self.finish(self.services.all_allowed(Access::Read))
    }

    pub fn node_read(&self, name: &str) -> bool {
        self.finish(self.nodes.decide(name, Access::Read))
    }

    pub fn node_write(&self, name: &str) -> bool {
        self.finish(self.nodes.decide(name, Access::Write))
    }

    pub fn agent_read(&self, node: &str) -> bool {
        self.finish(self.agents.decide(node, Access::Read))
    }

    pub fn agent_write(&self, node: &str) -> bool {
        self.finish(self.agents.decide(node, Access::Write))
    }

    /// `key:read` on one key of the key/value store.
    pub fn key_read(&self, key: &str) -> bool {
        self.finish(self.keys.decide(key, Access::Read))
    }

    /// `key:write` on one key.
    pub fn key_write(&self, key: &str) -> bool {
        self.finish(self.keys.decide(key, Access::Write))
    }

    /// `key:write` on every key under `prefix` (a recursive delete; Consul's
    /// `KeyWritePrefix`): the prefix's own rule allows it and no longer rule under it denies.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        if self.management {
            return true;
        }
        let under_denied = self
            .keys
            .leaves()
            .into_iter()
            .filter(|leaf| leaf.starts_with(prefix) && leaf.len() > prefix.len())
            .any(|leaf| {
                self.keys
                    .exact
                    .get(leaf)
                    .into_iter()
                    .chain(self.keys.prefix.get(leaf))
                    .any(|a| !a.grants(Access::Write))
            });
        !under_denied && self.key_write(prefix)
    }

    pub fn operator_read(&self) -> bool {
        self.finish(Table::enforce(self.operator, Access::Read))
    }

    pub fn operator_write(&self) -> bool {
        self.finish(Table::enforce(self.operator, Access::Write))
    }

    pub fn acl_read(&self) -> bool {
        self.management || Table::enforce(self.acl, Access::Read) == Decision::Allow
    }

    pub fn acl_write(&self) -> bool {
        self.management || Table::enforce(self.acl, Access::Write) == Decision::Allow
    }
}

fn merge_opt(cur: &mut Option<Access>, new: Option<Access>) {
    if let Some(n) = new {
        *cur = Some(cur.map_or(n, |c| c.max(n)));
    }
}
