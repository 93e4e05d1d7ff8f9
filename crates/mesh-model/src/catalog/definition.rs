//! Service and check definitions as users write them: the body of `PUT /v1/agent/service/register`,
//! the `Service` of a catalog registration, and `services register FILE` files (HCL or JSON, any
//! key case). Turning a definition into stored records, including Consul's sidecar expansion,
//! is pure and lives here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::{
    CatalogError, CheckRuntime, CheckStatus, HealthCheck, MeshGatewayConfig, NodeService,
    ProxyConfig, ServiceConnect, ServiceKind, Upstream, Weights, invalid, next_free_sidecar_port,
};
use crate::decode;
use crate::names::{self, EntMeta};

/// A service definition (Consul's `AgentServiceRegistration`).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ServiceDefinition {
    /// As written; [`ServiceKind::parse`] in validation (Consul's message, in Consul's order).
    #[serde(default)]
    pub kind: String,
    #[serde(rename = "ID", default)]
    pub id: String,
    /// `Name` in agent definitions, `Service` in catalog registrations: both accepted.
    #[serde(default, alias = "Service")]
    pub name: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, Value>,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub socket_path: String,
    #[serde(default)]
    pub enable_tag_override: bool,
    #[serde(default)]
    pub weights: Option<Weights>,
    #[serde(default)]
    pub check: Option<CheckDefinition>,
    #[serde(default)]
    pub checks: Vec<CheckDefinition>,
    #[serde(default)]
    pub proxy: Option<ProxyDefinition>,
    #[serde(default)]
    pub connect: Option<ConnectDefinition>,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub locality: Value,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// `Proxy` as written in a definition.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProxyDefinition {
    #[serde(default)]
    pub destination_service_name: String,
    #[serde(default, rename = "DestinationServiceID")]
    pub destination_service_id: String,
    #[serde(default)]
    pub local_service_address: String,
    #[serde(default)]
    pub local_service_port: Option<i64>,
    #[serde(default)]
    pub local_service_socket_path: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default)]
    pub expose: Value,
    #[serde(default)]
    pub transparent_proxy: Value,
}

/// `Connect` as written in a definition.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ConnectDefinition {
    #[serde(default)]
    pub native: bool,
    #[serde(default)]
    pub sidecar_service: Option<Box<ServiceDefinition>>,
}

/// A check definition (`Check`/`Checks` of a definition or registration).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CheckDefinition {
    #[serde(rename = "CheckID", alias = "ID", default)]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub notes: String,
    /// As written (empty: `critical`); [`CheckStatus::parse`] in validation.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(rename = "TTL", default)]
    pub ttl: String,
    #[serde(rename = "HTTP", default)]
    pub http: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub body: String,
    #[serde(rename = "TCP", default)]
    pub tcp: String,
    #[serde(default)]
    pub interval: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(rename = "TLSSkipVerify", default)]
    pub tls_skip_verify: bool,
    #[serde(default)]
    pub deregister_critical_service_after: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_tags: Vec<String>,
    #[serde(default, rename = "Type")]
    pub check_type: String,
    #[serde(default)]
    pub definition: Value,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub partition: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A `services register` file: `service { ... }`, `services { ... }` (repeatable) or the JSON
/// equivalents `{"Service": {...}}` / `{"Services": [...]}`, or a bare definition object.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ServiceFile {
    #[serde(default)]
    pub service: Option<ServiceDefinition>,
    #[serde(default)]
    pub services: Vec<ServiceDefinition>,
}

