//! `/v1/catalog/*`: the services and nodes the CLI lists, the services on one node the
//! registrator reconciles, and the registrator's register/deregister writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Client, ClientError, Tenancy, encode, null_as_default};

/// One row of `GET /v1/catalog/nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Node {
    pub node: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub address: String,
    pub datacenter: String,
    #[serde(deserialize_with = "null_as_default")]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, String>,
}

/// `GET /v1/catalog/node/<node>`: the services registered on it, by service ID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CatalogNode {
    #[serde(deserialize_with = "null_as_default")]
    pub services: BTreeMap<String, NodeService>,
}

/// A service instance on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NodeService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Deregistration<'a> {
    node: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
}

impl Client {
    /// `GET /v1/catalog/services`: service names and their tags.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn catalog_services(
        &self,
        tenancy: &Tenancy<'_>,
    ) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
        let services: Option<BTreeMap<String, Option<Vec<String>>>> =
            self.get_as(&tenancy.on("/v1/catalog/services"))?;
        Ok(services
            .unwrap_or_default()
            .into_iter()
            .map(|(name, tags)| (name, tags.unwrap_or_default()))
            .collect())
    }

    /// `GET /v1/catalog/nodes`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn catalog_nodes(&self) -> Result<Vec<Node>, ClientError> {
        self.catalog_nodes_filtered(&Tenancy::DEFAULT, None)
    }

    /// `GET /v1/catalog/nodes` in `tenancy`'s partition, with an optional `?filter`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn catalog_nodes_filtered(
        &self,
        tenancy: &Tenancy<'_>,
        filter: Option<&str>,
    ) -> Result<Vec<Node>, ClientError> {
        let extra: Vec<(&str, &str)> = filter.map(|f| ("filter", f)).into_iter().collect();
        let path = format!("/v1/catalog/nodes{}", tenancy.query_with(&extra));
        let nodes: Option<Vec<Node>> = self.get_as(&path)?;
        Ok(nodes.unwrap_or_default())
    }

    /// `GET /v1/catalog/node/<node>`; `None` when the node is not registered (Consul answers
    /// `null`).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn catalog_node(
        &self,
        node: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<Option<CatalogNode>, ClientError> {
        self.get_as(&tenancy.on(&format!("/v1/catalog/node/{}", encode(node))))
    }

    /// `PUT /v1/catalog/register` with `body` as the caller shaped it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn catalog_register<B: Serialize + ?Sized>(
        &self,
        body: &B,
        tenancy: &Tenancy<'_>,
    ) -> Result<(), ClientError> {
        self.put_json(&tenancy.on("/v1/catalog/register"), body)
            .map(drop)
    }

    /// `PUT /v1/catalog/deregister` of one service instance of `node`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn catalog_deregister(
        &self,
        node: &str,
        service_id: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<(), ClientError> {
        self.put_json(
            &tenancy.on("/v1/catalog/deregister"),
            &Deregistration { node, service_id },
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
    fn consuls_nulls_and_missing_members_read_as_empty() {
        let n: Option<CatalogNode> = serde_json::from_value(json!(null)).unwrap();
        assert_eq!(n, None);
        let n: CatalogNode = serde_json::from_value(json!({
            "Node": {"Node": "lambdas"},
            "Services": {"a": {"ID": "a", "Service": "a", "Tags": null, "Port": 0}},
        }))
        .unwrap();
        assert_eq!(n.services["a"].tags, Vec::<String>::new());
        let n: CatalogNode = serde_json::from_value(json!({"Services": null})).unwrap();
        assert!(n.services.is_empty());
        let row: Node = serde_json::from_value(json!({"Node": "n1", "ID": "x"})).unwrap();
        assert_eq!((row.node.as_str(), row.address.as_str()), ("n1", ""));
    }

    #[test]
    fn deregistration_body_is_node_and_service_id() {
        let body = serde_json::to_string(&Deregistration {
            node: "lambdas",
            service_id: "f",
        })
        .unwrap();
        assert_eq!(body, r#"{"Node":"lambdas","ServiceID":"f"}"#);
    }
}
