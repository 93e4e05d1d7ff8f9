//! Several datacenters joined into one trust domain (`docs/multi-dc.md`): the names servers use
//! to find and recognise each other, the addresses of the primary's gateways, and the rules of a
//! secondary's intermediate CA. Pure: no I/O, no clock (time is passed in as Unix seconds).
//!
//! The forms are Consul's: a server's TLS name and the SNI a mesh gateway routes to it are
//! `server.<dc>.<domain>` and `<node>.server.<dc>.<domain>` (`tlsutil.Configurator.ServerSNI`,
//! with the DNS domain, `consul` by default, not the trust domain); a server's SPIFFE ID is
//! `spiffe://<td>/agent/server/dc/<dc>` (`connect.SpiffeIDServer`).

use std::fmt;

/// Consul's default DNS domain: the last label of a server's TLS name.
pub const DEFAULT_DOMAIN: &str = "consul";

/// The service `Meta` key that makes a mesh gateway carry servers' traffic between datacenters
/// (`structs.MetaWANFederationKey`; set by `connect envoy -gateway mesh -register -expose-servers`).
pub const WAN_FEDERATION_META: &str = "consul-wan-federation";

/// Longest datacenter name accepted (a DNS label).
const MAX_DC_LEN: usize = 63;

/// Why a datacenter name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid datacenter name {name:?}: {reason}")]
pub struct DatacenterError {
    pub name: String,
    pub reason: &'static str,
}

/// Checks a datacenter name as Consul does (after lower-casing it, which the caller does: Consul
/// lower-cases `datacenter` and `primary_datacenter`): letters, digits, `-` and `_`, and since it
/// is a label of a server's DNS name, at most 63 characters and no leading or trailing `-`.
///
/// # Errors
/// The name and what is wrong with it.
pub fn validate_datacenter(name: &str) -> Result<(), DatacenterError> {
    let err = |reason| DatacenterError {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(err("must not be empty"));
    }
    if name.len() > MAX_DC_LEN {
        return Err(err("longer than 63 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(err(
            "only lower-case letters, digits, '-' and '_' are allowed",
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(err("must not start or end with '-'"));
    }
    Ok(())
}

/// The TLS name (and SNI) of the servers of `dc`: `server.<dc>.<domain>`, or
/// `<node>.server.<dc>.<domain>` for one server.
pub fn server_sni(datacenter: &str, node: Option<&str>, domain: &str) -> String {
    match node {
        None | Some("" | "*") => format!("server.{datacenter}.{domain}"),
        Some(n) => format!("{n}.server.{datacenter}.{domain}"),
    }
}

/// A parsed server SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSni {
    pub datacenter: String,
    pub node: Option<String>,
}

/// Reads `server.<dc>.<domain>` or `<node>.server.<dc>.<domain>`; `None` for any other name
/// (a mesh gateway then treats it as a service or gateway SNI). Case-insensitive, as DNS names.
pub fn parse_server_sni(sni: &str, domain: &str) -> Option<ServerSni> {
    let sni = sni.to_ascii_lowercase();
    let head = sni.strip_suffix(&format!(".{}", domain.to_ascii_lowercase()))?;
    let (rest, dc) = head.rsplit_once('.')?;
    validate_datacenter(dc).ok()?;
    let node = if rest == "server" {
        None
    } else {
        let node = rest.strip_suffix(".server")?;
        // A node name is one DNS label (a `*` wildcard is a gateway's match, not a name).
        if node.is_empty()
            || !node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return None;
        }
        Some(node.to_owned())
    };
    Some(ServerSni {
        datacenter: dc.to_owned(),
        node,
    })
}

/// `spiffe://<td>/agent/server/dc/<dc>`: the identity in a server's certificate.
pub fn server_spiffe_id(trust_domain: &str, datacenter: &str) -> String {
    format!("spiffe://{trust_domain}/agent/server/dc/{datacenter}")
}

/// The datacenter of a server SPIFFE ID in `trust_domain`, or `None` if the URI is anything else
/// (another trust domain, a service, a gateway).
pub fn parse_server_spiffe_id(uri: &str, trust_domain: &str) -> Option<String> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (td, path) = rest.split_once('/')?;
    if !td.eq_ignore_ascii_case(trust_domain) {
        return None;
    }
    let dc = path.strip_prefix("agent/server/dc/")?;
    validate_datacenter(dc).ok()?;
    Some(dc.to_owned())
}

/// The order of `/v1/catalog/datacenters`: Consul sorts by estimated round-trip time from the
/// local datacenter, then by name. Without measured round trips every other datacenter is at the
/// same distance: the local one first, then the rest by name, each once.
pub fn order_datacenters(local: &str, known: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut others: Vec<String> = known.into_iter().filter(|d| d != local).collect();
    others.sort();
    others.dedup();
    let mut out = Vec::with_capacity(others.len() + 1);
    out.push(local.to_owned());
    out.extend(others);
    out
}

