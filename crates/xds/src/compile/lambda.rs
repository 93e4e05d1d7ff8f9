//! The Lambda patch (reference §1–§2): a service marked as a Lambda function, by either Consul
//! generation's marking, has its SNI-named cluster replaced by the Lambda endpoint and Envoy's
//! `aws_lambda` filter inserted right before the router of the HTTP chain that routes to it.

use std::collections::BTreeMap;

use mesh_model::config_entry::{ConfigEntry, ConfigEntrySet, Kind};
use mesh_model::names::ServiceName;

use crate::pb::{self, cluster, core, pack_any};

pub use mesh_model::config_entry::LambdaTarget;

/// The Lambda marking of `svc` (either generation's), read by the model.
pub fn lambda_of(entries: &ConfigEntrySet, svc: &ServiceName) -> Option<LambdaTarget> {
    match entries.for_service(Kind::ServiceDefaults, svc) {
        Some(ConfigEntry::ServiceDefaults(sd)) => sd.lambda_target(),
        _ => None,
    }
}

/// The replacement cluster: the regional Lambda endpoint over TLS, or a configured endpoint
/// (`http://host:port` plain, `https://host:port` TLS), with the `com.amazonaws.lambda`
/// egress-gateway metadata the filter needs to act.
pub fn lambda_cluster(
    name: &str,
    connect_timeout_ms: u64,
    target: &LambdaTarget,
    endpoint: Option<&LambdaEndpoint>,
) -> cluster::Cluster {
    let (tls, host, port) = match endpoint {
        Some(e) => (e.tls, e.host.clone(), e.port),
        None => (true, format!("lambda.{}.amazonaws.com", target.region), 443),
    };
    let ip = host.parse::<std::net::IpAddr>().is_ok();
    let metadata = core::Metadata {
        filter_metadata: [(
            "com.amazonaws.lambda".to_owned(),
            envoy_types::pb::google::protobuf::Struct {
                fields: [(
                    "egress_gateway".to_owned(),
                    envoy_types::pb::google::protobuf::Value {
                        kind: Some(envoy_types::pb::google::protobuf::value::Kind::BoolValue(
                            true,
                        )),
                    },
                )]
                .into_iter()
                .collect(),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let transport_socket = tls.then(|| {
        let ctx = pb::tls::UpstreamTlsContext {
            sni: if endpoint.is_some() {
                host.clone()
            } else {
                "*.amazonaws.com".into()
            },
            ..Default::default()
        };
        core::TransportSocket {
            name: "tls".into(),
            config_type: Some(core::transport_socket::ConfigType::TypedConfig(pack_any(
                ctx,
            ))),
        }
    });
    cluster::Cluster {
        name: name.to_owned(),
        connect_timeout: Some(pb::millis(connect_timeout_ms)),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(if ip {
            cluster::cluster::DiscoveryType::Static as i32
        } else {
            cluster::cluster::DiscoveryType::LogicalDns as i32
        })),
        dns_lookup_family: cluster::cluster::DnsLookupFamily::V4Only as i32,
        lb_policy: cluster::cluster::LbPolicy::RoundRobin as i32,
        load_assignment: Some(super::load_assignment(name, &[(host, port, true)])),
        metadata: Some(metadata),
        transport_socket,
        ..Default::default()
    }
}

/// A configured Lambda endpoint (`lambda-endpoint`), parsed once: `http://host:port` is plain,
/// `https://host[:port]` is TLS with the host as SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaEndpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl LambdaEndpoint {
    /// Parses `http[s]://host[:port][/]`.
    ///
    /// # Errors
    /// A message naming what is wrong with the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(r), _) => (true, r),
            (None, Some(r)) => (false, r),
            _ => {
                return Err(format!(
                    "invalid URL {url:?}: must start with http:// or https://"
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!("invalid URL {url:?}: a path is not allowed"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(port) if port > 0 => (h, port),
                _ => return Err(format!("invalid URL {url:?}: port {p:?} is not 1-65535")),
            },
            None => (rest, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("invalid URL {url:?}: no host"));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

fn lambda_config(
    target: &LambdaTarget,
) -> envoy_types::pb::envoy::extensions::filters::http::aws_lambda::v3::Config {
    use envoy_types::pb::envoy::extensions::filters::http::aws_lambda::v3::{
        Config, config::InvocationMode,
    };
    Config {
        arn: target.arn.clone(),
        payload_passthrough: target.payload_passthrough,
        invocation_mode: if target.asynchronous {
            InvocationMode::Asynchronous as i32
        } else {
            InvocationMode::Synchronous as i32
        },
        ..Default::default()
    }
}

/// The `envoy.filters.http.aws_lambda` filter for `target`.
pub fn lambda_filter(target: &LambdaTarget) -> pb::hcm::HttpFilter {
    super::http_filter(FILTER_NAME, pack_any(lambda_config(target)))
}

const FILTER_NAME: &str = "envoy.filters.http.aws_lambda";

/// Lambda answers a failed invocation with `200` and `X-Amz-Function-Error`, and Envoy's filter
/// passes that through unchanged, so a caller would see a successful status for a crashed or
/// timed-out function. This response hook (a Lua filter placed before `aws_lambda`, so it sees
/// the response last) keeps the function's error body and headers but sets the status: 504 for
/// a timeout, 502 for any other function error. Throttles (429) and signature failures (403)
/// already arrive as errors. Consul has no such step.
// The headers are fetched again after `body()`: a header handle taken before the body was
// buffered no longer reaches the response (measured with Envoy 1.40).
const FUNCTION_ERROR_LUA: &str = r#"
function envoy_on_response(handle)
  if handle:headers():get("x-amz-function-error") == nil then
    return
  end
  local body = handle:body()
  local text = ""
  if body ~= nil then
    text = body:getBytes(0, body:length())
  end
  local status = "502"
  if string.find(text, "Sandbox.Timedout", 1, true) or string.find(text, "Task timed out", 1, true) then
    status = "504"
  end
  handle:headers():replace(":status", status)
end
"#;

/// The filter that turns function errors into HTTP errors (the script is `FUNCTION_ERROR_LUA`).
///
/// The Lua filter is wrapped in a matcher that skips it unless the response carries
/// `X-Amz-Function-Error`, so a successful invoke never enters Lua: measured with Envoy 1.40
/// against a Lambda stub, running the script on every response cost 15–20 µs of the gateway's
/// CPU per request and 0.02 ms p50; skipped, nothing measurable.
pub fn function_error_filter() -> pb::hcm::HttpFilter {
    use envoy_types::pb::envoy::extensions::common::matching::v3::ExtensionWithMatcher;
    use envoy_types::pb::envoy::extensions::filters::common::matcher::action::v3::SkipFilter;
    use envoy_types::pb::envoy::extensions::filters::http::lua::v3::Lua;
    use envoy_types::pb::envoy::r#type::matcher::v3::HttpResponseHeaderMatchInput;
    use envoy_types::pb::xds::core::v3::TypedExtensionConfig as XdsExtension;
    use envoy_types::pb::xds::r#type::matcher::v3::{
        Matcher, RegexMatcher, StringMatcher, matcher, regex_matcher, string_matcher,
    };
    use matcher::matcher_list::{FieldMatcher, Predicate, predicate, predicate::single_predicate};

    let lua = Lua {
        default_source_code: Some(core::DataSource {
            specifier: Some(core::data_source::Specifier::InlineString(
                FUNCTION_ERROR_LUA.to_owned(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Any value of the header (Lambda sends `Unhandled` or `Handled`).
    let has_function_error = Predicate {
        match_type: Some(predicate::MatchType::SinglePredicate(
            predicate::SinglePredicate {
                input: Some(XdsExtension {
                    name: "x-amz-function-error".into(),
                    typed_config: Some(pack_any(HttpResponseHeaderMatchInput {
                        header_name: "x-amz-function-error".into(),
                    })),
                }),
                matcher: Some(single_predicate::Matcher::ValueMatch(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                        regex: ".*".into(),
                        engine_type: Some(regex_matcher::EngineType::GoogleRe2(
                            regex_matcher::GoogleRe2 {},
                        )),
                    })),
                    ..Default::default()
                })),
            },
        )),
    };
    let skip_unless_function_error = Matcher {
        matcher_type: Some(matcher::MatcherType::MatcherList(matcher::MatcherList {
            matchers: vec![FieldMatcher {
                predicate: Some(Predicate {
                    match_type: Some(predicate::MatchType::NotMatcher(Box::new(
                        has_function_error,
                    ))),
                }),
                on_match: Some(matcher::OnMatch {
                    on_match: Some(matcher::on_match::OnMatch::Action(XdsExtension {
                        name: "skip".into(),
                        typed_config: Some(pack_any(SkipFilter {})),
                    })),
                    ..Default::default()
                }),
            }],
        })),
        ..Default::default()
    };
    let wrapped = ExtensionWithMatcher {
        xds_matcher: Some(skip_unless_function_error),
        extension_config: Some(core::TypedExtensionConfig {
            name: "envoy.filters.http.lua".into(),
            typed_config: Some(pack_any(lua)),
        }),
        ..Default::default()
    };
    super::http_filter("lambdamesh.lambda.function_error", pack_any(wrapped))
}

/// The Lambda targets of a chain that this proxy invokes itself, by cluster name (SNI): every
/// target whose service is marked as a Lambda and is not linked to a terminating gateway.
///
/// Consul patches only the upstream's own SNI, so a splitter or router sending part of the
/// traffic to a Lambda service reaches an unpatched cluster there; here every such target is
/// patched, and [`per_route_configs`] gives each its own ARN.
pub fn chain_lambdas(
    entries: &ConfigEntrySet,
    targets: impl Iterator<Item = (String, ServiceName)>,
    linked_to_gateway: impl Fn(&ServiceName) -> bool,
) -> BTreeMap<String, LambdaTarget> {
    targets
        .filter(|(_, svc)| !linked_to_gateway(svc))
        .filter_map(|(sni, svc)| lambda_of(entries, &svc).map(|l| (sni, l)))
        .collect()
}

/// On a gateway's Lambda filter chain the forwarded client certificate carries only the
/// caller's identity (`By`, `Hash`, `URI`: its SPIFFE ID), not the PEM certificate and chain
/// that Consul adds. `aws_lambda` copies every request header into the event and also sends it
/// with the Invoke call, so the 2.5 KB of PEM crossed the gateway, the platform and the
/// runtime twice per invoke; measured on the gateway path: +0.06 ms p50 for a 4 KB header.
pub fn identity_only_client_cert(h: &mut pb::hcm::HttpConnectionManager) {
    if h.set_current_client_cert_details.is_some() {
        h.set_current_client_cert_details = Some(
            pb::hcm::http_connection_manager::SetCurrentClientCertDetails {
                uri: true,
                ..Default::default()
            },
        );
    }
}

/// Failover that involves a function this proxy invokes itself is decided by the control
/// plane, from the catalog's health. Envoy picks an aggregate cluster's member after the HTTP
/// filters have run, so `aws_lambda` would see the aggregate (which has no egress metadata) and
/// pass the request through: unsigned and untransformed, to either the function's endpoint or
/// the ordinary failover service (Consul's known gap). So for a target whose failover list
/// holds such a function (as the target or a member), the first member `available` vouches for
/// takes the target's routes; when that member is an ordinary mesh target (a service, or a
/// function reached through a gateway, here or in another datacenter), the ordinary members
/// after it stay its failover in Envoy. When none is available the target keeps its routes, as
/// Envoy sends to the primary when no member is healthy.
pub(super) fn resolve_lambda_failover(
    chain: &mut super::chain::Chain,
    lambdas: &BTreeMap<String, LambdaTarget>,
    available: impl Fn(&super::chain::Target) -> bool,
) {
    use super::chain::Dest;
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    let involved: Vec<super::chain::Target> = chain
        .targets
        .values()
        .filter(|t| {
            !t.failover.is_empty()
                && (lambdas.contains_key(&t.sni)
                    || t.failover.iter().any(|f| lambdas.contains_key(&f.sni)))
        })
        .cloned()
        .collect();
    for t in involved {
        let members: Vec<&super::chain::Target> =
            std::iter::once(&t).chain(t.failover.iter()).collect();
        let pick = members.iter().position(|m| available(m)).unwrap_or(0);
        let chosen = members[pick];
        let failover = if lambdas.contains_key(&chosen.sni) {
            Vec::new()
        } else {
            members[pick + 1..]
                .iter()
                .filter(|m| !lambdas.contains_key(&m.sni))
                .map(|m| (*m).clone())
                .collect()
        };
        let mut target = chosen.clone();
        target.failover = failover;
        if chosen.sni != t.sni {
            renames.insert(t.sni.clone(), chosen.sni.clone());
            if let Some(original) = chain.targets.get_mut(&t.sni) {
                original.failover.clear();
            }
        }
        chain.targets.insert(target.sni.clone(), target);
    }
    if renames.is_empty() {
        return;
    }
    let rename = |c: &String| renames.get(c).cloned().unwrap_or_else(|| c.clone());
    for r in &mut chain.routes {
        r.dest = match &r.dest {
            Dest::Cluster(c) => Dest::Cluster(rename(c)),
            Dest::Weighted(ws) => {
                // Two splits may now lead to one member: their weights add up.
                let mut merged: Vec<(String, u32)> = Vec::new();
                for (c, w) in ws {
                    let c = rename(c);
                    match merged.iter_mut().find(|(m, _)| *m == c) {
                        Some(m) => m.1 += w,
                        None => merged.push((c, *w)),
                    }
                }
                match merged.as_slice() {
                    [(one, _)] => Dest::Cluster(one.clone()),
                    _ => Dest::Weighted(merged),
                }
            }
        };
    }
}

/// One `aws_lambda` filter carries one ARN, so routes and weighted clusters that lead to a
/// Lambda other than the filter's own get a `PerRouteConfig` naming theirs. (Envoy resolves the
/// most specific per-filter config: the chosen cluster weight's, then the route's.) Routes to
/// the filter's own Lambda, and to ordinary clusters, are left as they are: ordinary clusters
/// lack the egress metadata, so the filter passes their requests through.
pub fn per_route_configs(
    routes: &mut [pb::route::Route],
    lambdas: &BTreeMap<String, LambdaTarget>,
    filter_target: &LambdaTarget,
) {
    use pb::route::route_action::ClusterSpecifier;
    let config_for = |cluster: &str| {
        lambdas
            .get(cluster)
            .filter(|l| *l != filter_target)
            .map(|l| {
                let per_route =
                envoy_types::pb::envoy::extensions::filters::http::aws_lambda::v3::PerRouteConfig {
                    invoke_config: Some(lambda_config(l)),
                };
                (FILTER_NAME.to_owned(), pack_any(per_route))
            })
    };
    for r in routes {
        let Some(pb::route::route::Action::Route(action)) = &mut r.action else {
            continue;
        };
        match &mut action.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => {
                r.typed_per_filter_config.extend(config_for(c));
            }
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                for cw in &mut w.clusters {
                    cw.typed_per_filter_config.extend(config_for(&cw.name));
                }
            }
            _ => {}
        }
    }
}

/// Clears `auto_host_rewrite` (any host rewrite) on every route: on a terminating gateway it
/// would put the Lambda endpoint's host back and conflict with `strip_any_host_port`
/// (reference §2.2).
pub fn clear_host_rewrite(routes: &mut [pb::route::Route]) {
    for r in routes {
        if let Some(pb::route::route::Action::Route(action)) = &mut r.action {
            action.host_rewrite_specifier = None;
        }
    }
}

/// Sets `strip_any_host_port`, so the port never enters the signed `host` header (Consul's fix
/// for `InvalidSignatureException`, hashicorp/consul#15303).
pub fn strip_any_host_port(h: &mut pb::hcm::HttpConnectionManager) {
    h.strip_port_mode =
        Some(pb::hcm::http_connection_manager::StripPortMode::StripAnyHostPort(true));
}
