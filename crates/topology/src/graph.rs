//! The parts `up` starts and what each needs first; the checks across parts: names defined
//! once, references to defined parts, no dependency cycle, no port used twice.

use std::collections::{BTreeMap, HashMap};

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

/// One part and the parts that must be ready before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub kind: PartKind,
    /// As progress lines and `status` show it (`server`, `sidecar greeter`, ...).
    pub name: String,
    pub needs: Vec<PartKind>,
}

impl Topology {
    /// The parts in an order that starts each after what it needs (file order otherwise).
    /// [`crate::parse`] has rejected cycles, so every part is in the answer.
    pub fn parts(&self) -> Vec<Part> {
        let all = self.unordered_parts();
        order(&all).unwrap_or(all)
    }

    fn unordered_parts(&self) -> Vec<Part> {
        let mut parts = vec![
            Part {
                kind: PartKind::Server,
                name: "server".into(),
                needs: vec![],
            },
            Part {
                kind: PartKind::Platform,
                name: "platform".into(),
                needs: vec![],
            },
        ];
        if self.registrator.is_some() {
            parts.push(Part {
                kind: PartKind::Registrator,
                name: "registrator".into(),
                needs: vec![PartKind::Server, PartKind::Platform],
            });
        }
        let by_name = self.names();
        let refs = |deps: &[Reference]| -> Vec<PartKind> {
            deps.iter()
                .filter_map(|r| by_name.get(r.name.as_str()).copied())
                .collect()
        };
        if !self.intentions.is_empty() {
            parts.push(Part {
                kind: PartKind::Intentions,
                name: "intentions".into(),
                needs: vec![PartKind::Server],
            });
        }
        for (i, g) in self.gateways.iter().enumerate() {
            parts.push(Part {
                kind: PartKind::Gateway(i),
                name: format!("gateway {}", g.name),
                needs: vec![PartKind::Server],
            });
        }
        for (i, s) in self.services.iter().enumerate() {
            parts.push(Part {
                kind: PartKind::Service(i),
                name: format!("service {}", s.name),
                needs: refs(&s.depends_on),
            });
            if s.sidecar.is_some() {
                parts.push(Part {
                    kind: PartKind::Sidecar(i),
                    name: format!("sidecar {}", s.name),
                    needs: vec![PartKind::Server, PartKind::Service(i)],
                });
            }
        }
        for (i, f) in self.functions.iter().enumerate() {
            let mut needs = vec![PartKind::Platform];
            if self.registrator.is_some() {
                needs.push(PartKind::Registrator);
            }
            if f.extension.is_some() {
                needs.extend(
                    self.gateways
                        .iter()
                        .enumerate()
                        .filter(|(_, g)| g.kind == GatewayKind::Mesh)
                        .map(|(i, _)| PartKind::Gateway(i)),
                );
            }
            needs.extend(refs(&f.depends_on));
            parts.push(Part {
                kind: PartKind::Function(i),
                name: format!("function {}", f.name),
                needs,
            });
        }
        if !self.config_entries.is_empty() {
            // After every function (the registrator writes their service-defaults, which a
            // splitter's protocol check reads) and every sidecar (their protocol defaults).
            let mut needs = vec![PartKind::Server];
            needs.extend((0..self.functions.len()).map(PartKind::Function));
            needs.extend(
                self.services
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.sidecar.is_some())
                    .map(|(i, _)| PartKind::Sidecar(i)),
            );
            parts.push(Part {
                kind: PartKind::ConfigEntries,
                name: "config entries".into(),
                needs,
            });
        }
        parts
    }

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
}

/// Kahn's order, stable in declaration order; `None` on a cycle.
fn order(parts: &[Part]) -> Option<Vec<Part>> {
    let mut done: Vec<PartKind> = Vec::new();
    let mut out = Vec::new();
    let mut left: Vec<&Part> = parts.iter().collect();
    while !left.is_empty() {
        let pos = left
            .iter()
            .position(|p| p.needs.iter().all(|n| done.contains(n)))?;
        let p = left.remove(pos);
        done.push(p.kind);
        out.push(p.clone());
    }
    Some(out)
}

