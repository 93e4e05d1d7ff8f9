//! `terminating-gateway`: the services a terminating gateway fronts (Lambda functions among them).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::FieldResult;
use super::common::{check_meta, is_false};

/// `terminating-gateway`; `Name` is the gateway's service name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TerminatingGateway {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default)]
    pub services: Vec<LinkedService>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// One service linked to the gateway (`"*"` links every service of the namespace).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LinkedService {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    #[serde(rename = "CAFile", default, skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_file: String,
    #[serde(rename = "SNI", default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_auto_host_rewrite: bool,
}

impl LinkedService {
    /// The tenancy of the linked service: its own partition and namespace where given, the
    /// gateway's otherwise (Consul's defaulting).
    pub fn ent_meta_within(&self, gateway: &crate::EntMeta) -> crate::EntMeta {
        let or_gateway = |own: &'_ str, gw: &'_ str| -> String {
            if own.is_empty() { gw } else { own }.to_owned()
        };
        crate::EntMeta::new(
            Some(&or_gateway(&self.partition, &gateway.partition)),
            Some(&or_gateway(&self.namespace, &gateway.namespace)),
        )
    }
}

impl TerminatingGateway {
    pub(crate) fn check(&self) -> FieldResult {
        check_meta(&self.meta)?;
        let mut seen = BTreeSet::new();
        for (i, svc) in self.services.iter().enumerate() {
            let field = format!("Services[{i}]");
            if svc.name.is_empty() {
                return Err((format!("{field}.Name"), "is required".into()));
            }
            if svc.name != "*" {
                crate::names::validate_service_name("service name", &svc.name)
                    .map_err(|e| (format!("{field}.Name"), e.to_string()))?;
            }
            if svc.cert_file.is_empty() != svc.key_file.is_empty() {
                let (have, missing) = if svc.cert_file.is_empty() {
                    ("KeyFile", "CertFile")
                } else {
                    ("CertFile", "KeyFile")
                };
                return Err((
                    field,
                    format!(
                        "service {:?} must have a {missing} if a {have} is specified",
                        svc.name
                    ),
                ));
            }
            let ns = if svc.namespace.is_empty() {
                &self.namespace
            } else {
                &svc.namespace
            };
            let key = (svc.name.clone(), ns.clone(), svc.partition.clone());
            if !seen.insert(key) {
                return Err((
                    field,
                    format!(
                        "service {:?} was specified more than once within a namespace",
                        svc.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
