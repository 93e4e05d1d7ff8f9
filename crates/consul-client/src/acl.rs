//! `/v1/acl/*`: bootstrapping the ACL system, creating tokens and policies.

use serde::{Deserialize, Serialize};

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

/// A policy a token links to (by ID or by name when creating a token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AclPolicyLink {
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The body of `PUT /v1/acl/token` (what `consul acl token create` sends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewToken {
    #[serde(rename = "AccessorID", skip_serializing_if = "String::is_empty")]
    pub accessor_id: String,
    #[serde(rename = "SecretID", skip_serializing_if = "String::is_empty")]
    pub secret_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub local: bool,
    pub policies: Vec<AclPolicyLink>,
}

/// A policy as `PUT /v1/acl/policy` answers it, and the body it takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AclPolicy {
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub datacenters: Vec<String>,
    pub rules: String,
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

    /// `PUT /v1/acl/token`: creates a token; the server resolves policy names.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn acl_token_create(&self, token: &NewToken) -> Result<AclToken, ClientError> {
        let answer = self.put_json("/v1/acl/token", token)?;
        self.decode("PUT", "/v1/acl/token", answer.body)
    }

    /// `PUT /v1/acl/policy`: creates a policy.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn acl_policy_create(&self, policy: &AclPolicy) -> Result<AclPolicy, ClientError> {
        let answer = self.put_json("/v1/acl/policy", policy)?;
        self.decode("PUT", "/v1/acl/policy", answer.body)
    }
}
