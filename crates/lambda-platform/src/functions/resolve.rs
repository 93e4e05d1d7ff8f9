//! Which version of a function a qualifier names: the one place that answers it, for reads
//! (GetFunction, GetFunctionConfiguration) and for every invoke (the Lambda API's synchronous,
//! `Event` and `DryRun` invokes, EventBridge rule targets, schedules).
//!
//! An invoke of an alias with `RoutingConfig.AdditionalVersionWeights` runs the additional
//! version with its weight, whoever invokes it; a read of the alias shows its primary version.
//! `select` and `route` are pure (the roll is passed in); must not depend on HTTP or the pools.

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

/// A qualifier (or the version an alias points at) that names nothing of the function.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Unknown(pub String);

/// The version `qualifier` names: `$LATEST` (also when there is none), a published version, or
/// an alias's primary version. Pure.
pub(super) fn select<'r>(
    rec: &'r FunctionRecord,
    qualifier: Option<&str>,
) -> Result<&'r VersionConfig, Unknown> {
    match qualifier {
        None | Some("$LATEST") => Ok(&rec.latest),
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => q
            .parse::<u64>()
            .ok()
            .and_then(|n| rec.versions.get(&n))
            .ok_or_else(|| Unknown(q.to_owned())),
        Some(q) => {
            let alias = rec.aliases.get(q).ok_or_else(|| Unknown(q.to_owned()))?;
            select(rec, Some(alias.function_version.as_str()))
        }
    }
}

/// The version one invoke of `qualifier` runs: as [`select`], except that an alias's
/// additional version runs when `roll()` (uniform in `[0, 1)`) falls under its weight. Pure.
pub(super) fn route<'r>(
    rec: &'r FunctionRecord,
    qualifier: Option<&str>,
    roll: impl FnOnce() -> f64,
) -> Result<&'r VersionConfig, Unknown> {
    let primary = select(rec, qualifier)?;
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
            return select(rec, Some(version));
        }
    }
    Ok(primary)
}

// === impl Functions ===

impl Functions<'_> {
    /// [`select`], with AWS's not-found error.
    pub(super) fn select<'r>(
        &self,
        rec: &'r FunctionRecord,
        qualifier: Option<&str>,
    ) -> Result<&'r VersionConfig, ApiError> {
        select(rec, qualifier).map_err(|Unknown(q)| self.not_found(&rec.name, Some(&q)))
    }

    /// The version an invoke of `name` (qualified by `qualifier`) runs ([`route`]), read under
    /// the store's lock so that only that version's configuration is copied.
    pub(super) fn route(&self, name: &str, qualifier: Option<&str>) -> Result<Routed, ApiError> {
        self.p
            .inner
            .state
            .read(name, |rec| {
                let v = route(rec, qualifier, rand::random::<f64>)
                    .map_err(|Unknown(q)| self.not_found(&rec.name, Some(&q)))?;
                Ok(Routed {
                    name: rec.name.clone(),
                    version: v.clone(),
                    reserved: rec.reserved_concurrency,
                })
            })
            .unwrap_or_else(|| Err(self.not_found(name, None)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::Alias;

    fn version(v: &str) -> VersionConfig {
        VersionConfig {
            version: v.into(),
            runtime: "python3.11".into(),
            role: String::new(),
            handler: "app.handler".into(),
            description: String::new(),
            timeout: 3,
            memory_size: 128,
            environment: BTreeMap::new(),
            layers: Vec::new(),
            code_sha256: String::new(),
            code_size: 0,
            code_key: String::new(),
            last_modified: String::new(),
            revision_id: String::new(),
            architectures: Vec::new(),
            dead_letter_arn: None,
        }
    }

    fn record() -> FunctionRecord {
        let alias = |name: &str, to: &str, weights: &[(&str, f64)]| Alias {
            name: name.into(),
            function_version: to.into(),
            description: String::new(),
            revision_id: String::new(),
            additional_weights: weights.iter().map(|(v, w)| ((*v).into(), *w)).collect(),
        };
        FunctionRecord {
            name: "f".into(),
            latest: version("$LATEST"),
            versions: [(1, version("1")), (2, version("2"))].into(),
            last_version: 2,
            aliases: [
                ("live".into(), alias("live", "1", &[("2", 0.25)])),
                ("all".into(), alias("all", "1", &[("2", 1.0)])),
                ("latest".into(), alias("latest", "$LATEST", &[])),
                ("dangling".into(), alias("dangling", "7", &[])),
            ]
            .into(),
            tags: BTreeMap::new(),
            reserved_concurrency: None,
            event_invoke: BTreeMap::new(),
        }
    }

    fn never() -> f64 {
        panic!("no roll without weights")
    }

    #[test]
    fn qualifiers_select_latest_versions_and_aliases_primary_version() {
        let rec = record();
        let v = |q| select(&rec, q).map(|v| v.version.clone());
        assert_eq!(v(None).unwrap(), "$LATEST");
        assert_eq!(v(Some("$LATEST")).unwrap(), "$LATEST");
        assert_eq!(v(Some("2")).unwrap(), "2");
        assert_eq!(v(Some("live")).unwrap(), "1");
        assert_eq!(v(Some("latest")).unwrap(), "$LATEST");
        assert_eq!(v(Some("9")), Err(Unknown("9".into())));
        assert_eq!(v(Some("nope")), Err(Unknown("nope".into())));
        assert_eq!(v(Some("dangling")), Err(Unknown("7".into())));
    }

    #[test]
    fn invokes_of_an_alias_follow_its_weights() {
        let rec = record();
        let v = |q, roll: f64| route(&rec, Some(q), || roll).unwrap().version.clone();
        assert_eq!(v("live", 0.0), "2");
        assert_eq!(v("live", 0.249), "2");
        assert_eq!(v("live", 0.25), "1");
        assert_eq!(v("live", 0.99), "1");
        assert_eq!(v("all", 0.999), "2");
        // No weights: no roll, the primary version.
        assert_eq!(
            route(&rec, Some("latest"), never).unwrap().version,
            "$LATEST"
        );
        assert_eq!(route(&rec, Some("1"), never).unwrap().version, "1");
        assert_eq!(route(&rec, None, never).unwrap().version, "$LATEST");
    }
}
