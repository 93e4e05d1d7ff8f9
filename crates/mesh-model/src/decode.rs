//! Decoding of outside JSON/HCL into the model's types, the way Consul decodes it.
//!
//! Consul accepts field names in any case and in snake_case (`payload_passthrough`, `Protocol`,
//! `protocol`) because it decodes with mapstructure after translating keys. We do the same with one
//! schema-independent pass: every object key that names a known field is rewritten to its canonical
//! Consul spelling, except inside user maps (`Meta`, `Arguments`, ...) whose keys are data. Then
//! serde decodes with `deny_unknown_fields`, so a misspelt field is a named error, not silently lost.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Error from decoding outside input. The message names the field or position that is wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid HCL: {0}")]
    Hcl(String),
    #[error("{0}")]
    Invalid(String),
}

/// Fields whose values are maps of user data: their keys are never rewritten (values still are,
/// where they hold structs, e.g. resolver subsets).
const USER_MAP_FIELDS: &[&str] = &[
    "Meta",
    "NodeMeta",
    "ServiceMeta",
    "Arguments",
    "Config",
    "TaggedAddresses",
    "Add",
    "Set",
    "Env",
    "Header",
    "Headers",
];

/// Fields whose values are maps from user names to structs: keys kept, values canonicalised.
const NAMED_STRUCT_MAP_FIELDS: &[&str] = &["Subsets", "Failover", "Checks_", "Weights_"];

/// Fields that hold lists. HCL writes a single repeated block (`upstreams { ... }`) as one object;
/// Consul's weak decoding accepts that as a one-element list, and so do we.
const LIST_FIELDS: &[&str] = &[
    "Upstreams",
    "Checks",
    "Sources",
    "Routes",
    "Splits",
    "Services",
    "Permissions",
    "Targets",
    "Header",
    "QueryParam",
    "EnvoyExtensions",
    "Policies",
    "Paths",
    "Datacenters",
    "Methods",
    "HashPolicies",
    "Tags",
];

