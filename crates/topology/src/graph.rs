//! The parts `up` starts and what each needs first; the checks across parts: names defined
//! once, references to defined parts, no dependency cycle, no port used twice.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{Problem, types::*};

/// What a part is, with the index of its declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartKind {
    Server,
    Platform,
    Registrator,
    /// The service's own process.
    Service(usize),
    /// Its registration, `service-defaults` (protocol) and Envoy sidecar.
    Sidecar(usize),
    Gateway(usize),
    Function(usize),
    ConfigEntries,
    Intentions,
}

/// A part of one datacenter (the index in [`Topology::datacenters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartId {
    pub dc: usize,
    pub kind: PartKind,
}

/// One part and the parts that must be ready before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The datacenter it belongs to.
    pub dc: usize,
    pub kind: PartKind,
    /// As progress lines and `status` show it (`server`, `sidecar greeter`, ...; `dc2/server`
    /// in a federated file).
    pub name: String,
    pub needs: Vec<PartId>,
}

impl Part {
    pub fn id(&self) -> PartId {
        PartId {
            dc: self.dc,
            kind: self.kind,
        }
    }
}

impl Topology {
    /// The parts in an order that starts each after what it needs (file order otherwise).
    /// [`crate::parse`] has rejected cycles, so every part is in the answer.
    ///
    /// In a federated file the datacenters are joined first: the primary's server and mesh
    /// gateways, then each secondary's server (it joins through those gateways) and mesh
    /// gateways; then each datacenter's other parts in file order.
    pub fn parts(&self) -> Vec<Part> {
        let all = self.unordered_parts();
        order(&all).unwrap_or(all)
    }

    fn unordered_parts(&self) -> Vec<Part> {
        if !self.federated {
            return self.datacenter_parts(0);
        }
        let is_federation = |p: &Part| {
            p.kind == PartKind::Server
                || matches!(p.kind, PartKind::Gateway(i)
                    if self.datacenters[p.dc].gateways[i].kind == GatewayKind::Mesh)
        };
        let mut federation = Vec::new();
        let mut rest = Vec::new();
        let primary_gateways: Vec<PartId> = self
            .mesh_gateways(self.primary)
            .map(|i| PartId {
                dc: self.primary,
                kind: PartKind::Gateway(i),
            })
            .collect();
        let dcs = std::iter::once(self.primary)
            .chain((0..self.datacenters.len()).filter(|d| *d != self.primary));
        for d in dcs {
            for mut p in self.datacenter_parts(d) {
                if !is_federation(&p) {
                    rest.push((d, p));
                    continue;
                }
                if p.kind == PartKind::Server && d != self.primary {
                    p.needs.extend(primary_gateways.iter().copied());
                }
                federation.push(p);
            }
        }
        // The other parts in file order of their datacenters.
        rest.sort_by_key(|(d, _)| *d);
        federation.extend(rest.into_iter().map(|(_, p)| p));
        federation
    }

