//! The typed responses of the functions service, with AWS's member names; the Lambda API
//! serializes them as they are, and CloudTrail's `responseElements` are made from them.
//!
//! Members are declared in the sorted order of their names: the platform has always answered
//! with sorted keys, and declaring them so keeps every body byte for byte what it was (checked
//! by the tests below). Must not depend on HTTP.

use std::collections::BTreeMap;

use serde::Serialize;

/// `{"Variables": {...}}`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EnvironmentResponse {
    pub variables: BTreeMap<String, String>,
}

/// A layer as a function configuration lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LayerResponse {
    pub arn: String,
    pub code_size: u64,
}

/// `EphemeralStorage` (always AWS's default 512 MB).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EphemeralStorage {
    pub size: u32,
}

/// `LoggingConfig`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LoggingConfig {
    pub log_format: &'static str,
    pub log_group: String,
}

/// `SnapStart` (never applied).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SnapStart {
    pub apply_on: &'static str,
    pub optimization_status: &'static str,
}

/// `TracingConfig`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TracingConfig {
    pub mode: &'static str,
}

/// `FunctionConfiguration`: CreateFunction, GetFunctionConfiguration, UpdateFunction*,
/// PublishVersion, and the items of ListFunctions / ListVersionsByFunction.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionConfiguration {
    pub architectures: Vec<String>,
    pub code_sha256: String,
    pub code_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResponse>,
    pub ephemeral_storage: EphemeralStorage,
    pub function_arn: String,
    pub function_name: String,
    pub handler: String,
    pub last_modified: String,
    pub last_update_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerResponse>>,
    pub logging_config: LoggingConfig,
    pub memory_size: u32,
    pub package_type: &'static str,
    pub revision_id: String,
    pub role: String,
    pub runtime: String,
    pub snap_start: SnapStart,
    pub state: &'static str,
    pub timeout: u32,
    pub tracing_config: TracingConfig,
    pub version: String,
}

/// `DeadLetterConfig` of a function configuration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeadLetterConfig {
    pub target_arn: String,
}

/// `DestinationConfig.OnSuccess` / `OnFailure` (`{}` when unset, as AWS answers).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// `DestinationConfig` of a `FunctionEventInvokeConfig`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DestinationConfig {
    pub on_failure: Destination,
    pub on_success: Destination,
}

/// Put/Get/UpdateFunctionEventInvokeConfig.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionEventInvokeConfig {
    pub destination_config: DestinationConfig,
    pub function_arn: String,
    /// A timestamp (seconds since the epoch), as this API's `LastModified` is on the wire.
    pub last_modified: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
}

/// ListFunctionEventInvokeConfigs.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListEventInvokeConfigsResponse {
    pub function_event_invoke_configs: Vec<FunctionEventInvokeConfig>,
}

/// `Code` of GetFunction.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CodeLocation {
    pub location: String,
    pub repository_type: &'static str,
}

/// A function's reserved concurrency (`{}` when it has none).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Concurrency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
}

/// GetFunction.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetFunctionResponse {
    pub code: CodeLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    pub configuration: FunctionConfiguration,
    pub tags: BTreeMap<String, String>,
}

/// ListFunctions.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListFunctionsResponse {
    pub functions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// ListVersionsByFunction.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListVersionsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub versions: Vec<FunctionConfiguration>,
}

/// `RoutingConfig` of an alias.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RoutingConfig {
    pub additional_version_weights: BTreeMap<String, f64>,
}

/// `AliasConfiguration`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AliasConfiguration {
    pub alias_arn: String,
    pub description: String,
    pub function_version: String,
    pub name: String,
    pub revision_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_config: Option<RoutingConfig>,
}

/// ListAliases.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListAliasesResponse {
    pub aliases: Vec<AliasConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// ListTags.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TagsResponse {
    pub tags: BTreeMap<String, String>,
}

/// `Content` of a layer version.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LayerContent {
    pub code_sha256: String,
    pub code_size: u64,
    pub location: String,
}

/// PublishLayerVersion, GetLayerVersion, and the items of ListLayerVersions.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LayerVersionResponse {
    pub compatible_architectures: Vec<String>,
    pub compatible_runtimes: Vec<String>,
    pub content: LayerContent,
    pub created_date: String,
    pub description: String,
    pub layer_arn: String,
    pub layer_version_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
    pub version: u64,
}

/// ListLayerVersions.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListLayerVersionsResponse {
    pub layer_versions: Vec<LayerVersionResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// An item of ListLayers.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LayerItem {
    pub latest_matching_version: LayerVersionResponse,
    pub layer_arn: String,
    pub layer_name: String,
}

/// ListLayers.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListLayersResponse {
    pub layers: Vec<LayerItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `AccountLimit` of GetAccountSettings.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountLimit {
    pub code_size_unzipped: u64,
    pub code_size_zipped: u64,
    pub concurrent_executions: u32,
    pub total_code_size: u64,
    pub unreserved_concurrent_executions: u32,
}

