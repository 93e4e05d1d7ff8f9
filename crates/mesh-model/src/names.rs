//! Names and tenancy. Every name in lambdamesh carries its admin partition and namespace from the
//! start (both `default` unless given), so later multi-tenant features need no data migration.

use serde::{Deserialize, Serialize};

/// The default partition and namespace name.
pub const DEFAULT: &str = "default";
/// The wildcard accepted in intentions and some config entries.
pub const WILDCARD: &str = "*";

/// Admin partition + namespace of a name ("enterprise meta" in Consul's code).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntMeta {
    pub partition: String,
    pub namespace: String,
}

impl Default for EntMeta {
    fn default() -> Self {
        Self {
            partition: DEFAULT.to_owned(),
            namespace: DEFAULT.to_owned(),
        }
    }
}

impl EntMeta {
    /// Builds from optional query/body values; empty or missing means `default`.
    pub fn new(partition: Option<&str>, namespace: Option<&str>) -> Self {
        fn or_default(s: Option<&str>) -> String {
            match s {
                Some(v) if !v.is_empty() => v.to_owned(),
                _ => DEFAULT.to_owned(),
            }
        }
        Self {
            partition: or_default(partition),
            namespace: or_default(namespace),
        }
    }

    pub fn is_default_partition(&self) -> bool {
        self.partition == DEFAULT
    }
}

/// A name qualified by its tenancy: the key of catalog services, config entries and intentions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceName {
    pub meta: EntMeta,
    pub name: String,
}

impl ServiceName {
    pub fn new(name: impl Into<String>, meta: EntMeta) -> Self {
        Self {
            meta,
            name: name.into(),
        }
    }
    pub fn default_tenancy(name: impl Into<String>) -> Self {
        Self::new(name, EntMeta::default())
    }
    /// Short alias of [`Self::default_tenancy`] for tests and literals.
    pub fn default_tuple(name: impl Into<String>) -> Self {
        Self::default_tenancy(name)
    }
}

/// Why a name was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} {name:?} is longer than {max} characters")]
    TooLong {
        what: &'static str,
        name: String,
        max: usize,
    },
    #[error(
        "{what} {name:?} contains invalid characters: only letters, digits, '-', '_' and '.' are allowed"
    )]
    BadChars { what: &'static str, name: String },
    #[error(
        "{what} {name:?} is invalid: must be a DNS label (letters, digits and '-', 1-63 characters, not starting or ending with '-')"
    )]
    NotDnsLabel { what: &'static str, name: String },
}

/// Consul's longest accepted service/node name (DNS name limit).
pub const MAX_NAME_LEN: usize = 256;

/// Validates a service or node name. Consul warns on names that are not DNS-safe but rejects
/// names with characters that break its own addressing (`/`, spaces, control characters); we do
/// the same and also cap the length.
pub fn validate_service_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            name: name.to_owned(),
            max: MAX_NAME_LEN,
        });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(NameError::BadChars {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Validates a namespace or partition name: a DNS label, as Consul Enterprise requires.
pub fn validate_tenancy_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::NotDnsLabel {
            what,
            name: name.to_owned(),
        })
    }
}

impl EntMeta {
    /// Validates both parts.
    pub fn validate(&self) -> Result<(), NameError> {
        validate_tenancy_name("partition", &self.partition)?;
        validate_tenancy_name("namespace", &self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_default() {
        assert_eq!(EntMeta::new(Some(""), None), EntMeta::default());
        assert_eq!(EntMeta::new(Some("p1"), Some("ns1")).partition, "p1");
    }

    #[test]
    fn names() {
        assert!(validate_service_name("service name", "web-v2.api_x").is_ok());
        assert!(matches!(
            validate_service_name("service name", ""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate_service_name("service name", "a/b"),
            Err(NameError::BadChars { .. })
        ));
        assert!(matches!(
            validate_service_name("service name", &"a".repeat(300)),
            Err(NameError::TooLong { .. })
        ));
        assert!(validate_tenancy_name("namespace", "team-1").is_ok());
        assert!(validate_tenancy_name("namespace", "-x").is_err());
        assert!(validate_tenancy_name("namespace", "a_b").is_err());
    }
}
