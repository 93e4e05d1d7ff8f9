//! The discovery-chain entries: `service-router`, `service-splitter`, `service-resolver`.
//! Their self-contained rules live here; rules that need other entries (protocols, subsets of
//! other services) are in `set.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FieldResult;
use super::bexpr;
use super::common::{
    HeaderMatch, HttpHeaderModifiers, HttpMatchView, QueryParamMatch, check_http_match, check_meta,
    check_regex, check_subset_name, is_false, is_zero_u32, is_zero_u64,
};
use super::duration::GoDuration;

// --- service-router -----------------------------------------------------------------------

/// `service-router`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceRouter {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub routes: Vec<ServiceRoute>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#match: Option<ServiceRouteMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<ServiceRouteDestination>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceRouteMatch {
    #[serde(rename = "HTTP", default, skip_serializing_if = "Option::is_none")]
    pub http: Option<ServiceRouteHttpMatch>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceRouteHttpMatch {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_exact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_regex: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_param: Vec<QueryParamMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceRouteDestination {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix_rewrite: String,
    #[serde(default, skip_serializing_if = "GoDuration::is_zero")]
    pub request_timeout: GoDuration,
    #[serde(default, skip_serializing_if = "GoDuration::is_zero")]
    pub idle_timeout: GoDuration,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub num_retries: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub retry_on_connect_failure: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on_status_codes: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HttpHeaderModifiers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HttpHeaderModifiers>,
}

/// Envoy retry conditions Consul accepts (`isValidRetryCondition`).
const RETRY_CONDITIONS: [&str; 12] = [
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

impl ServiceRouter {
    pub(crate) fn normalize(&mut self) {
        // Consul upper-cases methods before validating, so "get" is accepted as GET.
        for r in &mut self.routes {
            if let Some(http) = r.r#match.as_mut().and_then(|m| m.http.as_mut()) {
                for m in &mut http.methods {
                    *m = m.to_ascii_uppercase();
                }
            }
        }
    }

    pub(crate) fn check(&self) -> FieldResult {
        check_meta(&self.meta)?;
        for (i, route) in self.routes.iter().enumerate() {
            let mut eligible_for_rewrite = false;
            if let Some(http) = route.r#match.as_ref().and_then(|m| m.http.as_ref()) {
                let prefix = format!("Routes[{i}].Match.HTTP");
                check_http_match(
                    &prefix,
                    &HttpMatchView {
                        path_exact: &http.path_exact,
                        path_prefix: &http.path_prefix,
                        path_regex: &http.path_regex,
                        header: &http.header,
                        methods: &http.methods,
                    },
                )?;
                eligible_for_rewrite = !http.path_exact.is_empty() || !http.path_prefix.is_empty();
                for (j, q) in http.query_param.iter().enumerate() {
                    let field = format!("{prefix}.QueryParam[{j}]");
                    if q.name.is_empty() {
                        return Err((field, "missing required Name field".into()));
                    }
                    let n = usize::from(q.present)
                        + usize::from(!q.exact.is_empty())
                        + usize::from(!q.regex.is_empty());
                    if n != 1 {
                        return Err((
                            field,
                            "should only contain one of Present, Exact, or Regex".into(),
                        ));
                    }
                    if !q.regex.is_empty() {
                        check_regex(&format!("{field}.Regex"), &q.regex)?;
                    }
                }
            }
            if let Some(d) = &route.destination {
                let prefix = format!("Routes[{i}].Destination");
                if !d.prefix_rewrite.is_empty() && !eligible_for_rewrite {
                    return Err((
                        format!("{prefix}.PrefixRewrite"),
                        "cannot be used without configuring either PathExact or PathPrefix".into(),
                    ));
                }
                for r in &d.retry_on {
                    if !RETRY_CONDITIONS.contains(&r.as_str()) {
                        return Err((
                            format!("{prefix}.RetryOn"),
                            format!("contains an invalid retry condition: {r:?}"),
                        ));
                    }
                }
                for (field, v) in [
                    ("RequestTimeout", d.request_timeout),
                    ("IdleTimeout", d.idle_timeout),
                ] {
                    if v.0 < 0 {
                        return Err((
                            format!("{prefix}.{field}"),
                            format!("must be >= 0, got {v}"),
                        ));
                    }
                }
                if !d.service.is_empty() && d.service != "*" {
                    crate::names::validate_service_name("service name", &d.service)
                        .map_err(|e| (format!("{prefix}.Service"), e.to_string()))?;
                }
            }
        }
        Ok(())
    }
}

// --- service-splitter ---------------------------------------------------------------------