/// `AccountUsage` of GetAccountSettings.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountUsage {
    pub function_count: usize,
    pub total_code_size: u64,
}

/// GetAccountSettings.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountSettings {
    pub account_limit: AccountLimit,
    pub account_usage: AccountUsage,
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Serializing `value` directly gives the bytes its sorted-key JSON tree gives.
    pub(crate) fn assert_sorted<T: Serialize>(value: &T) {
        let direct = serde_json::to_string(value).unwrap();
        let tree = serde_json::to_string(&serde_json::to_value(value).unwrap()).unwrap();
        assert_eq!(direct, tree);
    }

    fn configuration() -> FunctionConfiguration {
        FunctionConfiguration {
            architectures: vec!["x86_64".into()],
            code_sha256: "c".into(),
            code_size: 1,
            dead_letter_config: Some(DeadLetterConfig {
                target_arn: "arn:aws:sqs:us-east-1:123456789012:dlq".into(),
            }),
            description: "d".into(),
            environment: Some(EnvironmentResponse {
                variables: [("B".to_owned(), "2".to_owned()), ("A".into(), "1".into())].into(),
            }),
            ephemeral_storage: EphemeralStorage { size: 512 },
            function_arn: "arn".into(),
            function_name: "f".into(),
            handler: "h".into(),
            last_modified: "t".into(),
            last_update_status: "Successful",
            layers: Some(vec![LayerResponse {
                arn: "l".into(),
                code_size: 2,
            }]),
            logging_config: LoggingConfig {
                log_format: "Text",
                log_group: "/aws/lambda/f".into(),
            },
            memory_size: 128,
            package_type: "Zip",
            revision_id: "r".into(),
            role: "role".into(),
            runtime: "python3.11".into(),
            snap_start: SnapStart {
                apply_on: "None",
                optimization_status: "Off",
            },
            state: "Active",
            timeout: 3,
            tracing_config: TracingConfig {
                mode: "PassThrough",
            },
            version: "$LATEST".into(),
        }
    }

    fn layer_version() -> LayerVersionResponse {
        LayerVersionResponse {
            compatible_architectures: vec![],
            compatible_runtimes: vec!["python3.11".into()],
            content: LayerContent {
                code_sha256: "c".into(),
                code_size: 1,
                location: "l".into(),
            },
            created_date: "t".into(),
            description: String::new(),
            layer_arn: "a".into(),
            layer_version_arn: "a:1".into(),
            license_info: Some("MIT".into()),
            version: 1,
        }
    }

    #[test]
    fn members_are_declared_in_sorted_order() {
        assert_sorted(&ListEventInvokeConfigsResponse {
            function_event_invoke_configs: vec![FunctionEventInvokeConfig {
                destination_config: DestinationConfig {
                    on_failure: Destination {
                        destination: Some("arn:aws:sqs:us-east-1:123456789012:q".into()),
                    },
                    on_success: Destination { destination: None },
                },
                function_arn: "arn".into(),
                last_modified: 1.5,
                maximum_event_age_in_seconds: Some(60),
                maximum_retry_attempts: Some(0),
            }],
        });
        assert_sorted(&GetFunctionResponse {
            code: CodeLocation {
                location: "l".into(),
                repository_type: "S3",
            },
            concurrency: Some(Concurrency {
                reserved_concurrent_executions: Some(1),
            }),
            configuration: configuration(),
            tags: [("k".to_owned(), "v".to_owned())].into(),
        });
        assert_sorted(&ListFunctionsResponse {
            functions: vec![configuration()],
            next_marker: Some("m".into()),
        });
        assert_sorted(&ListVersionsResponse {
            next_marker: Some("m".into()),
            versions: vec![configuration()],
        });
        assert_sorted(&ListAliasesResponse {
            aliases: vec![AliasConfiguration {
                alias_arn: "a".into(),
                description: "d".into(),
                function_version: "1".into(),
                name: "live".into(),
                revision_id: "r".into(),
                routing_config: Some(RoutingConfig {
                    additional_version_weights: [("2".to_owned(), 0.5)].into(),
                }),
            }],
            next_marker: Some("m".into()),
        });
        assert_sorted(&ListLayersResponse {
            layers: vec![LayerItem {
                latest_matching_version: layer_version(),
                layer_arn: "a".into(),
                layer_name: "n".into(),
            }],
            next_marker: Some("m".into()),
        });
        assert_sorted(&ListLayerVersionsResponse {
            layer_versions: vec![layer_version()],
            next_marker: Some("m".into()),
        });
        assert_sorted(&AccountSettings {
            account_limit: AccountLimit {
                code_size_unzipped: 1,
                code_size_zipped: 2,
                concurrent_executions: 3,
                total_code_size: 4,
                unreserved_concurrent_executions: 5,
            },
            account_usage: AccountUsage {
                function_count: 6,
                total_code_size: 7,
            },
        });
        assert_sorted(&TagsResponse {
            tags: [("k".to_owned(), "v".to_owned())].into(),
        });
    }
}