/// The checks across parts.
pub(crate) fn check(t: &Topology, problems: &mut Vec<Problem>) {
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut report = |line: usize, message: String| found.push((line, message));

    // Names: services, functions and gateways share the catalog's namespace.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let declared = t
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.line))
        .chain(t.functions.iter().map(|f| (f.name.as_str(), f.line)))
        .chain(t.gateways.iter().map(|g| (g.name.as_str(), g.line)));
    for (name, line) in declared {
        if let Some(first) = seen.insert(name, line) {
            report(
                line,
                format!("{name:?} is declared twice (first on line {first})"),
            );
        }
    }
    let mesh: HashMap<&str, ()> = t
        .services
        .iter()
        .filter(|s| s.sidecar.is_some())
        .map(|s| s.name.as_str())
        .chain(
            t.functions
                .iter()
                .filter(|f| f.mesh_enabled())
                .map(|f| f.name.as_str()),
        )
        .map(|n| (n, ()))
        .collect();
    let parts = t.names();

    for s in &t.services {
        for r in &s.depends_on {
            if !parts.contains_key(r.name.as_str()) {
                report(
                    r.line,
                    format!(
                        "service {:?}: depends_on {:?}, which is not a service or function here",
                        s.name, r.name
                    ),
                );
            }
        }
        for u in s.sidecar.iter().flat_map(|sc| &sc.upstreams) {
            if !mesh.contains_key(u.name.as_str()) {
                report(
                    u.line,
                    format!(
                        "service {:?}: upstream {:?} is not a mesh service here (a service with a sidecar, or a function tagged {ENABLED_TAG}=true)",
                        s.name, u.name
                    ),
                );
            }
        }
    }
    let has_mesh_gateway = t.gateways.iter().any(|g| g.kind == GatewayKind::Mesh);
    for f in &t.functions {
        for r in &f.depends_on {
            if !parts.contains_key(r.name.as_str()) {
                report(
                    r.line,
                    format!(
                        "function {:?}: depends_on {:?}, which is not a service or function here",
                        f.name, r.name
                    ),
                );
            }
        }
        if (f.mesh_enabled() || f.extension.is_some()) && t.registrator.is_none() {
            report(
                f.line,
                format!(
                    "function {:?}: a mesh function needs a registrator block (it registers the function and writes its mTLS material)",
                    f.name
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
            for u in &ext.upstreams {
                if !mesh.contains_key(u.name.as_str()) {
                    report(
                        u.line,
                        format!(
                            "function {:?}: upstream {:?} is not a mesh service here",
                            f.name, u.name
                        ),
                    );
                }
            }
        }
    }
    for i in &t.intentions {
        for n in [&i.source, &i.destination] {
            if n != "*" && !mesh.contains_key(n.as_str()) {
                report(
                    i.line,
                    format!(
                        "intention {:?} → {:?}: {n:?} is not a mesh service here",
                        i.source, i.destination
                    ),
                );
            }
        }
    }

    // Cycles among depends_on.
    if order(&t.unordered_parts()).is_none() {
        let (name, line) = t
            .services
            .iter()
            .flat_map(|s| s.depends_on.first().map(|r| (&s.name, r.line)))
            .chain(
                t.functions
                    .iter()
                    .flat_map(|f| f.depends_on.first().map(|r| (&f.name, r.line))),
            )
            .find(|(n, _)| in_cycle(t, n))
            .map_or((String::new(), 1), |(n, l)| (n.clone(), l));
        report(
            line,
            format!(
                "dependency cycle: {}",
                cycle_path(t, &name).unwrap_or(name.clone())
            ),
        );
    }

    // Ports: everything listens on the loopback, so one port is one listener.
    let mut ports: BTreeMap<u16, (String, usize)> = BTreeMap::new();
    let mut claim = |port: u16, what: String, line: usize| {
        if port == 0 {
            return;
        }
        if let Some((first, first_line)) = ports.get(&port) {
            report(
                line,
                format!("port {port}: {what} clashes with {first} (line {first_line})"),
            );
        } else {
            ports.insert(port, (what, line));
        }
    };
    claim(
        t.server.http.port(),
        "the server's HTTP API".into(),
        t.server.line,
    );
    claim(
        t.server.grpc.port(),
        "the server's gRPC".into(),
        t.server.line,
    );
    claim(
        t.platform.addr.port(),
        "the platform".into(),
        t.platform.line,
    );
    for s in &t.services {
        claim(s.port, format!("service {:?}", s.name), s.line);
        if let Some(sc) = &s.sidecar {
            if let Some(p) = sc.port {
                claim(p, format!("service {:?}'s sidecar", s.name), sc.line);
            }
            for u in &sc.upstreams {
                claim(
                    u.port,
                    format!("service {:?}'s upstream {:?}", s.name, u.name),
                    u.line,
                );
            }
        }
    }
    for f in &t.functions {
        for u in f.extension.iter().flat_map(|e| &e.upstreams) {
            claim(
                u.port,
                format!("function {:?}'s upstream {:?}", f.name, u.name),
                u.line,
            );
        }
    }
    for g in &t.gateways {
        claim(g.port, format!("gateway {:?}", g.name), g.line);
    }
    for (line, message) in found {
        problems.push(Problem {
            file: t.file.clone(),
            line,
            message,
        });
    }
}

fn in_cycle(t: &Topology, start: &str) -> bool {
    cycle_path(t, start).is_some()
}

/// `a → b → a` when following `depends_on` from `start` comes back to it.
fn cycle_path(t: &Topology, start: &str) -> Option<String> {
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
