//! The Lambda patch (reference §1–§2): a service marked as a Lambda function, by either Consul
//! generation's marking, has its SNI-named cluster replaced by the Lambda endpoint and Envoy's
//! `aws_lambda` filter inserted right before the router of the HTTP chain that routes to it.

use mesh_model::config_entry::{
    ConfigEntry, ConfigEntrySet, Kind, LAMBDA_EXTENSION, lambda_argument, parse_lambda_arn,
};
use mesh_model::names::ServiceName;
use serde_json::Value;

use crate::pb::{self, cluster, core, pack_any};

/// The ≤1.14 `Meta` key prefix.
pub const META_PREFIX: &str = "serverless.consul.hashicorp.com/v1alpha1/lambda/";

/// How a Lambda-backed service is invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTarget {
    pub arn: String,
    pub region: String,
    pub payload_passthrough: bool,
    pub asynchronous: bool,
}

/// The Lambda marking of `svc`, from `EnvoyExtensions` (1.15+) or the `Meta` keys (≤1.14).
/// Invocation mode is matched case-insensitively: `ASYNCHRONOUS` really is asynchronous
/// (Consul's exact lower-case comparison silently made it synchronous).
pub fn lambda_of(entries: &ConfigEntrySet, svc: &ServiceName) -> Option<LambdaTarget> {
    let Some(ConfigEntry::ServiceDefaults(sd)) = entries.for_service(Kind::ServiceDefaults, svc)
    else {
        return None;
    };
    if let Some(ext) = sd
        .envoy_extensions
        .iter()
        .find(|e| e.name == LAMBDA_EXTENSION)
    {
        let arn = lambda_argument(&ext.arguments, "ARN")
            .and_then(Value::as_str)?
            .to_owned();
        let parsed = parse_lambda_arn(&arn).ok()?;
        return Some(LambdaTarget {
            region: parsed.region,
            payload_passthrough: lambda_argument(&ext.arguments, "PayloadPassthrough")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            asynchronous: lambda_argument(&ext.arguments, "InvocationMode")
                .and_then(Value::as_str)
                .is_some_and(|m| m.eq_ignore_ascii_case("asynchronous")),
            arn,
        });
    }
    let meta = |k: &str| {
        sd.meta
            .get(&format!("{META_PREFIX}{k}"))
            .map(String::as_str)
    };
    if meta("enabled") != Some("true") {
        return None;
    }
    let arn = meta("arn").filter(|a| !a.is_empty())?.to_owned();
    let region = match meta("region").filter(|r| !r.is_empty()) {
        Some(r) => r.to_owned(),
        None => parse_lambda_arn(&arn).ok()?.region,
    };
    Some(LambdaTarget {
        arn,
        region,
        // Accept the early misspelling too (reference §1.1).
        payload_passthrough: meta("payload-passthrough").or(meta("payload-passhthrough"))
            == Some("true"),
        asynchronous: meta("invocation-mode")
            .is_some_and(|m| m.eq_ignore_ascii_case("asynchronous")),
    })
}

/// The replacement cluster: the regional Lambda endpoint over TLS, or a configured endpoint
/// (`http://host:port` plain, `https://host:port` TLS), with the `com.amazonaws.lambda`
/// egress-gateway metadata the filter needs to act.
pub fn lambda_cluster(
    name: &str,
    connect_timeout_ms: u64,
    target: &LambdaTarget,
    endpoint: Option<&str>,
) -> cluster::Cluster {
    let (tls, host, port) = match endpoint.map(split_endpoint) {
        Some((tls, host, port)) => (tls, host, port),
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

fn split_endpoint(url: &str) -> (bool, String, u16) {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, url.strip_prefix("http://").unwrap_or(url)),
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) => (
            tls,
            h.to_owned(),
            p.parse().unwrap_or(if tls { 443 } else { 80 }),
        ),
        None => (tls, rest.to_owned(), if tls { 443 } else { 80 }),
    }
}

/// The `envoy.filters.http.aws_lambda` filter for `target`.
pub fn lambda_filter(target: &LambdaTarget) -> pb::hcm::HttpFilter {
    use envoy_types::pb::envoy::extensions::filters::http::aws_lambda::v3::{
        Config, config::InvocationMode,
    };
    let cfg = Config {
        arn: target.arn.clone(),
        payload_passthrough: target.payload_passthrough,
        invocation_mode: if target.asynchronous {
            InvocationMode::Asynchronous as i32
        } else {
            InvocationMode::Synchronous as i32
        },
        ..Default::default()
    };
    super::http_filter("envoy.filters.http.aws_lambda", pack_any(cfg))
}

/// Sets `strip_any_host_port` on an HCM filter, so the port never enters the signed `host`
/// header (Consul's fix for `InvalidSignatureException`, hashicorp/consul#15303).
pub fn strip_any_host_port(mut f: pb::listener::Filter) -> pb::listener::Filter {
    use prost::Message;
    if let Some(pb::listener::filter::ConfigType::TypedConfig(any)) = &f.config_type
        && let Ok(mut h) = pb::hcm::HttpConnectionManager::decode(any.value.as_slice())
    {
        h.strip_port_mode =
            Some(pb::hcm::http_connection_manager::StripPortMode::StripAnyHostPort(true));
        f.config_type = Some(pb::listener::filter::ConfigType::TypedConfig(pack_any(h)));
    }
    f
}
