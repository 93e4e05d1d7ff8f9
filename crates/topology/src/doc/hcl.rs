//! HCL native syntax → [`Body`], through `hcl-edit` (its parser keeps byte spans). Only literal
//! values are accepted: a topology file describes, it does not compute.

use hcl_edit::{
    Span,
    expr::{Expression, ObjectKey},
    structure::{BlockLabel, Body as HclBody, Structure},
};

use super::{Block, Body, Node, SyntaxError, Val, line_of};

/// Reads HCL `text` into a body.
pub(crate) fn read_hcl(text: &str) -> Result<Body, SyntaxError> {
    let body = hcl_edit::parser::parse_body(text).map_err(|e| SyntaxError {
        line: e.location().line(),
        message: first_line(e.message()),
    })?;
    Ok(body_of(text, &body, None))
}

fn first_line(s: &str) -> String {
    // The problem alone (hcl-edit's `Display` draws the offending line with a caret, and its
    // numbered source line was taken for the message); the caller adds file and line.
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('|') && !l.starts_with("-->"))
        .unwrap_or("syntax error")
        .to_owned()
}

fn line(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    span.map_or(1, |s| line_of(text, s.start))
}

fn body_of(text: &str, body: &HclBody, parent: Option<&str>) -> Body {
    let mut out = Body::default();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let key = a.key.as_str().to_owned();
                out.attrs
                    .push((key, line(text, a.span()), expr(text, &a.value)));
            }
            Structure::Block(b) => {
                let ident = b.ident.as_str().to_owned();
                let labels = b
                    .labels
                    .iter()
                    .map(|l| match l {
                        BlockLabel::Ident(i) => i.as_str().to_owned(),
                        BlockLabel::String(s) => s.as_str().to_owned(),
                    })
                    .collect();
                let inner = if ident == "config_entry" {
                    // Free-form Consul keys: the body becomes one object value.
                    let obj = body_as_object(text, &b.body);
                    Body {
                        attrs: vec![("".into(), line(text, b.span()), obj)],
                        blocks: Vec::new(),
                    }
                } else {
                    body_of(text, &b.body, Some(&ident))
                };
                let _ = parent;
                out.blocks.push(Block {
                    ident,
                    labels,
                    line: line(text, b.span()),
                    body: inner,
                });
            }
        }
    }
    out
}

/// A body whose nested blocks are objects (HCL 1 style `Splits { ... }` blocks become a list of
/// objects under their name, as Consul's decoder reads them).
fn body_as_object(text: &str, body: &HclBody) -> Node {
    let mut keys: Vec<(String, usize, Node)> = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                keys.push((
                    a.key.as_str().to_owned(),
                    line(text, a.span()),
                    expr(text, &a.value),
                ));
            }
            Structure::Block(b) => {
                let l = line(text, b.span());
                let mut obj = body_as_object(text, &b.body);
                for label in b.labels.iter().rev() {
                    obj = Node {
                        line: l,
                        val: Val::Obj(vec![(label.as_str().to_owned(), l, obj)]),
                    };
                }
                let name = b.ident.as_str().to_owned();
                match keys.iter_mut().find(|(k, _, _)| *k == name) {
                    Some((
                        _,
                        _,
                        Node {
                            val: Val::List(items),
                            ..
                        },
                    )) => items.push(obj),
                    _ => keys.push((
                        name,
                        l,
                        Node {
                            line: l,
                            val: Val::List(vec![obj]),
                        },
                    )),
                }
            }
        }
    }
    Node {
        line: line(text, body.span()),
        val: Val::Obj(keys),
    }
}

fn expr(text: &str, e: &Expression) -> Node {
    let l = line(text, e.span());
    let val = match e {
        Expression::Null(_) => Val::Null,
        Expression::Bool(b) => Val::Bool(*b.value()),
        Expression::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => n.as_f64().map_or(Val::Expr("a number"), Val::Float),
        },
        Expression::String(s) => Val::Str(s.value().clone()),
        Expression::Array(a) => Val::List(a.iter().map(|x| expr(text, x)).collect()),
        Expression::Object(o) => Val::Obj(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        ObjectKey::Ident(i) => i.as_str().to_owned(),
                        ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
                        ObjectKey::Expression(_) => "<expression>".to_owned(),
                    };
                    let kl = line(text, k.span());
                    (key, kl, expr(text, v.expr()))
                })
                .collect(),
        ),
        Expression::Parenthesis(p) => return expr(text, p.inner()),
        Expression::StringTemplate(_) | Expression::HeredocTemplate(_) => {
            Val::Expr("a template (use a plain string; write $${ for a literal ${)")
        }
        Expression::Variable(_) => Val::Expr("a variable"),
        Expression::FuncCall(_) => Val::Expr("a function call"),
        Expression::Traversal(_) => Val::Expr("a traversal"),
        _ => Val::Expr("an expression"),
    };
    Node { line: l, val }
}
