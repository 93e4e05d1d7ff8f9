//! A compatibility pass from HCL 1 (Consul's parser) to HCL 2 (hcl-rs).
//!
//! Consul's own documentation writes config entries and ACL rules in HCL 1. Two of its forms
//! are not valid HCL 2:
//!
//! - blocks inside expressions, e.g. `Routes = [ { Match { HTTP { ... } } } ]`. HCL 2 wants
//!   `Match = { ... }` there;
//! - several attributes on one line, e.g. `service "web" { policy = "read" intentions = "read" }`.
//!
//! It also bounds nesting depth ([`check_nesting`]) before any HCL parse.
//!
//! `to_hcl2` rewrites those forms outside strings and comments and leaves everything else as
//! it was. Callers use it only to retry a document that failed to parse, so valid HCL 2 never
//! goes through it. [`from_str`] is the whole pass for a document read into a type (ACL rules,
//! the server's config files): nesting check, HCL 2 parse, HCL 1 retry.

use serde::de::DeserializeOwned;

/// Deepest bracket nesting accepted in an HCL document. Real config entries nest about 7
/// deep (`Sources[{Permissions[{HTTP{Header[{`) and ACL rules 2; hcl-rs backtracks
/// exponentially on deep unclosed nesting (a 465-byte input found by fuzzing took 1.7 s), so
/// documents beyond this are refused before parsing.
pub const MAX_NESTING: usize = 16;

