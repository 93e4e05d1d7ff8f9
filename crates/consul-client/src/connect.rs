//! Connect: the CA's roots and an agent-issued leaf (what the registrator hands to Lambda
//! functions), namespaces of a partition, and intentions: listed, matched, and between two
//! services.

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

/// One intention as `GET /v1/connect/intentions` and `/match` list it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Intention {
    #[serde(rename = "ID")]
    pub id: String,
    pub description: String,
    #[serde(rename = "SourceNS")]
    pub source_ns: String,
    pub source_name: String,
    pub source_partition: String,
    pub source_peer: String,
    #[serde(rename = "DestinationNS")]
    pub destination_ns: String,
    pub destination_name: String,
    pub destination_partition: String,
    pub action: String,
    #[serde(deserialize_with = "null_as_default")]
    pub permissions: Vec<Value>,
    pub precedence: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub meta: std::collections::BTreeMap<String, String>,
    pub created_at: String,
}

impl Intention {
    /// The source as Consul's CLI prints it: `[peer:|partition/][namespace/]name`, with the
    /// default partition and namespace left out.
    pub fn source_string(&self) -> String {
        let peer = (!self.source_peer.is_empty()).then(|| format!("peer:{}", self.source_peer));
        qualified(
            peer.as_deref().unwrap_or(&self.source_partition),
            &self.source_ns,
            &self.source_name,
        )
    }

    /// The destination as Consul's CLI prints it.
    pub fn destination_string(&self) -> String {
        qualified(
            &self.destination_partition,
            &self.destination_ns,
            &self.destination_name,
        )
    }

    /// `SRC => DST (allow)`, or the number of L7 permissions instead of the action, as
    /// Consul's `api.Intention.String`.
    pub fn summary(&self) -> String {
        let detail = match self.permissions.len() {
            0 => self.action.clone(),
            1 => "1 permission".to_owned(),
            n => format!("{n} permissions"),
        };
        format!(
            "{} => {} ({detail})",
            self.source_string(),
            self.destination_string()
        )
    }
}

fn qualified(partition: &str, namespace: &str, name: &str) -> String {
    let mut out = String::new();
    if !partition.is_empty() && partition != "default" {
        out.push_str(partition);
        out.push('/');
    }
    if !namespace.is_empty() && namespace != "default" {
        out.push_str(namespace);
        out.push('/');
    }
    out.push_str(name);
    out
}

/// Which side `GET /v1/connect/intentions/match` matches a name on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    Source,
    Destination,
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

    /// `GET /v1/connect/intentions`: every intention the token may read.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn intentions(&self, tenancy: &Tenancy<'_>) -> Result<Vec<Intention>, ClientError> {
        let list: Option<Vec<Intention>> = self.get_as(&tenancy.on("/v1/connect/intentions"))?;
        Ok(list.unwrap_or_default())
    }

    /// `GET /v1/connect/intentions/match?by=…&name=…`: the intentions that apply to `name`, in
    /// the order they are evaluated.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn intention_match(
        &self,
        by: MatchBy,
        name: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<Vec<Intention>, ClientError> {
        let by = match by {
            MatchBy::Source => "source",
            MatchBy::Destination => "destination",
        };
        let path = format!(
            "/v1/connect/intentions/match{}",
            tenancy.query_with(&[("by", by), ("name", name)])
        );
        let mut found: std::collections::BTreeMap<String, Option<Vec<Intention>>> =
            self.get_as(&path)?;
        Ok(found.remove(name).flatten().unwrap_or_default())
    }

    /// `GET /v1/connect/intentions/exact`: the intention `source => destination`; a missing one
    /// is [`ClientError::Http`] with status 404.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn intention_exact(
        &self,
        source: &str,
        destination: &str,
    ) -> Result<Intention, ClientError> {
        self.get_as(&exact(source, destination))
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
