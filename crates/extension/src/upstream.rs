//! `CONSUL_SERVICE_UPSTREAMS`: the comma-separated list of `name[.namespace[.partition]]:port[:dc]`
//! the Go extension reads (reference §2.4), and what each upstream is called on the wire: its SNI
//! and SPIFFE ID, formed by `mesh_model::connect` (the one place those formats live).
//!
//! Stricter than the reference where its input is certainly a mistake, each reported on its own:
//! extra `.` or `:` parts (the reference ignores them), ports outside 1–65535 or used twice, and
//! names that cannot stand in an SNI. Whitespace around an entry and empty entries (a trailing
//! comma) are allowed. Pure: no I/O.

use std::collections::BTreeMap;

use mesh_model::{
    connect,
    names::{EntMeta, ServiceName},
};

/// One upstream: where the function calls it and which mesh service answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The entry as written (for messages).
    pub raw: String,
    /// Service, namespace and partition (`default` when not given).
    pub service: ServiceName,
    /// Its datacenter: the entry's, else `CONSUL_DATACENTER`, else `dc1`.
    pub datacenter: String,
    /// The local port the function calls (`127.0.0.1:<port>`).
    pub port: u16,
}

impl Upstream {
    /// The SNI the mesh gateway routes on: `<svc>.<ns>.<dc>.internal.<td>`, or
    /// `<svc>.<ns>.<ap>.<dc>.internal-v1.<td>` outside the default partition.
    pub fn sni(&self, trust_domain: &str) -> String {
        connect::service_sni(&self.service, None, &self.datacenter, trust_domain)
    }

    /// The identity the far end must present: `spiffe://<td>[/ap/<ap>]/ns/<ns>/dc/<dc>/svc/<svc>`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        connect::service_spiffe_id(trust_domain, &self.service, &self.datacenter)
    }
}

/// One problem with the list; each names the entry it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {entry:?}: expected name[.namespace[.partition]]:port[:datacenter]")]
    Format { entry: String },
    #[error("upstream {entry:?}: invalid port {port:?} (want 1-65535)")]
    Port { entry: String, port: String },
    #[error(
        "upstream {entry:?}: {what} {value:?} must be letters, digits, '-' or '_' (not starting or ending with '-')"
    )]
    Name {
        entry: String,
        what: &'static str,
        value: String,
    },
    #[error("upstreams {first:?} and {second:?} both use port {port}")]
    DuplicatePort {
        first: String,
        second: String,
        port: u16,
    },
}