/// Refuses documents nested deeper than [`MAX_NESTING`] (brackets outside strings and
/// comments), so a hostile document cannot make the HCL parser spin. Call it before any HCL
/// parse of outside input.
///
/// # Errors
/// A message with the offending depth and position.
pub fn check_nesting(text: &str) -> Result<(), String> {
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                i = string_end(&chars, i);
                continue;
            }
            '#' => i = line_end(&chars, i),
            '/' if chars.get(i + 1) == Some(&'/') => i = line_end(&chars, i),
            '/' if chars.get(i + 1) == Some(&'*') => {
                i = block_comment_end(&chars, i);
                continue;
            }
            '{' | '[' | '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "nested more than {MAX_NESTING} levels deep at character {i}"
                    ));
                }
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Parses an HCL document into `T` as Consul's HCL 1 parser would accept it: nesting is bounded
/// ([`check_nesting`]), then the text is parsed as HCL 2, and if that fails, parsed again with
/// its HCL 1-only forms rewritten (`to_hcl2`).
///
/// # Errors
/// The nesting message, or the first parse's error when the retry fails too (it names the
/// document as written, not as rewritten).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    check_nesting(text)?;
    hcl::from_str::<T>(text)
        .or_else(|first| hcl::from_str::<T>(&to_hcl2(text)).map_err(|_| first.to_string()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// A file or block body: `Ident {` opens a block.
    Body,
    /// A list or object expression: `Ident {` must become `Ident = {`.
    Expr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// An identifier (a key, a block type or a bare value).
    Ident,
    /// `=` or `:`.
    Assign,
    /// Anything else, including strings and numbers.
    Other,
}

/// Rewrites HCL 1-only forms into HCL 2; see the module docs.
pub(crate) fn to_hcl2(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut stack = vec![Ctx::Body];
    let mut last = Last::Other;
    // A value ended on this line: an `ident =` that follows starts a new attribute and needs
    // its own line.
    let mut value_on_line = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '"' => {
                let end = string_end(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                last = Last::Other;
                value_on_line = true;
                continue;
            }
            '#' => {
                let end = line_end(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '/' if next == Some('/') => {
                let end = line_end(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '/' if next == Some('*') => {
                let end = block_comment_end(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '\n' => {
                out.push(c);
                value_on_line = false;
            }
            '=' | ':' => {
                out.push(c);
                last = Last::Assign;
                value_on_line = false;
            }
            ',' => {
                out.push(c);
                last = Last::Other;
                value_on_line = false;
            }
            '[' => {
                out.push(c);
                stack.push(Ctx::Expr);
                last = Last::Other;
                value_on_line = false;
            }
            ']' => {
                out.push(c);
                stack.pop();
                last = Last::Other;
                value_on_line = true;
            }
            '{' => {
                let in_expr = stack.last() == Some(&Ctx::Expr);
                let ctx = match last {
                    Last::Assign => Ctx::Expr,
                    Last::Ident if in_expr => {
                        out.push_str("= ");
                        Ctx::Expr
                    }
                    _ if in_expr => Ctx::Expr,
                    _ => Ctx::Body,
                };
                stack.push(ctx);
                out.push_str("{\n");
                last = Last::Other;
                value_on_line = false;
            }
            '}' => {
                out.push_str("\n}");
                stack.pop();
                last = Last::Other;
                value_on_line = true;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-')
                {
                    i += 1;
                }
                let after = next_significant(&chars, i);
                let is_key = after.is_some_and(|(j, ch)| {
                    (ch == '=' && chars.get(j + 1) != Some(&'=')) || ch == ':'
                });
                let starts_block = after.is_some_and(|(_, ch)| {
                    ch == '{' || (ch == '"' && stack.last() == Some(&Ctx::Body))
                });
                // A new attribute or block after a value on the same line gets its own line.
                if value_on_line && (is_key || starts_block) {
                    out.push('\n');
                }
                out.extend(&chars[start..i]);
                last = Last::Ident;
                // A bare value (`true`) ends a value; a key or block type does not.
                value_on_line = !is_key && !starts_block;
                continue;
            }
            c if c.is_whitespace() => out.push(c),
            _ => {
                out.push(c);
                last = Last::Other;
                if c.is_ascii_digit() || c == '.' {
                    value_on_line = true;
                }
            }
        }
        i += 1;
    }
    out
}

/// Index just past the string starting at `i` (a `"`), honouring backslash escapes. An
/// unterminated string runs to the end; the parser reports it.
fn string_end(chars: &[char], i: usize) -> usize {
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

fn line_end(chars: &[char], i: usize) -> usize {
    chars[i..]
        .iter()
        .position(|c| *c == '\n')
        .map_or(chars.len(), |p| i + p)
}

fn block_comment_end(chars: &[char], i: usize) -> usize {
    let mut j = i + 2;
    while j + 1 < chars.len() {
        if chars[j] == '*' && chars[j + 1] == '/' {
            return j + 2;
        }
        j += 1;
    }
    chars.len()
}

/// The next non-blank character on the same line, with its index.
fn next_significant(chars: &[char], i: usize) -> Option<(usize, char)> {
    chars[i..]
        .iter()
        .enumerate()
        .find(|(_, c)| !matches!(c, ' ' | '\t' | '\r'))
        .map(|(k, c)| (i + k, *c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(text: &str) -> Value {
        hcl::from_str::<Value>(&to_hcl2(text)).unwrap_or_else(|e| panic!("{}\n{e}", to_hcl2(text)))
    }

    #[test]
    fn blocks_inside_lists_become_objects() {
        // The service-router example from Consul's documentation.
        let v = parse(
            r#"Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        PathPrefix = "/admin"
      }
    }

    Destination {
      Service = "admin"
    }
  },
]
"#,
        );
        assert_eq!(
            v["Routes"],
            json!([{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}])
        );
    }

    #[test]
    fn one_line_blocks_and_objects_are_spread() {
        let v = parse(r#"service "web" { policy = "read" intentions = "write" }"#);
        assert_eq!(
            v,
            json!({"service": {"web": {"policy": "read", "intentions": "write"}}})
        );
        let v = parse(
            r#"Sources = [ { Name = "web" Action = "allow" }, { Name = "*" Action = "deny" } ]"#,
        );
        assert_eq!(v["Sources"][1], json!({"Name": "*", "Action": "deny"}));
        let v = parse(r#"service "a" { policy = "read" } service "b" { policy = "write" }"#);
        assert_eq!(v["service"]["b"], json!({"policy": "write"}));
        let v = parse(r#"Sources = [ { Action = "allow" HTTP { PathPrefix = "/" } } ]"#);
        assert_eq!(v["Sources"][0]["HTTP"], json!({"PathPrefix": "/"}));
        let v = parse("a { b = true c = 5 d = [1, 2] e = \"x\" }");
        assert_eq!(v["a"], json!({"b": true, "c": 5, "d": [1, 2], "e": "x"}));
    }

    #[test]
    fn strings_and_comments_are_left_alone() {
        let v = parse(
            "# a { comment\nRoutes = [ { Match { HTTP { PathRegex = \"/v[0-9]{2} # x = \\\"y\\\"\" } } } ] // tail {\n/* { */\n",
        );
        assert_eq!(
            v["Routes"][0]["Match"]["HTTP"]["PathRegex"],
            "/v[0-9]{2} # x = \"y\""
        );
    }

    #[test]
    fn nesting_is_bounded_outside_strings() {
        assert!(check_nesting("a { b = [ { c = \"{{{{{{{{{{{{{{{{{{{{\" } ] }").is_ok());
        assert!(check_nesting(&"{".repeat(MAX_NESTING)).is_ok());
        let err = check_nesting(&format!("x = {}", "[".repeat(MAX_NESTING + 1))).unwrap_err();
        assert!(err.contains("nested more than 16 levels"), "{err}");
        assert!(check_nesting("# {{{{{{{{{{{{{{{{{{{{{{{\n/* [[[[[[[[[[[[[[[[[[[[[ */").is_ok());
    }

    #[test]
    fn valid_hcl2_is_unchanged_in_meaning() {
        let text = "Kind = \"service-resolver\"\nSubsets = {\n  v1 = { Filter = \"Service.Meta.version == v1\" }\n}\nMeta { a = \"b\" }\nConnectTimeout = \"5s\"\n";
        let direct: Value = hcl::from_str(text).unwrap();
        assert_eq!(parse(text), direct);
    }
}
