//! Which version of a function a qualifier names: the one place that answers it, for reads
//! (GetFunction, GetFunctionConfiguration) and for every invoke (the Lambda API's synchronous,
//! `Event` and `DryRun` invokes, EventBridge rule targets, schedules).
//!
//! An invoke of an alias with `RoutingConfig.AdditionalVersionWeights` runs the additional
//! version with its weight, whoever invokes it; a read of the alias shows its primary version.

use super::Functions;
use crate::{
    state::{FunctionRecord, VersionConfig},
    wire::ApiError,
};

/// A function version chosen for one invoke.
pub(super) struct Routed {
    /// The function's name.
    pub name: String,
    /// The configuration of the version that runs.
    pub version: VersionConfig,
    /// The function's reserved concurrency.
    pub reserved: Option<u32>,
}

// === impl Functions ===

impl Functions<'_> {
    /// The version `qualifier` names: `$LATEST` (also when there is none), a published version,
    /// or an alias's primary version.
    pub(super) fn select<'r>(
        &self,
        rec: &'r FunctionRecord,
        qualifier: Option<&str>,
    ) -> Result<&'r VersionConfig, ApiError> {
        match qualifier {
            None | Some("$LATEST") => Ok(&rec.latest),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => q
                .parse::<u64>()
                .ok()
                .and_then(|n| rec.versions.get(&n))
                .ok_or_else(|| self.not_found(&rec.name, Some(q))),
            Some(q) => {
                let alias = rec
                    .aliases
                    .get(q)
                    .ok_or_else(|| self.not_found(&rec.name, Some(q)))?;
                self.select(rec, Some(alias.function_version.as_str()))
            }
        }
    }

    /// The version one invoke of `qualifier` runs: as [`Functions::select`], except that an
    /// alias's additional version runs when `roll` (uniform in `[0, 1)`) falls under its
    /// weight.
    pub(super) fn route_with<'r>(
        &self,
        rec: &'r FunctionRecord,
        qualifier: Option<&str>,
        roll: impl FnOnce() -> f64,
    ) -> Result<&'r VersionConfig, ApiError> {
        let primary = self.select(rec, qualifier)?;
        let Some(alias) = qualifier.and_then(|q| rec.aliases.get(q)) else {
            return Ok(primary);
        };
        if alias.additional_weights.is_empty() {
            return Ok(primary);
        }
        let roll = roll();
        let mut acc = 0.0;
        for (version, weight) in &alias.additional_weights {
            acc += weight;
            if roll < acc {
                return self.select(rec, Some(version));
            }
        }
        Ok(primary)
    }

    /// The version an invoke of `name` (qualified by `qualifier`) runs, read under the store's
    /// lock so that only that version's configuration is copied.
    pub(super) fn route(&self, name: &str, qualifier: Option<&str>) -> Result<Routed, ApiError> {
        self.p
            .inner
            .state
            .read(name, |rec| {
                let v = self.route_with(rec, qualifier, rand::random::<f64>)?;
                Ok(Routed {
                    name: rec.name.clone(),
                    version: v.clone(),
                    reserved: rec.reserved_concurrency,
                })
            })
            .unwrap_or_else(|| Err(self.not_found(name, None)))
    }
}
