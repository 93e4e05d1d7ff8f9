//! The `AWSEvents.*` operations: rules and their targets (persisted in `events/rules.json`),
//! PutEvents, TestEventPattern. Each takes its typed request and gives its typed answer.
//! Must not depend on HTTP or on the functions service (deliveries are `events.rs`'s).

use serde_json::Value;

use super::{
    Bus, Envelope, EventPattern, Rule, Schedule, Target,
    operations::{
        Empty, EntryResult, EventsRequest, EventsResponse, FailedTarget, ListRulesRequest,
        ListRulesResponse, ListTargetsResponse, PutEventsRequest, PutEventsResponse,
        PutRuleRequest, PutRuleResponse, PutTargetsRequest, RemoveTargetsRequest, RuleRequest,
        RuleResponse, TargetResponse, TargetsResult, TestEventPatternRequest,
        TestEventPatternResponse,
    },
    rfc3339_now,
};
use crate::{PlatformConfig, wire::ApiError};

fn rule_arn(cfg: &PlatformConfig, name: &str) -> String {
    format!("arn:aws:events:{}:{}:rule/{name}", cfg.region, cfg.account)
}

/// The rule name of a call, checked as AWS checks it.
fn checked_name(req: &RuleRequest) -> Result<String, ApiError> {
    let n = req.rule_name();
    if n.is_empty()
        || n.len() > 64
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(ApiError::validation(
            "name",
            n,
            "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
        ));
    }
    Ok(n.to_owned())
}

fn missing_rule(n: &str) -> ApiError {
    ApiError::new(
        400,
        "ResourceNotFoundException",
        format!("Rule {n} does not exist on EventBus default."),
    )
}

fn invalid_pattern(e: super::PatternError) -> ApiError {
    ApiError::new(
        400,
        "InvalidEventPatternException",
        format!("Event pattern is not valid. Reason: {e}"),
    )
}

fn too_many(field: &str) -> ApiError {
    ApiError::validation(
        field,
        "",
        "Member must have length less than or equal to 10",
    )
}

fn rule_response(cfg: &PlatformConfig, r: &Rule) -> RuleResponse {
    RuleResponse {
        arn: rule_arn(cfg, &r.name),
        description: (!r.description.is_empty()).then(|| r.description.clone()),
        event_bus_name: "default",
        event_pattern: r.event_pattern.clone(),
        name: r.name.clone(),
        schedule_expression: r.schedule.clone(),
        state: r.state.clone(),
    }
}

// === impl Bus ===

impl Bus {
    /// Runs one `AWSEvents.*` call.
    /// Runs one `AWSEvents.*` call. `deliver` hands a published event to the targets of its
    /// matching rules and returns once they have it durably (PutEvents answers after that).
    pub(crate) fn handle(
        &self,
        cfg: &PlatformConfig,
        req: EventsRequest,
        deliver: &dyn Fn(&Value) -> std::io::Result<()>,
    ) -> Result<EventsResponse, ApiError> {
        Ok(match req {
            EventsRequest::PutRule(r) => EventsResponse::PutRule(self.put_rule(cfg, r)?),
            EventsRequest::DeleteRule(r) => EventsResponse::Empty(self.delete_rule(&r)?),
            EventsRequest::DescribeRule(r) => {
                let n = checked_name(&r)?;
                let rules = self.rules.lock();
                let rule = rules.get(&n).ok_or_else(|| missing_rule(&n))?;
                EventsResponse::Rule(rule_response(cfg, rule))
            }
            EventsRequest::ListRules(r) => EventsResponse::Rules(self.list_rules(cfg, &r)),
            EventsRequest::PutTargets(r) => EventsResponse::Targets(self.put_targets(r)?),
            EventsRequest::RemoveTargets(r) => EventsResponse::Targets(self.remove_targets(&r)?),
            EventsRequest::ListTargetsByRule(r) => {
                EventsResponse::TargetsByRule(self.list_targets(&r)?)
            }
            EventsRequest::PutEvents(r) => {
                EventsResponse::PutEvents(self.put_events(cfg, r, deliver)?)
            }
            EventsRequest::TestEventPattern(r) => {
                EventsResponse::TestEventPattern(test_event_pattern(&r)?)
            }
        })
    }

