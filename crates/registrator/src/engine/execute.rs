//! Carrying out a plan with bounded concurrency: upserts (service-defaults, catalog entry,
//! mTLS material in Parameter Store) and deletions, each call retried.

use std::sync::Arc;

use serde_json::json;
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::{info, warn};

use super::Engine;
use crate::{
    aws::Aws,
    consul::Consul,
    metrics::add,
    plan::{self, Ca, Plan},
    tags::Service,
};

impl<A: Aws, C: Consul> Engine<A, C> {
    /// Runs a plan; returns (upserts, deletes, writes, errors).
    pub(super) async fn execute(&self, plan: Plan, ca: Option<Ca>) -> (usize, usize, usize, usize) {
        let sem = Arc::new(Semaphore::new(self.inner.cfg.concurrency));
        let ca = Arc::new(ca);
        let mut set: JoinSet<(bool, bool, usize)> = JoinSet::new();
        for u in plan.upserts {
            let me = self.clone();
            let sem = sem.clone();
            let ca = ca.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let (ok, writes) = me.upsert(&u, ca.as_ref().as_ref()).await;
                (ok, true, writes)
            });
        }
        for d in plan.deletes {
            let me = self.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let (ok, writes) = me.delete(&d).await;
                (ok, false, writes)
            });
        }
        let mut errors = 0;
        for path in plan.orphan_params {
            match self
                .aws_call("DeleteParameter", |a| a.delete_parameter(path.clone()))
                .await
            {
                Ok(()) => info!(parameter = %path, "removed orphaned extension data"),
                Err(e) => {
                    warn!(parameter = %path, error = %e, "cannot remove orphaned extension data");
                    errors += 1;
                }
            }
        }
        let (mut upserts, mut deletes, mut writes) = (0, 0, 0);
        let total = set.len();
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            done += 1;
            if done % 500 == 0 {
                info!(done, total, "progress");
            }
            match r {
                Ok((true, true, w)) => {
                    upserts += 1;
                    writes += w;
                }
                Ok((true, false, w)) => {
                    deletes += 1;
                    writes += w;
                }
                Ok((false, _, w)) => {
                    errors += 1;
                    writes += w;
                }
                Err(_) => errors += 1,
            }
        }
        let m = &self.inner.metrics;
        add(&m.upserts, upserts as u64);
        add(&m.deletes, deletes as u64);
        add(&m.writes, writes as u64);
        add(&m.errors, errors as u64);
        (upserts, deletes, writes, errors)
    }

    pub(super) async fn upsert(&self, u: &plan::Upsert, ca: Option<&Ca>) -> (bool, usize) {
        let s = &u.service;
        let cfg = &self.inner.cfg;
        let mut writes = 0;
        if u.config {
            let entry = plan::expected_entry(s, cfg.legacy_meta);
            if let Err(e) = self
                .consul_call("PutConfig", |c| {
                    c.put_config(s.scope.clone(), entry.clone())
                })
                .await
            {
                warn!(service = %s.name, function = %s.function, error = %e, "cannot write service-defaults");
                return (false, writes);
            }
            writes += 1;
        }
        if u.register {
            let body = plan::registration(&cfg.node_name, &s.name);
            if let Err(e) = self
                .consul_call("Register", |c| c.register(s.scope.clone(), body.clone()))
                .await
            {
                warn!(service = %s.name, function = %s.function, error = %e, "cannot register service");
                return (false, writes);
            }
            writes += 1;
        }
        if u.tls
            && let (Some(prefix), Some(ca)) = (&cfg.extension_data_prefix, ca)
        {
            match self.write_tls(prefix, s, ca).await {
                Ok(()) => writes += 1,
                Err(e) => {
                    warn!(service = %s.name, function = %s.function, error = %e, "cannot write mTLS material");
                    return (false, writes);
                }
            }
        }
        info!(service = %s.name, function = %s.function, config = u.config, register = u.register, tls = u.tls, "upserted");
        (true, writes)
    }

    pub(super) async fn write_tls(&self, prefix: &str, s: &Service, ca: &Ca) -> Result<(), String> {
        let leaf = self
            .consul_call("Leaf", |c| c.leaf(s.name.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let value = json!({
            "privateKeyPEM": leaf.key_pem,
            "certPEM": leaf.cert_pem,
            "rootCertPEM": ca.root_pem,
            "trustDomain": ca.trust_domain,
        })
        .to_string();
        let path = plan::param_path(prefix, &s.scope, &s.name);
        let tier = self.inner.cfg.extension_data_tier;
        self.aws_call("PutParameter", |a| {
            a.put_parameter(path.clone(), value.clone(), tier)
        })
        .await
        .map_err(|e| e.to_string())
    }

    pub(super) async fn delete(&self, d: &plan::Delete) -> (bool, usize) {
        let node = self.inner.cfg.node_name.clone();
        let mut writes = 0;
        if d.config {
            if let Err(e) = self
                .consul_call("DeleteConfig", |c| {
                    c.delete_config(d.scope.clone(), d.name.clone())
                })
                .await
            {
                warn!(service = %d.name, error = %e, "cannot delete service-defaults");
                return (false, writes);
            }
            writes += 1;
        }
        if let Err(e) = self
            .consul_call("Deregister", |c| {
                c.deregister(d.scope.clone(), node.clone(), d.name.clone())
            })
            .await
        {
            warn!(service = %d.name, error = %e, "cannot deregister service");
            return (false, writes);
        }
        writes += 1;
        if let Some(p) = &d.param {
            if let Err(e) = self
                .aws_call("DeleteParameter", |a| a.delete_parameter(p.clone()))
                .await
            {
                warn!(service = %d.name, parameter = %p, error = %e, "cannot delete mTLS material");
                return (false, writes);
            }
            writes += 1;
        }
        info!(service = %d.name, "deleted");
        (true, writes)
    }
}
