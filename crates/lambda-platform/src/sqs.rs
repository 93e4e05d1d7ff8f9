//! A minimal SQS (JSON protocol, `AmazonSQS.*`): standard queues with visibility timeouts,
//! long polling, message attributes, and EventBridge rule targets and Lambda destinations
//! and dead-letter queues as senders. Enough for a consumer fed by EventBridge (the
//! registrator's daemon).
//!
//! Queues and messages are durable: every CreateQueue, DeleteQueue, SendMessage and
//! DeleteMessage is written to a journal (`crate::journal`, `<data-dir>/sqs/journal.log`) and
//! fsynced before it is answered, so a message sent and not yet deleted survives `kill -9`.
//! After a restart every message is visible (one that was in flight has its visibility timeout
//! cut short, so it is delivered again: at least once, as SQS promises), and a receipt handle
//! from before the restart still deletes its message.
//!
//! Each operation takes its typed request (`operations.rs`, decoded once at the edge) and gives
//! its typed answer. Must not depend on `api` (HTTP).

pub(crate) mod operations;

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    path::Path,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub(crate) use self::operations::MessageAttribute;
use self::operations::{
    CreateQueueRequest, DeleteMessageRequest, Empty, Message, MessageAttributes, QueueAttributes,
    QueueAttributesResponse, QueueNameRequest, QueueUrlRequest, QueueUrlResponse,
    ReceiveMessageRequest, ReceiveMessageResponse, SendMessageRequest, SendMessageResponse,
    SqsRequest, SqsResponse,
};
use crate::{
    PlatformError,
    decode::Member,
    journal::{Durable, Journal},
    wire::ApiError,
};

const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
const MAX_WAIT_SECS: u64 = 20;
const MAX_BODY: usize = 262_144;
/// The journal is rewritten with the live queues and messages once it holds this much more.
const COMPACT_AFTER: usize = 8 << 20;

#[derive(Clone, Debug)]
struct Msg {
    id: String,
    body: String,
    attributes: BTreeMap<String, MessageAttribute>,
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

    /// Removes the message `id` wherever it is.
    fn remove_id(&mut self, id: &str) -> bool {
        if let Some(i) = self.ready.iter().position(|m| m.id == id) {
            self.ready.remove(i);
            return true;
        }
        let receipt = self
            .inflight
            .iter()
            .find(|(_, (m, _))| m.id == id)
            .map(|(r, _)| r.clone());
        receipt.is_some_and(|r| self.inflight.remove(&r).is_some())
    }
}

/// A journal record (the JSON of one line of history).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    Queue {
        name: String,
        visibility_secs: u64,
    },
    DropQueue {
        name: String,
    },
    Sent {
        queue: String,
        id: String,
        body: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, MessageAttribute>,
    },
    Deleted {
        queue: String,
        id: String,
    },
}

fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

struct Inner {
    queues: BTreeMap<String, Queue>,
    journal_bytes: usize,
}