impl ServiceFile {
    /// Parses an HCL or JSON services file into its definitions (at least one).
    pub fn parse(text: &str) -> Result<Vec<ServiceDefinition>, CatalogError> {
        Ok(Self::parse_with_json(text)?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    }

    /// Like [`Self::parse`], also returning each definition as canonical JSON (the body a client
    /// sends to `PUT /v1/agent/service/register`).
    pub fn parse_with_json(text: &str) -> Result<Vec<(ServiceDefinition, Value)>, CatalogError> {
        let value = decode::json_or_hcl_to_value(text)?;
        let canon = decode::canonicalize(value)?;
        // Each definition with where it sits in the file, so an error names `Service.Port`.
        let values: Vec<(String, Value)> = match canon {
            Value::Object(mut o) if o.contains_key("Service") || o.contains_key("Services") => {
                let extra: Vec<String> = o
                    .keys()
                    .filter(|k| *k != "Service" && *k != "Services")
                    .cloned()
                    .collect();
                if !extra.is_empty() {
                    return Err(invalid(format!(
                        "unknown top-level field(s) {extra:?}: expected `service` or `services`"
                    )));
                }
                let mut v: Vec<(String, Value)> = o
                    .remove("Service")
                    .map(|s| ("Service".to_owned(), s))
                    .into_iter()
                    .collect();
                match o.remove("Services") {
                    Some(Value::Array(items)) => v.extend(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, s)| (format!("Services[{i}]"), s)),
                    ),
                    Some(other) => v.push(("Services".to_owned(), other)),
                    None => {}
                }
                v
            }
            other => vec![(String::new(), other)],
        };
        if values.is_empty() {
            return Err(invalid(
                "no service definition found: expected a `service` or `services` block",
            ));
        }
        let mut out = Vec::with_capacity(values.len());
        for (at, v) in values {
            let d: ServiceDefinition = decode::deserialize_at(&at, v.clone())?;
            d.validate_for_agent().map_err(|e| match e {
                CatalogError::Invalid(m) if !at.is_empty() => invalid(format!("{at}: {m}")),
                other => other,
            })?;
            out.push((d, v));
        }
        Ok(out)
    }
}

fn port_from(field: &str, port: Option<i64>) -> Result<u16, CatalogError> {
    match port {
        None => Ok(0),
        Some(p) => u16::try_from(p)
            .map_err(|_| invalid(format!("{field}: invalid port {p}: must be 0-65535"))),
    }
}

impl ServiceDefinition {
    /// Decodes an agent registration body.
    pub fn decode_json(bytes: &[u8]) -> Result<Self, CatalogError> {
        let def: Self = decode::from_json_slice(bytes)?;
        def.validate_for_agent()?;
        Ok(def)
    }

    pub fn ent_meta(&self) -> EntMeta {
        EntMeta::new(Some(&self.partition), Some(&self.namespace))
    }

