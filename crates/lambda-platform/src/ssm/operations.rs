//! The `AmazonSSM.*` operations Parameter Store serves, as typed requests decoded once from
//! `X-Amz-Target` and the body, and their typed answers (members in sorted order, as the
//! platform has always answered).
//!
//! Must not depend on HTTP or on the store's state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    decode::{self, Member, Object, StrList},
    wire::ApiError,
};

/// One `AmazonSSM.*` call.
#[derive(Debug)]
pub(crate) enum SsmRequest {
    PutParameter(PutParameterRequest),
    GetParameter(GetParameterRequest),
    GetParameters(NamesRequest),
    GetParametersByPath(GetParametersByPathRequest),
    DeleteParameter(NameRequest),
    DeleteParameters(NamesRequest),
    DescribeParameters(DescribeParametersRequest),
    GetParameterHistory(GetParameterHistoryRequest),
}

impl SsmRequest {
    /// Decodes operation `op` (the part of `X-Amz-Target` after the dot) from its body.
    ///
    /// # Errors
    /// `InvalidAction` for an operation Parameter Store does not serve,
    /// `SerializationException` for a body that is not an object.
    pub(crate) fn decode(op: &str, body: &Value) -> Result<Self, ApiError> {
        fn typed<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
            decode::from_object(body).map_err(|_| ApiError::not_a_structure())
        }
        Ok(match op {
            "PutParameter" => Self::PutParameter(typed(body)?),
            "GetParameter" => Self::GetParameter(typed(body)?),
            "GetParameters" => Self::GetParameters(typed(body)?),
            "GetParametersByPath" => Self::GetParametersByPath(typed(body)?),
            "DeleteParameter" => Self::DeleteParameter(typed(body)?),
            "DeleteParameters" => Self::DeleteParameters(typed(body)?),
            "DescribeParameters" => Self::DescribeParameters(typed(body)?),
            "GetParameterHistory" => Self::GetParameterHistory(typed(body)?),
            _ => {
                return Err(ApiError::new(
                    400,
                    "InvalidAction",
                    format!("The action {op} is not valid for this endpoint."),
                ));
            }
        })
    }
}

/// PutParameter.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PutParameterRequest {
    pub name: Member<String>,
    pub value: Member<String>,
    #[serde(rename = "Type")]
    pub kind: Member<String>,
    pub overwrite: Member<bool>,
    pub tier: Member<String>,
    pub description: Member<String>,
    pub key_id: Member<String>,
    pub data_type: Member<String>,
}

/// GetParameter (`Name` may end in a `:version` selector).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct GetParameterRequest {
    pub name: Member<String>,
    pub with_decryption: Member<bool>,
}

/// GetParameters, DeleteParameters.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct NamesRequest {
    pub names: Member<StrList>,
    pub with_decryption: Member<bool>,
}

/// DeleteParameter.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct NameRequest {
    pub name: Member<String>,
}

/// GetParametersByPath.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct GetParametersByPathRequest {
    pub path: Member<String>,
    pub recursive: Member<bool>,
    pub with_decryption: Member<bool>,
    pub max_results: Member<i64>,
    pub next_token: Member<String>,
}

/// A filter of DescribeParameters (one that is not an object has no members).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct FilterInput {
    pub key: Member<String>,
    pub option: Member<String>,
    pub values: Member<StrList>,
}

/// DescribeParameters.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DescribeParametersRequest {
    pub max_results: Member<i64>,
    pub next_token: Member<String>,
    pub parameter_filters: Member<Vec<Member<Object<FilterInput>>>>,
}

/// GetParameterHistory.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct GetParameterHistoryRequest {
    pub name: Member<String>,
    pub with_decryption: Member<bool>,
    pub max_results: Member<i64>,
    pub next_token: Member<String>,
}

/// The answer of any `AmazonSSM.*` call.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum SsmResponse {
    Put(PutParameterResponse),
    Get(GetParameterResponse),
    GetMany(GetParametersResponse),
    Values(ParametersPage),
    Metadata(MetadataPage),
    Deleted(DeleteParametersResponse),
    Empty(Empty),
}

/// `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// PutParameter.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutParameterResponse {
    pub tier: &'static str,
    pub version: u64,
}

/// A parameter with its value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ParameterResponse {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub data_type: String,
    pub last_modified_date: f64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    pub value: String,
    pub version: u64,
}

/// GetParameter.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetParameterResponse {
    pub parameter: ParameterResponse,
}

/// GetParameters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetParametersResponse {
    pub invalid_parameters: Vec<String>,
    pub parameters: Vec<ParameterResponse>,
}

/// GetParametersByPath.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ParametersPage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub parameters: Vec<ParameterResponse>,
}

/// A parameter's metadata (DescribeParameters), with its value and labels in
/// GetParameterHistory.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ParameterMetadata {
    #[serde(rename = "ARN")]
    pub arn: String,
    pub data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    pub last_modified_date: f64,
    pub last_modified_user: String,
    pub name: String,
    pub policies: Vec<String>,
    pub tier: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub version: u64,
}

/// DescribeParameters, GetParameterHistory.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MetadataPage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    pub parameters: Vec<ParameterMetadata>,
}

/// DeleteParameters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeleteParametersResponse {
    pub deleted_parameters: Vec<String>,
    pub invalid_parameters: Vec<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::functions::responses::tests::assert_sorted;

    #[test]
    fn operations_decode_from_target_and_body() {
        match SsmRequest::decode(
            "PutParameter",
            &json!({"Name": "/a", "Type": 1, "Overwrite": true}),
        )
        .unwrap()
        {
            SsmRequest::PutParameter(p) => {
                assert_eq!(p.name.as_deref(), Some("/a"));
                assert_eq!(p.kind, Member::Invalid);
                assert_eq!(p.overwrite.get(), Some(&true));
            }
            other => panic!("{other:?}"),
        }
        let e = SsmRequest::decode("Nope", &json!({})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                "InvalidAction",
                "The action Nope is not valid for this endpoint."
            )
        );
    }

    #[test]
    fn answers_keep_sorted_members() {
        let parameter = || ParameterResponse {
            arn: "a".into(),
            data_type: "text".into(),
            last_modified_date: 1.5,
            name: "/n".into(),
            selector: Some(":1".into()),
            kind: "String".into(),
            value: "v".into(),
            version: 1,
        };
        assert_sorted(&GetParameterResponse {
            parameter: parameter(),
        });
        assert_sorted(&GetParametersResponse {
            invalid_parameters: vec!["x".into()],
            parameters: vec![parameter()],
        });
        assert_sorted(&ParametersPage {
            next_token: Some("t".into()),
            parameters: vec![parameter()],
        });
        assert_sorted(&MetadataPage {
            next_token: Some("t".into()),
            parameters: vec![ParameterMetadata {
                arn: "a".into(),
                data_type: "text".into(),
                description: Some("d".into()),
                key_id: Some("k".into()),
                labels: Some(vec![]),
                last_modified_date: 1.0,
                last_modified_user: "u".into(),
                name: "/n".into(),
                policies: vec![],
                tier: "Standard".into(),
                kind: "SecureString".into(),
                value: Some("v".into()),
                version: 2,
            }],
        });
        assert_sorted(&PutParameterResponse {
            tier: "Standard",
            version: 1,
        });
        assert_sorted(&DeleteParametersResponse {
            deleted_parameters: vec!["a".into()],
            invalid_parameters: vec!["b".into()],
        });
    }
}
