//! `service-defaults`, `proxy-defaults` and `mesh`: the entries that set defaults rather than
//! routes. Sub-objects that no code here interprets (upstream config, rate limits, access logs,
//! TLS) are kept as verbatim JSON objects so they survive a write/read round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::FieldResult;
use super::common::{
    EnvoyExtension, ExposeConfig, MeshGatewayConfig, TransparentProxyConfig,
    check_envoy_extensions, check_meta, check_one_of, check_protocol, is_false, is_zero_i64,
    is_zero_u32,
};

/// Proxy modes (`Mode`).
const PROXY_MODES: [&str; 3] = ["", "direct", "transparent"];
const MUTUAL_TLS_MODES: [&str; 3] = ["", "strict", "permissive"];
const MESH_GATEWAY_MODES: [&str; 4] = ["", "none", "local", "remote"];

/// `service-defaults`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceDefaults {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "TransparentProxyConfig::is_empty")]
    pub transparent_proxy: TransparentProxyConfig,
    #[serde(
        rename = "MutualTLSMode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub mutual_tls_mode: String,
    #[serde(default, skip_serializing_if = "MeshGatewayConfig::is_empty")]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default, skip_serializing_if = "ExposeConfig::is_empty")]
    pub expose: ExposeConfig,
    #[serde(
        rename = "ExternalSNI",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub external_sni: String,
    /// Kept verbatim (see module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_config: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationConfig>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_inbound_connections: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub local_connect_timeout_ms: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub local_request_timeout_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub balance_inbound_connections: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envoy_extensions: Vec<EnvoyExtension>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// `Destination { Addresses, Port }` of a service-defaults for an external (terminating-gateway
/// destination) service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DestinationConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port: u32,
}

/// `proxy-defaults` (only `global` exists).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ProxyDefaults {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Opaque proxy config; `protocol` in it is the mesh-wide default protocol.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "TransparentProxyConfig::is_empty")]
    pub transparent_proxy: TransparentProxyConfig,
    #[serde(
        rename = "MutualTLSMode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub mutual_tls_mode: String,
    #[serde(default, skip_serializing_if = "MeshGatewayConfig::is_empty")]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default, skip_serializing_if = "ExposeConfig::is_empty")]
    pub expose: ExposeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envoy_extensions: Vec<EnvoyExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_policy: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prioritize_by_locality: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// The `mesh` entry (name is always `mesh`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MeshConfig {
    /// Optional on input (Consul's mesh entry has no settable name); always `mesh`.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "MeshTransparentProxy::is_empty")]
    pub transparent_proxy: MeshTransparentProxy,
    #[serde(
        rename = "AllowEnablingPermissiveMutualTLS",
        default,
        skip_serializing_if = "is_false"
    )]
    pub allow_enabling_permissive_mutual_tls: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub validate_clusters: bool,
    /// Kept verbatim (see module docs).
    #[serde(rename = "TLS", default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Map<String, Value>>,
    #[serde(rename = "HTTP", default, skip_serializing_if = "Option::is_none")]
    pub http: Option<MeshHttpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<PeeringMeshConfig>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MeshTransparentProxy {
    #[serde(default, skip_serializing_if = "is_false")]
    pub mesh_destinations_only: bool,
}