    fn put_rule(
        &self,
        cfg: &PlatformConfig,
        req: PutRuleRequest,
    ) -> Result<PutRuleResponse, ApiError> {
        let n = checked_name(&req.rule)?;
        let pattern = req.event_pattern.into_option();
        let schedule = req.schedule_expression.into_option();
        if pattern.is_none() && schedule.is_none() {
            return Err(ApiError::new(
                400,
                "ValidationException",
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ));
        }
        if let Some(pt) = &pattern {
            EventPattern::parse(pt).map_err(invalid_pattern)?;
        }
        if let Some(s) = &schedule {
            Schedule::parse(s).map_err(|_| {
                ApiError::new(
                    400,
                    "ValidationException",
                    "Parameter ScheduleExpression is not valid.",
                )
            })?;
        }
        let state = req.state.into_option().unwrap_or_else(|| "ENABLED".into());
        let mut rules = self.rules.lock();
        let targets = rules.get(&n).map(|r| r.targets.clone()).unwrap_or_default();
        let mut next = rules.clone();
        next.insert(
            n.clone(),
            Rule {
                name: n.clone(),
                event_pattern: pattern,
                schedule,
                state,
                description: req.description.into_option().unwrap_or_default(),
                targets,
            },
        );
        self.persist(&next)?;
        *rules = next;
        Ok(PutRuleResponse {
            rule_arn: rule_arn(cfg, &n),
        })
    }

    fn delete_rule(&self, req: &RuleRequest) -> Result<Empty, ApiError> {
        let n = checked_name(req)?;
        let mut rules = self.rules.lock();
        if rules.get(&n).is_some_and(|r| !r.targets.is_empty()) {
            return Err(ApiError::new(
                400,
                "ValidationException",
                "Rule can't be deleted since it has targets.",
            ));
        }
        let mut next = rules.clone();
        next.remove(&n);
        self.persist(&next)?;
        *rules = next;
        Ok(Empty {})
    }

    fn list_rules(&self, cfg: &PlatformConfig, req: &ListRulesRequest) -> ListRulesResponse {
        let prefix = req.name_prefix.as_deref().unwrap_or_default();
        let rules = self.rules.lock();
        ListRulesResponse {
            rules: rules
                .values()
                .filter(|r| r.name.starts_with(prefix))
                .map(|r| rule_response(cfg, r))
                .collect(),
        }
    }

    fn put_targets(&self, req: PutTargetsRequest) -> Result<TargetsResult, ApiError> {
        let n = checked_name(&req.rule)?;
        let targets = req.targets.into_option().unwrap_or_default();
        if targets.is_empty() || targets.len() > 10 {
            return Err(too_many("targets"));
        }
        let mut rules = self.rules.lock();
        let mut next = rules.clone();
        let rule = next.get_mut(&n).ok_or_else(|| missing_rule(&n))?;
        let mut failed = Vec::new();
        for t in targets {
            let t = t.into_option().map(|o| o.0).unwrap_or_default();
            let id = t.id.into_option().unwrap_or_default();
            let arn = t.arn.into_option().unwrap_or_default();
            if !arn.starts_with("arn:aws:lambda:") && !arn.starts_with("arn:aws:sqs:") {
                failed.push(FailedTarget {
                    error_code: "ValidationException",
                    error_message: "Only Lambda function and SQS queue targets are supported by the local platform.",
                    target_id: id,
                });
                continue;
            }
            rule.targets.retain(|x| x.id != id);
            rule.targets.push(Target {
                id,
                arn,
                input: t.input.into_option(),
            });
        }
        self.persist(&next)?;
        *rules = next;
        Ok(TargetsResult {
            failed_entry_count: failed.len(),
            failed_entries: failed,
        })
    }