/// One entry of `primary_gateways`: a host (IP or DNS name) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for GatewayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Reads `host:port` (`[v6]:port` for IPv6), as Consul's `primary_gateways` entries are written.
/// Consul also accepts go-sockaddr templates and `provider=...` cloud auto-join strings; those are
/// refused by name.
///
/// # Errors
/// Text saying what is wrong.
pub fn parse_gateway_addr(text: &str) -> Result<GatewayAddr, String> {
    let t = text.trim();
    if t.contains("{{") || t.starts_with("provider=") {
        return Err(format!(
            "{text:?}: templates and cloud auto-join are not supported; give HOST:PORT"
        ));
    }
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{text:?}: expected [IPv6]:PORT"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{text:?}: {h:?} is not an IPv6 address"));
        }
        (h, p)
    } else {
        let (h, p) = t
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: expected HOST:PORT"))?;
        if h.contains(':') {
            return Err(format!("{text:?}: write an IPv6 address as [ADDRESS]:PORT"));
        }
        (h, p)
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid_host && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(format!(
            "{text:?}: {host:?} is not an IP address or host name"
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{text:?}: {port:?} is not a port (1-65535)")),
    };
    Ok(GatewayAddr {
        host: host.to_owned(),
        port,
    })
}

/// Common name of a secondary's intermediate CA, in the style of the built-in provider's
/// (`pri-<serial>.consul.ca.<td8>.consul` for roots): `sec-<serial>.<dc>.ca.<td8>.consul`.
pub fn intermediate_common_name(trust_domain: &str, datacenter: &str, serial: u64) -> String {
    let short: String = trust_domain.chars().take(8).collect();
    format!("sec-{serial:x}.{datacenter}.ca.{short}.consul")
}

/// The validity of a new intermediate: from `now` for `ttl` seconds, never past the signing
/// root's own end (a chain is only as good as its shortest link).
///
/// # Errors
/// The root has expired or ends within a minute of `now`: an intermediate from it is useless.
pub fn intermediate_validity(
    now: i64,
    ttl_secs: u64,
    root_not_after: i64,
) -> Result<(i64, i64), String> {
    let end = now
        .saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX))
        .min(root_not_after);
    if end <= now.saturating_add(60) {
        return Err(format!(
            "the primary's active root expires at {root_not_after} (now {now}): no room for an intermediate"
        ));
    }
    Ok((now, end))
}

/// What a secondary holds of its intermediate, to decide whether it needs a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldIntermediate {
    /// `ID` of the primary's root that signed it.
    pub root_id: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// Why a secondary asks the primary for a new intermediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntermediateNeed {
    /// The current one is good.
    Keep,
    /// It has none yet (first join).
    First,
    /// The primary's active root changed (a rotation): the intermediate must chain to it.
    RootRotated,
    /// Past two thirds of its lifetime (as leaves are renewed).
    Renew,
}

/// Whether a secondary needs a new intermediate, given the primary's active root now.
pub fn intermediate_need(
    held: Option<&HeldIntermediate>,
    primary_active_root: &str,
    now: i64,
) -> IntermediateNeed {
    let Some(h) = held else {
        return IntermediateNeed::First;
    };
    if h.root_id != primary_active_root {
        return IntermediateNeed::RootRotated;
    }
    let renew_at = h.not_before + (h.not_after - h.not_before) * 2 / 3;
    if now >= renew_at {
        IntermediateNeed::Renew
    } else {
        IntermediateNeed::Keep
    }
}