    /// The instance ID: `ID`, or the name when no ID is given (as Consul does).
    pub fn effective_id(&self) -> &str {
        if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        }
    }

    fn validate_common(&self) -> Result<(), CatalogError> {
        if self.name.is_empty() {
            return Err(invalid("Missing service name"));
        }
        names::validate_service_name("service name", &self.name)?;
        if !self.id.is_empty() && (self.id.contains('/') || self.id.chars().any(char::is_control)) {
            return Err(invalid(format!(
                "ID: invalid service ID {:?}: must not contain '/'",
                self.id
            )));
        }
        let kind = ServiceKind::parse(&self.kind)?;
        port_from("Port", self.port)?;
        if self.weights.is_some_and(|w| w.passing == 0) {
            return Err(invalid("Weights.Passing: must be greater than 0"));
        }
        if !self.namespace.is_empty() || !self.partition.is_empty() {
            self.ent_meta().validate()?;
        }
        if let Some(proxy) = &self.proxy {
            port_from("Proxy.LocalServicePort", proxy.local_service_port)?;
            for (i, u) in proxy.upstreams.iter().enumerate() {
                if u.destination_name.is_empty() {
                    return Err(invalid(format!(
                        "Proxy.Upstreams[{i}].DestinationName: must be set"
                    )));
                }
                if u.local_bind_port == 0 && u.local_bind_socket_path.is_empty() {
                    return Err(invalid(format!(
                        "Proxy.Upstreams[{i}] ({}): LocalBindPort or LocalBindSocketPath must be set",
                        u.destination_name
                    )));
                }
            }
        }
        if kind == ServiceKind::ConnectProxy {
            let dest = self
                .proxy
                .as_ref()
                .map(|p| p.destination_service_name.as_str())
                .unwrap_or("");
            if dest.is_empty() {
                return Err(invalid(
                    "Proxy.DestinationServiceName must be set for service kind \"connect-proxy\"",
                ));
            }
            if self.port.unwrap_or(0) == 0 && self.socket_path.is_empty() {
                return Err(invalid("Port must be set for a Connect proxy"));
            }
        }
        for c in self.check.iter().chain(&self.checks) {
            c.validate()?;
        }
        Ok(())
    }

    /// Validation for agent registrations and service files (sidecars allowed).
    pub fn validate_for_agent(&self) -> Result<(), CatalogError> {
        self.validate_common()?;
        if let Some(sidecar) = self
            .connect
            .as_ref()
            .and_then(|c| c.sidecar_service.as_ref())
        {
            if sidecar
                .connect
                .as_ref()
                .is_some_and(|c| c.sidecar_service.is_some())
            {
                return Err(invalid(
                    "Connect.SidecarService: a sidecar service cannot have its own sidecar",
                ));
            }
            if !sidecar.kind.is_empty() && sidecar.kind != ServiceKind::ConnectProxy.as_str() {
                return Err(invalid(
                    "Connect.SidecarService.Kind: must be empty or \"connect-proxy\"",
                ));
            }
            port_from("Connect.SidecarService.Port", sidecar.port)?;
        }
        Ok(())
    }

    /// Validation for catalog registrations: Consul refuses sidecar definitions there.
    pub fn validate_for_catalog(&self) -> Result<(), CatalogError> {
        self.validate_common()?;
        if self
            .connect
            .as_ref()
            .is_some_and(|c| c.sidecar_service.is_some())
        {
            return Err(invalid(
                "Connect.SidecarService: cannot be used in a catalog registration; use the agent API",
            ));
        }
        Ok(())
    }

    /// The stored instance for this definition (sidecar not included: see [`Self::sidecar`]).
    pub fn to_node_service(&self, datacenter: &str) -> Result<NodeService, CatalogError> {
        let meta = self.ent_meta();
        let proxy = match &self.proxy {
            None => ProxyConfig {
                expose: Value::Object(Default::default()),
                ..ProxyConfig::default()
            },
            Some(p) => ProxyConfig {
                destination_service_name: p.destination_service_name.clone(),
                destination_service_id: p.destination_service_id.clone(),
                local_service_address: p.local_service_address.clone(),
                local_service_port: port_from("Proxy.LocalServicePort", p.local_service_port)?,
                local_service_socket_path: p.local_service_socket_path.clone(),
                mode: p.mode.clone(),
                config: p.config.clone(),
                upstreams: p.upstreams.clone(),
                mesh_gateway: p.mesh_gateway.clone(),
                expose: if p.expose.is_null() {
                    Value::Object(Default::default())
                } else {
                    p.expose.clone()
                },
                transparent_proxy: p.transparent_proxy.clone(),
            },
        };
        Ok(NodeService {
            kind: ServiceKind::parse(&self.kind)?,
            id: self.effective_id().to_owned(),
            service: self.name.clone(),
            tags: self.tags.clone().unwrap_or_default(),
            address: self.address.clone(),
            tagged_addresses: self.tagged_addresses.clone(),
            meta: self.meta.clone().unwrap_or_default(),
            port: port_from("Port", self.port)?,
            weights: self.weights.unwrap_or_default(),
            enable_tag_override: self.enable_tag_override,
            proxy,
            connect: ServiceConnect {
                native: self.connect.as_ref().is_some_and(|c| c.native),
            },
            locality: self.locality.clone(),
            namespace: meta.namespace,
            partition: meta.partition,
            datacenter: datacenter.to_owned(),
            create_index: 0,
            modify_index: 0,
        })
    }

    /// Consul's sidecar expansion: `Connect.SidecarService` becomes its own `connect-proxy`
    /// registration `<id>-sidecar-proxy` named `<name>-sidecar-proxy`, whose port is taken from
    /// the sidecar range when not given, and which inherits tags and meta when it has none.
    pub fn sidecar(
        &self,
        used_ports: &BTreeSet<u16>,
    ) -> Result<Option<ServiceDefinition>, CatalogError> {
        let Some(sidecar) = self
            .connect
            .as_ref()
            .and_then(|c| c.sidecar_service.as_deref())
        else {
            return Ok(None);
        };
        let mut s = sidecar.clone();
        s.kind = ServiceKind::ConnectProxy.as_str().to_owned();
        if s.id.is_empty() {
            s.id = format!("{}-sidecar-proxy", self.effective_id());
        }
        if s.name.is_empty() {
            s.name = format!("{}-sidecar-proxy", self.name);
        }
        if s.tags.is_none() {
            s.tags = self.tags.clone();
        }
        if s.meta.is_none() {
            s.meta = self.meta.clone();
        }
        if s.namespace.is_empty() {
            s.namespace = self.namespace.clone();
        }
        if s.partition.is_empty() {
            s.partition = self.partition.clone();
        }
        if s.port.unwrap_or(0) == 0 {
            let port = next_free_sidecar_port(used_ports).ok_or_else(|| {
                invalid("Connect.SidecarService: no free port in the sidecar range 21000-21255; set Port")
            })?;
            s.port = Some(i64::from(port));
        }
        let mut proxy = s.proxy.take().unwrap_or_default();
        proxy.destination_service_name = self.name.clone();
        proxy.destination_service_id = self.effective_id().to_owned();
        if proxy.local_service_address.is_empty() {
            proxy.local_service_address = "127.0.0.1".to_owned();
        }
        if proxy.local_service_port.unwrap_or(0) == 0 {
            proxy.local_service_port = self.port;
        }
        s.proxy = Some(proxy);
        s.connect = None;
        s.validate_common()?;
        Ok(Some(s))
    }

    /// All checks of this definition as stored records (status from the definition or `critical`).
    pub fn health_checks(&self, node: &str) -> Result<Vec<HealthCheck>, CatalogError> {
        let meta = self.ent_meta();
        let id = self.effective_id();
        let all: Vec<&CheckDefinition> = self.check.iter().chain(&self.checks).collect();
        let mut out = Vec::with_capacity(all.len());
        for (i, c) in all.iter().enumerate() {
            let check_id = if !c.check_id.is_empty() {
                c.check_id.clone()
            } else if all.len() == 1 {
                format!("service:{id}")
            } else {
                format!("service:{id}:{}", i + 1)
            };
            let name = if c.name.is_empty() {
                format!("Service '{}' check", self.name)
            } else {
                c.name.clone()
            };
            let mut hc = c.to_health_check(node, &meta)?;
            hc.check_id = check_id;
            hc.name = name;
            hc.service_id = id.to_owned();
            hc.service_name = self.name.clone();
            hc.service_tags = self.tags.clone().unwrap_or_default();
            out.push(hc);
        }
        Ok(out)
    }
}

