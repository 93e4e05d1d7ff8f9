//! The subset of HashiCorp's go-bexpr boolean expression language that Consul uses in resolver
//! subset `Filter`s and `?filter=` query parameters:
//!
//! ```text
//! expr  := or
//! or    := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | match
//! match := selector ("==" | "!=") value
//!        | selector ["not"] ("contains" | "matches") value
//!        | selector "is" ["not"] "empty"
//!        | value ["not"] "in" selector
//! selector := ident ("." ident | "[" quoted "]")*      e.g. Service.Meta.version, Meta["a b"]
//! value    := "double quoted" | `raw` | bare-word       e.g. v1, 8080, true
//! ```
//!
//! [`parse`] validates syntax (what Consul checks when an entry is written); [`eval`] runs the
//! expression against anything that implements [`Lookup`], so the xDS side can select subset
//! instances with the same code.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Longest expression accepted; filters are short and this bounds parser recursion.
const MAX_LEN: usize = 4096;
/// Deepest nesting of `not`/parentheses accepted.
const MAX_DEPTH: usize = 64;

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

/// One comparison.
#[derive(Debug, Clone)]
pub struct Match {
    pub selector: Vec<String>,
    pub op: MatchOp,
    /// The right-hand value (the left one for `in`); empty for `is empty`.
    pub value: String,
}

#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal,
    NotEqual,
    /// `value in selector` and `selector contains value`.
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Matches(regex::Regex),
    NotMatches(regex::Regex),
}

/// A value found at a selector.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    Bool(bool),
    Number(f64),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

/// Field lookup for [`eval`]: `path` is the selector split into segments.
pub trait Lookup {
    fn lookup(&self, path: &[String]) -> Option<FieldValue>;
}

/// Syntax error with the byte offset where it was found.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{message} at position {pos}")]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

/// Parses an expression.
///
/// # Errors
/// [`ParseError`] for anything outside the grammar in the module docs, or an invalid regex.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    if input.len() > MAX_LEN {
        return Err(ParseError {
            pos: MAX_LEN,
            message: format!("expression longer than {MAX_LEN} bytes"),
        });
    }
    let tokens = tokenize(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: input.len(),
        depth: 0,
    };
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return Err(p.err_at(t.pos, format!("unexpected {}", t.kind)));
    }
    Ok(e)
}

/// Evaluates `expr` against `target`. A missing field never matches (`!=`, `not in`,
/// `not matches` and `is empty` are then true), as go-bexpr treats a missing map key.
pub fn eval(expr: &Expr, target: &dyn Lookup) -> bool {
    match expr {
        Expr::And(a, b) => eval(a, target) && eval(b, target),
        Expr::Or(a, b) => eval(a, target) || eval(b, target),
        Expr::Not(a) => !eval(a, target),
        Expr::Match(m) => eval_match(m, target.lookup(&m.selector).as_ref()),
    }
}

fn eval_match(m: &Match, field: Option<&FieldValue>) -> bool {
    let v = m.value.as_str();
    match &m.op {
        MatchOp::Equal => field.is_some_and(|f| equals(f, v)),
        MatchOp::NotEqual => !field.is_some_and(|f| equals(f, v)),
        MatchOp::In => field.is_some_and(|f| contains(f, v)),
        MatchOp::NotIn => !field.is_some_and(|f| contains(f, v)),
        MatchOp::IsEmpty => field.is_none_or(is_empty),
        MatchOp::IsNotEmpty => !field.is_none_or(is_empty),
        MatchOp::Matches(re) => field.is_some_and(|f| matches(f, re)),
        MatchOp::NotMatches(re) => !field.is_some_and(|f| matches(f, re)),
    }
}

fn equals(f: &FieldValue, v: &str) -> bool {
    match f {
        FieldValue::Str(s) => s == v,
        FieldValue::Bool(b) => v.parse::<bool>().is_ok_and(|x| x == *b),
        FieldValue::Number(n) => v.parse::<f64>().is_ok_and(|x| x == *n),
        FieldValue::List(_) | FieldValue::Map(_) => false,
    }
}

fn contains(f: &FieldValue, v: &str) -> bool {
    match f {
        FieldValue::Str(s) => s.contains(v),
        FieldValue::List(l) => l.iter().any(|x| x == v),
        FieldValue::Map(m) => m.contains_key(v),
        FieldValue::Bool(_) | FieldValue::Number(_) => false,
    }
}