/// `service-splitter`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceSplitter {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub splits: Vec<ServiceSplit>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceSplit {
    #[serde(default)]
    pub weight: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HttpHeaderModifiers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HttpHeaderModifiers>,
}

/// Consul stores weights in units of 0.01% (`scaleWeight`); the sum must be exactly this.
pub const MAX_SCALED_WEIGHT: i64 = 100 * 100;

/// A weight in units of 0.01%, or `None` when it has more than two decimals (Consul would round
/// silently; we refuse, so what is stored is what was meant).
pub fn scale_weight(w: f64) -> Option<i64> {
    let scaled = w * 100.0;
    let rounded = scaled.round();
    // 1e-6 absorbs binary representation error of values like 33.33 without admitting 33.333.
    if (scaled - rounded).abs() > 1e-6 || !rounded.is_finite() {
        return None;
    }
    // `rounded` is finite and the caller has bounded `w` to 0..=100, so this cannot truncate.
    Some(rounded as i64)
}

impl ServiceSplitter {
    pub(crate) fn check(&self) -> FieldResult {
        if self.splits.is_empty() {
            return Err(("Splits".into(), "no splits configured".into()));
        }
        check_meta(&self.meta)?;
        let mut seen = BTreeSet::new();
        let mut sum = 0i64;
        for (i, s) in self.splits.iter().enumerate() {
            if !(0.0..=100.0).contains(&s.weight) {
                return Err((
                    format!("Splits[{i}].Weight"),
                    format!("must be between 0 and 100, got {}", s.weight),
                ));
            }
            let Some(scaled) = scale_weight(s.weight) else {
                return Err((
                    format!("Splits[{i}].Weight"),
                    format!("must have at most 2 decimal places, got {}", s.weight),
                ));
            };
            sum += scaled;
            if !s.service.is_empty() {
                crate::names::validate_service_name("service name", &s.service)
                    .map_err(|e| (format!("Splits[{i}].Service"), e.to_string()))?;
            }
            let service = if s.service.is_empty() {
                &self.name
            } else {
                &s.service
            };
            // Consul defaults a split's namespace to the splitter's before comparing, so
            // `""` and the splitter's own namespace are the same target.
            let namespace = [&s.namespace, &self.namespace]
                .into_iter()
                .find(|n| !n.is_empty())
                .map_or(crate::names::DEFAULT, |n| n.as_str());
            let key = (
                service.clone(),
                s.service_subset.clone(),
                namespace.to_owned(),
                s.partition.clone(),
            );
            if !seen.insert(key) {
                return Err((
                    format!("Splits[{i}]"),
                    format!(
                        "split destination occurs more than once: service={service:?}, subset={:?}, namespace={:?}, partition={:?}",
                        s.service_subset, s.namespace, s.partition
                    ),
                ));
            }
        }
        if sum != MAX_SCALED_WEIGHT {
            return Err((
                String::new(),
                format!("split weights must sum to 100, got {}", fmt_scaled(sum)),
            ));
        }
        Ok(())
    }
}

/// Formats a sum of 0.01% units without float noise: 9000 → "90", 9999 → "99.99".
fn fmt_scaled(v: i64) -> String {
    let whole = v / 100;
    let frac = (v % 100).abs();
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:02}").trim_end_matches('0'))
    }
}

// --- service-resolver ---------------------------------------------------------------------

