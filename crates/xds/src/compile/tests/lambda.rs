//! The Lambda patch on values (reference §2.2–§2.3): caller sidecars, splitters that mix
//! Lambda and ordinary services, terminating gateways, and both markings.

use envoy_types::pb::envoy::extensions::filters::http::aws_lambda::v3 as aws_lambda;

use super::*;

pub(super) const ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:auth";

/// The HTTP filters of a caller's upstream that invokes a function itself.
pub(super) const CALLER_FILTERS: [&str; 3] = [
    "lambdamesh.lambda.function_error",
    "envoy.filters.http.aws_lambda",
    "envoy.filters.http.router",
];

pub(super) fn hcm_of(l: &listener::Listener, chain: usize) -> pb::hcm::HttpConnectionManager {
    let f = &l.filter_chains[chain].filters[0];
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    match &f.config_type {
        Some(pb::listener::filter::ConfigType::TypedConfig(any)) => decode(any),
        other => panic!("not a typed HCM: {other:?}"),
    }
}

pub(super) fn filter_names(h: &pb::hcm::HttpConnectionManager) -> Vec<String> {
    h.http_filters.iter().map(|f| f.name.clone()).collect()
}

pub(super) fn lambda_config(h: &pb::hcm::HttpConnectionManager) -> aws_lambda::Config {
    let f = h
        .http_filters
        .iter()
        .find(|f| f.name == "envoy.filters.http.aws_lambda")
        .expect("aws_lambda filter");
    match &f.config_type {
        Some(pb::hcm::http_filter::ConfigType::TypedConfig(any)) => decode(any),
        other => panic!("untyped filter: {other:?}"),
    }
}

pub(super) fn routes(h: &pb::hcm::HttpConnectionManager) -> Vec<pb::route::Route> {
    match &h.route_specifier {
        Some(pb::hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) => {
            rc.virtual_hosts[0].routes.clone()
        }
        other => panic!("no inline routes: {other:?}"),
    }
}

fn strips_port(h: &pb::hcm::HttpConnectionManager) -> bool {
    h.strip_port_mode
        == Some(pb::hcm::http_connection_manager::StripPortMode::StripAnyHostPort(true))
}

fn assert_lambda_cluster(c: &cluster::Cluster, host: &str, port: u32) {
    let md = &c.metadata.as_ref().expect("metadata").filter_metadata["com.amazonaws.lambda"];
    assert_eq!(
        md.fields["egress_gateway"].kind,
        Some(envoy_types::pb::google::protobuf::value::Kind::BoolValue(
            true
        ))
    );
    let ep = &c
        .load_assignment
        .as_ref()
        .expect("load assignment")
        .endpoints[0]
        .lb_endpoints[0];
    let Some(pb::endpoint::lb_endpoint::HostIdentifier::Endpoint(e)) = &ep.host_identifier else {
        panic!("no endpoint");
    };
    let Some(pb::core::address::Address::SocketAddress(sa)) =
        &e.address.as_ref().expect("address").address
    else {
        panic!("no socket address");
    };
    assert_eq!(sa.address, host);
    assert_eq!(
        sa.port_specifier,
        Some(pb::core::socket_address::PortSpecifier::PortValue(port))
    );
    assert!(c.eds_cluster_config.is_none(), "EDS must be dropped");
}

fn upstream(name: &str) -> Upstream {
    Upstream {
        destination_name: name.into(),
        local_bind_port: 2345,
        ..Upstream::default()
    }
}

fn sni(svc: &str) -> String {
    format!("{svc}.default.dc1.internal.{TD}")
}