fn is_empty(f: &FieldValue) -> bool {
    match f {
        FieldValue::Str(s) => s.is_empty(),
        FieldValue::List(l) => l.is_empty(),
        FieldValue::Map(m) => m.is_empty(),
        FieldValue::Bool(_) | FieldValue::Number(_) => false,
    }
}

fn matches(f: &FieldValue, re: &regex::Regex) -> bool {
    match f {
        FieldValue::Str(s) => re.is_match(s),
        _ => false,
    }
}

/// JSON documents (e.g. a catalog record rendered with Consul's field names) are lookup
/// targets: objects are walked by key; arrays of strings become lists, objects of strings maps.
impl Lookup for Value {
    fn lookup(&self, path: &[String]) -> Option<FieldValue> {
        let mut cur = self;
        for seg in path {
            cur = cur.as_object()?.get(seg)?;
        }
        match cur {
            Value::String(s) => Some(FieldValue::Str(s.clone())),
            Value::Bool(b) => Some(FieldValue::Bool(*b)),
            Value::Number(n) => n.as_f64().map(FieldValue::Number),
            Value::Null => Some(FieldValue::Str(String::new())),
            Value::Array(items) => Some(FieldValue::List(
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            )),
            Value::Object(map) => Some(FieldValue::Map(
                map.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )),
        }
    }
}

// --- tokens -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    LParen,
    RParen,
    Eq,
    Ne,
    /// A quoted string (its unescaped content).
    Quoted(String),
    /// A bare word: selector, keyword or unquoted value.
    Word(String),
}

impl fmt::Display for TokKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokKind::LParen => f.write_str("'('"),
            TokKind::RParen => f.write_str("')'"),
            TokKind::Eq => f.write_str("'=='"),
            TokKind::Ne => f.write_str("'!='"),
            TokKind::Quoted(s) => write!(f, "string {s:?}"),
            TokKind::Word(w) => write!(f, "{w:?}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokKind,
    pos: usize,
}

fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut i = 0;
    let err = |pos: usize, m: &str| ParseError {
        pos,
        message: m.to_owned(),
    };
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token {
                    kind: TokKind::LParen,
                    pos,
                });
                i += 1;
            }
            ')' => {
                out.push(Token {
                    kind: TokKind::RParen,
                    pos,
                });
                i += 1;
            }
            '=' | '!' => {
                if chars.get(i + 1).map(|x| x.1) != Some('=') {
                    return Err(err(pos, "expected '==' or '!='"));
                }
                let kind = if c == '=' { TokKind::Eq } else { TokKind::Ne };
                out.push(Token { kind, pos });
                i += 2;
            }
            '"' | '`' => {
                let (s, next) =
                    read_quoted(&chars, i).ok_or_else(|| err(pos, "unterminated string"))?;
                out.push(Token {
                    kind: TokKind::Quoted(s),
                    pos,
                });
                i = next;
            }
            _ => {
                let start = i;
                let mut word = String::new();
                while i < chars.len() {
                    let ch = chars[i].1;
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | '=' | '!' | '"' | '`') {
                        break;
                    }
                    if ch == '[' {
                        // An index like Meta["a b"]: keep it in the word, quotes and all.
                        word.push(ch);
                        i += 1;
                        if let Some((_, q @ ('"' | '`'))) = chars.get(i).copied() {
                            let (s, next) = read_quoted(&chars, i)
                                .ok_or_else(|| err(chars[i].0, "unterminated string"))?;
                            word.push(q);
                            word.push_str(&s);
                            word.push(q);
                            i = next;
                        }
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                }
                out.push(Token {
                    kind: TokKind::Word(word),
                    pos: chars[start].0,
                });
            }
        }
    }
    Ok(out)
}

/// Reads a quoted string starting at `chars[i]` (the quote); returns content and next index.
/// Double quotes take backslash escapes; backticks are raw.
fn read_quoted(chars: &[(usize, char)], i: usize) -> Option<(String, usize)> {
    let q = chars.get(i)?.1;
    let mut s = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j].1;
        if c == q {
            return Some((s, j + 1));
        }
        if c == '\\' && q == '"' {
            let n = chars.get(j + 1)?.1;
            s.push(match n {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            });
            j += 2;
            continue;
        }
        s.push(c);
        j += 1;
    }
    None
}