    /// The indexes of datacenter `dc`'s mesh gateways.
    pub fn mesh_gateways(&self, dc: usize) -> impl Iterator<Item = usize> + '_ {
        self.datacenters[dc]
            .gateways
            .iter()
            .enumerate()
            .filter(|(_, g)| g.kind == GatewayKind::Mesh)
            .map(|(i, _)| i)
    }

    fn datacenter_parts(&self, dc: usize) -> Vec<Part> {
        let t = &self.datacenters[dc];
        let id = |kind| PartId { dc, kind };
        let part = |kind, name: &str, needs: Vec<PartKind>| Part {
            dc,
            kind,
            name: self.scoped(dc, name),
            needs: needs.into_iter().map(id).collect(),
        };
        let mut parts = vec![
            part(PartKind::Server, "server", vec![]),
            part(PartKind::Platform, "platform", vec![]),
        ];
        if t.registrator.is_some() {
            parts.push(part(
                PartKind::Registrator,
                "registrator",
                vec![PartKind::Server, PartKind::Platform],
            ));
        }
        let by_name = t.names();
        let refs = |deps: &[Reference]| -> Vec<PartKind> {
            deps.iter()
                .filter_map(|r| by_name.get(r.name.as_str()).copied())
                .collect()
        };
        if !t.intentions.is_empty() {
            parts.push(part(
                PartKind::Intentions,
                "intentions",
                vec![PartKind::Server],
            ));
        }
        for (i, g) in t.gateways.iter().enumerate() {
            parts.push(part(
                PartKind::Gateway(i),
                &format!("gateway {}", g.name),
                vec![PartKind::Server],
            ));
        }
        for (i, s) in t.services.iter().enumerate() {
            parts.push(part(
                PartKind::Service(i),
                &format!("service {}", s.name),
                refs(&s.depends_on),
            ));
            if s.sidecar.is_some() {
                parts.push(part(
                    PartKind::Sidecar(i),
                    &format!("sidecar {}", s.name),
                    vec![PartKind::Server, PartKind::Service(i)],
                ));
            }
        }
        for (i, f) in t.functions.iter().enumerate() {
            let mut needs = vec![PartKind::Platform];
            if t.registrator.is_some() {
                needs.push(PartKind::Registrator);
            }
            if f.extension.is_some() {
                needs.extend(self.mesh_gateways(dc).map(PartKind::Gateway));
            }
            needs.extend(refs(&f.depends_on));
            parts.push(part(
                PartKind::Function(i),
                &format!("function {}", f.name),
                needs,
            ));
        }
        if !t.config_entries.is_empty() {
            // After every function (the registrator writes their service-defaults, which a
            // splitter's protocol check reads) and every sidecar (their protocol defaults).
            let mut needs = vec![PartKind::Server];
            needs.extend((0..t.functions.len()).map(PartKind::Function));
            needs.extend(
                t.services
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.sidecar.is_some())
                    .map(|(i, _)| PartKind::Sidecar(i)),
            );
            parts.push(part(PartKind::ConfigEntries, "config entries", needs));
        }
        parts
    }
}

impl Datacenter {
    /// Services and functions by name (what `depends_on` and upstreams refer to).
    fn names(&self) -> HashMap<&str, PartKind> {
        let mut m = HashMap::new();
        for (i, f) in self.functions.iter().enumerate() {
            m.insert(f.name.as_str(), PartKind::Function(i));
        }
        for (i, s) in self.services.iter().enumerate() {
            m.insert(s.name.as_str(), PartKind::Service(i));
        }
        m
    }

    /// The mesh services: services with a sidecar, functions tagged for the mesh.
    fn mesh(&self) -> HashSet<&str> {
        self.services
            .iter()
            .filter(|s| s.sidecar.is_some())
            .map(|s| s.name.as_str())
            .chain(
                self.functions
                    .iter()
                    .filter(|f| f.mesh_enabled())
                    .map(|f| f.name.as_str()),
            )
            .collect()
    }
}

/// Kahn's order, stable in declaration order; `None` on a cycle.
fn order(parts: &[Part]) -> Option<Vec<Part>> {
    let mut done: Vec<PartId> = Vec::new();
    let mut out = Vec::new();
    let mut left: Vec<&Part> = parts.iter().collect();
    while !left.is_empty() {
        let pos = left
            .iter()
            .position(|p| p.needs.iter().all(|n| done.contains(n)))?;
        let p = left.remove(pos);
        done.push(p.id());
        out.push(p.clone());
    }
    Some(out)
}

