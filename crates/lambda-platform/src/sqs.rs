//! A minimal SQS (JSON protocol, `AmazonSQS.*`): standard queues in memory with visibility
//! timeouts and long polling, and EventBridge rule targets. Enough for a consumer fed by
//! EventBridge (the registrator's daemon); queues and messages do not survive a restart.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::wire::ApiError;

const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
const MAX_WAIT_SECS: u64 = 20;
const MAX_BODY: usize = 262_144;

#[derive(Clone, Debug)]
struct Msg {
    id: String,
    body: String,
    receives: u64,
}

#[derive(Debug, Default)]
struct Queue {
    visibility: Duration,
    ready: VecDeque<Msg>,
    /// Received, not yet deleted: receipt handle → (message, visible again at).
    inflight: BTreeMap<String, (Msg, Instant)>,
}

impl Queue {
    /// Messages whose visibility timeout passed become receivable again.
    fn expire(&mut self, now: Instant) {
        let due: Vec<String> = self
            .inflight
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for r in due {
            if let Some((m, _)) = self.inflight.remove(&r) {
                self.ready.push_back(m);
            }
        }
    }
}

/// The queues of the platform's account.
pub(crate) struct Queues {
    region: String,
    account: String,
    queues: Mutex<BTreeMap<String, Queue>>,
    notify: Notify,
}

fn missing_queue() -> ApiError {
    ApiError::new(
        400,
        "QueueDoesNotExist",
        "The specified queue does not exist.",
    )
}

fn required<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                400,
                "MissingParameter",
                format!("The request must contain the parameter {field}."),
            )
        })
}

