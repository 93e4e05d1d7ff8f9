//! JSON → [`Body`], in HCL's JSON form: `"service": {"name": {...}}` is the block `service
//! "name" {...}` (one nested key per label; a list of objects repeats the block). A small reader
//! of its own, because the messages need each value's line and serde_json does not keep it.

use super::{Block, Body, Node, SyntaxError, Val, block_labels};

/// Deepest nesting accepted (a bound on recursion for hostile input).
const MAX_DEPTH: usize = 64;

/// Reads JSON `text` into a body.
pub(crate) fn read_json(text: &str) -> Result<Body, SyntaxError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        line: 1,
    };
    p.ws();
    let root = p.value(0)?;
    p.ws();
    if p.i < p.s.len() {
        return Err(p.err("trailing characters after the JSON value"));
    }
    let Val::Obj(keys) = root.val else {
        return Err(SyntaxError {
            line: root.line,
            message: format!("the file must be a JSON object, found {}", root.val.what()),
        });
    };
    body_of(keys, None)
}

fn body_of(keys: Vec<(String, usize, Node)>, parent: Option<&str>) -> Result<Body, SyntaxError> {
    let mut body = Body::default();
    for (key, line, node) in keys {
        match block_labels(parent, &key) {
            Some(n) => {
                let items = match node.val {
                    Val::List(items) => items,
                    val => vec![Node {
                        line: node.line,
                        val,
                    }],
                };
                for item in items {
                    blocks(&key, n, Vec::new(), item, &mut body.blocks)?;
                }
            }
            None => body.attrs.push((key, line, node)),
        }
    }
    Ok(body)
}

/// Peels `n` labels off nested objects, then reads the block body.
fn blocks(
    ident: &str,
    n: usize,
    labels: Vec<String>,
    node: Node,
    out: &mut Vec<Block>,
) -> Result<(), SyntaxError> {
    let Val::Obj(keys) = node.val else {
        return Err(SyntaxError {
            line: node.line,
            message: format!(
                "block {ident:?} must be an object, found {}",
                node.val.what()
            ),
        });
    };
    if n == 0 {
        let body = if ident == "config_entry" {
            Body {
                attrs: vec![(
                    String::new(),
                    node.line,
                    Node {
                        line: node.line,
                        val: Val::Obj(keys),
                    },
                )],
                blocks: Vec::new(),
            }
        } else {
            body_of(keys, Some(ident))?
        };
        out.push(Block {
            ident: ident.to_owned(),
            labels,
            line: node.line,
            body,
        });
        return Ok(());
    }
    for (label, _, inner) in keys {
        let mut l = labels.clone();
        l.push(label);
        blocks(ident, n - 1, l, inner, out)?;
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> SyntaxError {
        SyntaxError {
            line: self.line,
            message: message.to_owned(),
        }
    }

    fn ws(&mut self) {
        while let Some(&c) = self.s.get(self.i) {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        let line = self.line;
        let val = match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut keys = Vec::new();
                self.ws();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let kl = self.line;
                        let key = self.string()?;
                        self.ws();
                        if !self.eat(b':') {
                            return Err(self.err("expected ':' after an object key"));
                        }
                        self.ws();
                        let v = self.value(depth + 1)?;
                        keys.push((key, kl, v));
                        self.ws();
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.err("expected ',' or '}' in an object"));
                        }
                    }
                }
                Val::Obj(keys)
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if !self.eat(b']') {
                    loop {
                        self.ws();
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.err("expected ',' or ']' in a list"));
                        }
                    }
                }
                Val::List(items)
            }
            Some(b'"') => Val::Str(self.string()?),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Val::Bool(true)
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Val::Bool(false)
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Val::Null
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number()?,
            Some(_) => return Err(self.err("expected a JSON value")),
            None => return Err(self.err("unexpected end of file")),
        };
        Ok(Node { line, val })
    }

    fn number(&mut self) -> Result<Val, SyntaxError> {
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.i += 1;
            } else {
                break;
            }
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Val::Int(i));
        }
        match serde_json::from_str::<f64>(t) {
            Ok(f) => Ok(Val::Float(f)),
            Err(_) => Err(self.err(&format!("bad number {t:?}"))),
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        if !self.eat(b'"') {
            return Err(self.err("expected a string"));
        }
        let start = self.i;
        loop {
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => self.i += 2,
                Some(b'\n') => return Err(self.err("line break inside a string")),
                Some(_) => self.i += 1,
            }
        }
        let raw = &self.s[start..self.i.min(self.s.len())];
        self.i += 1;
        // The escapes are JSON's: let serde_json decode the quoted slice.
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted).map_err(|e| self.err(&format!("bad string: {e}")))
    }
}
