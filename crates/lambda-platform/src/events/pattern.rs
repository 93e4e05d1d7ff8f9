//! EventBridge event patterns: exact values, `prefix`, `suffix`, `anything-but`, `exists`,
//! `numeric`, `equals-ignore-case`, `wildcard`, nested objects, and arrays matched element-wise.

use serde_json::Value;

/// A validated pattern.
#[derive(Clone, Debug)]
pub struct EventPattern(Value);

/// Why a pattern is invalid.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not valid JSON.
    #[error("Filter is not valid JSON")]
    Json,
    /// The top level or a nested member is not an object.
    #[error("Filter is not an object")]
    NotObject,
    /// A leaf is not an array.
    #[error("Match value must be String, number, true, false, or null")]
    NotArray,
    /// An unknown or malformed matcher.
    #[error("Unrecognized match type {0}")]
    Matcher(String),
}

impl EventPattern {
    /// Parses and validates a pattern. Pure; fuzzed.
    ///
    /// # Errors
    /// [`PatternError`] for anything EventBridge would reject.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let v: Value = serde_json::from_str(s).map_err(|_| PatternError::Json)?;
        if !v.is_object() {
            return Err(PatternError::NotObject);
        }
        validate(&v, 0)?;
        Ok(Self(v))
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Value) -> bool {
        match_object(&self.0, event)
    }
}

fn validate(v: &Value, depth: usize) -> Result<(), PatternError> {
    if depth > 32 {
        return Err(PatternError::NotObject);
    }
    let Some(obj) = v.as_object() else {
        return Err(PatternError::NotObject);
    };
    for member in obj.values() {
        match member {
            Value::Object(_) => validate(member, depth + 1)?,
            Value::Array(items) => {
                for m in items {
                    validate_matcher(m)?;
                }
            }
            _ => return Err(PatternError::NotArray),
        }
    }
    Ok(())
}

fn validate_matcher(m: &Value) -> Result<(), PatternError> {
    let Value::Object(o) = m else { return Ok(()) };
    let bad = |k: &str| PatternError::Matcher(k.to_owned());
    if o.len() != 1 {
        return Err(bad("object"));
    }
    let Some((k, v)) = o.iter().next() else {
        return Err(bad("object"));
    };
    match (k.as_str(), v) {
        ("prefix" | "suffix" | "equals-ignore-case" | "wildcard", Value::String(_)) => Ok(()),
        ("exists", Value::Bool(_)) => Ok(()),
        ("anything-but", Value::String(_) | Value::Number(_) | Value::Array(_)) => Ok(()),
        ("anything-but", Value::Object(inner))
            if inner.len() == 1 && inner.get("prefix").is_some_and(Value::is_string) =>
        {
            Ok(())
        }
        ("numeric", Value::Array(a)) if matches!(a.len(), 2 | 4) => {
            for pair in a.chunks(2) {
                let op_ok = pair[0]
                    .as_str()
                    .is_some_and(|op| matches!(op, "<" | "<=" | "=" | ">" | ">="));
                if !op_ok || !pair[1].is_number() {
                    return Err(bad("numeric"));
                }
            }
            Ok(())
        }
        _ => Err(bad(k)),
    }
}

fn match_object(pattern: &Value, event: &Value) -> bool {
    let Some(p) = pattern.as_object() else {
        return false;
    };
    p.iter().all(|(k, pv)| {
        let ev = event.get(k);
        match pv {
            Value::Object(_) => ev.is_some_and(|e| match_object(pv, e)),
            Value::Array(matchers) => match ev {
                Some(Value::Array(items)) => {
                    items
                        .iter()
                        .any(|item| matchers.iter().any(|m| match_value(m, Some(item))))
                        || (items.is_empty() && matchers.iter().any(|m| match_value(m, None)))
                }
                other => matchers.iter().any(|m| match_value(m, other)),
            },
            _ => false,
        }
    })
}

fn match_value(m: &Value, ev: Option<&Value>) -> bool {
    match m {
        Value::Object(o) => {
            let Some((k, v)) = o.iter().next() else {
                return false;
            };
            match (k.as_str(), ev) {
                ("exists", e) => v.as_bool() == Some(e.is_some()),
                (_, None) => false,
                ("prefix", Some(Value::String(s))) => v.as_str().is_some_and(|p| s.starts_with(p)),
                ("suffix", Some(Value::String(s))) => v.as_str().is_some_and(|p| s.ends_with(p)),
                ("equals-ignore-case", Some(Value::String(s))) => {
                    v.as_str().is_some_and(|p| s.eq_ignore_ascii_case(p))
                }
                ("wildcard", Some(Value::String(s))) => v
                    .as_str()
                    .is_some_and(|p| wildcard(p.as_bytes(), s.as_bytes())),
                ("anything-but", Some(e)) => match v {
                    Value::Array(a) => !a.contains(e),
                    Value::Object(inner) => {
                        match (inner.get("prefix").and_then(Value::as_str), e.as_str()) {
                            (Some(p), Some(s)) => !s.starts_with(p),
                            _ => true,
                        }
                    }
                    other => other != e,
                },
                ("numeric", Some(Value::Number(n))) => {
                    let Some(x) = n.as_f64() else { return false };
                    v.as_array().is_some_and(|a| {
                        a.chunks(2).all(|pair| {
                            let bound = pair.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN);
                            match pair.first().and_then(Value::as_str) {
                                Some("<") => x < bound,
                                Some("<=") => x <= bound,
                                Some("=") => x == bound,
                                Some(">") => x > bound,
                                Some(">=") => x >= bound,
                                _ => false,
                            }
                        })
                    })
                }
                _ => false,
            }
        }
        scalar => ev == Some(scalar),
    }
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    // Iterative glob with `*` only, linear in practice (classic backtracking on the last star).
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cloudtrail_patterns_match_as_eventbridge_does() {
        let p = EventPattern::parse(
            r#"{"source":["aws.lambda"],"detail-type":["AWS API Call via CloudTrail"],"detail":{"eventSource":["lambda.amazonaws.com"],"eventName":["CreateFunction20150331",{"prefix":"TagResource"}]}}"#,
        )
        .unwrap();
        let ev = |name: &str| json!({"source":"aws.lambda","detail-type":"AWS API Call via CloudTrail","detail":{"eventSource":"lambda.amazonaws.com","eventName":name}});
        assert!(p.matches(&ev("CreateFunction20150331")));
        assert!(p.matches(&ev("TagResource20170331v2")));
        assert!(!p.matches(&ev("Invoke")));
        let p = EventPattern::parse(
            r#"{"detail":{"n":[{"numeric":[">",1,"<=",5]}],"x":[{"exists":false}],"tags":["a"]}}"#,
        )
        .unwrap();
        assert!(p.matches(&json!({"detail":{"n":3,"tags":["b","a"]}})));
        assert!(!p.matches(&json!({"detail":{"n":3,"x":1,"tags":["a"]}})));
        assert!(!p.matches(&json!({"detail":{"n":6,"tags":["a"]}})));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        assert_eq!(
            EventPattern::parse("[]").unwrap_err(),
            PatternError::NotObject
        );
        assert_eq!(
            EventPattern::parse(r#"{"a":"b"}"#).unwrap_err(),
            PatternError::NotArray
        );
        assert!(EventPattern::parse(r#"{"a":[{"bogus":1}]}"#).is_err());
        assert!(EventPattern::parse("{").is_err());
        assert!(wildcard(b"a*c*e", b"abcde"));
        assert!(!wildcard(b"a*c", b"abd"));
    }
}