#[test]
fn caller_sidecar_invokes_an_unlinked_function_itself() {
    let set = entries(&[json!({
        "Kind": "service-defaults", "Name": "auth", "Protocol": "http",
        "EnvoyExtensions": [{"Name": "builtin/aws/lambda",
            "Arguments": {"arn": ARN, "payloadPassthrough": true, "invocationMode": "ASYNCHRONOUS"}}]
    })]);
    let out = compile(&inputs(sidecar(vec![upstream("auth")]), set));
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    let h = hcm_of(&l, 0);
    assert_eq!(filter_names(&h), CALLER_FILTERS);
    let cfg = lambda_config(&h);
    assert_eq!(cfg.arn, ARN);
    assert!(cfg.payload_passthrough);
    // Upper-case ASYNCHRONOUS is asynchronous (Consul's exact lower-case match made it sync).
    assert_eq!(
        cfg.invocation_mode,
        aws_lambda::config::InvocationMode::Asynchronous as i32
    );
    assert!(strips_port(&h));
    let c: cluster::Cluster = decode(&out.clusters[&sni("auth")]);
    assert_lambda_cluster(&c, "lambda.eu-west-1.amazonaws.com", 443);
    let tls: pb::tls::UpstreamTlsContext = match &c.transport_socket.as_ref().unwrap().config_type {
        Some(pb::core::transport_socket::ConfigType::TypedConfig(any)) => decode(any),
        None => panic!("no TLS"),
    };
    assert_eq!(tls.sni, "*.amazonaws.com");
    assert!(!out.endpoints.contains_key(&sni("auth")));
    // The inbound listener is untouched.
    let inbound = out
        .listeners
        .keys()
        .find(|k| k.starts_with("public_listener"))
        .unwrap();
    let pl: listener::Listener = decode(&out.listeners[inbound]);
    assert!(
        pl.filter_chains
            .iter()
            .flat_map(|fc| &fc.filters)
            .all(|f| !format!("{:?}", f.config_type).contains("aws_lambda"))
    );
}

#[test]
fn a_configured_endpoint_replaces_the_regional_one() {
    let set = entries(&[json!({
        "Kind": "service-defaults", "Name": "auth", "Protocol": "http",
        "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]
    })]);
    let mut inp = inputs(sidecar(vec![upstream("auth")]), set);
    inp.lambda_endpoint =
        Some(crate::compile::lambda::LambdaEndpoint::parse("http://127.0.0.1:9001").unwrap());
    let out = compile(&inp);
    let c: cluster::Cluster = decode(&out.clusters[&sni("auth")]);
    assert_lambda_cluster(&c, "127.0.0.1", 9001);
    assert!(c.transport_socket.is_none(), "plain HTTP endpoint");
}

#[test]
fn meta_and_extension_markings_compile_to_the_same_resources() {
    let ext = entries(&[json!({
        "Kind": "service-defaults", "Name": "auth", "Protocol": "http",
        "EnvoyExtensions": [{"Name": "builtin/aws/lambda",
            "Arguments": {"ARN": ARN, "PayloadPassthrough": true, "InvocationMode": "asynchronous"}}]
    })]);
    let meta = entries(&[json!({
        "Kind": "service-defaults", "Name": "auth", "Protocol": "http",
        "Meta": {
            "serverless.consul.hashicorp.com/v1alpha1/lambda/enabled": "true",
            "serverless.consul.hashicorp.com/v1alpha1/lambda/arn": ARN,
            "serverless.consul.hashicorp.com/v1alpha1/lambda/region": "eu-west-1",
            "serverless.consul.hashicorp.com/v1alpha1/lambda/payload-passhthrough": "true",
            "serverless.consul.hashicorp.com/v1alpha1/lambda/invocation-mode": "ASYNCHRONOUS"
        }
    })]);
    let a = compile(&inputs(sidecar(vec![upstream("auth")]), ext));
    let b = compile(&inputs(sidecar(vec![upstream("auth")]), meta));
    assert_eq!(a.listeners, b.listeners);
    assert_eq!(a.clusters, b.clusters);
    assert_eq!(a.endpoints, b.endpoints);
}