impl MeshTransparentProxy {
    pub fn is_empty(&self) -> bool {
        !self.mesh_destinations_only
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MeshHttpConfig {
    #[serde(default)]
    pub sanitize_x_forwarded_client_cert: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PeeringMeshConfig {
    #[serde(default)]
    pub peer_through_mesh_gateways: bool,
}

// === impl ServiceDefaults ===

impl ServiceDefaults {
    pub(crate) fn normalize(&mut self) {
        self.protocol = self.protocol.to_ascii_lowercase();
    }

    pub(crate) fn check(&self) -> FieldResult {
        if self.name == "*" {
            return Err((
                "Name".into(),
                "must be the name of a service, and not a wildcard".into(),
            ));
        }
        check_protocol(&self.protocol).map_err(|m| ("Protocol".to_owned(), m))?;
        check_one_of("Mode", &self.mode, &PROXY_MODES)?;
        check_one_of("MutualTLSMode", &self.mutual_tls_mode, &MUTUAL_TLS_MODES)?;
        check_one_of(
            "MeshGateway.Mode",
            &self.mesh_gateway.mode,
            &MESH_GATEWAY_MODES,
        )?;
        check_one_of(
            "BalanceInboundConnections",
            &self.balance_inbound_connections,
            &["", "exact_balance"],
        )?;
        if self.upstream_config.is_some() && self.destination.is_some() {
            return Err((
                "UpstreamConfig".into(),
                "UpstreamConfig and Destination are mutually exclusive for service defaults".into(),
            ));
        }
        for (field, v) in [
            ("MaxInboundConnections", self.max_inbound_connections),
            ("LocalConnectTimeoutMs", self.local_connect_timeout_ms),
            ("LocalRequestTimeoutMs", self.local_request_timeout_ms),
        ] {
            if v < 0 {
                return Err((field.into(), format!("must be >= 0, got {v}")));
            }
        }
        if let Some(d) = &self.destination {
            if d.addresses.is_empty() {
                return Err(("Destination.Addresses".into(), "must not be empty".into()));
            }
            if d.addresses.iter().any(String::is_empty) {
                return Err((
                    "Destination.Addresses".into(),
                    "must not contain empty addresses".into(),
                ));
            }
            if d.port == 0 || d.port > 65535 {
                return Err((
                    "Destination.Port".into(),
                    format!("must be between 1 and 65535, got {}", d.port),
                ));
            }
        }
        check_envoy_extensions(&self.envoy_extensions)?;
        // The ≤1.14 keys are only a marking when no extension is there (the extension wins).
        if !self
            .envoy_extensions
            .iter()
            .any(|e| e.name == super::LAMBDA_EXTENSION)
        {
            super::lambda::check_lambda_meta(&self.meta)?;
        }
        check_meta(&self.meta)
    }
}

// === impl ProxyDefaults ===

impl ProxyDefaults {
    /// The `protocol` key of `Config`, lowercased; empty when unset or not a string.
    pub fn config_protocol(&self) -> String {
        self.config
            .get("protocol")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default()
    }

    pub(crate) fn check(&self) -> FieldResult {
        if self.name != super::PROXY_DEFAULTS_GLOBAL {
            return Err((
                "Name".into(),
                format!(
                    "invalid name ({:?}), only \"global\" is supported",
                    self.name
                ),
            ));
        }
        match self.config.get("protocol") {
            None => {}
            Some(Value::String(p)) => check_protocol(&p.to_ascii_lowercase())
                .map_err(|m| ("Config.protocol".to_owned(), m))?,
            Some(_) => {
                return Err(("Config.protocol".into(), "must be a string".into()));
            }
        }
        check_one_of("Mode", &self.mode, &PROXY_MODES)?;
        check_one_of("MutualTLSMode", &self.mutual_tls_mode, &MUTUAL_TLS_MODES)?;
        check_one_of(
            "MeshGateway.Mode",
            &self.mesh_gateway.mode,
            &MESH_GATEWAY_MODES,
        )?;
        check_envoy_extensions(&self.envoy_extensions)?;
        check_meta(&self.meta)
    }
}

// === impl MeshConfig ===

impl MeshConfig {
    pub(crate) fn normalize(&mut self) {
        if self.name.is_empty() {
            self.name = super::MESH_NAME.to_owned();
        }
    }

    pub(crate) fn check(&self) -> FieldResult {
        if self.name != super::MESH_NAME {
            return Err((
                "Name".into(),
                format!("invalid name ({:?}), only \"mesh\" is supported", self.name),
            ));
        }
        check_meta(&self.meta)
    }
}
