//! AWS access behind the small [`Aws`] trait (so tests can wrap it with faults), and its HTTP
//! implementation: requests built, signed and sent by `aws-wire` (ureq with rustls), credentials
//! from the environment or a shared-file profile (`aws_wire::credentials`), the standard
//! endpoints. The Lambda, tagging, SSM and SQS request bodies and answers the registrator uses,
//! and the retry class of each AWS error, are mapped here only.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use aws_wire::{
    Endpoint, JsonProtocol, Signer,
    blocking::{self, CallError},
    credentials::{self, CredentialsError},
    request::EndpointError,
    sigv4::uri_encode,
};
use serde_json::{Value, json};

use crate::{config::Tier, tags::Function, tags::TAG_ENABLED};

/// Why an AWS call failed, classified for retries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// Throttled (429, `ThrottlingException`, ...): back off and retry.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A transport error or a 5xx: retry.
    #[error("transient: {0}")]
    Transient(String),
    /// The resource does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other answer: retrying will not help.
    #[error("{0}")]
    Failed(String),
}

impl AwsError {
    /// Whether a retry may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, AwsError::Throttled(_) | AwsError::Transient(_))
    }
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// An SQS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub receipt: String,
    pub body: String,
}

/// What the registrator needs from AWS.
pub trait Aws: Send + Sync + 'static {
    /// `tagging:GetResources` of Lambda functions carrying the enabled tag, 100 per page.
    fn get_resources(
        &self,
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<Function>, AwsError>> + Send;
    /// `lambda:ListFunctions` (`(arn, name)` pairs).
    fn list_functions(
        &self,
        marker: Option<String>,
        max_items: u32,
    ) -> impl Future<Output = Result<Page<(String, String)>, AwsError>> + Send;
    /// `lambda:ListTags` of a function ARN.
    fn list_tags(
        &self,
        arn: String,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, AwsError>> + Send;
    /// `lambda:GetFunction` (`None` when it does not exist). Tags come from `ListTags` when
    /// `GetFunction` omits them (it does without `lambda:ListTags` permission: PR #100).
    fn get_function(
        &self,
        name: String,
    ) -> impl Future<Output = Result<Option<Function>, AwsError>> + Send;
    /// `ssm:GetParameter` with decryption (`None` when missing).
    fn get_parameter(
        &self,
        name: String,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// `ssm:GetParametersByPath`, recursive, decrypted (`(name, value)` pairs).
    fn parameters_by_path(
        &self,
        path: String,
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<(String, String)>, AwsError>> + Send;
    /// `ssm:PutParameter` as a SecureString, overwriting.
    fn put_parameter(
        &self,
        name: String,
        value: String,
        tier: Option<Tier>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// `ssm:DeleteParameter` (a missing parameter is success).
    fn delete_parameter(&self, name: String) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// `sqs:ReceiveMessage` with long polling.
    fn receive_messages(
        &self,
        queue_url: String,
        wait_secs: u32,
    ) -> impl Future<Output = Result<Vec<Message>, AwsError>> + Send;
    /// `sqs:DeleteMessage`.
    fn delete_message(
        &self,
        queue_url: String,
        receipt: String,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Errors building the HTTP client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AwsSetupError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

struct Inner {
    agent: ureq::Agent,
    signer: Signer,
    lambda: Endpoint,
    ssm: Endpoint,
    tagging: Endpoint,
    sqs: Endpoint,
}

/// The real AWS (or any AWS-compatible endpoint) over HTTP(S).
#[derive(Clone)]
pub struct HttpAws {
    inner: Arc<Inner>,
}

impl HttpAws {
    /// Builds the client from the environment: credentials as `aws_wire::credentials::from_vars`
    /// finds them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, else a
    /// profile's static keys), `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` (`LAMBDA`,
    /// `SSM`, `RESOURCE_GROUPS_TAGGING_API`, `SQS`); without an endpoint, AWS's public HTTPS
    /// endpoint.
    ///
    /// # Errors
    /// Missing or unusable credentials, or a malformed endpoint URL.
    pub fn from_vars(vars: &BTreeMap<String, String>, region: &str) -> Result<Self, AwsSetupError> {
        let found = credentials::from_vars(vars)?;
        if let Some(profile) = &found.profile {
            tracing::info!(%profile, "AWS credentials from the shared files");
        }
        let endpoint =
            |service_id: &str, host: &str| Endpoint::from_vars(vars, service_id, host, region);
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .max_idle_connections_per_host(64)
                .build(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                agent,
                signer: Signer::new(found.credentials, found.session_token, region),
                lambda: endpoint("LAMBDA", "lambda")?,
                ssm: endpoint("SSM", "ssm")?,
                tagging: endpoint("RESOURCE_GROUPS_TAGGING_API", "tagging")?,
                sqs: endpoint("SQS", "sqs")?,
            }),
        })
    }

    async fn call(&self, call: Call) -> Result<Value, AwsError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.call(call))
            .await
            .map_err(|e| AwsError::Transient(format!("worker: {e}")))?
    }

    async fn lambda_get(&self, path_and_query: String) -> Result<Value, AwsError> {
        self.call(Call::LambdaGet { path_and_query }).await
    }

    async fn json(&self, svc: Svc, target: &'static str, body: Value) -> Result<Value, AwsError> {
        self.call(Call::Json { svc, target, body }).await
    }
}

/// The JSON-protocol services the registrator calls.
#[derive(Clone, Copy, Debug)]
enum Svc {
    Ssm,
    Tagging,
    Sqs,
}

/// One AWS call.
enum Call {
    /// A Lambda REST `GET` (`path_and_query` already encoded).
    LambdaGet { path_and_query: String },
    /// A JSON-protocol call.
    Json {
        svc: Svc,
        target: &'static str,
        body: Value,
    },
}

impl Inner {
    fn call(&self, call: Call) -> Result<Value, AwsError> {
        let now = time::OffsetDateTime::now_utc();
        let request = match call {
            Call::LambdaGet { path_and_query } => self.signer.request(
                &self.lambda,
                "lambda",
                "GET",
                &path_and_query,
                &[("content-type", "application/json")],
                Vec::new(),
                now,
            ),
            Call::Json { svc, target, body } => {
                let (endpoint, service, protocol) = match svc {
                    Svc::Ssm => (&self.ssm, "ssm", JsonProtocol::V1_1),
                    Svc::Tagging => (&self.tagging, "tagging", JsonProtocol::V1_1),
                    Svc::Sqs => (&self.sqs, "sqs", JsonProtocol::V1_0),
                };
                let body = body.to_string().into_bytes();
                self.signer
                    .json_request(endpoint, service, protocol, target, body, now)
            }
        }
        .map_err(|e| AwsError::Failed(format!("request: {e}")))?;
        let answer = blocking::send(&self.agent, request).map_err(|e| match e {
            CallError::Transport { .. } => AwsError::Transient(e.to_string()),
            CallError::Answer(a) => classify(a.status, &a.code, &a.message),
        })?;
        // A success is JSON; anything else is kept as text for the error that follows.
        let text = String::from_utf8_lossy(&answer);
        Ok(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
        })
    }
}

