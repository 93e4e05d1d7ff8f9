//! The `AWSEvents.*` operations the bus serves, as typed requests decoded once from
//! `X-Amz-Target` and the body, and their typed answers (members in sorted order, as the
//! platform has always answered).
//!
//! Must not depend on HTTP or on the bus's state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    decode::{self, Member, Object, StrList},
    wire::ApiError,
};

/// One `AWSEvents.*` call.
#[derive(Debug)]
pub(crate) enum EventsRequest {
    PutRule(PutRuleRequest),
    DeleteRule(RuleRequest),
    DescribeRule(RuleRequest),
    ListRules(ListRulesRequest),
    PutTargets(PutTargetsRequest),
    RemoveTargets(RemoveTargetsRequest),
    ListTargetsByRule(RuleRequest),
    PutEvents(PutEventsRequest),
    TestEventPattern(TestEventPatternRequest),
}

impl EventsRequest {
    /// Decodes operation `op` (the part of `X-Amz-Target` after the dot) from its body.
    ///
    /// # Errors
    /// `UnknownOperationException` for an operation the bus does not serve,
    /// `SerializationException` for a body that is not an object.
    pub(crate) fn decode(op: &str, body: &Value) -> Result<Self, ApiError> {
        fn typed<T: serde::de::DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
            decode::from_object(body).map_err(|_| ApiError::not_a_structure())
        }
        Ok(match op {
            "PutRule" => Self::PutRule(typed(body)?),
            "DeleteRule" => Self::DeleteRule(typed(body)?),
            "DescribeRule" => Self::DescribeRule(typed(body)?),
            "ListRules" => Self::ListRules(typed(body)?),
            "PutTargets" => Self::PutTargets(typed(body)?),
            "RemoveTargets" => Self::RemoveTargets(typed(body)?),
            "ListTargetsByRule" => Self::ListTargetsByRule(typed(body)?),
            "PutEvents" => Self::PutEvents(typed(body)?),
            "TestEventPattern" => Self::TestEventPattern(typed(body)?),
            _ => return Err(unknown()),
        })
    }
}

fn unknown() -> ApiError {
    ApiError::new(400, "UnknownOperationException", "")
}

/// The rule a call names: `Name`, or `Rule` when `Name` was not sent at all.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RuleRequest {
    pub name: Member<String>,
    pub rule: Member<String>,
}

impl RuleRequest {
    /// The rule's name as sent (empty when it is not a string).
    pub(crate) fn rule_name(&self) -> &str {
        if self.name.is_present() {
            self.name.as_deref()
        } else {
            self.rule.as_deref()
        }
        .unwrap_or_default()
    }
}

/// PutRule.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PutRuleRequest {
    #[serde(flatten)]
    pub rule: RuleRequest,
    pub event_pattern: Member<String>,
    pub schedule_expression: Member<String>,
    pub state: Member<String>,
    pub description: Member<String>,
}

/// ListRules.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ListRulesRequest {
    pub name_prefix: Member<String>,
}

/// A target of PutTargets.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TargetInput {
    pub id: Member<String>,
    pub arn: Member<String>,
    pub input: Member<String>,
}

/// PutTargets (an element that is not an object is a target without members).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PutTargetsRequest {
    #[serde(flatten)]
    pub rule: RuleRequest,
    pub targets: Member<Vec<Member<Object<TargetInput>>>>,
}

/// RemoveTargets.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RemoveTargetsRequest {
    #[serde(flatten)]
    pub rule: RuleRequest,
    pub ids: Member<StrList>,
}

/// An entry of PutEvents.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct EntryInput {
    pub source: Member<String>,
    pub detail_type: Member<String>,
    /// A JSON object, as text.
    pub detail: Member<String>,
    /// Copied into the event as sent.
    pub resources: Member<Value>,
}

/// PutEvents (an element that is not an object is an entry without members).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PutEventsRequest {
    pub entries: Member<Vec<Member<Object<EntryInput>>>>,
}

/// TestEventPattern.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct TestEventPatternRequest {
    pub event_pattern: Member<String>,
    /// An event, as text.
    pub event: Member<String>,
}

/// The answer of any `AWSEvents.*` call.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum EventsResponse {
    PutRule(PutRuleResponse),
    Empty(Empty),
    Rule(RuleResponse),
    Rules(ListRulesResponse),
    Targets(TargetsResult),
    TargetsByRule(ListTargetsResponse),
    PutEvents(PutEventsResponse),
    TestEventPattern(TestEventPatternResponse),
}

/// `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// PutRule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutRuleResponse {
    pub rule_arn: String,
}

/// DescribeRule, and the items of ListRules.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RuleResponse {
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub event_bus_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_pattern: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    pub state: String,
}

/// ListRules.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListRulesResponse {
    pub rules: Vec<RuleResponse>,
}

/// A target PutTargets refused.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FailedTarget {
    pub error_code: &'static str,
    pub error_message: &'static str,
    pub target_id: String,
}

/// PutTargets, RemoveTargets.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TargetsResult {
    pub failed_entries: Vec<FailedTarget>,
    pub failed_entry_count: usize,
}

/// A target as ListTargetsByRule shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TargetResponse {
    pub arn: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// ListTargetsByRule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListTargetsResponse {
    pub targets: Vec<TargetResponse>,
}

/// The outcome of one PutEvents entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EntryResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// PutEvents.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutEventsResponse {
    pub entries: Vec<EntryResult>,
    pub failed_entry_count: usize,
}

/// TestEventPattern.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TestEventPatternResponse {
    pub result: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::functions::responses::tests::assert_sorted;

    #[test]
    fn rule_name_falls_back_to_rule_only_when_name_is_missing() {
        let decode = |v: Value| match EventsRequest::decode("DescribeRule", &v).unwrap() {
            EventsRequest::DescribeRule(r) => r.rule_name().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(decode(json!({"Name": "a", "Rule": "b"})), "a");
        assert_eq!(decode(json!({"Rule": "b"})), "b");
        assert_eq!(decode(json!({"Name": null, "Rule": "b"})), "");
        let put = match EventsRequest::decode(
            "PutTargets",
            &json!({"Rule": "r", "Targets": [1, {"Id": "x"}]}),
        )
        .unwrap()
        {
            EventsRequest::PutTargets(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(put.rule.rule_name(), "r");
        let targets = put.targets.get().unwrap();
        assert!(matches!(targets[0], Member::Invalid));
        assert_eq!(targets[1].object().unwrap().id.as_deref(), Some("x"));
        assert_eq!(
            EventsRequest::decode("Nope", &json!({})).unwrap_err().code,
            "UnknownOperationException"
        );
    }

    #[test]
    fn answers_keep_sorted_members() {
        assert_sorted(&RuleResponse {
            arn: "a".into(),
            description: Some("d".into()),
            event_bus_name: "default",
            event_pattern: Some("{}".into()),
            name: "n".into(),
            schedule_expression: Some("rate(1 minute)".into()),
            state: "ENABLED".into(),
        });
        assert_sorted(&TargetsResult {
            failed_entries: vec![FailedTarget {
                error_code: "c",
                error_message: "m",
                target_id: "t".into(),
            }],
            failed_entry_count: 1,
        });
        assert_sorted(&ListTargetsResponse {
            targets: vec![TargetResponse {
                arn: "a".into(),
                id: "i".into(),
                input: Some("{}".into()),
            }],
        });
        assert_sorted(&PutEventsResponse {
            entries: vec![EntryResult {
                error_code: Some("c"),
                error_message: Some("m"),
                event_id: Some("e".into()),
            }],
            failed_entry_count: 1,
        });
    }
}
