//! The query options that say where a request goes (`dc`, `partition`, `ns`), built in one place
//! for every caller, and the percent-encoding of path segments and query values.

/// Datacenter, admin partition and namespace of a request. `None` or empty means the server's
/// default: the option is not sent at all (an OSS Consul needs no partition or namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tenancy<'a> {
    pub datacenter: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

impl Tenancy<'_> {
    /// The server's defaults: no query option.
    pub const DEFAULT: Tenancy<'static> = Tenancy {
        datacenter: None,
        partition: None,
        namespace: None,
    };

    /// `?dc=…&partition=…&ns=…` with only the options set, or an empty string.
    pub fn query(&self) -> String {
        self.query_with(&[])
    }

    /// [`Self::query`] followed by `extra` pairs (values encoded here).
    pub(crate) fn query_with(&self, extra: &[(&str, &str)]) -> String {
        let pairs: Vec<String> = [
            ("dc", self.datacenter),
            ("partition", self.partition),
            ("ns", self.namespace),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
        .chain(extra.iter().copied())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }

    /// `path` with this tenancy's query.
    pub(crate) fn on(&self, path: &str) -> String {
        format!("{path}{}", self.query())
    }
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved bytes).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_options_set_are_sent() {
        assert_eq!(Tenancy::DEFAULT.query(), "");
        let t = Tenancy {
            datacenter: Some("dc2"),
            partition: Some(""),
            namespace: Some("team a"),
        };
        assert_eq!(t.query(), "?dc=dc2&ns=team%20a");
        assert_eq!(t.on("/v1/config"), "/v1/config?dc=dc2&ns=team%20a");
        assert_eq!(Tenancy::DEFAULT.query_with(&[("cas", "0")]), "?cas=0");
        let p = Tenancy {
            partition: Some("p1"),
            ..Tenancy::DEFAULT
        };
        assert_eq!(p.query_with(&[("cas", "7")]), "?partition=p1&cas=7");
    }
}