/// Maps an AWS error answer to an [`AwsError`].
pub fn classify(status: u16, code: &str, message: &str) -> AwsError {
    let text = format!("{code} ({status}): {message}");
    const THROTTLES: &[&str] = &[
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ThrottledException",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
    ];
    if status == 429 || THROTTLES.contains(&code) {
        AwsError::Throttled(text)
    } else if status >= 500 {
        AwsError::Transient(text)
    } else if code == "ResourceNotFoundException"
        || code == "ParameterNotFound"
        || code.ends_with("NonExistentQueue")
    {
        AwsError::NotFound(text)
    } else {
        AwsError::Failed(text)
    }
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn tag_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The function name of an ARN (`...:function:NAME`).
fn name_of(arn: &str) -> String {
    crate::tags::function_name(arn).to_owned()
}

impl Aws for HttpAws {
    async fn get_resources(&self, token: Option<String>) -> Result<Page<Function>, AwsError> {
        let mut body = json!({
            "TagFilters": [{"Key": TAG_ENABLED}],
            "ResourceTypeFilters": ["lambda:function"],
            "ResourcesPerPage": 100,
        });
        if let Some(t) = token {
            body["PaginationToken"] = json!(t);
        }
        let v = self
            .json(
                Svc::Tagging,
                "ResourceGroupsTaggingAPI_20170126.GetResources",
                body,
            )
            .await?;
        let items = v
            .get("ResourceTagMappingList")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|r| {
                        let arn = str_of(r, "ResourceARN")?;
                        let tags = r
                            .get("Tags")
                            .and_then(Value::as_array)
                            .map(|t| {
                                t.iter()
                                    .filter_map(|t| {
                                        Some((
                                            str_of(t, "Key")?,
                                            t.get("Value")?.as_str()?.to_owned(),
                                        ))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        // Only functions: the tagging API also lists other Lambda resources.
                        arn.contains(":function:").then(|| Function {
                            name: name_of(&arn),
                            arn,
                            tags,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Page {
            items,
            next: str_of(&v, "PaginationToken"),
        })
    }

    async fn list_functions(
        &self,
        marker: Option<String>,
        max_items: u32,
    ) -> Result<Page<(String, String)>, AwsError> {
        let mut path = format!("/2015-03-31/functions/?MaxItems={max_items}");
        if let Some(m) = marker {
            path.push_str(&format!("&Marker={}", uri_encode(&m, true)));
        }
        let v = self.lambda_get(path).await?;
        let items = v
            .get("Functions")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|f| Some((str_of(f, "FunctionArn")?, str_of(f, "FunctionName")?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Page {
            items,
            next: str_of(&v, "NextMarker"),
        })
    }

    async fn list_tags(&self, arn: String) -> Result<BTreeMap<String, String>, AwsError> {
        let v = self
            .lambda_get(format!("/2017-03-31/tags/{}", uri_encode(&arn, true)))
            .await?;
        Ok(tag_map(v.get("Tags")))
    }

    async fn get_function(&self, name: String) -> Result<Option<Function>, AwsError> {
        let v = match self
            .lambda_get(format!("/2015-03-31/functions/{}", uri_encode(&name, true)))
            .await
        {
            Ok(v) => v,
            Err(AwsError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let c = v.get("Configuration").unwrap_or(&Value::Null);
        let arn = str_of(c, "FunctionArn")
            .map(|a| crate::tags::unqualified(&a))
            .ok_or_else(|| AwsError::Failed("GetFunction answer has no FunctionArn".into()))?;
        let name = str_of(c, "FunctionName").unwrap_or_else(|| name_of(&arn));
        let tags = match v.get("Tags") {
            Some(t) => tag_map(Some(t)),
            None => self.list_tags(arn.clone()).await?,
        };
        Ok(Some(Function { arn, name, tags }))
    }

    async fn get_parameter(&self, name: String) -> Result<Option<String>, AwsError> {
        match self
            .json(
                Svc::Ssm,
                "AmazonSSM.GetParameter",
                json!({"Name": name, "WithDecryption": true}),
            )
            .await
        {
            Ok(v) => Ok(v.get("Parameter").and_then(|p| str_of(p, "Value"))),
            Err(AwsError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn parameters_by_path(
        &self,
        path: String,
        token: Option<String>,
    ) -> Result<Page<(String, String)>, AwsError> {
        let mut body =
            json!({"Path": path, "Recursive": true, "WithDecryption": true, "MaxResults": 10});
        if let Some(t) = token {
            body["NextToken"] = json!(t);
        }
        let v = self
            .json(Svc::Ssm, "AmazonSSM.GetParametersByPath", body)
            .await?;
        let items = v
            .get("Parameters")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|p| {
                        Some((str_of(p, "Name")?, str_of(p, "Value").unwrap_or_default()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Page {
            items,
            next: str_of(&v, "NextToken"),
        })
    }

    async fn put_parameter(
        &self,
        name: String,
        value: String,
        tier: Option<Tier>,
    ) -> Result<(), AwsError> {
        let mut body =
            json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true});
        if let Some(t) = tier {
            body["Tier"] = json!(t.as_str());
        }
        self.json(Svc::Ssm, "AmazonSSM.PutParameter", body)
            .await
            .map(drop)
    }

    async fn delete_parameter(&self, name: String) -> Result<(), AwsError> {
        match self
            .json(Svc::Ssm, "AmazonSSM.DeleteParameter", json!({"Name": name}))
            .await
        {
            Ok(_) | Err(AwsError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn receive_messages(
        &self,
        queue_url: String,
        wait_secs: u32,
    ) -> Result<Vec<Message>, AwsError> {
        let v = self
            .json(
                Svc::Sqs,
                "AmazonSQS.ReceiveMessage",
                json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_secs}),
            )
            .await?;
        Ok(v.get("Messages")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|m| {
                        Some(Message {
                            receipt: str_of(m, "ReceiptHandle")?,
                            body: str_of(m, "Body").unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_message(&self, queue_url: String, receipt: String) -> Result<(), AwsError> {
        self.json(
            Svc::Sqs,
            "AmazonSQS.DeleteMessage",
            json!({"QueueUrl": queue_url, "ReceiptHandle": receipt}),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            classify(429, "TooManyRequestsException", ""),
            AwsError::Throttled(_)
        ));
        assert!(matches!(
            classify(400, "ThrottlingException", ""),
            AwsError::Throttled(_)
        ));
        assert!(matches!(
            classify(503, "ServiceUnavailable", ""),
            AwsError::Transient(_)
        ));
        assert!(matches!(
            classify(404, "ResourceNotFoundException", ""),
            AwsError::NotFound(_)
        ));
        assert!(matches!(
            classify(400, "ParameterNotFound", ""),
            AwsError::NotFound(_)
        ));
        assert!(
            matches!(classify(403, "AccessDeniedException", "no"), AwsError::Failed(m) if m.contains("AccessDenied"))
        );
    }

    #[test]
    fn a_profile_is_used_when_the_environment_has_no_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[ci]\naws_access_key_id = P\naws_secret_access_key = PS\naws_session_token = PT\n",
        )
        .unwrap();
        let mut v: BTreeMap<String, String> = [
            ("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string()),
            ("AWS_PROFILE", "ci".to_owned()),
            ("HOME", dir.path().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let a = HttpAws::from_vars(&v, "us-east-1").unwrap();
        assert_eq!(a.inner.signer.credentials().access_key, "P");
        assert_eq!(a.inner.signer.credentials().secret_key, "PS");
        assert_eq!(a.inner.signer.session_token(), Some("PT"));
        // Keys in the environment win, with the environment's (absent) session token.
        v.insert("AWS_ACCESS_KEY_ID".into(), "E".into());
        v.insert("AWS_SECRET_ACCESS_KEY".into(), "ES".into());
        let a = HttpAws::from_vars(&v, "us-east-1").unwrap();
        assert_eq!(a.inner.signer.credentials().access_key, "E");
        assert_eq!(a.inner.signer.session_token(), None);
        v.remove("AWS_ACCESS_KEY_ID");
        v.remove("AWS_SECRET_ACCESS_KEY");
        v.insert("AWS_PROFILE".into(), "nope".into());
        assert!(matches!(
            HttpAws::from_vars(&v, "us-east-1"),
            Err(AwsSetupError::Credentials(CredentialsError::Profile(
                aws_wire::profile::ProfileError::NotFound { .. }
            )))
        ));
    }

    #[test]
    fn endpoints_and_credentials() {
        let mut v = BTreeMap::new();
        assert_eq!(
            HttpAws::from_vars(&v, "us-east-1").err(),
            Some(AwsSetupError::Credentials(CredentialsError::NoCredentials))
        );
        v.insert("AWS_ACCESS_KEY_ID".into(), "a".into());
        assert_eq!(
            HttpAws::from_vars(&v, "us-east-1")
                .err()
                .map(|e| e.to_string()),
            Some("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into())
        );
        v.insert("AWS_SECRET_ACCESS_KEY".into(), "s".into());
        v.insert("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9/".into());
        v.insert(
            "AWS_ENDPOINT_URL_SSM".into(),
            "https://ssm.example:443".into(),
        );
        let a = HttpAws::from_vars(&v, "eu-west-1").unwrap();
        assert_eq!(a.inner.lambda.authority(), "127.0.0.1:9");
        assert_eq!(a.inner.ssm.base(), "https://ssm.example:443");
        v.remove("AWS_ENDPOINT_URL");
        let a = HttpAws::from_vars(&v, "eu-west-1").unwrap();
        assert_eq!(
            a.inner.tagging.base(),
            "https://tagging.eu-west-1.amazonaws.com"
        );
        v.insert("AWS_ENDPOINT_URL".into(), "ftp://x".into());
        assert!(matches!(
            HttpAws::from_vars(&v, "r"),
            Err(AwsSetupError::Endpoint(_))
        ));
    }
}
