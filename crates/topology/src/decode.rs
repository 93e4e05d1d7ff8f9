//! The tree → typed parts, one problem per bad value. Field names are snake_case as in the
//! rest of HCL; unknown fields and blocks are problems, never ignored.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::{
    Problem,
    doc::{Block, Body, Node, Val},
    types::*,
};

/// Collects problems for one file.
struct Ctx<'a> {
    file: &'a Path,
    problems: &'a mut Vec<Problem>,
}

impl Ctx<'_> {
    fn report(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        });
    }
}

/// The attributes and blocks of one body, taken field by field; what is left is unknown.
struct Fields {
    what: String,
    line: usize,
    attrs: Vec<(String, usize, Node)>,
    blocks: Vec<Block>,
}

impl Fields {
    fn new(what: impl Into<String>, line: usize, body: Body) -> Fields {
        Fields {
            what: what.into(),
            line,
            attrs: body.attrs,
            blocks: body.blocks,
        }
    }

    fn take(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<Node> {
        let mut found = None;
        let mut i = 0;
        while i < self.attrs.len() {
            if self.attrs[i].0 == key {
                let (_, line, node) = self.attrs.remove(i);
                if found.is_some() {
                    cx.report(line, format!("{}: {key} is set twice", self.what));
                } else {
                    found = Some(node);
                }
            } else {
                i += 1;
            }
        }
        found
    }

    fn blocks(&mut self, ident: &str) -> Vec<Block> {
        let (mine, rest) = std::mem::take(&mut self.blocks)
            .into_iter()
            .partition(|b| b.ident == ident);
        self.blocks = rest;
        mine
    }

    fn one_block(&mut self, cx: &mut Ctx<'_>, ident: &str) -> Option<Block> {
        let mut all = self.blocks(ident).into_iter();
        let first = all.next();
        for extra in all {
            cx.report(
                extra.line,
                format!("{}: only one {ident} block is allowed", self.what),
            );
        }
        first
    }

    fn string(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<(String, usize)> {
        let node = self.take(cx, key)?;
        match node.val {
            Val::Str(s) => Some((s, node.line)),
            other => {
                cx.report(
                    node.line,
                    format!(
                        "{}: {key} must be a string, found {}",
                        self.what,
                        other.what()
                    ),
                );
                None
            }
        }
    }

    fn required_string(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<(String, usize)> {
        if !self.has(key) {
            cx.report(self.line, format!("{}: {key} is required", self.what));
            return None;
        }
        self.string(cx, key)
    }

    fn has(&self, key: &str) -> bool {
        self.attrs.iter().any(|(k, _, _)| k == key)
    }

    fn required_port(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<u16> {
        if !self.has(key) {
            cx.report(self.line, format!("{}: {key} is required", self.what));
            return None;
        }
        self.port(cx, key)
    }

    fn number(&mut self, cx: &mut Ctx<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let node = self.take(cx, key)?;
        match node.val {
            Val::Int(i) if (min..=max).contains(&i) => Some(i),
            Val::Int(i) => {
                cx.report(
                    node.line,
                    format!("{}: {key} {i} is out of range {min}..={max}", self.what),
                );
                None
            }
            other => {
                cx.report(
                    node.line,
                    format!(
                        "{}: {key} must be a whole number, found {}",
                        self.what,
                        other.what()
                    ),
                );
                None
            }
        }
    }

    fn port(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<u16> {
        self.number(cx, key, 1, 65535)
            .and_then(|p| u16::try_from(p).ok())
    }

    fn strings(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<Vec<(String, usize)>> {
        let node = self.take(cx, key)?;
        let Val::List(items) = node.val else {
            cx.report(
                node.line,
                format!(
                    "{}: {key} must be a list of strings, found {}",
                    self.what,
                    node.val.what()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match item.val {
                Val::Str(s) => out.push((s, item.line)),
                other => cx.report(
                    item.line,
                    format!(
                        "{}: {key} must be a list of strings, found {} in it",
                        self.what,
                        other.what()
                    ),
                ),
            }
        }
        Some(out)
    }

    fn map(&mut self, cx: &mut Ctx<'_>, key: &str) -> Option<Vec<(String, usize, Node)>> {
        let node = self.take(cx, key)?;
        match node.val {
            Val::Obj(keys) => Some(keys),
            other => {
                cx.report(
                    node.line,
                    format!(
                        "{}: {key} must be an object, found {}",
                        self.what,
                        other.what()
                    ),
                );
                None
            }
        }
    }

    fn string_map(&mut self, cx: &mut Ctx<'_>, key: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, line, v) in self.map(cx, key).unwrap_or_default() {
            let s = match v.val {
                Val::Str(s) => s,
                Val::Int(i) => i.to_string(),
                Val::Bool(b) => b.to_string(),
                other => {
                    cx.report(
                        v.line,
                        format!(
                            "{}: {key}.{k} must be a string, found {}",
                            self.what,
                            other.what()
                        ),
                    );
                    continue;
                }
            };
            if out.insert(k.clone(), s).is_some() {
                cx.report(line, format!("{}: {key}.{k} is set twice", self.what));
            }
        }
        out
    }

    fn upstreams(&mut self, cx: &mut Ctx<'_>) -> Vec<Upstream> {
        let mut out = Vec::new();
        for (name, line, v) in self.map(cx, "upstreams").unwrap_or_default() {
            // `name:dc`: an upstream in another datacenter (Consul's `Datacenter` field).
            let (service, datacenter) = match name.split_once(':') {
                None => (name.clone(), None),
                Some((s, dc)) if !s.is_empty() && !dc.is_empty() && !dc.contains(':') => {
                    (s.to_owned(), Some(dc.to_owned()))
                }
                Some(_) => {
                    cx.report(
                        line,
                        format!(
                            "{}: upstream {name:?} must be NAME or NAME:DATACENTER",
                            self.what
                        ),
                    );
                    continue;
                }
            };
            match v.val {
                Val::Int(p) if (1..=65535).contains(&p) => out.push(Upstream {
                    name: service,
                    datacenter,
                    port: u16::try_from(p).unwrap_or(0),
                    line,
                }),
                other => cx.report(
                    v.line,
                    format!(
                        "{}: upstream {name:?} must be a local port (1-65535), found {}",
                        self.what,
                        match other {
                            Val::Int(i) => i.to_string(),
                            o => o.what().to_owned(),
                        }
                    ),
                ),
            }
        }
        out
    }

    fn depends_on(&mut self, cx: &mut Ctx<'_>) -> Vec<Reference> {
        self.strings(cx, "depends_on")
            .unwrap_or_default()
            .into_iter()
            .map(|(name, line)| Reference { name, line })
            .collect()
    }

    fn addr(&mut self, cx: &mut Ctx<'_>, key: &str, default: SocketAddr) -> SocketAddr {
        match self.string(cx, key) {
            None => default,
            Some((s, line)) => match s.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    cx.report(
                        line,
                        format!("{}: {key} {s:?} is not an IP:port address", self.what),
                    );
                    default
                }
            },
        }
    }

    /// Reports every field and block nobody took.
    fn finish(self, cx: &mut Ctx<'_>) {
        for (key, line, _) in self.attrs {
            cx.report(line, format!("{}: unknown field {key:?}", self.what));
        }
        for b in self.blocks {
            cx.report(
                b.line,
                format!("{}: unknown block {:?}", self.what, b.ident),
            );
        }
    }
}

fn labels(cx: &mut Ctx<'_>, b: &Block, n: usize, example: &str) -> Option<Vec<String>> {
    if b.labels.len() != n {
        cx.report(
            b.line,
            format!(
                "{} block needs {n} label{} ({example}), found {}",
                b.ident,
                if n == 1 { "" } else { "s" },
                b.labels.len()
            ),
        );
        return None;
    }
    Some(b.labels.clone())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// The blocks and fields of one datacenter: a `datacenter` block's body, or the whole file
/// without such blocks.
const PER_DATACENTER: &[&str] = &[
    "server",
    "platform",
    "registrator",
    "service",
    "function",
    "gateway",
    "config_entry",
    "intention",
];

/// The whole file.
pub(crate) fn topology(
    file: &Path,
    base: &Path,
    body: Body,
    problems: &mut Vec<Problem>,
) -> Topology {
    let mut cx = Ctx { file, problems };
    let mut top = Fields::new("topology", 1, body);
    let state_dir = top
        .string(&mut cx, "state_dir")
        .map_or_else(|| base.join(".lambdamesh"), |(s, _)| base.join(s));
    let primary_name = top.string(&mut cx, "primary_datacenter");
    let blocks = top.blocks("datacenter");
    if blocks.is_empty() {
        if let Some((_, line)) = &primary_name {
            cx.report(
                *line,
                "topology: primary_datacenter needs datacenter \"NAME\" { ... } blocks",
            );
        }
        let dc = datacenter(&mut cx, base, &mut top, DEFAULT_DATACENTER, 1, false);
        top.finish(&mut cx);
        return Topology {
            file: file.to_owned(),
            base: base.to_owned(),
            state_dir,
            datacenters: vec![dc],
            primary: 0,
            federated: false,
        };
    }
    // With datacenter blocks, every part belongs to one: a part left outside would have no
    // server to register with.
    for ident in PER_DATACENTER {
        for b in top.blocks(ident) {
            cx.report(
                b.line,
                format!("{ident} block outside a datacenter block: with datacenter blocks, every part goes inside one"),
            );
        }
    }
    if let Some(node) = top.take(&mut cx, "config_entries") {
        cx.report(
            node.line,
            "config_entries outside a datacenter block: with datacenter blocks, every part goes inside one",
        );
    }
    let mut datacenters: Vec<Datacenter> = Vec::new();
    for b in blocks {
        let Some(l) = labels(&mut cx, &b, 1, "datacenter \"NAME\" { ... }") else {
            continue;
        };
        let name = l[0].clone();
        if let Err(e) = mesh_model::federation::validate_datacenter(&name) {
            cx.report(b.line, format!("datacenter {name:?}: {e}"));
        }
        if let Some(first) = datacenters.iter().find(|d| d.name == name) {
            cx.report(
                b.line,
                format!(
                    "datacenter {name:?} is declared twice (first on line {})",
                    first.line
                ),
            );
            continue;
        }
        let mut f = Fields::new(format!("datacenter {name:?}"), b.line, b.body);
        let dc = datacenter(&mut cx, base, &mut f, &name, b.line, true);
        f.finish(&mut cx);
        datacenters.push(dc);
    }
    let primary = match &primary_name {
        None => 0,
        Some((name, line)) => match datacenters.iter().position(|d| &d.name == name) {
            Some(i) => i,
            None => {
                let known: Vec<&str> = datacenters.iter().map(|d| d.name.as_str()).collect();
                cx.report(
                    *line,
                    format!(
                        "topology: primary_datacenter {name:?} is not a datacenter here ({})",
                        known.join(", ")
                    ),
                );
                0
            }
        },
    };
    top.finish(&mut cx);
    if datacenters.is_empty() {
        // Every block was refused above; keep the shape (one datacenter) for the later checks.
        datacenters.push(Datacenter {
            name: DEFAULT_DATACENTER.to_owned(),
            line: 1,
            server: default_server(),
            platform: default_platform(),
            registrator: None,
            services: Vec::new(),
            functions: Vec::new(),
            gateways: Vec::new(),
            config_entries: Vec::new(),
            intentions: Vec::new(),
        });
    }
    Topology {
        file: file.to_owned(),
        base: base.to_owned(),
        state_dir,
        datacenters,
        primary,
        federated: true,
    }
}

fn default_server() -> Server {
    Server {
        http: addr("127.0.0.1:8500"),
        grpc: addr("127.0.0.1:8502"),
        server_port: None,
        line: 1,
    }
}

fn default_platform() -> Platform {
    Platform {
        addr: addr("127.0.0.1:9001"),
        region: DEFAULT_REGION.to_owned(),
        line: 1,
    }
}

/// One datacenter's parts, taken from `f` (the file's top level or a `datacenter` block).
fn datacenter(
    cx: &mut Ctx<'_>,
    base: &Path,
    f: &mut Fields,
    name: &str,
    line: usize,
    federated: bool,
) -> Datacenter {
    let server = match f.one_block(cx, "server") {
        Some(b) => {
            let _ = labels(cx, &b, 0, "server { ... }");
            let mut f = Fields::new("server", b.line, b.body);
            let server_port = f.port(cx, "server_port");
            if let (Some(_), false) = (server_port, federated) {
                cx.report(
                    b.line,
                    "server: server_port is for files with datacenter blocks (the servers of several datacenters talk on it)",
                );
            }
            let s = Server {
                http: f.addr(cx, "http_addr", addr("127.0.0.1:8500")),
                grpc: f.addr(cx, "grpc_addr", addr("127.0.0.1:8502")),
                server_port,
                line: b.line,
            };
            f.finish(cx);
            s
        }
        None => Server {
            line,
            ..default_server()
        },
    };
    let platform = match f.one_block(cx, "platform") {
        Some(b) => {
            let _ = labels(cx, &b, 0, "platform { ... }");
            let mut f = Fields::new("platform", b.line, b.body);
            let p = Platform {
                addr: f.addr(cx, "addr", addr("127.0.0.1:9001")),
                region: f
                    .string(cx, "region")
                    .map_or_else(|| DEFAULT_REGION.to_owned(), |(r, _)| r),
                line: b.line,
            };
            f.finish(cx);
            p
        }
        None => Platform {
            line,
            ..default_platform()
        },
    };
    let registrator = f.one_block(cx, "registrator").map(|b| {
        let _ = labels(cx, &b, 0, "registrator { ... }");
        let mut f = Fields::new("registrator", b.line, b.body);
        let schedule = f
            .string(cx, "schedule")
            .map_or_else(|| "rate(1 minute)".to_owned(), |(s, _)| s);
        let node = f
            .string(cx, "node")
            .map_or_else(|| "lambdas".to_owned(), |(s, _)| s);
        f.finish(cx);
        Registrator {
            schedule,
            node,
            line: b.line,
        }
    });

    let services = f
        .blocks("service")
        .into_iter()
        .filter_map(|b| service(cx, base, b))
        .collect();
    let functions = f
        .blocks("function")
        .into_iter()
        .filter_map(|b| function(cx, base, b))
        .collect();
    let gateways = f
        .blocks("gateway")
        .into_iter()
        .filter_map(|b| gateway(cx, b))
        .collect();

    let mut config_entries = Vec::new();
    if let Some(files) = f.strings(cx, "config_entries") {
        for (f, line) in files {
            let path = base.join(&f);
            match std::fs::read_to_string(&path) {
                Err(e) => cx.report(line, format!("config entry file {f:?}: {e}")),
                Ok(text) => match mesh_model::config_entry::decode_hcl_or_json(&text)
                    .and_then(|e| e.validate().map(|()| e))
                {
                    Ok(e) => config_entries.push(ConfigEntry {
                        json: e.to_json(),
                        label: format!("{}/{}", e.kind().as_str(), e.name()),
                        source: Some(path),
                        line,
                    }),
                    Err(e) => cx.report(line, format!("config entry file {f:?}: {e}")),
                },
            }
        }
    }
    for b in f.blocks("config_entry") {
        let _ = labels(cx, &b, 0, "config_entry { Kind = ... }");
        let Some((_, _, node)) = b.body.attrs.into_iter().next() else {
            continue;
        };
        match to_json(&node) {
            Err((line, what)) => cx.report(line, format!("config_entry: {what} is not allowed")),
            Ok(v) => match mesh_model::config_entry::decode_value(v)
                .and_then(|e| e.validate().map(|()| e))
            {
                Ok(e) => config_entries.push(ConfigEntry {
                    json: e.to_json(),
                    label: format!("{}/{}", e.kind().as_str(), e.name()),
                    source: None,
                    line: b.line,
                }),
                Err(e) => cx.report(b.line, format!("config_entry: {e}")),
            },
        }
    }

    let intentions = f
        .blocks("intention")
        .into_iter()
        .filter_map(|b| {
            let l = labels(cx, &b, 2, "intention \"SOURCE\" \"DESTINATION\" { ... }")?;
            let what = format!("intention {:?} → {:?}", l[0], l[1]);
            let mut f = Fields::new(what.clone(), b.line, b.body);
            let allow = match f.string(cx, "action") {
                None => true,
                Some((a, _)) if a == "allow" => true,
                Some((a, _)) if a == "deny" => false,
                Some((a, line)) => {
                    cx.report(
                        line,
                        format!("{what}: action must be \"allow\" or \"deny\", found {a:?}"),
                    );
                    true
                }
            };
            f.finish(cx);
            Some(Intention {
                source: l[0].clone(),
                destination: l[1].clone(),
                allow,
                line: b.line,
            })
        })
        .collect();
    Datacenter {
        name: name.to_owned(),
        line,
        server,
        platform,
        registrator,
        services,
        functions,
        gateways,
        config_entries,
        intentions,
    }
}

fn service(cx: &mut Ctx<'_>, base: &Path, b: Block) -> Option<Service> {
    let name = labels(cx, &b, 1, "service \"NAME\" { ... }")?.remove(0);
    let what = format!("service {name:?}");
    let mut f = Fields::new(what.clone(), b.line, b.body);
    // No command: the service runs elsewhere; `up` registers it (and starts its sidecar).
    let command: Vec<String> = f
        .strings(cx, "command")
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.0)
        .collect();
    let port = f.required_port(cx, "port");
    let health = match f.string(cx, "health") {
        None => Health::Tcp,
        Some((h, _)) if h == "tcp" => Health::Tcp,
        Some((h, _)) if h.starts_with('/') => Health::Http(h),
        Some((h, line)) => {
            cx.report(
                line,
                format!(
                    "{what}: health must be \"tcp\" or an HTTP path starting with '/', found {h:?}"
                ),
            );
            Health::Tcp
        }
    };
    let env = f.string_map(cx, "env");
    let protocol = f.string(cx, "protocol").map(|p| p.0);
    let depends_on = f.depends_on(cx);
    let sidecar = f.one_block(cx, "sidecar").map(|sb| {
        let _ = labels(cx, &sb, 0, "sidecar { ... }");
        let mut s = Fields::new(format!("{what} sidecar"), sb.line, sb.body);
        let side = Sidecar {
            port: s.port(cx, "port"),
            upstreams: s.upstreams(cx),
            line: sb.line,
        };
        s.finish(cx);
        side
    });
    f.finish(cx);
    let _ = base;
    Some(Service {
        name,
        command,
        port: port.unwrap_or(0),
        health,
        env,
        protocol,
        sidecar,
        depends_on,
        line: b.line,
    })
}

fn function(cx: &mut Ctx<'_>, base: &Path, b: Block) -> Option<Function> {
    let name = labels(cx, &b, 1, "function \"NAME\" { ... }")?.remove(0);
    let what = format!("function {name:?}");
    let mut f = Fields::new(what.clone(), b.line, b.body);
    let code = f.required_string(cx, "code");
    let runtime = f.required_string(cx, "runtime");
    let handler = f.required_string(cx, "handler");
    let layers = f
        .strings(cx, "layers")
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.0)
        .collect();
    let environment = f.string_map(cx, "environment");
    let tags = f.string_map(cx, "tags");
    let timeout = f
        .number(cx, "timeout", 1, 900)
        .and_then(|t| u32::try_from(t).ok());
    let memory = f
        .number(cx, "memory", 128, 10240)
        .and_then(|t| u32::try_from(t).ok());
    let depends_on = f.depends_on(cx);
    let extension = f.one_block(cx, "extension").map(|eb| {
        let _ = labels(cx, &eb, 0, "extension { ... }");
        let mut e = Fields::new(format!("{what} extension"), eb.line, eb.body);
        let ext = Extension {
            upstreams: e.upstreams(cx),
            line: eb.line,
        };
        e.finish(cx);
        ext
    });
    f.finish(cx);
    // Missing fields are reported above; the function still takes part in the checks across
    // parts (the file is refused anyway).
    Some(Function {
        name,
        code: base.join(PathBuf::from(code.map(|c| c.0).unwrap_or_default())),
        runtime: runtime.map(|r| r.0).unwrap_or_default(),
        handler: handler.map(|h| h.0).unwrap_or_default(),
        layers,
        environment,
        tags,
        timeout,
        memory,
        extension,
        depends_on,
        line: b.line,
    })
}

fn gateway(cx: &mut Ctx<'_>, b: Block) -> Option<Gateway> {
    let name = labels(cx, &b, 1, "gateway \"NAME\" { ... }")?.remove(0);
    let what = format!("gateway {name:?}");
    let mut f = Fields::new(what.clone(), b.line, b.body);
    let kind = match f.required_string(cx, "kind") {
        Some((k, _)) if k == "terminating" => Some(GatewayKind::Terminating),
        Some((k, _)) if k == "mesh" => Some(GatewayKind::Mesh),
        Some((k, line)) => {
            cx.report(
                line,
                format!("{what}: kind must be \"terminating\" or \"mesh\", found {k:?}"),
            );
            None
        }
        None => None,
    };
    let port = f.required_port(cx, "port");
    f.finish(cx);
    Some(Gateway {
        name,
        kind: kind?,
        port: port?,
        line: b.line,
    })
}

/// An inline config entry's value as Consul's JSON (the model decodes and validates it).
fn to_json(node: &Node) -> Result<serde_json::Value, (usize, &'static str)> {
    use serde_json::Value;
    Ok(match &node.val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Int(i) => Value::from(*i),
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Str(s) => Value::String(s.clone()),
        Val::List(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Val::Obj(keys) => {
            let mut m = serde_json::Map::new();
            for (k, _, v) in keys {
                m.insert(k.clone(), to_json(v)?);
            }
            Value::Object(m)
        }
        Val::Expr(what) => return Err((node.line, what)),
    })
}
