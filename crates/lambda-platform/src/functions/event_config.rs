//! `Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s)`: how asynchronous invokes of a
//! function, version or alias are retried and where their records go (the queue in
//! `crate::async_invoke` reads it for each attempt). Kept in the function's record, so it is as
//! durable as the function. Must not depend on HTTP.

use super::{
    Functions, iso_epoch_secs,
    requests::EventInvokeConfigRequest,
    responses::{
        Destination, DestinationConfig, FunctionEventInvokeConfig, ListEventInvokeConfigsResponse,
    },
    validate,
};
use crate::{arn::FunctionRef, state::EventInvokeConfig, wire::ApiError};

impl Functions<'_> {
    /// PutFunctionEventInvokeConfig (`merge` false: replaces every member) and
    /// UpdateFunctionEventInvokeConfig (`merge` true: only the members sent change).
    pub(crate) fn put_event_invoke_config(
        &self,
        r: &FunctionRef,
        req: &EventInvokeConfigRequest,
        merge: bool,
    ) -> Result<FunctionEventInvokeConfig, ApiError> {
        let retries = match req.maximum_retry_attempts.get().copied() {
            Some(n) if !(0..=2).contains(&n) => {
                return Err(ApiError::validation(
                    "maximumRetryAttempts",
                    &n.to_string(),
                    if n < 0 {
                        "Member must have value greater than or equal to 0"
                    } else {
                        "Member must have value less than or equal to 2"
                    },
                ));
            }
            n => n.map(|n| n as u32),
        };
        let age = match req.maximum_event_age_in_seconds.get().copied() {
            Some(n) if !(60..=21_600).contains(&n) => {
                return Err(ApiError::validation(
                    "maximumEventAgeInSeconds",
                    &n.to_string(),
                    if n < 60 {
                        "Member must have value greater than or equal to 60"
                    } else {
                        "Member must have value less than or equal to 21600"
                    },
                ));
            }
            n => n.map(|n| n as u32),
        };
        let dest = req.destination_config.object();
        let on = |which: Option<
            &crate::decode::Member<crate::decode::Object<super::requests::DestinationInput>>,
        >|
         -> Result<Option<Option<String>>, ApiError> {
            let Some(m) = which.filter(|m| m.is_present()) else {
                return Ok(None);
            };
            match m.object().and_then(|d| d.destination.as_deref()) {
                None | Some("") => Ok(Some(None)),
                Some(a) => {
                    validate::destination(a)?;
                    Ok(Some(Some(a.to_owned())))
                }
            }
        };
        let on_success = on(dest.map(|d| &d.on_success))?;
        let on_failure = on(dest.map(|d| &d.on_failure))?;
        let qualifier = r.qualifier.clone().unwrap_or_else(|| "$LATEST".into());
        let name = r.name.clone();
        let saved = self.update(&r.name, |rec| {
            self.select(rec, Some(&qualifier))?;
            let mut c = if merge {
                rec.event_invoke
                    .get(&qualifier)
                    .cloned()
                    .unwrap_or_default()
            } else {
                EventInvokeConfig::default()
            };
            if !merge || retries.is_some() {
                c.maximum_retry_attempts = retries;
            }
            if !merge || age.is_some() {
                c.maximum_event_age_secs = age;
            }
            if let Some(s) = on_success {
                c.on_success = s;
            } else if !merge {
                c.on_success = None;
            }
            if let Some(f) = on_failure {
                c.on_failure = f;
            } else if !merge {
                c.on_failure = None;
            }
            c.last_modified = iso_epoch_secs();
            rec.event_invoke.insert(qualifier.clone(), c.clone());
            Ok(c)
        })?;
        Ok(self.event_invoke_answer(&name, &qualifier, &saved))
    }

    /// GetFunctionEventInvokeConfig.
    pub(crate) fn get_event_invoke_config(
        &self,
        r: &FunctionRef,
    ) -> Result<FunctionEventInvokeConfig, ApiError> {
        let rec = self.record(&r.name)?;
        let qualifier = r.qualifier.as_deref().unwrap_or("$LATEST");
        self.select(&rec, Some(qualifier))?;
        let c = rec
            .event_invoke
            .get(qualifier)
            .ok_or_else(|| self.no_event_invoke_config(&rec.name, qualifier))?;
        Ok(self.event_invoke_answer(&rec.name, qualifier, c))
    }

    /// DeleteFunctionEventInvokeConfig.
    pub(crate) fn delete_event_invoke_config(&self, r: &FunctionRef) -> Result<(), ApiError> {
        let qualifier = r.qualifier.clone().unwrap_or_else(|| "$LATEST".into());
        self.update(&r.name, |rec| {
            self.select(rec, Some(&qualifier))?;
            rec.event_invoke
                .remove(&qualifier)
                .map(drop)
                .ok_or_else(|| self.no_event_invoke_config(&rec.name, &qualifier))
        })
    }

    /// ListFunctionEventInvokeConfigs (every qualifier of the function; at most 50, as the
    /// API's `MaxItems` allows, in one page).
    pub(crate) fn list_event_invoke_configs(
        &self,
        r: &FunctionRef,
    ) -> Result<ListEventInvokeConfigsResponse, ApiError> {
        let rec = self.record(&r.name)?;
        Ok(ListEventInvokeConfigsResponse {
            function_event_invoke_configs: rec
                .event_invoke
                .iter()
                .map(|(q, c)| self.event_invoke_answer(&rec.name, q, c))
                .collect(),
        })
    }

    fn no_event_invoke_config(&self, name: &str, qualifier: &str) -> ApiError {
        ApiError::not_found(format!(
            "The function {}:{qualifier} doesn't have an EventInvokeConfig",
            self.function_arn(name)
        ))
    }

    fn event_invoke_answer(
        &self,
        name: &str,
        qualifier: &str,
        c: &EventInvokeConfig,
    ) -> FunctionEventInvokeConfig {
        let dest = |d: &Option<String>| Destination {
            destination: d.clone(),
        };
        FunctionEventInvokeConfig {
            destination_config: DestinationConfig {
                on_failure: dest(&c.on_failure),
                on_success: dest(&c.on_success),
            },
            function_arn: format!("{}:{qualifier}", self.function_arn(name)),
            last_modified: c.last_modified,
            maximum_event_age_in_seconds: c.maximum_event_age_secs,
            maximum_retry_attempts: c.maximum_retry_attempts,
        }
    }
}