/// The text a secondary signs with its intermediate's key to prove it holds the key it asks the
/// primary to certify (a CSR's proof of possession, without a CSR parser on the primary). Binding
/// the datacenter and trust domain stops a signature from being replayed for another one.
pub fn possession_message(trust_domain: &str, datacenter: &str, public_key: &[u8]) -> Vec<u8> {
    let mut m =
        format!("lambdamesh-federation-v1 intermediate {trust_domain} {datacenter} ").into_bytes();
    m.extend_from_slice(public_key);
    m
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn datacenter_names() {
        for ok in ["dc1", "us-east_1", "a"] {
            assert_eq!(validate_datacenter(ok), Ok(()), "{ok}");
        }
        let reason = |n: &str| validate_datacenter(n).unwrap_err().reason;
        assert_eq!(reason(""), "must not be empty");
        assert_eq!(
            reason("DC1"),
            "only lower-case letters, digits, '-' and '_' are allowed"
        );
        assert_eq!(
            reason("dc.1"),
            "only lower-case letters, digits, '-' and '_' are allowed"
        );
        assert_eq!(reason("-dc"), "must not start or end with '-'");
        assert_eq!(reason(&"d".repeat(64)), "longer than 63 characters");
    }

    #[test]
    fn server_names_as_consul_forms_them() {
        assert_eq!(server_sni("dc1", None, "consul"), "server.dc1.consul");
        assert_eq!(server_sni("dc1", Some("*"), "consul"), "server.dc1.consul");
        assert_eq!(
            server_sni("dc2", Some("node-a"), "consul"),
            "node-a.server.dc2.consul"
        );
        assert_eq!(
            parse_server_sni("server.dc1.consul", "consul"),
            Some(ServerSni {
                datacenter: "dc1".into(),
                node: None
            })
        );
        assert_eq!(
            parse_server_sni("Node-A.Server.DC2.consul", "consul"),
            Some(ServerSni {
                datacenter: "dc2".into(),
                node: Some("node-a".into())
            })
        );
        for not in [
            "server.dc1.other",
            "web.default.dc1.internal.abc.consul",
            "dc1.internal.abc.consul",
            "a.b.server.dc1.consul",
            "*.server.dc1.consul",
            ".server.dc1.consul",
            "server.consul",
        ] {
            assert_eq!(parse_server_sni(not, "consul"), None, "{not}");
        }
    }

    #[test]
    fn server_spiffe_ids() {
        let td = "11111111-2222-3333-4444-555555555555.consul";
        let id = server_spiffe_id(td, "dc2");
        assert_eq!(
            id,
            "spiffe://11111111-2222-3333-4444-555555555555.consul/agent/server/dc/dc2"
        );
        assert_eq!(parse_server_spiffe_id(&id, td), Some("dc2".into()));
        assert_eq!(parse_server_spiffe_id(&id, "other.consul"), None);
        assert_eq!(
            parse_server_spiffe_id(&format!("spiffe://{td}/ns/default/dc/dc2/svc/web"), td),
            None
        );
        assert_eq!(
            parse_server_spiffe_id(&format!("spiffe://{td}/agent/server/dc/DC2/x"), td),
            None
        );
    }

    #[test]
    fn datacenters_local_first_then_by_name() {
        let known = ["dc3", "dc1", "dc2", "dc3", "dc0"].map(String::from);
        assert_eq!(
            order_datacenters("dc2", known),
            ["dc2", "dc0", "dc1", "dc3"].map(String::from)
        );
        assert_eq!(order_datacenters("dc1", []), ["dc1".to_owned()]);
    }

    #[test]
    fn gateway_addresses() {
        assert_eq!(
            parse_gateway_addr("127.0.0.1:4431").unwrap(),
            GatewayAddr {
                host: "127.0.0.1".into(),
                port: 4431
            }
        );
        assert_eq!(
            parse_gateway_addr(" mesh-dc1.example:8443 ")
                .unwrap()
                .to_string(),
            "mesh-dc1.example:8443"
        );
        assert_eq!(
            parse_gateway_addr("[::1]:443").unwrap().to_string(),
            "[::1]:443"
        );
        let err = |t: &str| parse_gateway_addr(t).unwrap_err();
        assert!(err("127.0.0.1").contains("expected HOST:PORT"));
        assert!(err("127.0.0.1:0").contains("is not a port"));
        assert!(err("127.0.0.1:99999").contains("is not a port"));
        assert!(err("::1:443").contains("[ADDRESS]:PORT"));
        assert!(err("bad host:1").contains("not an IP address or host name"));
        assert!(err("{{ GetInterfaceIP \"eth0\" }}:1").contains("templates"));
        assert!(err("provider=aws tag_key=x").contains("cloud auto-join"));
    }

    #[test]
    fn intermediate_rules() {
        assert_eq!(
            intermediate_common_name("abcdef1234.consul", "dc2", 255),
            "sec-ff.dc2.ca.abcdef12.consul"
        );
        assert_eq!(intermediate_validity(1000, 500, 10_000), Ok((1000, 1500)));
        // Capped at the root's end.
        assert_eq!(
            intermediate_validity(1000, 50_000, 10_000),
            Ok((1000, 10_000))
        );
        assert!(intermediate_validity(1000, 50_000, 1030).is_err());
        let held = HeldIntermediate {
            root_id: "r1".into(),
            not_before: 0,
            not_after: 300,
        };
        assert_eq!(intermediate_need(None, "r1", 0), IntermediateNeed::First);
        assert_eq!(
            intermediate_need(Some(&held), "r1", 199),
            IntermediateNeed::Keep
        );
        assert_eq!(
            intermediate_need(Some(&held), "r1", 200),
            IntermediateNeed::Renew
        );
        assert_eq!(
            intermediate_need(Some(&held), "r2", 10),
            IntermediateNeed::RootRotated
        );
        let m = possession_message("td.consul", "dc2", &[1, 2]);
        assert_eq!(
            m,
            b"lambdamesh-federation-v1 intermediate td.consul dc2 \x01\x02".to_vec()
        );
    }
}
