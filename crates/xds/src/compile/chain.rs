//! The discovery chain: service-router → service-splitter → service-resolver, compiled into the
//! routes of an upstream and the SNI-named targets they send to. Every config entry the
//! compiler looks up (found or not) is recorded: that is what the chain depends on.

use std::collections::{BTreeMap, BTreeSet};

use mesh_model::EntMeta;
use mesh_model::config_entry::{
    ConfigEntry, ConfigEntrySet, EntryKey, HttpHeaderModifiers, Kind, MeshGatewayMode,
    ServiceRouteHttpMatch,
};
use mesh_model::connect;
use mesh_model::names::ServiceName;

/// Consul's default connect timeout for upstream clusters.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Redirect and nested-splitter depth limit (a loop in config must not hang the compiler).
const MAX_DEPTH: usize = 8;

/// One resolved destination: a service (and subset) in a datacenter.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub service: ServiceName,
    pub subset: String,
    /// Where the service runs: the caller's datacenter or another.
    pub datacenter: String,
    /// How traffic to another datacenter leaves (upstream, then the target's service-defaults,
    /// then proxy-defaults); [`MeshGatewayMode::Default`] for a target in the caller's own.
    pub mesh_gateway: MeshGatewayMode,
    pub sni: String,
    pub spiffe_id: String,
    /// go-bexpr filter of the subset, evaluated against each health/connect row.
    pub filter: String,
    pub only_passing: bool,
    pub connect_timeout_ms: u64,
    /// Failover targets in order (from the resolver's `Failover`).
    pub failover: Vec<Target>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Dest {
    Cluster(String),
    /// (cluster, weight in 1/100 percent: 10000 = 100 %)
    Weighted(Vec<(String, u32)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainRoute {
    /// `None` for the catch-all.
    pub http_match: Option<ServiceRouteHttpMatch>,
    pub dest: Dest,
    pub prefix_rewrite: String,
    pub request_timeout_ns: i64,
    pub idle_timeout_ns: i64,
    pub num_retries: u32,
    pub retry_on_connect_failure: bool,
    pub retry_on_status_codes: Vec<u32>,
    pub request_headers: Option<HttpHeaderModifiers>,
    pub response_headers: Option<HttpHeaderModifiers>,
}

/// A compiled chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub protocol: String,
    pub routes: Vec<ChainRoute>,
    /// Every target any route can reach, by SNI (= cluster name).
    pub targets: BTreeMap<String, Target>,
}

fn meta_of(ns: &str, partition: &str, fallback: &EntMeta) -> EntMeta {
    EntMeta::new(
        Some(if partition.is_empty() {
            &fallback.partition
        } else {
            partition
        }),
        Some(if ns.is_empty() {
            &fallback.namespace
        } else {
            ns
        }),
    )
}

/// Where a chain is compiled from: the caller's datacenter, the datacenter its upstream names
/// (Consul's upstream `Datacenter`; empty: the caller's) and the mesh gateway mode the upstream
/// or the proxy's registration set (overrides config entries).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub datacenter: &'a str,
    pub upstream_datacenter: &'a str,
    pub mesh_gateway: MeshGatewayMode,
}

impl<'a> Origin<'a> {
    /// A caller in `datacenter` naming no other.
    pub fn local(datacenter: &'a str) -> Self {
        Origin {
            datacenter,
            upstream_datacenter: "",
            mesh_gateway: MeshGatewayMode::Default,
        }
    }
}

struct Compiler<'a> {
    entries: &'a ConfigEntrySet,
    /// The caller's datacenter.
    datacenter: &'a str,
    mesh_gateway_override: MeshGatewayMode,
    /// The datacenter the upstream names (routers and splitters resolve there).
    start_dc: String,
    trust_domain: &'a str,
    targets: BTreeMap<String, Target>,
    /// Every entry looked up so far, found or not.
    read: BTreeSet<EntryKey>,
}