#[test]
fn splitter_mixes_an_ordinary_service_and_functions() {
    let fn_a = "arn:aws:lambda:us-east-1:1:function:greeter";
    let fn_b = "arn:aws:lambda:us-east-1:1:function:greeter:prod";
    let set = entries(&[
        json!({"Kind": "service-defaults", "Name": "greeter", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "greeter-lambda", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": fn_a}}]}),
        json!({"Kind": "service-defaults", "Name": "greeter-prod", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": fn_b}}]}),
        json!({"Kind": "service-splitter", "Name": "greeter", "Splits": [
            {"Weight": 50, "Service": "greeter"},
            {"Weight": 30, "Service": "greeter-lambda"},
            {"Weight": 20, "Service": "greeter-prod"}]}),
    ]);
    let out = compile(&inputs(sidecar(vec![upstream("greeter")]), set));
    let l: listener::Listener = decode(&out.listeners["greeter:127.0.0.1:2345"]);
    let h = hcm_of(&l, 0);
    assert_eq!(filter_names(&h), CALLER_FILTERS);
    assert!(strips_port(&h));
    let default_arn = lambda_config(&h).arn;
    let rs = routes(&h);
    let Some(pb::route::route::Action::Route(a)) = &rs[0].action else {
        panic!("no route action");
    };
    let Some(pb::route::route_action::ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier
    else {
        panic!("not weighted");
    };
    // Each Lambda weight whose ARN differs from the filter's carries its own; the ordinary
    // service's weight carries none.
    for cw in &w.clusters {
        let per = cw
            .typed_per_filter_config
            .get("envoy.filters.http.aws_lambda")
            .map(|any| {
                decode::<aws_lambda::PerRouteConfig>(any)
                    .invoke_config
                    .unwrap()
                    .arn
            });
        let expected = if cw.name == sni("greeter") {
            None
        } else {
            let arn = if cw.name == sni("greeter-lambda") {
                fn_a
            } else {
                fn_b
            };
            (arn != default_arn).then(|| arn.to_owned())
        };
        assert_eq!(per, expected, "{}", cw.name);
    }
    // The ordinary service keeps its mesh cluster and endpoints; the functions' are replaced.
    let g: cluster::Cluster = decode(&out.clusters[&sni("greeter")]);
    assert!(g.eds_cluster_config.is_some() && g.metadata.is_none());
    for f in ["greeter-lambda", "greeter-prod"] {
        let c: cluster::Cluster = decode(&out.clusters[&sni(f)]);
        assert_lambda_cluster(&c, "lambda.us-east-1.amazonaws.com", 443);
    }
}

#[test]
fn a_function_linked_to_a_gateway_is_patched_only_there() {
    let set = entries(&[
        json!({"Kind": "service-defaults", "Name": "auth", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
        json!({"Kind": "service-resolver", "Name": "auth",
            "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}}}),
        json!({"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "auth"}]}),
    ]);
    // The caller's sidecar: the function's mesh endpoints are the gateway's, so no patch.
    let mut caller = inputs(sidecar(vec![upstream("auth")]), set.clone());
    caller.connect_endpoints.insert(
        ServiceName::default_tuple("auth"),
        vec![Endpoint {
            address: "127.0.0.1".into(),
            port: 8443,
            healthy: true,
            row: json!({"Service": {"Kind": "terminating-gateway"}}),
        }],
    );
    let out = compile(&caller);
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    assert_eq!(filter_names(&hcm_of(&l, 0)), ["envoy.filters.http.router"]);
    let c: cluster::Cluster = decode(&out.clusters[&sni("auth")]);
    assert!(
        c.eds_cluster_config.is_some(),
        "mesh cluster towards the gateway"
    );

    // The gateway: every chain of the service (the plain SNI and the subset's) is patched.
    let mut inp = terminating_gateway_inputs(set);
    inp.service_leaves.insert(
        ServiceName::default_tuple("auth"),
        CertPair {
            cert_pem: "AUTH".into(),
            key_pem: "K".into(),
        },
    );
    let out = compile(&inp);
    let l: listener::Listener = decode(&out.listeners["default:127.0.0.1:8443"]);
    assert_eq!(l.filter_chains.len(), 2);
    for (i, fc) in l.filter_chains.iter().enumerate() {
        let name = fc.filter_chain_match.as_ref().unwrap().server_names[0].clone();
        let h = hcm_of(&l, i);
        assert_eq!(
            filter_names(&h),
            [
                format!("lambdamesh.intentions.auth.default.dc1.internal.{TD}").as_str(),
                "lambdamesh.lambda.function_error",
                "envoy.filters.http.aws_lambda",
                "envoy.filters.http.router"
            ]
        );
        assert!(strips_port(&h));
        // The function learns the caller's identity, not its PEM certificate and chain.
        assert_eq!(
            h.forward_client_cert_details,
            pb::hcm::http_connection_manager::ForwardClientCertDetails::AppendForward as i32
        );
        assert_eq!(
            h.set_current_client_cert_details,
            Some(
                pb::hcm::http_connection_manager::SetCurrentClientCertDetails {
                    uri: true,
                    ..Default::default()
                }
            )
        );
        for r in routes(&h) {
            let Some(pb::route::route::Action::Route(a)) = &r.action else {
                panic!("no route action");
            };
            assert!(
                a.host_rewrite_specifier.is_none(),
                "auto_host_rewrite cleared"
            );
        }
        let c: cluster::Cluster = decode(&out.clusters[&name]);
        assert_lambda_cluster(&c, "lambda.eu-west-1.amazonaws.com", 443);
        assert!(!out.endpoints.contains_key(&name));
    }
}

#[test]
fn lambda_endpoints_parse_or_say_what_is_wrong() {
    use crate::compile::lambda::LambdaEndpoint;
    let e = |tls: bool, host: &str, port: u16| LambdaEndpoint {
        tls,
        host: host.into(),
        port,
    };
    assert_eq!(
        LambdaEndpoint::parse("http://127.0.0.1:9001"),
        Ok(e(false, "127.0.0.1", 9001))
    );
    assert_eq!(
        LambdaEndpoint::parse("https://lambda.example/"),
        Ok(e(true, "lambda.example", 443))
    );
    for (bad, why) in [
        ("127.0.0.1:9001", "must start with http"),
        ("http://127.0.0.1:port", "is not 1-65535"),
        ("http://127.0.0.1:0", "is not 1-65535"),
        ("http://:9001", "no host"),
        ("http://h:1/path", "a path is not allowed"),
    ] {
        let err = LambdaEndpoint::parse(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

/// The cluster a single-route upstream listener sends to.
pub(super) fn route_cluster(h: &pb::hcm::HttpConnectionManager) -> String {
    let rs = routes(h);
    let Some(pb::route::route::Action::Route(a)) = &rs[0].action else {
        panic!("no route action");
    };
    match &a.cluster_specifier {
        Some(pb::route::route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
        other => panic!("not a single cluster: {other:?}"),
    }
}

pub(super) fn aggregate_members(out: &Resources, name: &str) -> Vec<String> {
    let a: cluster::Cluster = decode(&out.clusters[name]);
    let Some(cluster::cluster::ClusterDiscoveryType::ClusterType(ct)) = &a.cluster_discovery_type
    else {
        panic!("not an aggregate cluster");
    };
    let members: pb::aggregate::ClusterConfig = decode(ct.typed_config.as_ref().unwrap());
    members.clusters
}

pub(super) fn lambda_instance(healthy: bool) -> Endpoint {
    Endpoint {
        address: "lambda".into(),
        port: 0,
        healthy,
        row: json!({"Service": {"Meta": {}}}),
    }
}

/// Failover involving a function the sidecar invokes is decided by the control plane from the
/// catalog's health, never through an aggregate cluster (whose member `aws_lambda` cannot see).
#[test]
fn failover_with_a_function_is_decided_from_the_catalogs_health() {
    let set = entries(&[
        json!({"Kind": "service-defaults", "Name": "auth", "Protocol": "http",
            "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"ARN": ARN}}]}),
        json!({"Kind": "service-defaults", "Name": "auth-svc", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"}),
        json!({"Kind": "service-defaults", "Name": "db-backup", "Protocol": "http"}),
        // A function failing over to a service, and a service failing over to the function.
        json!({"Kind": "service-resolver", "Name": "auth", "Failover": {"*": {"Service": "auth-svc"}}}),
        json!({"Kind": "service-resolver", "Name": "auth-svc", "Failover": {"*": {"Service": "auth"}}}),
        // Ordinary failover is unchanged.
        json!({"Kind": "service-resolver", "Name": "db", "Failover": {"*": {"Service": "db-backup"}}}),
    ]);
    let mut auth_svc = upstream("auth-svc");
    auth_svc.local_bind_port = 2346;
    let mut db = upstream("db");
    db.local_bind_port = 2347;
    let compile_with = |auth_healthy: bool, auth_svc_healthy: bool| {
        let mut inp = inputs(
            sidecar(vec![upstream("auth"), auth_svc.clone(), db.clone()]),
            set.clone(),
        );
        inp.service_endpoints.insert(
            ServiceName::default_tuple("auth"),
            vec![lambda_instance(auth_healthy)],
        );
        inp.connect_endpoints.insert(
            ServiceName::default_tuple("auth-svc"),
            vec![endpoint(21001, "v1", auth_svc_healthy)],
        );
        compile(&inp)
    };

    // The function is healthy: it is invoked directly, and no aggregate hides it.
    let out = compile_with(true, true);
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    let h = hcm_of(&l, 0);
    assert_eq!(filter_names(&h), CALLER_FILTERS);
    assert_eq!(route_cluster(&h), sni("auth"));
    let c: cluster::Cluster = decode(&out.clusters[&sni("auth")]);
    assert_lambda_cluster(&c, "lambda.eu-west-1.amazonaws.com", 443);
    assert!(
        !out.clusters
            .contains_key(&format!("failover-target~{}", sni("auth")))
    );
    // The healthy service is routed to directly: the function is no member of an aggregate.
    let l: listener::Listener = decode(&out.listeners["auth-svc:127.0.0.1:2346"]);
    assert_eq!(route_cluster(&hcm_of(&l, 0)), sni("auth-svc"));
    assert!(
        !out.clusters
            .contains_key(&format!("failover-target~{}", sni("auth-svc")))
    );

    // The function's only instance is critical: its routes go to the service.
    let out = compile_with(false, true);
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    assert_eq!(route_cluster(&hcm_of(&l, 0)), sni("auth-svc"));
    let c: cluster::Cluster = decode(&out.clusters[&sni("auth-svc")]);
    assert!(c.eds_cluster_config.is_some(), "an ordinary mesh cluster");

    // The service has no healthy endpoint: the service's routes go to the function, which
    // the filter invokes (the route names its cluster, which carries the egress metadata).
    let out = compile_with(true, false);
    let l: listener::Listener = decode(&out.listeners["auth-svc:127.0.0.1:2346"]);
    let h = hcm_of(&l, 0);
    assert_eq!(route_cluster(&h), sni("auth"));
    assert_eq!(lambda_config(&h).arn, ARN);

    // Nothing is available: each target keeps its own routes.
    let out = compile_with(false, false);
    let l: listener::Listener = decode(&out.listeners["auth:127.0.0.1:2345"]);
    assert_eq!(route_cluster(&hcm_of(&l, 0)), sni("auth"));

    // An ordinary service still fails over through Consul's aggregate cluster.
    let l: listener::Listener = decode(&out.listeners["db:127.0.0.1:2347"]);
    let h = hcm_of(&l, 0);
    assert_eq!(filter_names(&h), ["envoy.filters.http.router"]);
    let agg = format!("failover-target~{}", sni("db"));
    assert_eq!(route_cluster(&h), agg);
    assert_eq!(aggregate_members(&out, &agg), [sni("db"), sni("db-backup")]);
}

#[test]
fn the_function_error_script_runs_only_for_function_errors() {
    use envoy_types::pb::envoy::extensions::common::matching::v3::ExtensionWithMatcher;
    use envoy_types::pb::envoy::extensions::filters::http::lua::v3::Lua;
    use envoy_types::pb::envoy::r#type::matcher::v3::HttpResponseHeaderMatchInput;
    use envoy_types::pb::xds::r#type::matcher::v3::matcher;
    use matcher::matcher_list::predicate::{MatchType, single_predicate};

    let f = crate::compile::lambda::function_error_filter();
    let wrapped: ExtensionWithMatcher = match &f.config_type {
        Some(pb::hcm::http_filter::ConfigType::TypedConfig(any)) => decode(any),
        other => panic!("{other:?}"),
    };
    let lua: Lua = decode(
        wrapped
            .extension_config
            .unwrap()
            .typed_config
            .as_ref()
            .unwrap(),
    );
    let script = match lua.default_source_code.unwrap().specifier.unwrap() {
        pb::core::data_source::Specifier::InlineString(s) => s,
        other => panic!("{other:?}"),
    };
    assert!(script.contains("envoy_on_response") && script.contains("\"504\""));
    // One rule: skip the script when the response has no x-amz-function-error header.
    let Some(matcher::MatcherType::MatcherList(list)) = wrapped.xds_matcher.unwrap().matcher_type
    else {
        panic!("not a matcher list");
    };
    let [rule] = list.matchers.as_slice() else {
        panic!("{list:?}");
    };
    let Some(matcher::on_match::OnMatch::Action(action)) =
        rule.on_match.as_ref().unwrap().on_match.as_ref()
    else {
        panic!("no action");
    };
    assert_eq!(
        action.typed_config.as_ref().unwrap().type_url,
        "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
    );
    let Some(MatchType::NotMatcher(inner)) = rule.predicate.as_ref().unwrap().match_type.as_ref()
    else {
        panic!("not a negation");
    };
    let Some(MatchType::SinglePredicate(p)) = inner.match_type.as_ref() else {
        panic!("not a single predicate");
    };
    let input: HttpResponseHeaderMatchInput =
        decode(p.input.as_ref().unwrap().typed_config.as_ref().unwrap());
    assert_eq!(input.header_name, "x-amz-function-error");
    assert!(matches!(
        p.matcher,
        Some(single_predicate::Matcher::ValueMatch(_))
    ));
}
