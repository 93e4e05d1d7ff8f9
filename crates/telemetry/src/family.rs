//! Metrics by label values: one metric per label set, made on first use.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

// The workspace bans std's RwLock for its poisoning; this crate has no dependencies (so no
// parking_lot), and every access below recovers from poisoning: a panic elsewhere cannot leave
// a metrics map half-changed (inserts are single calls).
#[allow(clippy::disallowed_types)]
type Lock<T> = std::sync::RwLock<T>;

/// A family of metrics of one kind, keyed by the values of fixed label names.
pub struct Family<M> {
    labels: &'static [&'static str],
    make: fn() -> M,
    members: Lock<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M> std::fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl<M> Family<M> {
    /// A family with these label names; `make` makes the metric of a new label set.
    pub fn new(labels: &'static [&'static str], make: fn() -> M) -> Self {
        Self {
            labels,
            make,
            members: Lock::new(BTreeMap::new()),
        }
    }

    /// The label names.
    pub fn label_names(&self) -> &'static [&'static str] {
        self.labels
    }

    /// The metric of these label values (in the order of the names), made if new. Values
    /// beyond the names are ignored, missing ones are empty.
    pub fn get(&self, values: &[&str]) -> Arc<M> {
        let key: Vec<String> = (0..self.labels.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_owned())
            .collect();
        if let Some(m) = self
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return m.clone();
        }
        self.members
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| Arc::new((self.make)()))
            .clone()
    }

    /// Every label set and its metric, ordered by label values.
    pub fn members(&self) -> Vec<(Vec<String>, Arc<M>)> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `(name, value)` pairs of one label set, for a renderer.
    pub fn pairs<'a>(&self, values: &'a [String]) -> Vec<(&'static str, &'a str)> {
        self.labels
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Counter;

    #[test]
    fn one_metric_per_label_set() {
        let f: Family<Counter> = Family::new(&["method", "code"], Counter::default);
        f.get(&["GET", "200"]).inc();
        f.get(&["GET", "200"]).inc();
        f.get(&["PUT", "403"]).inc();
        f.get(&["PUT"]).inc();
        let members: Vec<(Vec<String>, u64)> =
            f.members().into_iter().map(|(k, c)| (k, c.get())).collect();
        assert_eq!(
            members,
            vec![
                (vec!["GET".into(), "200".into()], 2),
                (vec!["PUT".into(), String::new()], 1),
                (vec!["PUT".into(), "403".into()], 1),
            ]
        );
        let values = vec!["GET".to_owned(), "200".to_owned()];
        assert_eq!(f.pairs(&values), vec![("method", "GET"), ("code", "200")]);
    }
}
