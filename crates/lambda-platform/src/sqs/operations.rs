//! The `AmazonSQS.*` operations of the minimal SQS, as typed requests decoded once from
//! `X-Amz-Target` and the body, and their typed answers (members in sorted order, as the
//! platform has always answered).
//!
//! Must not depend on HTTP or on the queues' state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::{
    decode::{self, Member, Object, StrList},
    wire::ApiError,
};

/// One `AmazonSQS.*` call.
#[derive(Debug)]
pub(crate) enum SqsRequest {
    CreateQueue(CreateQueueRequest),
    GetQueueUrl(QueueNameRequest),
    DeleteQueue(QueueUrlRequest),
    GetQueueAttributes(QueueUrlRequest),
    SendMessage(SendMessageRequest),
    ReceiveMessage(ReceiveMessageRequest),
    DeleteMessage(DeleteMessageRequest),
}

impl SqsRequest {
    /// Decodes operation `op` (the part of `X-Amz-Target` after the dot) from its body.
    ///
    /// # Errors
    /// `UnknownOperationException` for an operation this SQS does not serve,
    /// `SerializationException` for a body that is not an object.
    pub(crate) fn decode(op: &str, body: &Value) -> Result<Self, ApiError> {
        fn typed<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
            decode::from_object(body).map_err(|_| ApiError::not_a_structure())
        }
        Ok(match op {
            "CreateQueue" => Self::CreateQueue(typed(body)?),
            "GetQueueUrl" => Self::GetQueueUrl(typed(body)?),
            "DeleteQueue" => Self::DeleteQueue(typed(body)?),
            "GetQueueAttributes" => Self::GetQueueAttributes(typed(body)?),
            "SendMessage" => Self::SendMessage(typed(body)?),
            "ReceiveMessage" => Self::ReceiveMessage(typed(body)?),
            "DeleteMessage" => Self::DeleteMessage(typed(body)?),
            _ => return Err(ApiError::new(400, "UnknownOperationException", "")),
        })
    }
}

/// `Attributes` of CreateQueue (values are strings in SQS).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct QueueAttributesInput {
    pub visibility_timeout: Member<String>,
}

/// CreateQueue.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct CreateQueueRequest {
    pub queue_name: Member<String>,
    pub attributes: Member<Object<QueueAttributesInput>>,
}

/// GetQueueUrl.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct QueueNameRequest {
    pub queue_name: Member<String>,
}

/// DeleteQueue, GetQueueAttributes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct QueueUrlRequest {
    pub queue_url: Member<String>,
}

/// SendMessage.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct SendMessageRequest {
    pub queue_url: Member<String>,
    pub message_body: Member<String>,
    pub message_attributes: Member<BTreeMap<String, MessageAttribute>>,
}

/// A message attribute, as sent, kept and received (`DataType` `String`, `Number` or
/// `Binary`, with its value).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MessageAttribute {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

impl MessageAttribute {
    pub(crate) fn string(v: &str) -> Self {
        Self {
            data_type: "String".into(),
            string_value: Some(v.to_owned()),
            binary_value: None,
        }
    }

    pub(crate) fn number(v: &str) -> Self {
        Self {
            data_type: "Number".into(),
            string_value: Some(v.to_owned()),
            binary_value: None,
        }
    }
}

/// ReceiveMessage.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ReceiveMessageRequest {
    pub queue_url: Member<String>,
    pub max_number_of_messages: Member<u64>,
    pub wait_time_seconds: Member<u64>,
    pub visibility_timeout: Member<u64>,
    pub message_attribute_names: Member<StrList>,
}

/// DeleteMessage.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DeleteMessageRequest {
    pub queue_url: Member<String>,
    pub receipt_handle: Member<String>,
}

/// The answer of any `AmazonSQS.*` call.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum SqsResponse {
    QueueUrl(QueueUrlResponse),
    Attributes(QueueAttributesResponse),
    Sent(SendMessageResponse),
    Received(ReceiveMessageResponse),
    Empty(Empty),
}

/// `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// CreateQueue, GetQueueUrl.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueueUrlResponse {
    pub queue_url: String,
}

/// The attributes GetQueueAttributes reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueueAttributes {
    pub approximate_number_of_messages: String,
    pub approximate_number_of_messages_not_visible: String,
    pub queue_arn: String,
    pub visibility_timeout: String,
}

/// GetQueueAttributes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueueAttributesResponse {
    pub attributes: QueueAttributes,
}

/// SendMessage.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SendMessageResponse {
    pub message_id: String,
}

/// The attributes of a received message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct MessageAttributes {
    pub approximate_receive_count: String,
}

/// A received message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Message {
    pub attributes: MessageAttributes,
    pub body: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub message_attributes: BTreeMap<String, MessageAttribute>,
    pub message_id: String,
    pub receipt_handle: String,
}

/// ReceiveMessage (`{}` when nothing was received).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ReceiveMessageResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::responses::tests::assert_sorted;

    #[test]
    fn answers_keep_sorted_members() {
        assert_sorted(&QueueAttributesResponse {
            attributes: QueueAttributes {
                approximate_number_of_messages: "1".into(),
                approximate_number_of_messages_not_visible: "2".into(),
                queue_arn: "a".into(),
                visibility_timeout: "30".into(),
            },
        });
        assert_sorted(&ReceiveMessageResponse {
            messages: Some(vec![Message {
                attributes: MessageAttributes {
                    approximate_receive_count: "1".into(),
                },
                body: "b".into(),
                message_attributes: BTreeMap::from([(
                    "RequestID".into(),
                    MessageAttribute::string("r"),
                )]),
                message_id: "m".into(),
                receipt_handle: "r".into(),
            }]),
        });
    }
}
