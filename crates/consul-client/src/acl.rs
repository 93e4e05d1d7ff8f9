//! `/v1/acl/*`: bootstrapping the ACL system.

use serde::Deserialize;

use crate::{Client, ClientError, null_as_default};

/// The management token `PUT /v1/acl/bootstrap` answers with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub description: String,
    pub local: bool,
    pub create_time: String,
    #[serde(deserialize_with = "null_as_default")]
    pub policies: Vec<AclPolicyLink>,
}

/// A policy a token links to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AclPolicyLink {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
}

impl Client {
    /// `PUT /v1/acl/bootstrap`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn acl_bootstrap(&self) -> Result<AclToken, ClientError> {
        let answer = self.put("/v1/acl/bootstrap", None)?;
        self.decode("PUT", "/v1/acl/bootstrap", answer.body)
    }
}