/// The checks across parts.
pub(crate) fn check(t: &Topology, problems: &mut Vec<Problem>) {
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut report = |line: usize, message: String| found.push((line, message));
    let mesh: Vec<HashSet<&str>> = t.datacenters.iter().map(Datacenter::mesh).collect();
    let names: Vec<&str> = t.datacenters.iter().map(|d| d.name.as_str()).collect();
    // "here" in a file of one datacenter; which datacenter in a federated file.
    let here = |dc: usize| {
        if t.federated {
            format!("in datacenter {:?}", names[dc])
        } else {
            "here".to_owned()
        }
    };
    // An upstream's datacenter, or the problem with it.
    let target = |dc: usize, u: &Upstream| -> Result<usize, String> {
        match &u.datacenter {
            None => Ok(dc),
            Some(name) => t.datacenter_index(name).ok_or_else(|| {
                format!(
                    "upstream {:?}: there is no datacenter {name:?} in this file ({})",
                    u.label(),
                    names.join(", ")
                )
            }),
        }
    };

    for (dc, d) in t.datacenters.iter().enumerate() {
        // Names: services, functions and gateways share the catalog's namespace.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let declared = d
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.line))
            .chain(d.functions.iter().map(|f| (f.name.as_str(), f.line)))
            .chain(d.gateways.iter().map(|g| (g.name.as_str(), g.line)));
        for (name, line) in declared {
            if let Some(first) = seen.insert(name, line) {
                report(
                    line,
                    format!("{name:?} is declared twice (first on line {first})"),
                );
            }
        }
        let parts = d.names();
        let mut upstream = |what: String, u: &Upstream| match target(dc, u) {
            Err(message) => report(u.line, format!("{what}: {message}")),
            Ok(to) if !mesh[to].contains(u.name.as_str()) => report(
                u.line,
                format!(
                    "{what}: upstream {:?} is not a mesh service {} (a service with a sidecar, or a function tagged {ENABLED_TAG}=true)",
                    u.label(),
                    here(to)
                ),
            ),
            Ok(_) => {}
        };
        for s in &d.services {
            for u in s.sidecar.iter().flat_map(|sc| &sc.upstreams) {
                upstream(format!("service {:?}", s.name), u);
            }
        }
        for f in &d.functions {
            for u in f.extension.iter().flat_map(|e| &e.upstreams) {
                upstream(format!("function {:?}", f.name), u);
            }
        }
        for s in &d.services {
            for r in &s.depends_on {
                if !parts.contains_key(r.name.as_str()) {
                    report(
                        r.line,
                        format!(
                            "service {:?}: depends_on {:?}, which is not a service or function {}",
                            s.name,
                            r.name,
                            here(dc)
                        ),
                    );
                }
            }
        }
        let has_mesh_gateway = d.gateways.iter().any(|g| g.kind == GatewayKind::Mesh);
        if t.federated && !has_mesh_gateway {
            report(
                d.line,
                format!(
                    "datacenter {:?} has no gateway with kind = \"mesh\": datacenters are joined through mesh gateways (each exposes its datacenter's servers)",
                    d.name
                ),
            );
        }
        for f in &d.functions {
            for r in &f.depends_on {
                if !parts.contains_key(r.name.as_str()) {
                    report(
                        r.line,
                        format!(
                            "function {:?}: depends_on {:?}, which is not a service or function {}",
                            f.name,
                            r.name,
                            here(dc)
                        ),
                    );
                }
            }
            if (f.mesh_enabled() || f.extension.is_some()) && d.registrator.is_none() {
                report(
                    f.line,
                    format!(
                        "function {:?}: a mesh function needs a registrator block{} (it registers the function and writes its mTLS material)",
                        f.name,
                        if t.federated {
                            format!(" in datacenter {:?}", d.name)
                        } else {
                            String::new()
                        }
                    ),
                );
            }
            if let Some(ext) = &f.extension {
                if !has_mesh_gateway {
                    report(
                        ext.line,
                        format!(
                            "function {:?}: the extension needs a gateway with kind = \"mesh\"",
                            f.name
                        ),
                    );
                }
                if !f.mesh_enabled() {
                    report(
                        ext.line,
                        format!(
                            "function {:?}: the extension needs the function tagged {ENABLED_TAG} = \"true\" (its identity comes from the registrator)",
                            f.name
                        ),
                    );
                }
            }
        }
        // Intentions are shared by every datacenter (replicated from the primary): a name may
        // be a mesh service of any of them.
        for i in &d.intentions {
            for n in [&i.source, &i.destination] {
                if n != "*" && !mesh.iter().any(|m| m.contains(n.as_str())) {
                    report(
                        i.line,
                        format!(
                            "intention {:?} → {:?}: {n:?} is not a mesh service {}",
                            i.source,
                            i.destination,
                            if t.federated {
                                "in any datacenter".to_owned()
                            } else {
                                here(dc)
                            }
                        ),
                    );
                }
            }
        }
    }

    // Config entries and intentions are one set for the whole federation: the same one declared
    // in two datacenters would be written twice, the later write winning.
    if t.federated {
        let mut entries: HashMap<&str, (&str, usize)> = HashMap::new();
        let mut intentions: HashMap<(&str, &str), (&str, usize)> = HashMap::new();
        for d in &t.datacenters {
            for e in &d.config_entries {
                if let Some((dc, line)) = entries.insert(&e.label, (&d.name, e.line)) {
                    report(
                        e.line,
                        format!(
                            "config entry {} is also declared in datacenter {dc:?} (line {line}): config entries are shared by every datacenter (replicated from the primary); declare it once",
                            e.label
                        ),
                    );
                }
            }
            for i in &d.intentions {
                let key = (i.source.as_str(), i.destination.as_str());
                if let Some((dc, line)) = intentions.insert(key, (&d.name, i.line)) {
                    report(
                        i.line,
                        format!(
                            "intention {:?} → {:?} is also declared in datacenter {dc:?} (line {line}): intentions are shared by every datacenter (replicated from the primary); declare it once",
                            i.source, i.destination
                        ),
                    );
                }
            }
        }
    }

    // Cycles among depends_on.
    if order(&t.unordered_parts()).is_none() {
        let (name, line, dc) = t
            .datacenters
            .iter()
            .enumerate()
            .flat_map(|(dc, d)| {
                d.services
                    .iter()
                    .flat_map(move |s| s.depends_on.first().map(|r| (&s.name, r.line, dc)))
                    .chain(
                        d.functions
                            .iter()
                            .flat_map(move |f| f.depends_on.first().map(|r| (&f.name, r.line, dc))),
                    )
            })
            .find(|(n, _, dc)| cycle_path(&t.datacenters[*dc], n).is_some())
            .map_or((String::new(), 1, 0), |(n, l, dc)| (n.clone(), l, dc));
        report(
            line,
            format!(
                "dependency cycle: {}",
                cycle_path(&t.datacenters[dc], &name).unwrap_or(name.clone())
            ),
        );
    }

    // Ports: everything listens on the loopback of one machine, so one port is one listener,
    // whichever datacenter it is in.
    let mut ports: BTreeMap<u16, (String, usize)> = BTreeMap::new();
    for (port, what, line) in claims(t) {
        if port == 0 {
            continue;
        }
        if let Some((first, first_line)) = ports.get(&port) {
            report(
                line,
                format!("port {port}: {what} clashes with {first} (line {first_line})"),
            );
        } else {
            ports.insert(port, (what, line));
        }
    }
    for (line, message) in found {
        problems.push(Problem {
            file: t.file.clone(),
            line,
            message,
        });
    }
}

