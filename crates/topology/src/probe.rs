//! The checks that need the machine: the files and commands a topology names exist, and its
//! ports are free (a listener already open on one is a clash too). Run after a dead run's
//! leftovers are cleaned, before anything starts.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
};

use crate::{Problem, Problems, Topology};

/// Every port the topology listens on, with what listens and its line (in a federated file,
/// each names its datacenter).
pub fn ports(t: &Topology) -> Vec<(SocketAddr, String, usize)> {
    let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
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
            d.server.http,
            of("the server's HTTP API".to_owned()),
            d.server.line,
        ));
        out.push((
            d.server.grpc,
            of("the server's gRPC".to_owned()),
            d.server.line,
        ));
        if let Some(p) = d.server.server_port {
            out.push((
                local(p),
                of("the server's server_port".to_owned()),
                d.server.line,
            ));
        }
        out.push((
            d.platform.addr,
            of("the platform".to_owned()),
            d.platform.line,
        ));
        for s in &d.services {
            // A service without a command runs elsewhere: its port is not ours to open.
            if !s.command.is_empty() {
                out.push((local(s.port), of(format!("service {:?}", s.name)), s.line));
            }
            if let Some(sc) = &s.sidecar {
                if let Some(p) = sc.port {
                    out.push((
                        local(p),
                        of(format!("service {:?}'s sidecar", s.name)),
                        sc.line,
                    ));
                }
                for u in &sc.upstreams {
                    out.push((
                        local(u.port),
                        of(format!("service {:?}'s upstream {:?}", s.name, u.label())),
                        u.line,
                    ));
                }
            }
        }
        for f in &d.functions {
            for u in f.extension.iter().flat_map(|e| &e.upstreams) {
                out.push((
                    local(u.port),
                    of(format!("function {:?}'s upstream {:?}", f.name, u.label())),
                    u.line,
                ));
            }
        }
        for g in &d.gateways {
            out.push((local(g.port), of(format!("gateway {:?}", g.name)), g.line));
        }
    }
    out
}

/// Checks files, commands and ports against the machine.
///
/// # Errors
/// Every problem found, with file and line.
pub fn check(t: &Topology) -> Result<(), Problems> {
    let mut problems = Vec::new();
    let mut report = |line: usize, message: String| {
        problems.push(Problem {
            file: t.file.clone(),
            line,
            message,
        });
    };
    for s in t.datacenters.iter().flat_map(|d| &d.services) {
        if let Some(program) = s.command.first()
            && find_program(&t.base, program).is_none()
        {
            report(
                s.line,
                format!(
                    "service {:?}: command {program:?} not found (on PATH or in {})",
                    s.name,
                    t.base.display()
                ),
            );
        }
    }
    for f in t.datacenters.iter().flat_map(|d| &d.functions) {
        let ok =
            f.code.is_dir() || (f.code.is_file() && f.code.extension().is_some_and(|e| e == "zip"));
        if !ok {
            report(
                f.line,
                format!(
                    "function {:?}: code {} is not a directory or a .zip file",
                    f.name,
                    f.code.display()
                ),
            );
        }
    }
    for (addr, what, line) in ports(t) {
        if let Err(e) = TcpListener::bind(addr) {
            report(
                line,
                format!(
                    "port {}: {what} cannot listen on {addr}: {e} (is something else running?)",
                    addr.port()
                ),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems { problems })
    }
}

/// `program` as a path: with a `/`, relative to `base`; otherwise looked up on `PATH`.
pub fn find_program(base: &Path, program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = base.join(program);
        return is_executable(&p).then_some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
