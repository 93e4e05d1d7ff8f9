//! Parsing of the names by which clients refer to functions and layers: a plain name,
//! `name:qualifier`, a partial ARN `account:function:name[:qualifier]` or a full ARN
//! `arn:aws:lambda:region:account:function:name[:qualifier]`, as AWS's `FunctionName` accepts.

use crate::wire::ApiError;

/// AWS's documented `FunctionName` pattern, quoted in validation messages.
pub const FUNCTION_NAME_PATTERN: &str = "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?";
/// AWS's `Qualifier` pattern.
pub const QUALIFIER_PATTERN: &str = "(|[a-zA-Z0-9$_-]+)";

/// A reference to a function, possibly qualified by a version or alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionRef {
    /// The function name.
    pub name: String,
    /// Version, `$LATEST` or alias, if given.
    pub qualifier: Option<String>,
    /// Region, when a full ARN was given.
    pub region: Option<String>,
    /// Account, when an ARN was given.
    pub account: Option<String>,
}

/// Why a reference was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// Does not match AWS's pattern.
    #[error("value does not match the function name pattern")]
    Pattern,
    /// Too long.
    #[error("value is longer than {0} characters")]
    TooLong(usize),
}

/// Whether `s` is a valid bare function name (1–64 of `[a-zA-Z0-9-_]`).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` is a valid qualifier (`$LATEST`, a version number or an alias name).
pub fn valid_qualifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'$' | b'_' | b'-'))
}

/// Parses a `FunctionName` parameter. Pure; fuzzed.
///
/// # Errors
/// [`RefError`] when the value cannot name a function.
pub fn parse_function_ref(s: &str) -> Result<FunctionRef, RefError> {
    if s.len() > 170 {
        return Err(RefError::TooLong(170));
    }
    let parts: Vec<&str> = s.split(':').collect();
    let (region, account, rest): (Option<&str>, Option<&str>, &[&str]) = match parts.as_slice() {
        [
            "arn",
            partition,
            "lambda",
            region,
            account,
            "function",
            rest @ ..,
        ] => {
            if !partition.starts_with("aws") || !valid_region(region) || !valid_account(account) {
                return Err(RefError::Pattern);
            }
            (Some(region), Some(account), rest)
        }
        [account, "function", rest @ ..] if valid_account(account) => (None, Some(account), rest),
        rest => (None, None, rest),
    };
    let (name, qualifier) = match rest {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        _ => return Err(RefError::Pattern),
    };
    if !valid_name(name) {
        return Err(RefError::Pattern);
    }
    if let Some(q) = qualifier
        && !(q == "$LATEST" || (valid_qualifier(q) && !q.contains('$')))
    {
        return Err(RefError::Pattern);
    }
    Ok(FunctionRef {
        name: name.to_owned(),
        qualifier: qualifier.map(str::to_owned),
        region: region.map(str::to_owned),
        account: account.map(str::to_owned),
    })
}

/// A layer version ARN `arn:aws:lambda:region:account:layer:name:version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerVersionRef {
    /// Region.
    pub region: String,
    /// Account.
    pub account: String,
    /// Layer name.
    pub name: String,
    /// Version number.
    pub version: u64,
}

/// Parses a layer version ARN. Pure; fuzzed.
///
/// # Errors
/// [`RefError::Pattern`] when it is not a layer version ARN.
pub fn parse_layer_version_arn(s: &str) -> Result<LayerVersionRef, RefError> {
    if s.len() > 140 {
        return Err(RefError::TooLong(140));
    }
    match s.split(':').collect::<Vec<_>>().as_slice() {
        [
            "arn",
            partition,
            "lambda",
            region,
            account,
            "layer",
            name,
            version,
        ] if partition.starts_with("aws")
            && valid_region(region)
            && valid_account(account)
            && valid_layer_name(name) =>
        {
            let number = version.parse::<u64>().map_err(|_| RefError::Pattern)?;
            // Reject "01" and "+1", which `parse` would accept.
            if number == 0 || number.to_string() != *version {
                return Err(RefError::Pattern);
            }
            Ok(LayerVersionRef {
                region: (*region).into(),
                account: (*account).into(),
                name: (*name).into(),
                version: number,
            })
        }
        _ => Err(RefError::Pattern),
    }
}

/// Whether `s` is a valid layer name.
pub fn valid_layer_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The AWS validation error for a bad `FunctionName`.
pub fn function_name_error(value: &str) -> ApiError {
    match parse_function_ref(value) {
        Err(RefError::TooLong(n)) => ApiError::validation(
            "functionName",
            value,
            &format!("Member must have length less than or equal to {n}"),
        ),
        _ => ApiError::validation(
            "functionName",
            value,
            &format!("Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form_aws_accepts() {
        let r = parse_function_ref("greeter").unwrap();
        assert_eq!((r.name.as_str(), r.qualifier), ("greeter", None));
        let r = parse_function_ref("greeter:live").unwrap();
        assert_eq!(r.qualifier.as_deref(), Some("live"));
        let r = parse_function_ref("123456789012:function:greeter:$LATEST").unwrap();
        assert_eq!(r.account.as_deref(), Some("123456789012"));
        assert_eq!(r.qualifier.as_deref(), Some("$LATEST"));
        let r =
            parse_function_ref("arn:aws:lambda:us-east-1:123456789012:function:greeter:3").unwrap();
        assert_eq!(
            (r.region.as_deref(), r.qualifier.as_deref()),
            (Some("us-east-1"), Some("3"))
        );
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "a b",
            "arn:aws:lambda:us-east-1:123:function:f",
            "arn:aws:s3:::bucket",
            "f:q:extra",
            "f:$NOPE",
            "arn:aws:lambda:us-east-1:123456789012:function:",
        ] {
            assert!(parse_function_ref(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_function_ref(&"a".repeat(171)),
            Err(RefError::TooLong(170))
        );
    }

    #[test]
    fn layer_arns() {
        let l =
            parse_layer_version_arn("arn:aws:lambda:us-east-1:123456789012:layer:ext:2").unwrap();
        assert_eq!((l.name.as_str(), l.version), ("ext", 2));
        assert!(
            parse_layer_version_arn("arn:aws:lambda:us-east-1:123456789012:layer:ext").is_err()
        );
        assert!(
            parse_layer_version_arn("arn:aws:lambda:us-east-1:123456789012:layer:ext:0").is_err()
        );
    }
}