impl CheckDefinition {
    pub fn validate(&self) -> Result<(), CatalogError> {
        let kinds = [
            !self.ttl.is_empty(),
            !self.http.is_empty(),
            !self.tcp.is_empty(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(invalid("check: only one of TTL, HTTP and TCP may be set"));
        }
        for (field, value) in [
            ("TTL", &self.ttl),
            ("Interval", &self.interval),
            ("Timeout", &self.timeout),
        ] {
            if !value.is_empty() {
                parse_go_duration(value).map_err(|e| invalid(format!("check {field}: {e}")))?;
            }
        }
        if (!self.http.is_empty() || !self.tcp.is_empty()) && self.interval.is_empty() {
            return Err(invalid(
                "check: Interval must be set for HTTP and TCP checks",
            ));
        }
        self.check_status()?;
        Ok(())
    }

    /// The status a new check starts with: the one given, else `critical`.
    fn check_status(&self) -> Result<CheckStatus, CatalogError> {
        if self.status.is_empty() {
            return Ok(CheckStatus::Critical);
        }
        CheckStatus::parse(&self.status)
            .ok_or_else(|| invalid(format!("check Status: invalid status {:?}", self.status)))
    }

    /// The kind of check, as Consul's `Type` field spells it.
    pub fn kind(&self) -> &'static str {
        if !self.ttl.is_empty() {
            "ttl"
        } else if !self.http.is_empty() {
            "http"
        } else if !self.tcp.is_empty() {
            "tcp"
        } else {
            ""
        }
    }

    /// The stored record for this check (IDs and names defaulted by the caller where needed).
    pub fn to_health_check(&self, node: &str, meta: &EntMeta) -> Result<HealthCheck, CatalogError> {
        self.validate()?;
        let check_id = if self.check_id.is_empty() {
            self.name.clone()
        } else {
            self.check_id.clone()
        };
        Ok(HealthCheck {
            node: node.to_owned(),
            check_id,
            name: self.name.clone(),
            status: self.check_status()?,
            notes: self.notes.clone(),
            output: self.output.clone(),
            service_id: self.service_id.clone(),
            service_name: self.service_name.clone(),
            service_tags: self.service_tags.clone(),
            check_type: self.kind().to_owned(),
            definition: CheckRuntime {
                http: self.http.clone(),
                tcp: self.tcp.clone(),
                ttl: self.ttl.clone(),
                interval: self.interval.clone(),
                timeout: self.timeout.clone(),
                method: self.method.clone(),
                deregister_critical_service_after: self.deregister_critical_service_after.clone(),
            },
            namespace: meta.namespace.clone(),
            partition: meta.partition.clone(),
            create_index: 0,
            modify_index: 0,
        })
    }
}

/// Parses a Go duration string (`"10s"`, `"1m30s"`, `"250ms"`), as Consul's config does.
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || {
        format!(
            "invalid duration {s:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. \"10s\""
        )
    };
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * unit;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}
