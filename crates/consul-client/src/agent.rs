//! `/v1/agent/*`: the agent's datacenter, the services registered with it (where
//! `connect envoy` finds a sidecar), and service registration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Client, ClientError, Tenancy, encode, null_as_default};

/// The part of `GET /v1/agent/self` callers read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentSelf {
    #[serde(deserialize_with = "null_as_default")]
    pub config: AgentConfig,
}

/// `Config` of `GET /v1/agent/self`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentConfig {
    pub datacenter: Option<String>,
}

/// A service of `GET /v1/agent/services`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    /// `connect-proxy`, a gateway kind, or empty for a plain service.
    pub kind: String,
    pub namespace: Option<String>,
    pub proxy: Option<AgentServiceProxy>,
}

/// `Proxy` of a proxy service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AgentServiceProxy {
    #[serde(rename = "DestinationServiceID")]
    pub destination_service_id: String,
    /// The proxy's opaque `Config` (`envoy_prometheus_bind_addr`, `protocol`, ...).
    pub config: Option<serde_json::Value>,
}

/// One row of `GET /v1/agent/members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Member {
    pub name: String,
    pub addr: String,
    pub port: u16,
    #[serde(deserialize_with = "null_as_default")]
    pub tags: BTreeMap<String, String>,
    /// Serf's member status: 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: u8,
}

impl Member {
    /// The status as Serf names it.
    pub fn status_name(&self) -> &'static str {
        match self.status {
            0 => "none",
            1 => "alive",
            2 => "leaving",
            3 => "left",
            4 => "failed",
            _ => "unknown",
        }
    }
}

impl Client {
    /// `GET /v1/agent/members`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn agent_members(&self) -> Result<Vec<Member>, ClientError> {
        let members: Option<Vec<Member>> = self.get_as("/v1/agent/members")?;
        Ok(members.unwrap_or_default())
    }

    /// `GET /v1/agent/self`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn agent_self(&self) -> Result<AgentSelf, ClientError> {
        self.get_as("/v1/agent/self")
    }

    /// `GET /v1/agent/services`, by service ID.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn agent_services(
        &self,
        tenancy: &Tenancy<'_>,
    ) -> Result<BTreeMap<String, AgentService>, ClientError> {
        let services: Option<BTreeMap<String, AgentService>> =
            self.get_as(&tenancy.on("/v1/agent/services"))?;
        Ok(services.unwrap_or_default())
    }

    /// `PUT /v1/agent/service/register` with a service definition as the caller shaped it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn agent_service_register<B: Serialize + ?Sized>(
        &self,
        definition: &B,
        tenancy: &Tenancy<'_>,
    ) -> Result<(), ClientError> {
        self.put_json(&tenancy.on("/v1/agent/service/register"), definition)
            .map(drop)
    }

    /// `PUT /v1/agent/service/deregister/<id>`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn agent_service_deregister(
        &self,
        id: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<(), ClientError> {
        self.put(
            &tenancy.on(&format!("/v1/agent/service/deregister/{}", encode(id))),
            None,
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn a_sidecar_and_a_plain_service() {
        let services: BTreeMap<String, AgentService> = serde_json::from_value(json!({
            "web": {"ID": "web", "Service": "web", "Port": 80},
            "web-sidecar-proxy": {"ID": "web-sidecar-proxy", "Service": "web-sidecar-proxy",
                "Kind": "connect-proxy", "Namespace": "team",
                "Proxy": {"DestinationServiceID": "web", "Upstreams": null}},
        }))
        .unwrap();
        assert_eq!(services["web"].kind, "");
        assert_eq!(services["web"].proxy, None);
        let p = &services["web-sidecar-proxy"];
        assert_eq!(p.namespace.as_deref(), Some("team"));
        assert_eq!(
            p.proxy.as_ref().map(|p| p.destination_service_id.as_str()),
            Some("web")
        );
        let a: AgentSelf =
            serde_json::from_value(json!({"Config": {"Datacenter": "dc2"}, "Member": {}})).unwrap();
        assert_eq!(a.config.datacenter.as_deref(), Some("dc2"));
        let a: AgentSelf = serde_json::from_value(json!({})).unwrap();
        assert_eq!(a.config.datacenter, None);
    }
}
