//! Compiled chain routes → Envoy routes.

use mesh_model::config_entry::{HttpHeaderModifiers, ServiceRouteHttpMatch};

use crate::compile::chain::{ChainRoute, Dest};
use crate::compile::rbac::header_matcher;
use crate::pb::{self, core, route};

fn route_match(m: Option<&ServiceRouteHttpMatch>) -> route::RouteMatch {
    use route::route_match::PathSpecifier as P;
    let Some(m) = m else {
        return route::RouteMatch {
            path_specifier: Some(P::Prefix("/".into())),
            ..Default::default()
        };
    };
    let path = if !m.path_exact.is_empty() {
        P::Path(m.path_exact.clone())
    } else if !m.path_regex.is_empty() {
        P::SafeRegex(pb::matcher::RegexMatcher {
            regex: m.path_regex.clone(),
            ..Default::default()
        })
    } else if !m.path_prefix.is_empty() {
        P::Prefix(m.path_prefix.clone())
    } else {
        P::Prefix("/".into())
    };
    let mut headers: Vec<route::HeaderMatcher> = m.header.iter().map(header_matcher).collect();
    if !m.methods.is_empty() {
        let re = m
            .methods
            .iter()
            .map(|x| regex::escape(x))
            .collect::<Vec<_>>()
            .join("|");
        headers.push(route::HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
                pb::regex_matcher(&format!("^(?:{re})$")),
            )),
            ..Default::default()
        });
    }
    let query_parameters = m
        .query_param
        .iter()
        .map(|q| {
            use route::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
            let spec = if q.present {
                Q::PresentMatch(true)
            } else if !q.exact.is_empty() {
                Q::StringMatch(pb::exact_matcher(&q.exact))
            } else {
                Q::StringMatch(pb::regex_matcher(&q.regex))
            };
            route::QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(spec),
            }
        })
        .collect();
    route::RouteMatch {
        path_specifier: Some(path),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_options(m: &HttpHeaderModifiers) -> Vec<core::HeaderValueOption> {
    let opt = |k: &String, v: &String, action: core::header_value_option::HeaderAppendAction| {
        core::HeaderValueOption {
            header: Some(core::HeaderValue {
                key: k.clone(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        }
    };
    let mut out: Vec<_> = m
        .add
        .iter()
        .map(|(k, v)| {
            opt(
                k,
                v,
                core::header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
            )
        })
        .collect();
    out.extend(m.set.iter().map(|(k, v)| {
        opt(
            k,
            v,
            core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
        )
    }));
    out
}

/// Envoy routes for a chain, in order (the catch-all last).
pub fn envoy_routes(routes: &[ChainRoute]) -> Vec<route::Route> {
    routes
        .iter()
        .map(|r| {
            let cluster_specifier = match &r.dest {
                Dest::Cluster(c) => route::route_action::ClusterSpecifier::Cluster(c.clone()),
                Dest::Weighted(ws) => route::route_action::ClusterSpecifier::WeightedClusters(
                    route::WeightedCluster {
                        clusters: ws
                            .iter()
                            .map(|(c, w)| route::weighted_cluster::ClusterWeight {
                                name: c.clone(),
                                weight: Some(pb::UInt32Value { value: *w }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    },
                ),
            };
            let mut action = route::RouteAction {
                cluster_specifier: Some(cluster_specifier),
                prefix_rewrite: r.prefix_rewrite.clone(),
                ..Default::default()
            };
            if r.request_timeout_ns > 0 {
                action.timeout = Some(pb::nanos(r.request_timeout_ns));
            }
            if r.idle_timeout_ns > 0 {
                action.idle_timeout = Some(pb::nanos(r.idle_timeout_ns));
            }
            if r.num_retries > 0
                || r.retry_on_connect_failure
                || !r.retry_on_status_codes.is_empty()
            {
                let mut on = Vec::new();
                if r.retry_on_connect_failure {
                    on.push("connect-failure");
                }
                if !r.retry_on_status_codes.is_empty() {
                    on.push("retriable-status-codes");
                }
                action.retry_policy = Some(route::RetryPolicy {
                    retry_on: on.join(","),
                    num_retries: Some(pb::UInt32Value {
                        value: r.num_retries.max(1),
                    }),
                    retriable_status_codes: r.retry_on_status_codes.clone(),
                    ..Default::default()
                });
            }
            route::Route {
                r#match: Some(route_match(r.http_match.as_ref())),
                action: Some(route::route::Action::Route(action)),
                request_headers_to_add: r
                    .request_headers
                    .as_ref()
                    .map(header_options)
                    .unwrap_or_default(),
                request_headers_to_remove: r
                    .request_headers
                    .as_ref()
                    .map(|m| m.remove.clone())
                    .unwrap_or_default(),
                response_headers_to_add: r
                    .response_headers
                    .as_ref()
                    .map(header_options)
                    .unwrap_or_default(),
                response_headers_to_remove: r
                    .response_headers
                    .as_ref()
                    .map(|m| m.remove.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }
        })
        .collect()
}
