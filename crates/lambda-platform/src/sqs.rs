//! A minimal SQS (JSON protocol, `AmazonSQS.*`): standard queues in memory with visibility
//! timeouts and long polling, and EventBridge rule targets. Enough for a consumer fed by
//! EventBridge (the registrator's daemon); queues and messages do not survive a restart.
//!
//! Each operation takes its typed request (`operations.rs`, decoded once at the edge) and gives
//! its typed answer. Must not depend on `api` (HTTP).

pub(crate) mod operations;

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::sync::Notify;

use self::operations::{
    CreateQueueRequest, DeleteMessageRequest, Empty, Message, MessageAttributes, QueueAttributes,
    QueueAttributesResponse, QueueNameRequest, QueueUrlRequest, QueueUrlResponse,
    ReceiveMessageRequest, ReceiveMessageResponse, SendMessageRequest, SendMessageResponse,
    SqsRequest, SqsResponse,
};
use crate::{decode::Member, wire::ApiError};

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

fn required<'a>(member: &'a Member<String>, field: &str) -> Result<&'a str, ApiError> {
    member.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
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

    /// Runs one `AmazonSQS.*` call; `host` is the request's Host (queue URLs use it).
    pub(crate) async fn handle(
        &self,
        req: SqsRequest,
        host: &str,
    ) -> Result<SqsResponse, ApiError> {
        Ok(match req {
            SqsRequest::CreateQueue(r) => SqsResponse::QueueUrl(self.create(&r, host)?),
            SqsRequest::GetQueueUrl(r) => SqsResponse::QueueUrl(self.queue_url(&r, host)?),
            SqsRequest::DeleteQueue(r) => {
                let name = name_of_url(required(&r.queue_url, "QueueUrl")?);
                self.queues.lock().remove(name).ok_or_else(missing_queue)?;
                SqsResponse::Empty(Empty {})
            }
            SqsRequest::GetQueueAttributes(r) => SqsResponse::Attributes(self.attributes(&r)?),
            SqsRequest::SendMessage(r) => SqsResponse::Sent(self.send_message(&r)?),
            SqsRequest::ReceiveMessage(r) => SqsResponse::Received(self.receive(&r).await?),
            SqsRequest::DeleteMessage(r) => SqsResponse::Empty(self.delete_message(&r)?),
        })
    }

    fn create(&self, req: &CreateQueueRequest, host: &str) -> Result<QueueUrlResponse, ApiError> {
        let name = required(&req.queue_name, "QueueName")?;
        if !valid_name(name) {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ));
        }
        let visibility = req
            .attributes
            .object()
            .and_then(|a| a.visibility_timeout.as_deref())
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_VISIBILITY, Duration::from_secs);
        self.queues
            .lock()
            .entry(name.to_owned())
            .or_insert_with(|| Queue {
                visibility,
                ..Queue::default()
            });
        Ok(QueueUrlResponse {
            queue_url: self.url(host, name),
        })
    }

    fn queue_url(&self, req: &QueueNameRequest, host: &str) -> Result<QueueUrlResponse, ApiError> {
        let name = required(&req.queue_name, "QueueName")?;
        if !self.queues.lock().contains_key(name) {
            return Err(missing_queue());
        }
        Ok(QueueUrlResponse {
            queue_url: self.url(host, name),
        })
    }

    fn attributes(&self, req: &QueueUrlRequest) -> Result<QueueAttributesResponse, ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?).to_owned();
        let mut qs = self.queues.lock();
        let q = qs.get_mut(&name).ok_or_else(missing_queue)?;
        q.expire(Instant::now());
        Ok(QueueAttributesResponse {
            attributes: QueueAttributes {
                approximate_number_of_messages: q.ready.len().to_string(),
                approximate_number_of_messages_not_visible: q.inflight.len().to_string(),
                queue_arn: format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account),
                visibility_timeout: q.visibility.as_secs().to_string(),
            },
        })
    }

    fn send_message(&self, req: &SendMessageRequest) -> Result<SendMessageResponse, ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?);
        let text = required(&req.message_body, "MessageBody")?;
        if text.len() > MAX_BODY {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
            ));
        }
        let message_id = self.send(name, text.to_owned())?;
        Ok(SendMessageResponse { message_id })
    }

    fn delete_message(&self, req: &DeleteMessageRequest) -> Result<Empty, ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?);
        let receipt = required(&req.receipt_handle, "ReceiptHandle")?;
        let mut qs = self.queues.lock();
        let q = qs.get_mut(name).ok_or_else(missing_queue)?;
        // Deleting an expired or unknown receipt succeeds, as on AWS.
        q.inflight.remove(receipt);
        Ok(Empty {})
    }

    async fn receive(
        &self,
        req: &ReceiveMessageRequest,
    ) -> Result<ReceiveMessageResponse, ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?).to_owned();
        let max = req.max_number_of_messages.get().copied().unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "Value for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10.",
            ));
        }
        let wait = req.wait_time_seconds.get().copied().unwrap_or(0);
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
                let visibility = req
                    .visibility_timeout
                    .get()
                    .copied()
                    .map_or(q.visibility, Duration::from_secs);
                let mut out = Vec::new();
                while out.len() < max as usize {
                    let Some(mut m) = q.ready.pop_front() else {
                        break;
                    };
                    m.receives += 1;
                    let receipt = crate::new_uuid().simple().to_string();
                    out.push(Message {
                        attributes: MessageAttributes {
                            approximate_receive_count: m.receives.to_string(),
                        },
                        body: m.body.clone(),
                        message_id: m.id.clone(),
                        receipt_handle: receipt.clone(),
                    });
                    q.inflight.insert(receipt, (m, now + visibility));
                }
                out
            };
            let now = Instant::now();
            if !taken.is_empty() || now >= deadline {
                return Ok(ReceiveMessageResponse {
                    messages: (!taken.is_empty()).then_some(taken),
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
    use serde_json::{Value, json};

    use super::*;

    /// One call as the JSON protocol makes it: typed request in, answer as JSON out.
    async fn call(q: &Queues, op: &str, body: Value) -> Result<Value, ApiError> {
        let req = SqsRequest::decode(op, &body)?;
        Ok(serde_json::to_value(q.handle(req, "h").await?).unwrap())
    }

    #[tokio::test]
    async fn send_receive_delete_and_visibility() {
        let q = Queues::new("us-east-1", "123456789012");
        let url = call(
            &q,
            "CreateQueue",
            json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "0"}}),
        )
        .await
        .unwrap()["QueueUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(url, "http://h/123456789012/q");
        q.send_to_arn("arn:aws:sqs:us-east-1:123456789012:q", "one".into())
            .unwrap();
        let r = call(
            &q,
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
        )
        .await
        .unwrap();
        assert_eq!(r["Messages"][0]["Body"], json!("one"));
        // Visibility 0: not deleted → receivable again.
        let again = call(&q, "ReceiveMessage", json!({"QueueUrl": url}))
            .await
            .unwrap();
        let receipt = again["Messages"][0]["ReceiptHandle"].as_str().unwrap();
        assert_eq!(
            again["Messages"][0]["Attributes"]["ApproximateReceiveCount"],
            json!("2")
        );
        call(
            &q,
            "DeleteMessage",
            json!({"QueueUrl": url, "ReceiptHandle": receipt}),
        )
        .await
        .unwrap();
        let none = call(&q, "ReceiveMessage", json!({"QueueUrl": url}))
            .await
            .unwrap();
        assert_eq!(none, json!({}));
        assert_eq!(
            call(&q, "GetQueueUrl", json!({"QueueName": "nope"}))
                .await
                .unwrap_err()
                .code,
            "QueueDoesNotExist"
        );
    }

    #[tokio::test]
    async fn long_poll_wakes_on_send() {
        let q = std::sync::Arc::new(Queues::new("r", "1"));
        call(&q, "CreateQueue", json!({"QueueName": "q"}))
            .await
            .unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            call(
                &q2,
                "ReceiveMessage",
                json!({"QueueUrl": "http://h/1/q", "WaitTimeSeconds": 20}),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.send("q", "hello".into()).unwrap();
        let r = waiter.await.unwrap().unwrap();
        assert_eq!(r["Messages"][0]["Body"], json!("hello"));
    }
}
