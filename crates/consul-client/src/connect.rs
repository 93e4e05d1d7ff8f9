//! Connect: the CA's roots and an agent-issued leaf (what the registrator hands to Lambda
//! functions), namespaces of a partition, and intentions between two services.

use serde::Deserialize;
use serde_json::Value;

use crate::{Client, ClientError, Tenancy, encode, null_as_default};

/// `GET /v1/agent/connect/ca/roots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CaRoots {
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    pub trust_domain: String,
    #[serde(deserialize_with = "null_as_default")]
    pub roots: Vec<CaRoot>,
}

/// One root certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CaRoot {
    #[serde(rename = "ID")]
    pub id: String,
    pub root_cert: String,
}

impl CaRoots {
    /// The root named by `ActiveRootID`.
    pub fn active(&self) -> Option<&CaRoot> {
        self.roots
            .iter()
            .find(|r| !self.active_root_id.is_empty() && r.id == self.active_root_id)
    }
}

/// `GET /v1/agent/connect/ca/leaf/<service>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LeafCert {
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: String,
}

/// A namespace of `GET /v1/namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Namespace {
    pub name: String,
}

/// `GET /v1/connect/intentions/check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct IntentionCheck {
    allowed: bool,
}

impl Client {
    /// `GET /v1/agent/connect/ca/roots`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn ca_roots(&self) -> Result<CaRoots, ClientError> {
        self.get_as("/v1/agent/connect/ca/roots")
    }

    /// `GET /v1/agent/connect/ca/leaf/<service>`: a leaf from the agent, in the agent's
    /// partition.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn leaf_cert(&self, service: &str) -> Result<LeafCert, ClientError> {
        self.get_as(&format!("/v1/agent/connect/ca/leaf/{}", encode(service)))
    }

    /// `GET /v1/namespaces?partition=…` (Enterprise).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn namespaces(&self, partition: &str) -> Result<Vec<Namespace>, ClientError> {
        let tenancy = Tenancy {
            partition: Some(partition),
            ..Tenancy::DEFAULT
        };
        let list: Option<Vec<Namespace>> = self.get_as(&tenancy.on("/v1/namespaces"))?;
        Ok(list.unwrap_or_default())
    }

    /// `GET /v1/connect/intentions/exact`: the intention `source => destination` as the server
    /// wrote it (printed whole); a missing one is [`ClientError::Http`] with status 404.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn intention_exact(&self, source: &str, destination: &str) -> Result<Value, ClientError> {
        self.get(&exact(source, destination)).map(|a| a.body)
    }

    /// `PUT /v1/connect/intentions/exact` with the intention's body.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn put_intention_exact(
        &self,
        source: &str,
        destination: &str,
        body: &Value,
    ) -> Result<(), ClientError> {
        self.put(&exact(source, destination), Some(body)).map(drop)
    }

    /// `DELETE /v1/connect/intentions/exact`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn delete_intention_exact(
        &self,
        source: &str,
        destination: &str,
    ) -> Result<(), ClientError> {
        self.delete(&exact(source, destination)).map(drop)
    }

    /// `GET /v1/connect/intentions/check`: whether `source` may connect to `destination`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn intention_check(&self, source: &str, destination: &str) -> Result<bool, ClientError> {
        let check: Option<IntentionCheck> = self.get_as(&format!(
            "/v1/connect/intentions/check?{}",
            pair(source, destination)
        ))?;
        Ok(check.is_some_and(|c| c.allowed))
    }
}

fn pair(source: &str, destination: &str) -> String {
    format!(
        "source={}&destination={}",
        encode(source),
        encode(destination)
    )
}

fn exact(source: &str, destination: &str) -> String {
    format!("/v1/connect/intentions/exact?{}", pair(source, destination))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn the_active_root_is_the_one_named() {
        let roots: CaRoots = serde_json::from_value(json!({
            "ActiveRootID": "b",
            "TrustDomain": "t.consul",
            "Roots": [{"ID": "a", "RootCert": "A"}, {"ID": "b", "RootCert": "B", "Active": true}],
        }))
        .unwrap();
        assert_eq!(roots.active().map(|r| r.root_cert.as_str()), Some("B"));
        let none: CaRoots = serde_json::from_value(json!({"Roots": [{"ID": ""}]})).unwrap();
        assert_eq!(none.active(), None);
    }
}
