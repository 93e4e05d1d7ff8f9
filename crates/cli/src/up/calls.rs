//! The calls `up` makes to the parts it started: Consul's HTTP API (blocking ureq) and the
//! platform's AWS APIs (the platform's signed client, on a current-thread runtime run from
//! `up`'s only thread, which must stay the one that started the children: a parent-death
//! signal follows the thread that forked).

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use lambda_platform::{Credentials, client::Client};
use serde_json::Value;

/// Consul's HTTP API at `addr`.
pub struct Consul {
    base: String,
    agent: ureq::Agent,
}

impl Consul {
    pub fn new(addr: &str) -> Consul {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        Consul {
            base: format!("http://{addr}"),
            agent,
        }
    }

    /// `(status, body)`; transport errors as `Err`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => match body {
                Some(b) => self
                    .agent
                    .put(&url)
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                None => self.agent.put(&url).send_empty(),
            },
        };
        let mut resp = resp.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }

    /// A call that must succeed.
    pub fn must(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<String> {
        let (status, text) = self.call(method, path, body)?;
        if status >= 300 {
            bail!("{method} {path}: HTTP {status}: {}", text.trim());
        }
        Ok(text)
    }

    pub fn get_json(&self, path: &str) -> Option<Value> {
        match self.call("GET", path, None) {
            Ok((200, text)) => serde_json::from_str(&text).ok(),
            _ => None,
        }
    }
}

/// The platform's APIs.
pub struct Aws {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The platform's region (in its ARNs).
    pub region: String,
}

pub const ACCOUNT: &str = "123456789012";

impl Aws {
    pub fn new(endpoint: &str, region: &str) -> anyhow::Result<Aws> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = Client::new(
            endpoint,
            Credentials {
                access_key: "test".into(),
                secret_key: "test".into(),
            },
            region,
        )?;
        Ok(Aws {
            rt,
            client,
            region: region.to_owned(),
        })
    }

    pub fn lambda(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.rt
            .block_on(self.client.lambda(method, path, body))
            .with_context(|| format!("Lambda {method} {path}"))
    }

    /// A Lambda call whose error is answered, not raised: `Ok(Err(message))`.
    pub fn lambda_answer(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        self.rt
            .block_on(self.client.lambda(method, path, body))
            .map_err(|e| e.to_string())
    }

    pub fn target(&self, service: &str, target: &str, body: &Value) -> anyhow::Result<Value> {
        self.rt
            .block_on(self.client.target(service, target, body))
            .with_context(|| target.to_owned())
    }

    /// Invokes synchronously: `(function error?, payload)`.
    pub fn invoke(&self, function: &str, payload: &Value) -> anyhow::Result<(bool, String)> {
        let resp = self
            .rt
            .block_on(self.client.invoke(
                function,
                Bytes::from(payload.to_string()),
                &[("content-type", "application/json")],
            ))
            .with_context(|| format!("invoke {function}"))?;
        if resp.status >= 300 {
            bail!(
                "invoke {function}: HTTP {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        Ok((
            resp.header("x-amz-function-error").is_some(),
            String::from_utf8_lossy(&resp.body).into_owned(),
        ))
    }

    /// Whether the platform answers at all.
    pub fn reachable(&self) -> bool {
        self.rt
            .block_on(self.client.lambda("GET", "/2015-03-31/functions/", None))
            .is_ok()
    }
}

pub fn function_arn(region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{name}")
}