    fn remove_targets(&self, req: &RemoveTargetsRequest) -> Result<TargetsResult, ApiError> {
        let n = checked_name(&req.rule)?;
        let ids = req.ids.strings().unwrap_or_default();
        let mut rules = self.rules.lock();
        let mut next = rules.clone();
        let rule = next.get_mut(&n).ok_or_else(|| missing_rule(&n))?;
        rule.targets.retain(|t| !ids.contains(&t.id));
        self.persist(&next)?;
        *rules = next;
        Ok(TargetsResult {
            failed_entries: Vec::new(),
            failed_entry_count: 0,
        })
    }

    fn list_targets(&self, req: &RuleRequest) -> Result<ListTargetsResponse, ApiError> {
        let n = checked_name(req)?;
        let rules = self.rules.lock();
        let r = rules.get(&n).ok_or_else(|| missing_rule(&n))?;
        Ok(ListTargetsResponse {
            targets: r
                .targets
                .iter()
                .map(|t| TargetResponse {
                    arn: t.arn.clone(),
                    id: t.id.clone(),
                    input: t.input.clone(),
                })
                .collect(),
        })
    }

    fn put_events(
        &self,
        cfg: &PlatformConfig,
        req: PutEventsRequest,
        deliver: &dyn Fn(&Value) -> std::io::Result<()>,
    ) -> Result<PutEventsResponse, ApiError> {
        let entries = req.entries.into_option().unwrap_or_default();
        if entries.is_empty() || entries.len() > 10 {
            return Err(too_many("entries"));
        }
        let mut out = Vec::new();
        let mut failed = 0;
        for e in entries {
            let e = e.into_option().map(|o| o.0).unwrap_or_default();
            let detail = e
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .filter(Value::is_object);
            match (e.source.as_deref(), e.detail_type.as_deref(), detail) {
                (Some(source), Some(detail_type), Some(detail)) => {
                    let id = crate::new_uuid().to_string();
                    let time = rfc3339_now();
                    let envelope = serde_json::to_value(Envelope {
                        version: "0",
                        id: id.clone(),
                        detail_type,
                        source,
                        account: &cfg.account,
                        time: &time,
                        region: &cfg.region,
                        resources: e
                            .resources
                            .get()
                            .cloned()
                            .unwrap_or_else(|| Value::Array(Vec::new())),
                        detail,
                    })
                    .map_err(|e| ApiError::internal(format!("cannot encode the event: {e}")))?;
                    // An accepted entry is with its targets, durably, before the answer.
                    if let Err(e) = deliver(&envelope) {
                        tracing::error!(error = %e, "cannot queue an event for its targets");
                        failed += 1;
                        out.push(EntryResult {
                            error_code: Some("InternalFailure"),
                            error_message: Some("The event could not be queued durably."),
                            event_id: None,
                        });
                        continue;
                    }
                    out.push(EntryResult {
                        error_code: None,
                        error_message: None,
                        event_id: Some(id),
                    });
                }
                _ => {
                    failed += 1;
                    out.push(EntryResult {
                        error_code: Some("MalformedDetail"),
                        error_message: Some("Detail is malformed."),
                        event_id: None,
                    });
                }
            }
        }
        Ok(PutEventsResponse {
            entries: out,
            failed_entry_count: failed,
        })
    }
}

fn test_event_pattern(req: &TestEventPatternRequest) -> Result<TestEventPatternResponse, ApiError> {
    let pattern = EventPattern::parse(req.event_pattern.as_deref().unwrap_or_default())
        .map_err(invalid_pattern)?;
    let event: Value = req
        .event
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .ok_or_else(|| {
            ApiError::new(400, "ValidationException", "Parameter Event is not valid.")
        })?;
    Ok(TestEventPatternResponse {
        result: pattern.matches(&event),
    })
}
