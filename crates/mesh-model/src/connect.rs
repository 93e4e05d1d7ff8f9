//! Connect naming: trust domains, SPIFFE IDs and SNI names exactly as Consul forms them
//! (reference §3: `agent/connect/{uri_signing,uri_service,sni}.go`). Clusters for discovery-chain
//! targets are named by their SNI, which is how the Lambda patch finds them.

use crate::names::{DEFAULT, EntMeta, ServiceName};

/// `<cluster-id>.consul`, lower-cased.
pub fn trust_domain(cluster_id: &str) -> String {
    format!("{}.consul", cluster_id.to_lowercase())
}

/// `spiffe://<td>[/ap/<ap>]/ns/<ns>/dc/<dc>/svc/<svc>` (the `/ap` part only outside `default`).
pub fn service_spiffe_id(trust_domain: &str, svc: &ServiceName, datacenter: &str) -> String {
    let ap = if svc.meta.partition == DEFAULT {
        String::new()
    } else {
        format!("/ap/{}", svc.meta.partition)
    };
    format!(
        "spiffe://{trust_domain}{ap}/ns/{}/dc/{datacenter}/svc/{}",
        svc.meta.namespace, svc.name
    )
}

/// `spiffe://<td>/gateway/mesh/dc/<dc>` (Consul CE).
pub fn mesh_gateway_spiffe_id(trust_domain: &str, datacenter: &str) -> String {
    format!("spiffe://{trust_domain}/gateway/mesh/dc/{datacenter}")
}

/// The signing ID of the CA: `spiffe://<td>`.
pub fn signing_spiffe_id(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}")
}

/// Service SNI: `[<subset>.]<svc>.<ns>.<dc>.internal.<td>` in the default partition,
/// `[<subset>.]<svc>.<ns>.<ap>.<dc>.internal-v1.<td>` elsewhere.
pub fn service_sni(
    svc: &ServiceName,
    subset: Option<&str>,
    datacenter: &str,
    trust_domain: &str,
) -> String {
    let prefix = subset
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}."))
        .unwrap_or_default();
    let ns = if svc.meta.namespace.is_empty() {
        DEFAULT
    } else {
        &svc.meta.namespace
    };
    if svc.meta.partition.is_empty() || svc.meta.partition == DEFAULT {
        format!(
            "{prefix}{}.{ns}.{datacenter}.internal.{trust_domain}",
            svc.name
        )
    } else {
        format!(
            "{prefix}{}.{ns}.{}.{datacenter}.internal-v1.{trust_domain}",
            svc.name, svc.meta.partition
        )
    }
}

/// Gateway SNI: `<dc>.internal.<td>`, or `<ap>.<dc>.internal-v1.<td>` outside `default`.
pub fn gateway_sni(datacenter: &str, partition: &str, trust_domain: &str) -> String {
    if partition.is_empty() || partition == DEFAULT {
        format!("{datacenter}.internal.{trust_domain}")
    } else {
        format!("{partition}.{datacenter}.internal-v1.{trust_domain}")
    }
}

/// Informational CN of a leaf: `<svc>.svc.<ns>.<td[:8]>.consul`.
pub fn service_cn(svc: &ServiceName, trust_domain: &str) -> String {
    let short: String = trust_domain.chars().take(8).collect();
    format!("{}.svc.{}.{short}.consul", svc.name, svc.meta.namespace)
}

/// A parsed service SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeService {
    pub trust_domain: String,
    pub service: ServiceName,
    pub datacenter: String,
}

/// Why a SPIFFE ID was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid SPIFFE ID {uri:?}: {reason}")]
pub struct SpiffeError {
    pub uri: String,
    pub reason: &'static str,
}

/// Parses `spiffe://<td>[/ap/<ap>]/ns/<ns>/dc/<dc>/svc/<svc>`.
pub fn parse_service_spiffe_id(uri: &str) -> Result<SpiffeService, SpiffeError> {
    let err = |reason| SpiffeError {
        uri: uri.to_owned(),
        reason,
    };
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| err("must start with spiffe://"))?;
    let (td, path) = rest.split_once('/').ok_or_else(|| err("missing path"))?;
    if td.is_empty() {
        return Err(err("empty trust domain"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let (partition, rest) = match parts.as_slice() {
        ["ap", ap, rest @ ..] => (*ap, rest),
        rest => (DEFAULT, rest),
    };
    match rest {
        ["ns", ns, "dc", dc, "svc", svc] if !ns.is_empty() && !dc.is_empty() && !svc.is_empty() => {
            Ok(SpiffeService {
                trust_domain: td.to_owned(),
                service: ServiceName::new(*svc, EntMeta::new(Some(partition), Some(ns))),
                datacenter: (*dc).to_owned(),
            })
        }
        _ => Err(err(
            "expected [/ap/<partition>]/ns/<namespace>/dc/<datacenter>/svc/<service>",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

    #[test]
    fn consul_vectors() {
        let web = ServiceName::default_tuple("web");
        assert_eq!(
            service_spiffe_id(TD, &web, "dc1"),
            format!("spiffe://{TD}/ns/default/dc/dc1/svc/web")
        );
        let p = ServiceName::new("web", EntMeta::new(Some("part1"), Some("ns1")));
        assert_eq!(
            service_spiffe_id(TD, &p, "dc1"),
            format!("spiffe://{TD}/ap/part1/ns/ns1/dc/dc1/svc/web")
        );
        assert_eq!(
            service_sni(&web, None, "dc1", TD),
            format!("web.default.dc1.internal.{TD}")
        );
        assert_eq!(
            service_sni(&web, Some("v2"), "dc1", TD),
            format!("v2.web.default.dc1.internal.{TD}")
        );
        assert_eq!(
            service_sni(&p, None, "dc1", TD),
            format!("web.ns1.part1.dc1.internal-v1.{TD}")
        );
        assert_eq!(
            gateway_sni("dc1", "default", TD),
            format!("dc1.internal.{TD}")
        );
        assert_eq!(
            gateway_sni("dc1", "p", TD),
            format!("p.dc1.internal-v1.{TD}")
        );
        assert_eq!(
            mesh_gateway_spiffe_id(TD, "dc1"),
            format!("spiffe://{TD}/gateway/mesh/dc/dc1")
        );
        assert_eq!(trust_domain("ABC"), "abc.consul");
        assert_eq!(service_cn(&web, TD), "web.svc.default.11111111.consul");
    }

    #[test]
    fn parse_round_trips_and_rejects() {
        for svc in [
            ServiceName::default_tuple("web"),
            ServiceName::new("api", EntMeta::new(Some("p1"), Some("n1"))),
        ] {
            let id = service_spiffe_id(TD, &svc, "dc2");
            let parsed = parse_service_spiffe_id(&id).unwrap();
            assert_eq!(
                (
                    parsed.service,
                    parsed.datacenter.as_str(),
                    parsed.trust_domain.as_str()
                ),
                (svc, "dc2", TD)
            );
        }
        for bad in [
            "http://x/ns/a/dc/b/svc/c",
            "spiffe://td",
            "spiffe:///ns/a/dc/b/svc/c",
            "spiffe://td/ns/a/dc/b",
            "spiffe://td/gateway/mesh/dc/dc1",
        ] {
            assert!(parse_service_spiffe_id(bad).is_err(), "{bad}");
        }
    }
}