/// The queue name of a queue URL (`http://host/<account>/<name>`).
fn name_of_url(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Queues {
    pub(crate) fn new(region: &str, account: &str) -> Self {
        Self {
            region: region.to_owned(),
            account: account.to_owned(),
            queues: Mutex::new(BTreeMap::new()),
            notify: Notify::new(),
        }
    }

    /// Delivers an event to the queue named by an `arn:aws:sqs:<region>:<account>:<name>` target.
    pub(crate) fn send_to_arn(&self, arn: &str, body: String) -> Result<(), ApiError> {
        let name = arn.rsplit(':').next().unwrap_or_default();
        self.send(name, body).map(drop)
    }

    fn send(&self, name: &str, body: String) -> Result<String, ApiError> {
        let id = crate::new_uuid().to_string();
        let mut qs = self.queues.lock();
        let q = qs.get_mut(name).ok_or_else(missing_queue)?;
        q.ready.push_back(Msg {
            id: id.clone(),
            body,
            receives: 0,
        });
        drop(qs);
        self.notify.notify_waiters();
        Ok(id)
    }

    fn url(&self, host: &str, name: &str) -> String {
        format!("http://{host}/{}/{name}", self.account)
    }

    /// Runs one `AmazonSQS.*` operation; `host` is the request's Host (queue URLs use it).
    pub(crate) async fn call(&self, op: &str, body: &Value, host: &str) -> Result<Value, ApiError> {
        match op {
            "CreateQueue" => {
                let name = required(body, "QueueName")?;
                if !valid_name(name) {
                    return Err(ApiError::new(
                        400,
                        "InvalidParameterValue",
                        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
                    ));
                }
                let visibility = body
                    .get("Attributes")
                    .and_then(|a| a.get("VisibilityTimeout"))
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .map_or(DEFAULT_VISIBILITY, Duration::from_secs);
                self.queues
                    .lock()
                    .entry(name.to_owned())
                    .or_insert_with(|| Queue {
                        visibility,
                        ..Queue::default()
                    });
                Ok(json!({"QueueUrl": self.url(host, name)}))
            }
            "GetQueueUrl" => {
                let name = required(body, "QueueName")?;
                if !self.queues.lock().contains_key(name) {
                    return Err(missing_queue());
                }
                Ok(json!({"QueueUrl": self.url(host, name)}))
            }
            "DeleteQueue" => {
                let name = name_of_url(required(body, "QueueUrl")?);
                self.queues.lock().remove(name).ok_or_else(missing_queue)?;
                Ok(json!({}))
            }
            "GetQueueAttributes" => {
                let name = name_of_url(required(body, "QueueUrl")?).to_owned();
                let mut qs = self.queues.lock();
                let q = qs.get_mut(&name).ok_or_else(missing_queue)?;
                q.expire(Instant::now());
                Ok(json!({"Attributes": {
                    "QueueArn": format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account),
                    "ApproximateNumberOfMessages": q.ready.len().to_string(),
                    "ApproximateNumberOfMessagesNotVisible": q.inflight.len().to_string(),
                    "VisibilityTimeout": q.visibility.as_secs().to_string(),
                }}))
            }
            "SendMessage" => {
                let name = name_of_url(required(body, "QueueUrl")?);
                let text = required(body, "MessageBody")?;
                if text.len() > MAX_BODY {
                    return Err(ApiError::new(
                        400,
                        "InvalidParameterValue",
                        "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
                    ));
                }
                let id = self.send(name, text.to_owned())?;
                Ok(json!({"MessageId": id}))
            }
            "ReceiveMessage" => self.receive(body).await,
            "DeleteMessage" => {
                let name = name_of_url(required(body, "QueueUrl")?);
                let receipt = required(body, "ReceiptHandle")?;
                let mut qs = self.queues.lock();
                let q = qs.get_mut(name).ok_or_else(missing_queue)?;
                // Deleting an expired or unknown receipt succeeds, as on AWS.
                q.inflight.remove(receipt);
                Ok(json!({}))
            }
            _ => Err(ApiError::new(400, "UnknownOperationException", "")),
        }
    }

    async fn receive(&self, body: &Value) -> Result<Value, ApiError> {
        let name = name_of_url(required(body, "QueueUrl")?).to_owned();
        let max = body
            .get("MaxNumberOfMessages")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "Value for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10.",
            ));
        }
        let wait = body
            .get("WaitTimeSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if wait > MAX_WAIT_SECS {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "Value for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20.",
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(wait);
        loop {
            // Register for wake-ups before looking, so a send in between is not missed.
            let notified = self.notify.notified();
            let taken = {
                let mut qs = self.queues.lock();
                let q = qs.get_mut(&name).ok_or_else(missing_queue)?;
                let now = Instant::now();
                q.expire(now);
                let visibility = body
                    .get("VisibilityTimeout")
                    .and_then(Value::as_u64)
                    .map_or(q.visibility, Duration::from_secs);
                let mut out = Vec::new();
                while out.len() < max as usize {
                    let Some(mut m) = q.ready.pop_front() else {
                        break;
                    };
                    m.receives += 1;
                    let receipt = crate::new_uuid().simple().to_string();
                    out.push(json!({"MessageId": m.id, "ReceiptHandle": receipt, "Body": m.body,
                                    "Attributes": {"ApproximateReceiveCount": m.receives.to_string()}}));
                    q.inflight.insert(receipt, (m, now + visibility));
                }
                out
            };
            let now = Instant::now();
            if !taken.is_empty() || now >= deadline {
                return Ok(if taken.is_empty() {
                    json!({})
                } else {
                    json!({"Messages": taken})
                });
            }
            // Also wake when an in-flight message may have become visible again.
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_millis(500)), notified)
                    .await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn send_receive_delete_and_visibility() {
        let q = Queues::new("us-east-1", "123456789012");
        let url = q
            .call(
                "CreateQueue",
                &json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "0"}}),
                "h",
            )
            .await
            .unwrap()["QueueUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(url, "http://h/123456789012/q");
        q.send_to_arn("arn:aws:sqs:us-east-1:123456789012:q", "one".into())
            .unwrap();
        let r = q
            .call(
                "ReceiveMessage",
                &json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
                "h",
            )
            .await
            .unwrap();
        assert_eq!(r["Messages"][0]["Body"], json!("one"));
        // Visibility 0: not deleted → receivable again.
        let again = q
            .call("ReceiveMessage", &json!({"QueueUrl": url}), "h")
            .await
            .unwrap();
        let receipt = again["Messages"][0]["ReceiptHandle"].as_str().unwrap();
        assert_eq!(
            again["Messages"][0]["Attributes"]["ApproximateReceiveCount"],
            json!("2")
        );
        q.call(
            "DeleteMessage",
            &json!({"QueueUrl": url, "ReceiptHandle": receipt}),
            "h",
        )
        .await
        .unwrap();
        let none = q
            .call("ReceiveMessage", &json!({"QueueUrl": url}), "h")
            .await
            .unwrap();
        assert!(none.get("Messages").is_none());
        assert_eq!(
            q.call("GetQueueUrl", &json!({"QueueName": "nope"}), "h")
                .await
                .unwrap_err()
                .code,
            "QueueDoesNotExist"
        );
    }

    #[tokio::test]
    async fn long_poll_wakes_on_send() {
        let q = std::sync::Arc::new(Queues::new("r", "1"));
        q.call("CreateQueue", &json!({"QueueName": "q"}), "h")
            .await
            .unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            q2.call(
                "ReceiveMessage",
                &json!({"QueueUrl": "http://h/1/q", "WaitTimeSeconds": 20}),
                "h",
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.send("q", "hello".into()).unwrap();
        let r = waiter.await.unwrap().unwrap();
        assert_eq!(r["Messages"][0]["Body"], json!("hello"));
    }
}