/// Every field name the model knows, in Consul's canonical spelling. Lookup is by the key with
/// underscores and dashes removed, lowercased.
const CANONICAL_FIELDS: &[&str] = &[
    // generic
    "Kind",
    "Name",
    "Namespace",
    "Partition",
    "Meta",
    "ID",
    "Description",
    "CreateIndex",
    "ModifyIndex",
    "Datacenter",
    "Peer",
    "Protocol",
    "Mode",
    "Service",
    "Services",
    "Tags",
    "Address",
    "Port",
    "Weights",
    "Passing",
    "Warning",
    "EnableTagOverride",
    "Token",
    // catalog / agent
    "Node",
    "NodeMeta",
    "TaggedAddresses",
    "SkipNodeUpdate",
    "ServiceID",
    "CheckID",
    "Check",
    "Checks",
    "Status",
    "Notes",
    "Output",
    "TTL",
    "HTTP",
    "TCP",
    "Interval",
    "Timeout",
    "DeregisterCriticalServiceAfter",
    "ServiceName",
    "Connect",
    "SidecarService",
    "Native",
    "Proxy",
    "Upstreams",
    "DestinationName",
    "DestinationNamespace",
    "DestinationPartition",
    "DestinationPeer",
    "DestinationType",
    "LocalBindPort",
    "LocalBindAddress",
    "LocalBindSocketPath",
    "LocalBindSocketMode",
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "LocalServiceSocketPath",
    "MeshGateway",
    "Expose",
    "TransparentProxy",
    "Definition",
    "Method",
    "Body",
    "TLSSkipVerify",
    "GRPC",
    "GRPCUseTLS",
    "SocketPath",
    "Locality",
    "Region",
    "Zone",
    "ServiceTags",
    "ServicePort",
    "ServiceAddress",
    "ServiceMeta",
    "ServiceKind",
    "ServiceProxy",
    "ServiceWeights",
    "CentrallyConfigured",
    "Dev",
    // config entries
    "EnvoyExtensions",
    "Required",
    "Arguments",
    "ConsulVersion",
    "EnvoyVersion",
    "Config",
    "MutualTLSMode",
    "ExternalSNI",
    "UpstreamConfig",
    "Destination",
    "MaxInboundConnections",
    "LocalConnectTimeoutMs",
    "LocalRequestTimeoutMs",
    "BalanceInboundConnections",
    "RateLimits",
    "AccessLogs",
    "FailoverPolicy",
    "PrioritizeByLocality",
    "Routes",
    "Match",
    "PathExact",
    "PathPrefix",
    "PathRegex",
    "Header",
    "QueryParam",
    "Methods",
    "Present",
    "Exact",
    "Prefix",
    "Suffix",
    "Regex",
    "Invert",
    "IgnoreCase",
    "PrefixRewrite",
    "RequestTimeout",
    "IdleTimeout",
    "NumRetries",
    "RetryOnConnectFailure",
    "RetryOnStatusCodes",
    "RetryOn",
    "RequestHeaders",
    "ResponseHeaders",
    "Add",
    "Set",
    "Remove",
    "Splits",
    "Weight",
    "ServiceSubset",
    "DefaultSubset",
    "Subsets",
    "Filter",
    "OnlyPassing",
    "Redirect",
    "Failover",
    "Datacenters",
    "Targets",
    "ConnectTimeout",
    "LoadBalancer",
    "Policy",
    "RingHashConfig",
    "LeastRequestConfig",
    "HashPolicies",
    "CAFile",
    "CertFile",
    "KeyFile",
    "SNI",
    "DisableAutoHostRewrite",
    "Sources",
    "Action",
    "Permissions",
    "Precedence",
    "Type",
    "SamenessGroup",
    "LegacyID",
    "LegacyMeta",
    "LegacyCreateTime",
    "LegacyUpdateTime",
    "JWT",
    "AllowEnablingPermissiveMutualTLS",
    "ValidateClusters",
    "TLS",
    "Incoming",
    "Outgoing",
    "TLSMinVersion",
    "TLSMaxVersion",
    "CipherSuites",
    "SanitizeXForwardedClientCert",
    "Peering",
    "PeerThroughMeshGateways",
    "MeshDestinationsOnly",
    "OutboundListenerPort",
    "DialedDirectly",
    "Paths",
    "Checks",
    "ListenerPort",
    "LocalPathPort",
    "Path",
    "ParsedFromCheck",
    "Limits",
    "PassiveHealthCheck",
    "MaxConnections",
    "MaxPendingRequests",
    "MaxConcurrentRequests",
    "Overrides",
    "Defaults",
    "EnvoyListenerJSON",
    "EnvoyClusterJSON",
    "ConnectTimeoutMs",
    "Field",
    "FieldValue",
    "Terminal",
    "SourceIP",
    "CookieConfig",
    "Session",
    "TTL",
    "MinimumRingSize",
    "MaximumRingSize",
    "ChoiceCount",
    // config entries: nested objects kept verbatim but still canonicalised
    "Addresses",
    "Regions",
    "InstanceLevel",
    "RequestsPerSecond",
    "RequestsMaxBurst",
    "Providers",
    "VerifyClaims",
    // intentions (legacy API shape)
    "SourceNS",
    "SourceName",
    "DestinationNS",
    "SourcePartition",
    "SourcePeer",
    "SourceType",
    "SourceSamenessGroup",
    // ACL
    "AccessorID",
    "SecretID",
    "Policies",
    "Rules",
    "Local",
    "ExpirationTime",
    "ExpirationTTL",
    "CreateTime",
    "Hash",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
];

fn lookup_canonical(key: &str) -> Option<&'static str> {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    CANONICAL_FIELDS
        .iter()
        .copied()
        .find(|c| c.to_lowercase() == folded)
}