// --- parser -------------------------------------------------------------------------------

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: TokKind::Word(x), .. }) if x == w)
    }

    fn peek_word_at(&self, offset: usize, w: &str) -> bool {
        matches!(self.tokens.get(self.pos + offset), Some(Token { kind: TokKind::Word(x), .. }) if x == w)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn err_at(&self, pos: usize, message: String) -> ParseError {
        ParseError { pos, message }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(self.here(), "expression nested too deeply".into()));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Expr, ParseError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if matches!(
            self.peek(),
            Some(Token {
                kind: TokKind::LParen,
                ..
            })
        ) {
            self.pos += 1;
            let e = self.or()?;
            match self.next() {
                Some(Token {
                    kind: TokKind::RParen,
                    ..
                }) => return Ok(e),
                Some(t) => return Err(self.err_at(t.pos, format!("expected ')', got {}", t.kind))),
                None => return Err(self.err_at(self.end, "expected ')'".into())),
            }
        }
        self.match_expr()
    }

    fn match_expr(&mut self) -> Result<Expr, ParseError> {
        let first = self
            .next()
            .ok_or_else(|| self.err_at(self.end, "expected an expression".into()))?;
        // `value [not] in selector`
        let negated_in = self.peek_word("not") && self.peek_word_at(1, "in");
        if self.peek_word("in") || negated_in {
            self.pos += if negated_in { 2 } else { 1 };
            let value = value_of(&first).ok_or_else(|| {
                self.err_at(first.pos, format!("expected a value, got {}", first.kind))
            })?;
            let sel_tok = self
                .next()
                .ok_or_else(|| self.err_at(self.end, "expected a selector".into()))?;
            let selector = selector_of(&sel_tok)?;
            let op = if negated_in {
                MatchOp::NotIn
            } else {
                MatchOp::In
            };
            return Ok(Expr::Match(Match {
                selector,
                op,
                value,
            }));
        }
        let selector = selector_of(&first)?;
        let op_tok = self
            .next()
            .ok_or_else(|| self.err_at(self.end, "expected an operator".into()))?;
        let op_name = match &op_tok.kind {
            TokKind::Eq => "==".to_owned(),
            TokKind::Ne => "!=".to_owned(),
            TokKind::Word(w) => w.clone(),
            other => {
                return Err(self.err_at(op_tok.pos, format!("expected an operator, got {other}")));
            }
        };
        let (op_name, negated) = if op_name == "not" {
            match self.next() {
                Some(Token {
                    kind: TokKind::Word(w),
                    ..
                }) if w == "contains" || w == "matches" => (w, true),
                _ => {
                    return Err(self.err_at(
                        op_tok.pos,
                        "expected 'contains' or 'matches' after 'not'".into(),
                    ));
                }
            }
        } else {
            (op_name, false)
        };
        if op_name == "is" {
            let not = self.peek_word("not");
            if not {
                self.pos += 1;
            }
            if !self.peek_word("empty") {
                return Err(self.err_at(self.here(), "expected 'empty' after 'is'".into()));
            }
            self.pos += 1;
            let op = if not {
                MatchOp::IsNotEmpty
            } else {
                MatchOp::IsEmpty
            };
            return Ok(Expr::Match(Match {
                selector,
                op,
                value: String::new(),
            }));
        }
        let val_tok = self
            .next()
            .ok_or_else(|| self.err_at(self.end, format!("expected a value after {op_name:?}")))?;
        let value = value_of(&val_tok).ok_or_else(|| {
            self.err_at(
                val_tok.pos,
                format!("expected a value, got {}", val_tok.kind),
            )
        })?;
        let op = match (op_name.as_str(), negated) {
            ("==", _) => MatchOp::Equal,
            ("!=", _) => MatchOp::NotEqual,
            ("contains", false) => MatchOp::In,
            ("contains", true) => MatchOp::NotIn,
            ("matches", n) => {
                let re = regex::Regex::new(&value).map_err(|e| {
                    self.err_at(val_tok.pos, format!("invalid regular expression: {e}"))
                })?;
                if n {
                    MatchOp::NotMatches(re)
                } else {
                    MatchOp::Matches(re)
                }
            }
            (other, _) => {
                return Err(self.err_at(op_tok.pos, format!("unknown operator {other:?}")));
            }
        };
        Ok(Expr::Match(Match {
            selector,
            op,
            value,
        }))
    }
}

const KEYWORDS: [&str; 8] = [
    "and", "or", "not", "in", "is", "empty", "contains", "matches",
];