/// Parses the whole list; every problem is reported, not only the first.
///
/// # Errors
/// The problems found, in the order of the entries.
pub fn parse_list(list: &str, default_dc: &str) -> Result<Vec<Upstream>, Vec<UpstreamError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_one(entry, default_dc) {
            Ok(u) => {
                if let Some(first) = ports.get(&u.port) {
                    errors.push(UpstreamError::DuplicatePort {
                        first: first.clone(),
                        second: entry.to_owned(),
                        port: u.port,
                    });
                } else {
                    ports.insert(u.port, entry.to_owned());
                    out.push(u);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parses one `name[.namespace[.partition]]:port[:dc]`.
///
/// # Errors
/// Each problem of the entry.
pub fn parse_one(entry: &str, default_dc: &str) -> Result<Upstream, Vec<UpstreamError>> {
    let format = || {
        vec![UpstreamError::Format {
            entry: entry.to_owned(),
        }]
    };
    let parts: Vec<&str> = entry.split(':').collect();
    let (names, port, dc) = match parts.as_slice() {
        [names, port] => (*names, *port, None),
        [names, port, dc] => (*names, *port, Some(*dc).filter(|d| !d.is_empty())),
        _ => return Err(format()),
    };
    let labels: Vec<&str> = names.split('.').collect();
    if labels.len() > 3 {
        return Err(format());
    }
    let mut errors = Vec::new();
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            errors.push(UpstreamError::Port {
                entry: entry.to_owned(),
                port: port.to_owned(),
            });
            0
        }
    };
    let what = ["service name", "namespace", "partition"];
    for (label, what) in labels.iter().zip(what) {
        check_label(entry, what, label, &mut errors);
    }
    if let Some(dc) = dc {
        check_label(entry, "datacenter", dc, &mut errors);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Upstream {
        raw: entry.to_owned(),
        service: ServiceName::new(
            labels[0],
            EntMeta::new(labels.get(2).copied(), labels.get(1).copied()),
        ),
        datacenter: dc.unwrap_or(default_dc).to_owned(),
        port,
    })
}

/// Whether `label` can be one label of an SNI (and of a Consul name): letters, digits, `-` and
/// `_`, not starting or ending with `-`, at most 63 bytes.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_label(entry: &str, what: &'static str, label: &str, errors: &mut Vec<UpstreamError>) {
    if !valid_label(label) {
        errors.push(UpstreamError::Name {
            entry: entry.to_owned(),
            what,
            value: label.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TD: &str = "11111111-2222-3333-4444-555555555555.consul";

    #[test]
    fn the_reference_forms_and_their_wire_names() {
        let ups = parse_list(
            "static-server:2345:dc2, web:1234,api.team:1235,db.team.part1:1236:dc3,",
            "dc1",
        )
        .unwrap();
        let got: Vec<(u16, String, String)> = ups
            .iter()
            .map(|u| (u.port, u.sni(TD), u.spiffe_id(TD)))
            .collect();
        assert_eq!(
            got,
            [
                (
                    2345,
                    format!("static-server.default.dc2.internal.{TD}"),
                    format!("spiffe://{TD}/ns/default/dc/dc2/svc/static-server")
                ),
                (
                    1234,
                    format!("web.default.dc1.internal.{TD}"),
                    format!("spiffe://{TD}/ns/default/dc/dc1/svc/web")
                ),
                (
                    1235,
                    format!("api.team.dc1.internal.{TD}"),
                    format!("spiffe://{TD}/ns/team/dc/dc1/svc/api")
                ),
                (
                    1236,
                    format!("db.team.part1.dc3.internal-v1.{TD}"),
                    format!("spiffe://{TD}/ap/part1/ns/team/dc/dc3/svc/db")
                ),
            ]
        );
        assert_eq!(ups[0].raw, "static-server:2345:dc2");
    }

    #[test]
    fn the_default_datacenter_is_the_callers() {
        let u = parse_one("web:1234", "east").unwrap();
        assert_eq!(u.datacenter, "east");
        assert_eq!(parse_one("web:1234:", "east").unwrap().datacenter, "east");
        assert!(parse_list("", "dc1").unwrap().is_empty());
        assert!(parse_list(" , ", "dc1").unwrap().is_empty());
    }

    #[test]
    fn every_problem_is_reported_once_with_its_entry() {
        let errs = parse_list(
            "web,a:0,b:70000,c:x, d.e.f.g:1, :5, sp ace:6, e:7:dc:x, f:8, g:8, h:9:d.c",
            "dc1",
        )
        .unwrap_err();
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                r#"upstream "web": expected name[.namespace[.partition]]:port[:datacenter]"#,
                r#"upstream "a:0": invalid port "0" (want 1-65535)"#,
                r#"upstream "b:70000": invalid port "70000" (want 1-65535)"#,
                r#"upstream "c:x": invalid port "x" (want 1-65535)"#,
                r#"upstream "d.e.f.g:1": expected name[.namespace[.partition]]:port[:datacenter]"#,
                r#"upstream ":5": service name "" must be letters, digits, '-' or '_' (not starting or ending with '-')"#,
                r#"upstream "sp ace:6": service name "sp ace" must be letters, digits, '-' or '_' (not starting or ending with '-')"#,
                r#"upstream "e:7:dc:x": expected name[.namespace[.partition]]:port[:datacenter]"#,
                r#"upstreams "f:8" and "g:8" both use port 8"#,
                r#"upstream "h:9:d.c": datacenter "d.c" must be letters, digits, '-' or '_' (not starting or ending with '-')"#,
            ]
        );
    }

    #[test]
    fn a_bad_port_and_a_bad_name_in_one_entry_are_two_problems() {
        let errs = parse_one("a..b:x", "dc1").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn labels_that_cannot_be_in_an_sni_are_refused() {
        // Found by the fuzzer: a partition "-9" made an SNI rustls refuses.
        for bad in ["api.team.-9:12", "-web:1", "web-:1", "web.ns-:1"] {
            assert!(parse_one(bad, "dc1").is_err(), "{bad}");
        }
        for good in ["web_1:1", "w-e-b:1", "9web.n_s:1"] {
            let u = parse_one(good, "dc1").unwrap();
            assert!(
                rustls::pki_types::ServerName::try_from(u.sni("td.consul")).is_ok(),
                "{good}"
            );
        }
    }
}
