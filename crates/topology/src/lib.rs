//! The topology file of `lambdamesh up`: one HCL file (or JSON, HCL's JSON form) describing the
//! control plane, the local Lambda platform, plain services with their sidecars, functions,
//! gateways, the registrator, config entries and intentions; for several datacenters, one
//! `datacenter "NAME"` block of those each, joined through mesh gateways. Parsed once into
//! [`Topology`]; every bad value is reported as a [`Problem`] with file and line, all at once,
//! before anything starts. The format is documented in `docs/up.md`.
//!
//! Pure except for [`probe`], which checks the file's references against the machine (files,
//! commands, listeners already open). No processes, no network beyond a bind test.

mod decode;
mod doc;
mod graph;
pub mod probe;
mod types;

use std::path::{Path, PathBuf};

pub use graph::{Part, PartId, PartKind};
pub use types::*;

/// One problem in a topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Every problem found, in file order.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Problems {
    pub problems: Vec<Problem>,
}

/// Parses `text` (the contents of `file`; JSON when it starts with `{`, HCL otherwise) into a
/// topology. Relative paths in it are resolved against `file`'s directory. Checks everything that
/// does not need the machine: fields, types, references, cycles, port clashes within the file.
///
/// # Errors
/// Every problem found, each with file and line.
pub fn parse(file: &Path, text: &str) -> Result<Topology, Problems> {
    let is_json = text.trim_start().starts_with('{');
    let body = if is_json {
        doc::read_json(text)
    } else {
        doc::read_hcl(text)
    };
    let body = body.map_err(|e| Problems {
        problems: vec![Problem {
            file: file.to_owned(),
            line: e.line,
            message: e.message,
        }],
    })?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut problems = Vec::new();
    let topology = decode::topology(file, &base, body, &mut problems);
    graph::check(&topology, &mut problems);
    if problems.is_empty() {
        Ok(topology)
    } else {
        problems.sort_by_key(|p| p.line);
        Err(Problems { problems })
    }
}

/// Reads and parses a topology: `path` is a file, or a directory holding `lambdamesh.hcl` (or
/// `lambdamesh.json`).
///
/// # Errors
/// The file cannot be read, or its problems.
pub fn load(path: &Path) -> Result<Topology, Problems> {
    let file = resolve(path);
    let text = std::fs::read_to_string(&file).map_err(|e| Problems {
        problems: vec![Problem {
            file: file.clone(),
            line: 0,
            message: format!("cannot read the topology file: {e}"),
        }],
    })?;
    parse(&file, &text)
}

/// The topology file `path` names: itself, or `lambdamesh.hcl`/`lambdamesh.json` in a directory.
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_dir() {
        let json = path.join("lambdamesh.json");
        if !path.join("lambdamesh.hcl").exists() && json.exists() {
            return json;
        }
        return path.join("lambdamesh.hcl");
    }
    path.to_owned()
}

#[cfg(test)]
mod tests;