impl<'a> Compiler<'a> {
    /// The entry of `kind` for `svc`, recording the lookup.
    fn entry(&mut self, kind: Kind, svc: &ServiceName) -> Option<&'a ConfigEntry> {
        let key = EntryKey {
            kind,
            meta: svc.meta.clone(),
            name: svc.name.clone(),
        };
        let found = self.entries.get(&key);
        self.read.insert(key);
        found
    }

    fn resolver(
        &mut self,
        svc: &ServiceName,
    ) -> Option<&'a mesh_model::config_entry::ServiceResolver> {
        match self.entry(Kind::ServiceResolver, svc) {
            Some(ConfigEntry::ServiceResolver(r)) => Some(r),
            _ => None,
        }
    }

    fn protocol(&mut self, svc: &ServiceName) -> String {
        self.read.extend(ConfigEntrySet::protocol_keys(svc));
        self.entries.protocol_of(svc)
    }

    /// Follows redirects (into other datacenters too), picks the subset, records the target;
    /// returns its SNI and the resolver's request timeout.
    fn resolve(
        &mut self,
        svc: &ServiceName,
        subset: &str,
        dc: &str,
        depth: usize,
    ) -> (String, i64) {
        let mut svc = svc.clone();
        let mut subset = subset.to_owned();
        let mut dc = dc.to_owned();
        for _ in 0..MAX_DEPTH {
            let Some(r) = self.resolver(&svc) else { break };
            let Some(red) = &r.redirect else { break };
            let next_dc = if red.datacenter.is_empty() {
                dc.clone()
            } else {
                red.datacenter.clone()
            };
            let next = ServiceName::new(
                if red.service.is_empty() {
                    svc.name.clone()
                } else {
                    red.service.clone()
                },
                meta_of(&red.namespace, &red.partition, &svc.meta),
            );
            if next == svc && red.service_subset.is_empty() && next_dc == dc {
                break;
            }
            subset = red.service_subset.clone();
            svc = next;
            dc = next_dc;
        }
        let resolver = self.resolver(&svc);
        if subset.is_empty() {
            subset = resolver
                .map(|r| r.default_subset.clone())
                .unwrap_or_default();
        }
        let (filter, only_passing) = resolver
            .and_then(|r| r.subsets.get(&subset))
            .map(|s| (s.filter.clone(), s.only_passing))
            .unwrap_or_default();
        let connect_timeout_ms = resolver
            .map(|r| r.connect_timeout.0)
            .filter(|ns| *ns > 0)
            .map_or(DEFAULT_CONNECT_TIMEOUT_MS, |ns| {
                (ns / 1_000_000).max(1) as u64
            });
        let request_timeout = resolver.map_or(0, |r| r.request_timeout.0);
        let sni = connect::service_sni(&svc, Some(&subset), &dc, self.trust_domain);
        let mut failover = Vec::new();
        if depth < 2
            && let Some(f) =
                resolver.and_then(|r| r.failover.get(&subset).or_else(|| r.failover.get("*")))
        {
            // Consul's order: `Targets`; else `Service`/`ServiceSubset` in each of
            // `Datacenters` (or in the target's own datacenter when none is listed).
            let mut fo_targets: Vec<(ServiceName, String, String)> = f
                .targets
                .iter()
                .filter(|t| t.peer.is_empty())
                .map(|t| {
                    (
                        ServiceName::new(
                            if t.service.is_empty() {
                                svc.name.clone()
                            } else {
                                t.service.clone()
                            },
                            meta_of(&t.namespace, &t.partition, &svc.meta),
                        ),
                        if t.service.is_empty() && t.service_subset.is_empty() {
                            subset.clone()
                        } else {
                            t.service_subset.clone()
                        },
                        if t.datacenter.is_empty() {
                            dc.clone()
                        } else {
                            t.datacenter.clone()
                        },
                    )
                })
                .collect();
            if f.targets.is_empty() {
                let fsvc = ServiceName::new(
                    if f.service.is_empty() {
                        svc.name.clone()
                    } else {
                        f.service.clone()
                    },
                    meta_of(&f.namespace, "", &svc.meta),
                );
                let fsub = if f.service.is_empty() && f.service_subset.is_empty() {
                    subset.clone()
                } else {
                    f.service_subset.clone()
                };
                if f.datacenters.is_empty() {
                    if !f.service.is_empty() || !f.service_subset.is_empty() {
                        fo_targets.push((fsvc, fsub, dc.clone()));
                    }
                } else {
                    for fdc in &f.datacenters {
                        fo_targets.push((fsvc.clone(), fsub.clone(), fdc.clone()));
                    }
                }
            }
            for (s, sub, fdc) in fo_targets {
                let (fsni, _) = self.resolve(&s, &sub, &fdc, depth + 1);
                if let Some(t) = self.targets.get(&fsni).cloned()
                    && fsni != sni
                {
                    failover.push(t);
                }
            }
        }
        let spiffe_id = connect::service_spiffe_id(self.trust_domain, &svc, &dc);
        let mesh_gateway = if dc == self.datacenter {
            MeshGatewayMode::Default
        } else {
            self.read.extend(ConfigEntrySet::protocol_keys(&svc));
            self.mesh_gateway_override
                .or(self.entries.mesh_gateway_mode_of(&svc))
        };
        let target = Target {
            service: svc,
            subset,
            datacenter: dc,
            mesh_gateway,
            sni: sni.clone(),
            spiffe_id,
            filter,
            only_passing,
            connect_timeout_ms,
            failover,
        };
        self.targets.insert(sni.clone(), target);
        (sni, request_timeout)
    }

    /// A splitter (flattened, weights multiplied through nested splitters) or the resolver.
    fn split_or_resolve(&mut self, svc: &ServiceName, depth: usize) -> (Dest, i64) {
        let splitter = match self.entry(Kind::ServiceSplitter, svc) {
            Some(ConfigEntry::ServiceSplitter(s)) if depth < MAX_DEPTH => Some(s),
            _ => None,
        };
        let Some(splitter) = splitter else {
            let (sni, t) = self.resolve(svc, "", &self.start_dc.clone(), 0);
            return (Dest::Cluster(sni), t);
        };
        let mut weights: BTreeMap<String, f64> = BTreeMap::new();
        let mut timeout = 0;
        for split in &splitter.splits {
            if split.weight <= 0.0 {
                continue;
            }
            let target_svc = ServiceName::new(
                if split.service.is_empty() {
                    svc.name.clone()
                } else {
                    split.service.clone()
                },
                meta_of(&split.namespace, &split.partition, &svc.meta),
            );
            let part = if !split.service_subset.is_empty() || target_svc == *svc {
                let (sni, t) = self.resolve(
                    &target_svc,
                    &split.service_subset,
                    &self.start_dc.clone(),
                    0,
                );
                timeout = timeout.max(t);
                vec![(sni, 100.0)]
            } else {
                match self.split_or_resolve(&target_svc, depth + 1) {
                    (Dest::Cluster(sni), t) => {
                        timeout = timeout.max(t);
                        vec![(sni, 100.0)]
                    }
                    (Dest::Weighted(ws), t) => {
                        timeout = timeout.max(t);
                        ws.into_iter()
                            .map(|(c, w)| (c, f64::from(w) / 100.0))
                            .collect()
                    }
                }
            };
            for (sni, pct) in part {
                *weights.entry(sni).or_default() += split.weight * pct / 100.0;
            }
        }
        let ws: Vec<(String, u32)> = weights
            .into_iter()
            .map(|(c, w)| (c, (w * 100.0).round() as u32))
            .filter(|(_, w)| *w > 0)
            .collect();
        match ws.as_slice() {
            [(one, _)] => (Dest::Cluster(one.clone()), timeout),
            _ => (Dest::Weighted(ws), timeout),
        }
    }
}