/// Rewrites object keys to their canonical Consul spelling (see the module docs). Keys of user maps
/// are left as they are. When two spellings of one field are both present, the error names both.
pub fn canonicalize(value: Value) -> Result<Value, DecodeError> {
    canonicalize_inner(value, KeyMode::Fields)
}

#[derive(Clone, Copy)]
enum KeyMode {
    /// Keys are field names: rewrite them.
    Fields,
    /// Keys are user data and values are plain data: leave the whole subtree alone.
    UserMap,
    /// Keys are user names, values are structs: keep keys, canonicalise values.
    NamedStructs,
}

fn canonicalize_inner(value: Value, mode: KeyMode) -> Result<Value, DecodeError> {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                let (new_key, child_mode) = match mode {
                    KeyMode::UserMap => (key, KeyMode::UserMap),
                    KeyMode::NamedStructs => (key, KeyMode::Fields),
                    KeyMode::Fields => {
                        let canon = lookup_canonical(&key)
                            .map(str::to_owned)
                            .unwrap_or(key.clone());
                        let child = if USER_MAP_FIELDS.contains(&canon.as_str()) {
                            KeyMode::UserMap
                        } else if NAMED_STRUCT_MAP_FIELDS.contains(&canon.as_str()) {
                            KeyMode::NamedStructs
                        } else {
                            KeyMode::Fields
                        };
                        if out.contains_key(&canon) {
                            return Err(DecodeError::Invalid(format!(
                                "field {canon:?} given twice (as {key:?} and another spelling)"
                            )));
                        }
                        (canon, child)
                    }
                };
                let v = match (child_mode, v) {
                    (KeyMode::UserMap, v) => v,
                    (m, Value::Object(obj)) if is_list_field(&new_key, mode) => {
                        canonicalize_inner(Value::Array(vec![Value::Object(obj)]), m)?
                    }
                    (m, v) => canonicalize_inner(v, m)?,
                };
                out.insert(new_key, v);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .into_iter()
            .map(|v| canonicalize_inner(v, mode))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

fn is_list_field(key: &str, parent: KeyMode) -> bool {
    matches!(parent, KeyMode::Fields) && LIST_FIELDS.contains(&key)
}

/// Decodes canonicalised JSON into `T`; an error names the field's path in Consul's spelling
/// (`Service.Port: invalid type: string "abc", expected i64`).
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    deserialize(canonicalize(value)?)
}

/// Decodes already canonical JSON into `T`, naming the failing field's path (`Splits[1].Weight:
/// ...`) in the message; the one place serde's errors get their path.
pub fn deserialize<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    deserialize_at("", value)
}

/// As [`deserialize`], for a value found at `prefix` in a larger document (`Services[1]`): the
/// error's path starts with it.
pub fn deserialize_at<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let full = match (prefix.is_empty(), path.is_empty()) {
            (_, true) => prefix.to_owned(),
            (true, false) => path,
            (false, false) => format!("{prefix}.{path}"),
        };
        let inner = e.into_inner().to_string();
        DecodeError::Invalid(if full.is_empty() {
            inner
        } else {
            format!("{full}: {inner}")
        })
    })
}

/// Parses JSON text (size limits are the caller's job) and decodes it like [`from_value`].
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    from_value(value)
}

/// Parses HCL text into a JSON value (blocks become objects; repeated blocks become arrays).
pub fn hcl_to_value(text: &str) -> Result<Value, DecodeError> {
    // hcl-rs slows down exponentially on deeply nested unclosed brackets (found by fuzzing);
    // real files nest far less than the guard allows.
    crate::config_entry::hcl1::check_nesting(text).map_err(DecodeError::Hcl)?;
    hcl::from_str::<Value>(text).map_err(|e| DecodeError::Hcl(e.to_string()))
}

