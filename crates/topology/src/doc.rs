//! The file as a tree of bodies, blocks and values, each carrying the line it starts on, read
//! from HCL (`hcl-edit`, which keeps spans) or JSON (`doc/json.rs`, HCL's JSON form: a block is
//! an object key whose value holds its labels as nested keys). Nothing here knows the topology's
//! fields beyond [`block_labels`], the one table of which keys are blocks.

mod hcl;
mod json;

pub(crate) use hcl::read_hcl;
pub(crate) use json::read_json;

/// A value with the line (one-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub val: Val,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Keys in file order, each with its own line.
    Obj(Vec<(String, usize, Node)>),
    /// An HCL expression we do not evaluate (a variable, a function call, a template): named
    /// so the message can say what was found.
    Expr(&'static str),
}

impl Val {
    /// What the value is, for messages (`expected a number, found a string`).
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Int(_) | Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::List(_) => "a list",
            Val::Obj(_) => "an object",
            Val::Expr(what) => what,
        }
    }
}

/// A block: `service "name" { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Block {
    pub ident: String,
    pub labels: Vec<String>,
    pub line: usize,
    pub body: Body,
}

/// Attributes and blocks in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Body {
    pub attrs: Vec<(String, usize, Node)>,
    pub blocks: Vec<Block>,
}

/// How many labels a block of this name has, where it may appear (`None`: not a block).
/// `config_entry` bodies are free-form Consul keys and are read as values.
pub(crate) fn block_labels(parent: Option<&str>, ident: &str) -> Option<usize> {
    match (parent, ident) {
        (None, "datacenter") => Some(1),
        (None | Some("datacenter"), "server" | "platform" | "registrator" | "config_entry") => {
            Some(0)
        }
        (None | Some("datacenter"), "service" | "function" | "gateway") => Some(1),
        (None | Some("datacenter"), "intention") => Some(2),
        (Some("service"), "sidecar" | "health") => Some(0),
        (Some("function"), "extension") => Some(0),
        _ => None,
    }
}

/// A syntax error: where and what.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// The line (one-based) of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset.min(text.len()))
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