fn value_of(t: &Token) -> Option<String> {
    match &t.kind {
        TokKind::Quoted(s) => Some(s.clone()),
        TokKind::Word(w) if !KEYWORDS.contains(&w.as_str()) => Some(w.clone()),
        _ => None,
    }
}

fn selector_of(t: &Token) -> Result<Vec<String>, ParseError> {
    let err = |m: String| ParseError {
        pos: t.pos,
        message: m,
    };
    let TokKind::Word(w) = &t.kind else {
        return Err(err(format!("expected a selector, got {}", t.kind)));
    };
    if KEYWORDS.contains(&w.as_str()) {
        return Err(err(format!("expected a selector, got keyword {w:?}")));
    }
    let mut segs = Vec::new();
    let mut rest = w.as_str();
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let q = after.chars().next().filter(|c| *c == '"' || *c == '`');
            let Some(q) = q else {
                return Err(err(format!(
                    "invalid selector {w:?}: index must be a quoted string"
                )));
            };
            let body = &after[1..];
            let close = format!("{q}]");
            let Some(end) = body.find(&close) else {
                return Err(err(format!("invalid selector {w:?}: unterminated index")));
            };
            segs.push(body[..end].to_owned());
            rest = &body[end + 2..];
        } else {
            let r = if first {
                rest
            } else {
                rest.strip_prefix('.')
                    .ok_or_else(|| err(format!("invalid selector {w:?}")))?
            };
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let ident = &r[..end];
            let valid = ident
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && ident
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(err(format!("invalid selector {w:?}")));
            }
            segs.push(ident.to_owned());
            rest = &r[end..];
        }
        first = false;
    }
    if segs.is_empty() {
        return Err(err("empty selector".into()));
    }
    Ok(segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> Value {
        json!({
            "Service": {
                "Service": "web",
                "Meta": {"version": "v1", "zone name": "a"},
                "Tags": ["primary", "canary"],
                "Port": 8080,
                "Connect": {"Native": false},
                "Address": ""
            }
        })
    }

    fn t(expr: &str) -> bool {
        eval(
            &parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}")),
            &instance(),
        )
    }

    #[test]
    fn evaluates_consul_style_filters() {
        let cases = [
            ("Service.Meta.version == v1", true),
            ("Service.Meta.version == \"v2\"", false),
            ("Service.Meta.version != v2", true),
            ("Service.Tags contains primary", true),
            ("Service.Tags not contains primary", false),
            ("canary in Service.Tags", true),
            ("blue not in Service.Tags", true),
            ("Service.Meta[\"zone name\"] == a", true),
            ("Service.Meta.missing == x", false),
            ("Service.Meta.missing != x", true),
            ("Service.Meta.missing is empty", true),
            ("Service.Address is empty", true),
            ("Service.Tags is not empty", true),
            ("Service.Port == 8080", true),
            ("Service.Connect.Native == false", true),
            ("Service.Service matches \"^w.b$\"", true),
            ("Service.Service not matches `^x`", true),
            ("version in Service.Meta", true),
            (
                "Service.Meta.version == v1 and Service.Tags contains canary",
                true,
            ),
            (
                "Service.Meta.version == v2 or Service.Tags contains canary",
                true,
            ),
            ("not Service.Meta.version == v1", false),
            (
                "not (Service.Meta.version == v2 or Service.Port == 1)",
                true,
            ),
            // `and` binds tighter than `or`.
            (
                "Service.Port == 1 and Service.Port == 2 or Service.Port == 8080",
                true,
            ),
            (
                "Service.Port == 8080 or Service.Port == 2 and Service.Port == 3",
                true,
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(t(expr), want, "{expr}");
        }
    }

    #[test]
    fn rejects_bad_syntax_with_position() {
        for bad in [
            "",
            "Service.Meta.version",
            "Service.Meta.version ==",
            "== v1",
            "Service.Meta.version = v1",
            "(Service.Port == 1",
            "Service.Port == 1)",
            "Service.Port == 1 and",
            "Service.Tags contains",
            "Service.Port is full",
            "Service..Port == 1",
            "Service.Meta[zone] == 1",
            "\"unterminated == x",
            "Service.Name matches \"(\"",
            "and == x",
            "1abc == x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        let e = parse("Service.Port == 1 )").unwrap_err();
        assert_eq!(e.pos, 18, "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}Service.Port == 1", "not ".repeat(1000));
        assert!(parse(&deep).is_err());
        let parens = format!("{}Service.Port == 1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&parens).is_err());
    }
}