/// Every port the file names: (port, what, line). In a federated file each names its
/// datacenter.
fn claims(t: &Topology) -> Vec<(u16, String, usize)> {
    let mut out = Vec::new();
    for d in &t.datacenters {
        let of = |what: String| {
            if t.federated {
                format!("{what} in {}", d.name)
            } else {
                what
            }
        };
        out.push((
            d.server.http.port(),
            of("the server's HTTP API".into()),
            d.server.line,
        ));
        out.push((
            d.server.grpc.port(),
            of("the server's gRPC".into()),
            d.server.line,
        ));
        if let Some(p) = d.server.server_port {
            out.push((p, of("the server's server_port".into()), d.server.line));
        }
        out.push((
            d.platform.addr.port(),
            of("the platform".into()),
            d.platform.line,
        ));
        for s in &d.services {
            out.push((s.port, of(format!("service {:?}", s.name)), s.line));
            if let Some(sc) = &s.sidecar {
                if let Some(p) = sc.port {
                    out.push((p, of(format!("service {:?}'s sidecar", s.name)), sc.line));
                }
                for u in &sc.upstreams {
                    out.push((
                        u.port,
                        of(format!("service {:?}'s upstream {:?}", s.name, u.label())),
                        u.line,
                    ));
                }
            }
        }
        for f in &d.functions {
            for u in f.extension.iter().flat_map(|e| &e.upstreams) {
                out.push((
                    u.port,
                    of(format!("function {:?}'s upstream {:?}", f.name, u.label())),
                    u.line,
                ));
            }
        }
        for g in &d.gateways {
            out.push((g.port, of(format!("gateway {:?}", g.name)), g.line));
        }
    }
    out
}

/// `a → b → a` when following `depends_on` from `start` comes back to it.
fn cycle_path(t: &Datacenter, start: &str) -> Option<String> {
    let deps = |n: &str| -> Vec<String> {
        t.services
            .iter()
            .filter(|s| s.name == n)
            .flat_map(|s| s.depends_on.iter())
            .chain(
                t.functions
                    .iter()
                    .filter(|f| f.name == n)
                    .flat_map(|f| f.depends_on.iter()),
            )
            .map(|r| r.name.clone())
            .collect()
    };
    fn walk(
        deps: &dyn Fn(&str) -> Vec<String>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
    ) -> bool {
        for d in deps(at) {
            if d == start {
                path.push(d);
                return true;
            }
            if path.contains(&d) {
                continue;
            }
            path.push(d.clone());
            if walk(deps, start, &d, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(&deps, start, start, &mut path).then(|| path.join(" → "))
}