/// Parses a document that is either JSON or HCL: JSON when it starts with `{` or `[`. HCL is
/// read as Consul's HCL 1 parser reads it: a document that is not valid HCL 2 is parsed again
/// with its HCL 1-only forms rewritten (one-line nested blocks such as `connect {
/// sidecar_service {} }`, blocks inside lists; see `config_entry::hcl1`), and if that fails
/// too the first error is reported, naming the document as written.
pub fn json_or_hcl_to_value(text: &str) -> Result<Value, DecodeError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| DecodeError::Json(e.to_string()))
    } else {
        hcl_to_value(text).or_else(|first| {
            hcl_to_value(&crate::config_entry::hcl1::to_hcl2(text)).map_err(|_| first)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_snake_and_camel_keys_but_not_user_maps() {
        let v = json!({
            "kind": "service-defaults",
            "name": "web",
            "envoy_extensions": [{"name": "builtin/aws/lambda", "arguments": {"arn": "x", "payloadPassthrough": true}}],
            "meta": {"some_key": "v", "kind": "user"},
            "subsets": {"v1": {"only_passing": true}}
        });
        let out = canonicalize(v).unwrap();
        assert_eq!(
            out,
            json!({
                "Kind": "service-defaults",
                "Name": "web",
                "EnvoyExtensions": [{"Name": "builtin/aws/lambda", "Arguments": {"arn": "x", "payloadPassthrough": true}}],
                "Meta": {"some_key": "v", "kind": "user"},
                "Subsets": {"v1": {"OnlyPassing": true}}
            })
        );
    }

    #[test]
    fn errors_name_the_path() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Svc {
            #[allow(dead_code)]
            port: i64,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "PascalCase", deny_unknown_fields)]
        struct Req {
            #[allow(dead_code)]
            service: Svc,
        }
        let err = from_value::<Req>(json!({"service": {"port": "abc"}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Service.Port: invalid type: string \"abc\", expected i64"
        );
        let err = from_value::<Req>(json!({"Service": {"Port": 1, "Prot": 2}})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Service.Prot: unknown field `Prot`"),
            "{err}"
        );
    }

    #[test]
    fn acronyms_are_recovered() {
        let out = canonicalize(
            json!({"http": {"path_exact": "/"}, "sni": "x", "ca_file": "f", "id": "1"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"HTTP": {"PathExact": "/"}, "SNI": "x", "CAFile": "f", "ID": "1"})
        );
    }

    #[test]
    fn duplicate_spellings_are_an_error() {
        let err = canonicalize(json!({"Name": "a", "name": "b"})).unwrap_err();
        assert!(err.to_string().contains("\"Name\" given twice"), "{err}");
    }

    #[test]
    fn single_hcl_block_becomes_a_list() {
        let v = hcl_to_value(
            r#"
service {
  name = "api"
  connect {
    sidecar_service {
      proxy {
        upstreams {
          local_bind_port  = 2345
          destination_name = "authentication"
        }
      }
    }
  }
}
"#,
        )
        .unwrap();
        let out = canonicalize(v).unwrap();
        assert_eq!(
            out["Service"]["Connect"]["SidecarService"]["Proxy"]["Upstreams"],
            json!([{"LocalBindPort": 2345, "DestinationName": "authentication"}])
        );
    }

    #[test]
    fn one_line_nested_blocks_read_as_consuls_hcl1() {
        let v = json_or_hcl_to_value(
            "service { name = \"web\" port = 8080 connect { sidecar_service {} } }\n",
        )
        .unwrap();
        let out = canonicalize(v).unwrap();
        assert_eq!(
            out,
            json!({"Service": {"Name": "web", "Port": 8080, "Connect": {"SidecarService": {}}}})
        );
        // A real syntax error still reports the document as written.
        let err = json_or_hcl_to_value("service {\n  name = \n}\n").unwrap_err();
        assert!(matches!(err, DecodeError::Hcl(_)), "{err}");
    }

    #[test]
    fn hcl_blocks_become_objects() {
        let v = hcl_to_value("Kind = \"service-defaults\"\nName = \"web\"\nMeta { a = \"b\" }\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"Kind": "service-defaults", "Name": "web", "Meta": {"a": "b"}})
        );
    }
}