/// The queues of the platform's account.
pub(crate) struct Queues {
    region: String,
    account: String,
    inner: Mutex<Inner>,
    journal: Journal,
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

fn not_durable(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("cannot persist the queue: {e}"))
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

/// A receipt handle: the message id (32 hex digits) and a fresh nonce, so a handle from before a
/// restart still names its message.
fn receipt_for(id: &str) -> String {
    format!("{}{}", id.replace('-', ""), crate::new_uuid().simple())
}

/// The message id a receipt handle names.
fn id_of_receipt(receipt: &str) -> Option<String> {
    let hex = receipt.get(..32)?;
    uuid::Uuid::try_parse(hex).ok().map(|u| u.to_string())
}

/// Whether `name` is asked for by ReceiveMessage's `MessageAttributeNames`.
fn wanted(names: &[String], name: &str) -> bool {
    names.iter().any(|n| {
        n == "All"
            || n == ".*"
            || n == name
            || n.strip_suffix(".*")
                .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
    })
}

impl Queues {
    /// Opens the queues in `<data_dir>/sqs/`: replays the journal, then rewrites it with only
    /// what is live.
    pub(crate) async fn open(
        data_dir: &Path,
        region: &str,
        account: &str,
    ) -> Result<Self, PlatformError> {
        let path = data_dir.join("sqs").join("journal.log");
        let io = |source| PlatformError::DataDir {
            path: path.clone(),
            source,
        };
        let (journal, records) = Journal::open(&path).map_err(io)?;
        let mut queues: BTreeMap<String, Queue> = BTreeMap::new();
        let mut deleted: HashSet<(String, String)> = HashSet::new();
        let decoded: Vec<Record> = records
            .iter()
            .filter_map(|b| match serde_json::from_slice(b) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable SQS journal record");
                    None
                }
            })
            .collect();
        for r in &decoded {
            if let Record::Deleted { queue, id } = r {
                deleted.insert((queue.clone(), id.clone()));
            }
        }
        for r in decoded {
            match r {
                Record::Queue {
                    name,
                    visibility_secs,
                } => {
                    queues.entry(name).or_insert_with(|| Queue {
                        visibility: Duration::from_secs(visibility_secs),
                        ..Queue::default()
                    });
                }
                Record::DropQueue { name } => {
                    queues.remove(&name);
                }
                Record::Sent {
                    queue,
                    id,
                    body,
                    attributes,
                } => {
                    if deleted.contains(&(queue.clone(), id.clone())) {
                        continue;
                    }
                    if let Some(q) = queues.get_mut(&queue) {
                        q.ready.push_back(Msg {
                            id,
                            body,
                            attributes,
                            receives: 0,
                        });
                    }
                }
                Record::Deleted { .. } => {}
            }
        }
        let live = live_records(&queues);
        journal.rewrite(live).wait().await.map_err(io)?;
        Ok(Self {
            region: region.to_owned(),
            account: account.to_owned(),
            inner: Mutex::new(Inner {
                queues,
                journal_bytes: 0,
            }),
            journal,
            notify: Notify::new(),
        })
    }

    /// Appends `record` under the lock (so a rewrite's snapshot and the journal agree),
    /// rewriting the journal instead when it has grown well past what is live.
    fn log(&self, inner: &mut Inner, record: Record) -> Durable {
        let bytes = encode(&record);
        inner.journal_bytes += bytes.len();
        if inner.journal_bytes > COMPACT_AFTER {
            let live = live_records(&inner.queues);
            let kept: usize = live.iter().map(Vec::len).sum();
            if inner.journal_bytes > kept.saturating_mul(2) {
                // The live state already holds this record's effect.
                inner.journal_bytes = kept;
                return self.journal.rewrite(live);
            }
        }
        self.journal.append(bytes)
    }

    /// Delivers to the queue named by an `arn:aws:sqs:<region>:<account>:<name>` target (rules,
    /// destinations, dead-letter queues); the answer resolves once the message is durable.
    pub(crate) fn send_to_arn(
        &self,
        arn: &str,
        body: String,
        attributes: BTreeMap<String, MessageAttribute>,
    ) -> Result<Durable, ApiError> {
        let name = arn.rsplit(':').next().unwrap_or_default();
        self.send(name, body, attributes).map(|(_, d)| d)
    }

    fn send(
        &self,
        name: &str,
        body: String,
        attributes: BTreeMap<String, MessageAttribute>,
    ) -> Result<(String, Durable), ApiError> {
        let id = crate::new_uuid().to_string();
        let mut inner = self.inner.lock();
        let q = inner.queues.get_mut(name).ok_or_else(missing_queue)?;
        q.ready.push_back(Msg {
            id: id.clone(),
            body: body.clone(),
            attributes: attributes.clone(),
            receives: 0,
        });
        let durable = self.log(
            &mut inner,
            Record::Sent {
                queue: name.to_owned(),
                id: id.clone(),
                body,
                attributes,
            },
        );
        drop(inner);
        self.notify.notify_waiters();
        Ok((id, durable))
    }

    fn url(&self, host: &str, name: &str) -> String {
        format!("http://{host}/{}/{name}", self.account)
    }

    /// Runs one `AmazonSQS.*` call; `host` is the request's Host (queue URLs use it). Changes
    /// are answered once they are durable.
    pub(crate) async fn handle(
        &self,
        req: SqsRequest,
        host: &str,
    ) -> Result<SqsResponse, ApiError> {
        Ok(match req {
            SqsRequest::CreateQueue(r) => {
                let (answer, durable) = self.create(&r, host)?;
                durable.wait().await.map_err(not_durable)?;
                SqsResponse::QueueUrl(answer)
            }
            SqsRequest::GetQueueUrl(r) => SqsResponse::QueueUrl(self.queue_url(&r, host)?),
            SqsRequest::DeleteQueue(r) => {
                let name = name_of_url(required(&r.queue_url, "QueueUrl")?).to_owned();
                let durable = {
                    let mut inner = self.inner.lock();
                    inner.queues.remove(&name).ok_or_else(missing_queue)?;
                    self.log(&mut inner, Record::DropQueue { name })
                };
                durable.wait().await.map_err(not_durable)?;
                SqsResponse::Empty(Empty {})
            }
            SqsRequest::GetQueueAttributes(r) => SqsResponse::Attributes(self.attributes(&r)?),
            SqsRequest::SendMessage(r) => {
                let (answer, durable) = self.send_message(r)?;
                durable.wait().await.map_err(not_durable)?;
                SqsResponse::Sent(answer)
            }
            SqsRequest::ReceiveMessage(r) => SqsResponse::Received(self.receive(&r).await?),
            SqsRequest::DeleteMessage(r) => {
                let durable = self.delete_message(&r)?;
                durable.wait().await.map_err(not_durable)?;
                SqsResponse::Empty(Empty {})
            }
        })
    }

    fn create(
        &self,
        req: &CreateQueueRequest,
        host: &str,
    ) -> Result<(QueueUrlResponse, Durable), ApiError> {
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
        let mut inner = self.inner.lock();
        let durable = if inner.queues.contains_key(name) {
            Durable::done()
        } else {
            inner.queues.insert(
                name.to_owned(),
                Queue {
                    visibility,
                    ..Queue::default()
                },
            );
            self.log(
                &mut inner,
                Record::Queue {
                    name: name.to_owned(),
                    visibility_secs: visibility.as_secs(),
                },
            )
        };
        Ok((
            QueueUrlResponse {
                queue_url: self.url(host, name),
            },
            durable,
        ))
    }

    fn queue_url(&self, req: &QueueNameRequest, host: &str) -> Result<QueueUrlResponse, ApiError> {
        let name = required(&req.queue_name, "QueueName")?;
        if !self.inner.lock().queues.contains_key(name) {
            return Err(missing_queue());
        }
        Ok(QueueUrlResponse {
            queue_url: self.url(host, name),
        })
    }

    fn attributes(&self, req: &QueueUrlRequest) -> Result<QueueAttributesResponse, ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?).to_owned();
        let mut inner = self.inner.lock();
        let q = inner.queues.get_mut(&name).ok_or_else(missing_queue)?;
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

    fn send_message(
        &self,
        req: SendMessageRequest,
    ) -> Result<(SendMessageResponse, Durable), ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?).to_owned();
        let text = required(&req.message_body, "MessageBody")?;
        if text.len() > MAX_BODY {
            return Err(ApiError::new(
                400,
                "InvalidParameterValue",
                "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
            ));
        }
        let attributes = req.message_attributes.get().cloned().unwrap_or_default();
        let (message_id, durable) = self.send(&name, text.to_owned(), attributes)?;
        Ok((SendMessageResponse { message_id }, durable))
    }

    fn delete_message(&self, req: &DeleteMessageRequest) -> Result<Durable, ApiError> {
        let name = name_of_url(required(&req.queue_url, "QueueUrl")?);
        let receipt = required(&req.receipt_handle, "ReceiptHandle")?;
        let mut inner = self.inner.lock();
        let q = inner.queues.get_mut(name).ok_or_else(missing_queue)?;
        // Deleting an expired or unknown receipt succeeds, as on AWS. A handle from before a
        // restart (unknown now) still deletes the message it names.
        let id = match q.inflight.remove(receipt) {
            Some((m, _)) => Some(m.id),
            None => id_of_receipt(receipt).filter(|id| q.remove_id(id)),
        };
        Ok(match id {
            Some(id) => self.log(
                &mut inner,
                Record::Deleted {
                    queue: name.to_owned(),
                    id,
                },
            ),
            None => Durable::done(),
        })
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
        let names = req.message_attribute_names.strings().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(wait);
        loop {
            // Register for wake-ups before looking, so a send in between is not missed.
            let notified = self.notify.notified();
            let taken = {
                let mut inner = self.inner.lock();
                let q = inner.queues.get_mut(&name).ok_or_else(missing_queue)?;
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
                    let receipt = receipt_for(&m.id);
                    out.push(Message {
                        attributes: MessageAttributes {
                            approximate_receive_count: m.receives.to_string(),
                        },
                        body: m.body.clone(),
                        message_attributes: m
                            .attributes
                            .iter()
                            .filter(|(k, _)| wanted(names, k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
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

/// The records that rebuild `queues` (every message visible again).
fn live_records(queues: &BTreeMap<String, Queue>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (name, q) in queues {
        out.push(encode(&Record::Queue {
            name: name.clone(),
            visibility_secs: q.visibility.as_secs(),
        }));
        for m in q.inflight.values().map(|(m, _)| m).chain(q.ready.iter()) {
            out.push(encode(&Record::Sent {
                queue: name.clone(),
                id: m.id.clone(),
                body: m.body.clone(),
                attributes: m.attributes.clone(),
            }));
        }
    }
    out
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
        let dir = tempfile::tempdir().unwrap();
        let q = Queues::open(dir.path(), "us-east-1", "123456789012")
            .await
            .unwrap();
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
        q.send_to_arn(
            "arn:aws:sqs:us-east-1:123456789012:q",
            "one".into(),
            BTreeMap::new(),
        )
        .unwrap()
        .wait()
        .await
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
        let dir = tempfile::tempdir().unwrap();
        let q = std::sync::Arc::new(Queues::open(dir.path(), "r", "1").await.unwrap());
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
        q.send("q", "hello".into(), BTreeMap::new()).unwrap();
        let r = waiter.await.unwrap().unwrap();
        assert_eq!(r["Messages"][0]["Body"], json!("hello"));
    }

    #[tokio::test]
    async fn messages_survive_a_reopen_and_old_receipts_still_delete() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://h/1/q";
        let receipt = {
            let q = Queues::open(dir.path(), "r", "1").await.unwrap();
            call(&q, "CreateQueue", json!({"QueueName": "q"}))
                .await
                .unwrap();
            for body in ["a", "b", "c"] {
                call(
                    &q,
                    "SendMessage",
                    json!({"QueueUrl": url, "MessageBody": body,
                           "MessageAttributes": {"k": {"DataType": "String", "StringValue": body}}}),
                )
                .await
                .unwrap();
            }
            // "a" is deleted, "b" is in flight (received, not deleted) when the "crash" comes.
            let r = call(&q, "ReceiveMessage", json!({"QueueUrl": url}))
                .await
                .unwrap();
            let a = r["Messages"][0]["ReceiptHandle"]
                .as_str()
                .unwrap()
                .to_owned();
            call(
                &q,
                "DeleteMessage",
                json!({"QueueUrl": url, "ReceiptHandle": a}),
            )
            .await
            .unwrap();
            let r = call(&q, "ReceiveMessage", json!({"QueueUrl": url}))
                .await
                .unwrap();
            assert_eq!(r["Messages"][0]["Body"], json!("b"));
            r["Messages"][0]["ReceiptHandle"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let q = Queues::open(dir.path(), "r", "1").await.unwrap();
        let r = call(
            &q,
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "MessageAttributeNames": ["All"]}),
        )
        .await
        .unwrap();
        let bodies: Vec<&str> = r["Messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Body"].as_str().unwrap())
            .collect();
        assert_eq!(
            bodies,
            ["b", "c"],
            "in flight and unreceived come back, deleted does not"
        );
        assert_eq!(
            r["Messages"][0]["MessageAttributes"]["k"],
            json!({"DataType": "String", "StringValue": "b"})
        );
        // The handle from before the restart still deletes "b".
        call(
            &q,
            "DeleteMessage",
            json!({"QueueUrl": url, "ReceiptHandle": receipt}),
        )
        .await
        .unwrap();
        drop(q);
        let q = Queues::open(dir.path(), "r", "1").await.unwrap();
        let r = call(
            &q,
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
        )
        .await
        .unwrap();
        assert_eq!(r["Messages"].as_array().unwrap().len(), 1);
        assert_eq!(r["Messages"][0]["Body"], json!("c"));
        assert!(r["Messages"][0].get("MessageAttributes").is_none());
    }
}
