//! The typed requests of the functions service, with AWS's member names. The Lambda API decodes
//! them once from the body (and query) of a call; the service never sees JSON.
//!
//! Members are [`Member`]s: AWS's checks and their wording stay in the service (see
//! `crate::decode`). Must not depend on HTTP.

use serde::Deserialize;

use crate::decode::{Flag, Map, Member, Object, StrList, Text};

/// `Code` of CreateFunction, the body of UpdateFunctionCode, `Content` of PublishLayerVersion.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct CodeInput {
    /// Base64 zip.
    pub zip_file: Member<String>,
    /// Sent only to be refused (S3 code is not supported).
    pub s3_bucket: Flag,
    /// Sent only to be refused (images are not supported).
    pub image_uri: Flag,
}

/// `Environment` of CreateFunction / UpdateFunctionConfiguration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct EnvironmentInput {
    /// Values of other JSON types are kept as their JSON text.
    pub variables: Map<Text>,
}

/// CreateFunction.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct CreateFunctionRequest {
    pub function_name: Member<String>,
    pub role: Member<String>,
    pub runtime: Member<String>,
    pub handler: Member<String>,
    pub code: Member<Object<CodeInput>>,
    pub timeout: Member<i64>,
    pub memory_size: Member<i64>,
    pub environment: Member<Object<EnvironmentInput>>,
    pub layers: Member<Vec<Member<String>>>,
    pub tags: Map<Member<String>>,
    pub description: Member<String>,
    pub architectures: Member<StrList>,
    pub publish: Member<bool>,
    pub dead_letter_config: Member<Object<DeadLetterConfigInput>>,
}

/// `DeadLetterConfig` of CreateFunction / UpdateFunctionConfiguration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DeadLetterConfigInput {
    /// An SQS queue ARN; empty removes the dead-letter queue.
    pub target_arn: Member<String>,
}

/// UpdateFunctionConfiguration: only the members sent change.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct UpdateFunctionConfigurationRequest {
    pub role: Member<String>,
    pub runtime: Member<String>,
    pub handler: Member<String>,
    pub timeout: Member<i64>,
    pub memory_size: Member<i64>,
    pub environment: Member<Object<EnvironmentInput>>,
    pub layers: Member<Vec<Member<String>>>,
    pub description: Member<String>,
    pub revision_id: Member<String>,
    pub dead_letter_config: Member<Object<DeadLetterConfigInput>>,
}

/// `DestinationConfig.OnSuccess` / `OnFailure`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DestinationInput {
    pub destination: Member<String>,
}

/// `DestinationConfig` of an event invoke configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DestinationConfigInput {
    pub on_success: Member<Object<DestinationInput>>,
    pub on_failure: Member<Object<DestinationInput>>,
}

/// Put/UpdateFunctionEventInvokeConfig.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct EventInvokeConfigRequest {
    pub maximum_retry_attempts: Member<i64>,
    pub maximum_event_age_in_seconds: Member<i64>,
    pub destination_config: Member<Object<DestinationConfigInput>>,
}

/// UpdateFunctionCode.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct UpdateFunctionCodeRequest {
    #[serde(flatten)]
    pub code: CodeInput,
    pub publish: Member<bool>,
    pub revision_id: Member<String>,
}

/// PublishVersion.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PublishVersionRequest {
    pub description: Member<String>,
    pub revision_id: Member<String>,
    pub code_sha256: Member<String>,
}

/// `RoutingConfig` of an alias.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RoutingConfigInput {
    pub additional_version_weights: Map<Member<f64>>,
}

/// CreateAlias and UpdateAlias (`Name` only in CreateAlias, `RevisionId` only in UpdateAlias).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct AliasRequest {
    pub name: Member<String>,
    pub function_version: Member<String>,
    pub description: Member<String>,
    pub routing_config: Member<Object<RoutingConfigInput>>,
    pub revision_id: Member<String>,
}

/// TagResource.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TagResourceRequest {
    pub tags: Map<Member<String>>,
}

/// PutFunctionConcurrency.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PutConcurrencyRequest {
    pub reserved_concurrent_executions: Member<i64>,
}

/// PublishLayerVersion.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PublishLayerVersionRequest {
    pub content: Member<Object<CodeInput>>,
    pub description: Member<String>,
    pub compatible_runtimes: Member<StrList>,
    pub compatible_architectures: Member<StrList>,
    pub license_info: Member<String>,
}

/// `MaxItems` and `Marker` of a list operation, as sent (checked by the service in AWS's order).
#[derive(Clone, Debug, Default)]
pub(crate) struct PageQuery {
    pub max_items: Option<String>,
    pub marker: Option<String>,
}

/// ListFunctions.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListFunctionsQuery {
    pub page: PageQuery,
    /// `FunctionVersion` (only `ALL` is valid).
    pub function_version: Option<String>,
}

/// ListAliases.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListAliasesQuery {
    pub page: PageQuery,
    /// Only aliases of this version.
    pub function_version: Option<String>,
}