/// Compiles the chain of `svc` as seen from a caller in `datacenter`.
pub fn compile_chain(
    entries: &ConfigEntrySet,
    svc: &ServiceName,
    datacenter: &str,
    trust_domain: &str,
) -> Chain {
    compile_chain_reading(entries, svc, datacenter, trust_domain).0
}

/// [`compile_chain`], also returning the key of every entry it looked up, found or not: the
/// chain is the same for any set that agrees with `entries` on those keys.
pub fn compile_chain_reading(
    entries: &ConfigEntrySet,
    svc: &ServiceName,
    datacenter: &str,
    trust_domain: &str,
) -> (Chain, BTreeSet<EntryKey>) {
    compile_chain_from(entries, svc, Origin::local(datacenter), trust_domain)
}

/// The chain of `svc` for a caller described by `origin` (an upstream that may name another
/// datacenter and a mesh gateway mode), with the keys of every entry it looked up.
pub fn compile_chain_from(
    entries: &ConfigEntrySet,
    svc: &ServiceName,
    origin: Origin<'_>,
    trust_domain: &str,
) -> (Chain, BTreeSet<EntryKey>) {
    let datacenter = origin.datacenter;
    let mut c = Compiler {
        entries,
        datacenter,
        mesh_gateway_override: origin.mesh_gateway,
        start_dc: if origin.upstream_datacenter.is_empty() {
            datacenter.to_owned()
        } else {
            origin.upstream_datacenter.to_owned()
        },
        trust_domain,
        targets: BTreeMap::new(),
        read: BTreeSet::new(),
    };
    let protocol = c.protocol(svc);
    let mut routes = Vec::new();
    let l7 = matches!(protocol.as_str(), "http" | "http2" | "grpc");
    if l7 && let Some(ConfigEntry::ServiceRouter(router)) = c.entry(Kind::ServiceRouter, svc) {
        for r in &router.routes {
            let d = r.destination.clone().unwrap_or_default();
            let dest_svc = ServiceName::new(
                if d.service.is_empty() {
                    svc.name.clone()
                } else {
                    d.service.clone()
                },
                meta_of(&d.namespace, &d.partition, &svc.meta),
            );
            let (dest, resolver_timeout) = if d.service_subset.is_empty() {
                c.split_or_resolve(&dest_svc, 0)
            } else {
                let (sni, t) = {
                    let dc = c.start_dc.clone();
                    c.resolve(&dest_svc, &d.service_subset, &dc, 0)
                };
                (Dest::Cluster(sni), t)
            };
            routes.push(ChainRoute {
                http_match: r.r#match.as_ref().and_then(|m| m.http.clone()),
                dest,
                prefix_rewrite: d.prefix_rewrite.clone(),
                request_timeout_ns: if d.request_timeout.0 > 0 {
                    d.request_timeout.0
                } else {
                    resolver_timeout
                },
                idle_timeout_ns: d.idle_timeout.0,
                num_retries: d.num_retries,
                retry_on_connect_failure: d.retry_on_connect_failure,
                retry_on_status_codes: d.retry_on_status_codes.clone(),
                request_headers: d.request_headers.clone(),
                response_headers: d.response_headers.clone(),
            });
        }
    }
    let (dest, timeout) = if l7 {
        c.split_or_resolve(svc, 0)
    } else {
        let dc = c.start_dc.clone();
        let (s, t) = c.resolve(svc, "", &dc, 0);
        (Dest::Cluster(s), t)
    };
    routes.push(ChainRoute {
        http_match: None,
        dest,
        prefix_rewrite: String::new(),
        request_timeout_ns: timeout,
        idle_timeout_ns: 0,
        num_retries: 0,
        retry_on_connect_failure: false,
        retry_on_status_codes: vec![],
        request_headers: None,
        response_headers: None,
    });
    let chain = Chain {
        protocol,
        routes,
        targets: c.targets,
    };
    (chain, c.read)
}