/// `service-resolver`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceResolver {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_subset: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, ResolverSubset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<ResolverRedirect>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failover: BTreeMap<String, ResolverFailover>,
    #[serde(default, skip_serializing_if = "GoDuration::is_zero")]
    pub connect_timeout: GoDuration,
    #[serde(default, skip_serializing_if = "GoDuration::is_zero")]
    pub request_timeout: GoDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prioritize_by_locality: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ResolverSubset {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub only_passing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ResolverRedirect {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ResolverFailover {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<FailoverTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<FailoverPolicy>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sameness_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FailoverPolicy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FailoverTarget {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_subset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LoadBalancer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash_config: Option<RingHashConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_request_config: Option<LeastRequestConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_policies: Vec<HashPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RingHashConfig {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub minimum_ring_size: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub maximum_ring_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LeastRequestConfig {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub choice_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct HashPolicy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
    #[serde(rename = "SourceIP", default, skip_serializing_if = "is_false")]
    pub source_ip: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CookieConfig {
    #[serde(default, skip_serializing_if = "is_false")]
    pub session: bool,
    #[serde(rename = "TTL", default, skip_serializing_if = "GoDuration::is_zero")]
    pub ttl: GoDuration,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

const LB_POLICIES: [&str; 6] = [
    "",
    "random",
    "round_robin",
    "least_request",
    "ring_hash",
    "maglev",
];

impl ServiceResolver {
    /// Whether `subset` names a subset of this resolver (the empty subset always exists).
    pub fn subset_exists(&self, subset: &str) -> bool {
        subset.is_empty() || self.subsets.contains_key(subset)
    }

    pub(crate) fn check(&self) -> FieldResult {
        check_meta(&self.meta)?;
        for (name, subset) in &self.subsets {
            check_subset_name(name).map_err(|m| (format!("Subsets[{name:?}]"), m))?;
            if !subset.filter.is_empty() {
                bexpr::parse(&subset.filter).map_err(|e| {
                    (
                        format!("Subsets[{name:?}].Filter"),
                        format!("not a valid expression: {e}"),
                    )
                })?;
            }
        }
        let is_subset = |s: &str| self.subsets.contains_key(s);
        if !self.default_subset.is_empty() && !is_subset(&self.default_subset) {
            return Err((
                "DefaultSubset".into(),
                format!("{:?} is not a valid subset", self.default_subset),
            ));
        }
        if let Some(r) = &self.redirect {
            self.check_redirect(r)?;
        }
        for (key, f) in &self.failover {
            self.check_failover(key, f)?;
        }
        for (field, v) in [
            ("ConnectTimeout", self.connect_timeout),
            ("RequestTimeout", self.request_timeout),
        ] {
            if v.0 < 0 {
                return Err((field.into(), format!("bad value '{v}', must be >= 0")));
            }
        }
        if let Some(lb) = &self.load_balancer {
            check_load_balancer(lb)?;
        }
        Ok(())
    }

    fn check_redirect(&self, r: &ResolverRedirect) -> FieldResult {
        let err = |field: &str, msg: &str| Err((format!("Redirect{field}"), msg.to_owned()));
        if !self.failover.is_empty() {
            return err("", "Redirect and Failover cannot both be set");
        }
        if r == &ResolverRedirect::default() {
            return err("", "Redirect is empty");
        }
        if !r.peer.is_empty() && !r.service_subset.is_empty() {
            return err(".Peer", "cannot be set with Redirect.ServiceSubset");
        }
        if !r.peer.is_empty() && !r.partition.is_empty() {
            return err(".Partition", "cannot be set with Redirect.Peer");
        }
        if !r.peer.is_empty() && !r.datacenter.is_empty() {
            return err(".Peer", "cannot be set with Redirect.Datacenter");
        }
        if r.service.is_empty() {
            for (field, v) in [
                (".ServiceSubset", &r.service_subset),
                (".Namespace", &r.namespace),
                (".Partition", &r.partition),
                (".Peer", &r.peer),
            ] {
                if !v.is_empty() {
                    return err(field, "defined without Redirect.Service");
                }
            }
        } else if r.service == self.name
            && !r.service_subset.is_empty()
            && !self.subsets.contains_key(&r.service_subset)
        {
            return Err((
                "Redirect.ServiceSubset".into(),
                format!(
                    "{:?} is not a valid subset of {:?}",
                    r.service_subset, self.name
                ),
            ));
        }
        if r.service.is_empty() && !r.service_subset.is_empty() {
            return err(".ServiceSubset", "defined without Redirect.Service");
        }
        Ok(())
    }

    fn check_failover(&self, key: &str, f: &ResolverFailover) -> FieldResult {
        let field = |sub: &str| format!("Failover[{key:?}]{sub}");
        if key != "*" && !self.subsets.contains_key(key) {
            return Err((field(""), "not a valid subset".into()));
        }
        let empty = f.service.is_empty()
            && f.service_subset.is_empty()
            && f.namespace.is_empty()
            && f.datacenters.is_empty()
            && f.targets.is_empty()
            && f.sameness_group.is_empty();
        if empty {
            return Err((
                field(""),
                "one of Service, ServiceSubset, Namespace, Targets, SamenessGroup, or Datacenters is required"
                    .into(),
            ));
        }
        if let Some(p) = &f.policy
            && !matches!(p.mode.as_str(), "" | "default" | "order-by-locality")
        {
            return Err((
                field(".Policy.Mode"),
                "must be one of '', 'default', or 'order-by-locality'".into(),
            ));
        }
        if !f.service_subset.is_empty()
            && (f.service.is_empty() || f.service == self.name)
            && !self.subsets.contains_key(&f.service_subset)
        {
            return Err((
                field(".ServiceSubset"),
                format!(
                    "{:?} is not a valid subset of {:?}",
                    f.service_subset, self.name
                ),
            ));
        }
        if !f.datacenters.is_empty() && !f.targets.is_empty() {
            return Err((field(".Targets"), "cannot be set with Datacenters".into()));
        }
        if !f.service_subset.is_empty() && !f.targets.is_empty() {
            return Err((field(".Targets"), "cannot be set with ServiceSubset".into()));
        }
        if !f.service.is_empty() && !f.targets.is_empty() {
            return Err((field(".Targets"), "cannot be set with Service".into()));
        }
        for (i, t) in f.targets.iter().enumerate() {
            let tf = field(&format!(".Targets[{i}]"));
            let conflict = if !t.peer.is_empty() && !t.service_subset.is_empty() {
                Some("Peer cannot be set with ServiceSubset")
            } else if !t.peer.is_empty() && !t.partition.is_empty() {
                Some("Partition cannot be set with Peer")
            } else if !t.peer.is_empty() && !t.datacenter.is_empty() {
                Some("Peer cannot be set with Datacenter")
            } else if !t.partition.is_empty() && !t.datacenter.is_empty() {
                Some("Partition cannot be set with Datacenter")
            } else {
                None
            };
            if let Some(msg) = conflict {
                return Err((tf, msg.into()));
            }
            if !t.service_subset.is_empty()
                && (t.service.is_empty() || t.service == self.name)
                && !self.subsets.contains_key(&t.service_subset)
            {
                return Err((
                    format!("{tf}.ServiceSubset"),
                    format!(
                        "{:?} is not a valid subset of {:?}",
                        t.service_subset, self.name
                    ),
                ));
            }
        }
        if f.datacenters.iter().any(String::is_empty) {
            return Err((field(".Datacenters"), "found empty datacenter".into()));
        }
        Ok(())
    }
}

fn check_load_balancer(lb: &LoadBalancer) -> FieldResult {
    if !LB_POLICIES.contains(&lb.policy.as_str()) {
        return Err((
            "LoadBalancer.Policy".into(),
            format!("{:?} is not supported", lb.policy),
        ));
    }
    if lb.policy != "ring_hash" && lb.ring_hash_config.is_some() {
        return Err((
            "LoadBalancer.RingHashConfig".into(),
            format!(
                "specified for incompatible load balancing policy {:?}",
                lb.policy
            ),
        ));
    }
    if lb.policy != "least_request" && lb.least_request_config.is_some() {
        return Err((
            "LoadBalancer.LeastRequestConfig".into(),
            format!(
                "specified for incompatible load balancing policy {:?}",
                lb.policy
            ),
        ));
    }
    let hash_based = matches!(lb.policy.as_str(), "ring_hash" | "maglev");
    if !hash_based && !lb.hash_policies.is_empty() {
        return Err((
            "LoadBalancer.HashPolicies".into(),
            format!("specified for non-hash-based Policy: {:?}", lb.policy),
        ));
    }
    for (i, hp) in lb.hash_policies.iter().enumerate() {
        let f = format!("LoadBalancer.HashPolicies[{i}]");
        if !hp.field.is_empty()
            && !matches!(hp.field.as_str(), "header" | "cookie" | "query_parameter")
        {
            return Err((f, format!("{:?} is not a supported field", hp.field)));
        }
        if hp.source_ip && !hp.field.is_empty() {
            return Err((
                f,
                format!(
                    "a single hash policy cannot hash both a source address and a {:?}",
                    hp.field
                ),
            ));
        }
        if hp.source_ip && !hp.field_value.is_empty() {
            return Err((
                f,
                "a FieldValue cannot be specified when hashing SourceIP".into(),
            ));
        }
        if !hp.field.is_empty() && hp.field_value.is_empty() {
            return Err((
                f,
                format!("Field {:?} was specified without a FieldValue", hp.field),
            ));
        }
        if !hp.field_value.is_empty() && hp.field.is_empty() {
            return Err((f, "FieldValue requires a Field to apply to".into()));
        }
        if let Some(c) = &hp.cookie_config {
            if hp.field != "cookie" {
                return Err((f, format!("CookieConfig provided for {:?}", hp.field)));
            }
            if c.session && !c.ttl.is_zero() {
                return Err((f, "a session cookie cannot have an associated TTL".into()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_scale_to_hundredths() {
        assert_eq!(scale_weight(33.33), Some(3333));
        assert_eq!(scale_weight(0.01), Some(1));
        assert_eq!(scale_weight(100.0), Some(10000));
        assert_eq!(scale_weight(33.333), None);
        assert_eq!(fmt_scaled(9000), "90");
        assert_eq!(fmt_scaled(9999), "99.99");
        assert_eq!(fmt_scaled(10010), "100.1");
    }
}
