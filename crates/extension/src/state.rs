//! The material in use and when it is re-read. Shared by the connections (which read it), the
//! refresher thread (which replaces it) and the event loop (which asks for a refresh on INVOKE).
//!
//! - A refresh is due every `CONSUL_REFRESH_FREQUENCY` after the last attempt. The refresher
//!   wakes then; a frozen sandbox runs no timers, so the first INVOKE after the interval asks
//!   too, and a connection that finds the material due waits (briefly) for that read.
//! - A failed read, or material that does not parse, keeps the last good material.
//! - Roots of replaced material stay trusted for [`RETIRED_ROOT_TRUST`]: after a CA root
//!   rotation, services keep presenting leaves of the old root until they are reissued, while
//!   the registrator writes only the active root (Consul's agents trust both roots the same way).
//! - A connection whose peer fails verification may be facing newer material than ours (a
//!   rotation): it may ask for a re-read at once, at most once per [`STALE_REREAD_INTERVAL`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use rustls::{crypto::CryptoProvider, pki_types::CertificateDer};
use tracing::{info, warn};

use crate::{
    material::{ExtensionData, Material},
    tls::{self, TlsSet},
    upstream::Upstream,
};

/// How long the roots of replaced material stay trusted: Consul's default leaf lifetime, the
/// longest a leaf of a rotated-out root stays in use.
pub const RETIRED_ROOT_TRUST: Duration = Duration::from_secs(72 * 3600);
/// Least time between two re-reads asked for by failed verifications.
pub const STALE_REREAD_INTERVAL: Duration = Duration::from_secs(1);

/// What a connection uses: one material and its TLS configurations.
#[derive(Debug)]
pub struct Current {
    pub material: Arc<Material>,
    pub tls: TlsSet,
    /// Bumped each time the material changes.
    pub generation: u64,
}

/// Why a refresh ran (for the logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Timer,
    Invoke,
    Connection,
    StaleMaterial,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Timer => "timer",
            Reason::Invoke => "invoke",
            Reason::Connection => "connection",
            Reason::StaleMaterial => "peer failed verification",
        }
    }
}

/// Shared state; see the module docs.
pub struct Shared {
    upstreams: Vec<Upstream>,
    provider: Arc<CryptoProvider>,
    resumption: bool,
    every: Duration,
    inner: Mutex<Inner>,
    changed: Condvar,
}

struct Inner {
    current: Arc<Current>,
    retired: Vec<(CertificateDer<'static>, Instant)>,
    due_at: Instant,
    requested: Option<Reason>,
    /// Completed read attempts (successful or not).
    attempts: u64,
    last_stale_request: Option<Instant>,
    stopping: bool,
}

/// What one read gave.
pub type ReadResult = Result<ExtensionData, String>;

impl Shared {
    /// State holding `material` (already read and parsed at start).
    ///
    /// # Errors
    /// The TLS configurations cannot be built from it.
    pub fn new(
        material: Material,
        upstreams: Vec<Upstream>,
        provider: Arc<CryptoProvider>,
        every: Duration,
        resumption: bool,
    ) -> Result<Arc<Self>, tls::TlsError> {
        let tls = tls::build(&material, &[], &upstreams, &provider, resumption)?;
        Ok(Arc::new(Shared {
            upstreams,
            provider,
            resumption,
            every,
            inner: Mutex::new(Inner {
                current: Arc::new(Current {
                    material: Arc::new(material),
                    tls,
                    generation: 1,
                }),
                retired: Vec::new(),
                due_at: Instant::now() + every,
                requested: None,
                attempts: 0,
                last_stale_request: None,
                stopping: false,
            }),
            changed: Condvar::new(),
        }))
    }

    /// The material in use now.
    pub fn current(&self) -> Arc<Current> {
        self.inner.lock().current.clone()
    }

    /// The material for a new connection: when a refresh is due, it is asked for and waited
    /// for, at most `wait`; the last good material otherwise.
    pub fn current_for_connection(&self, wait: Duration) -> Arc<Current> {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        if now < inner.due_at {
            return inner.current.clone();
        }
        inner.requested.get_or_insert(Reason::Connection);
        self.changed.notify_all();
        let seen = inner.attempts;
        let until = now + wait;
        while inner.attempts == seen && !inner.stopping {
            if self.changed.wait_until(&mut inner, until).timed_out() {
                break;
            }
        }
        inner.current.clone()
    }

    /// On INVOKE: asks for a refresh if one is due (a thawed sandbox's timers are late).
    pub fn on_invoke(&self) {
        let mut inner = self.inner.lock();
        if Instant::now() >= inner.due_at && inner.requested.is_none() {
            inner.requested = Some(Reason::Invoke);
            self.changed.notify_all();
        }
    }

    /// For a connection whose peer failed verification: material newer than `generation`,
    /// asking for re-reads (at most one per [`STALE_REREAD_INTERVAL`]) until `deadline`.
    pub fn newer_than(&self, generation: u64, deadline: Instant) -> Option<Arc<Current>> {
        let mut inner = self.inner.lock();
        loop {
            if inner.current.generation > generation {
                return Some(inner.current.clone());
            }
            let now = Instant::now();
            if now >= deadline || inner.stopping {
                return None;
            }
            let next_allowed = inner
                .last_stale_request
                .map_or(now, |t| t + STALE_REREAD_INTERVAL);
            if now >= next_allowed {
                inner.last_stale_request = Some(now);
                inner.requested.get_or_insert(Reason::StaleMaterial);
                self.changed.notify_all();
            }
            let wake = if now >= next_allowed {
                deadline
            } else {
                next_allowed.min(deadline)
            };
            self.changed.wait_until(&mut inner, wake);
        }
    }

    /// Ends [`Shared::run_refresher`] and every wait.
    pub fn stop(&self) {
        self.inner.lock().stopping = true;
        self.changed.notify_all();
    }

    /// The refresher: reads with `read` whenever a refresh is due or asked for, until
    /// [`Shared::stop`].
    pub fn run_refresher(&self, mut read: impl FnMut() -> ReadResult) {
        loop {
            let reason = {
                let mut inner = self.inner.lock();
                loop {
                    if inner.stopping {
                        return;
                    }
                    if let Some(r) = inner.requested.take() {
                        break r;
                    }
                    if Instant::now() >= inner.due_at {
                        break Reason::Timer;
                    }
                    let due = inner.due_at;
                    self.changed.wait_until(&mut inner, due);
                }
            };
            let result = read();
            self.apply(reason, result);
        }
    }

    /// Takes the result of one read.
    pub fn apply(&self, reason: Reason, result: ReadResult) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.attempts += 1;
        inner.due_at = now + self.every;
        let old = inner.current.clone();
        match result {
            Ok(data) if data == old.material.data => {
                info!(reason = reason.as_str(), "mTLS material re-read: unchanged");
            }
            Ok(data) => match self.replace(&mut inner, data, now) {
                Ok(()) => {
                    let m = &inner.current.material;
                    info!(
                        reason = reason.as_str(),
                        leaf_sha256 = %m.leaf_sha256,
                        leaf_not_after = m.leaf_not_after,
                        trusted_retired_roots = inner.retired.len(),
                        "mTLS material refreshed; new connections use it"
                    );
                }
                Err(e) => {
                    warn!(reason = reason.as_str(), error = %e, "new mTLS material is unusable; keeping the last good");
                }
            },
            Err(e) => {
                warn!(reason = reason.as_str(), error = %e, "cannot re-read the mTLS material; keeping the last good");
            }
        }
        drop(inner);
        self.changed.notify_all();
    }

    fn replace(&self, inner: &mut Inner, data: ExtensionData, now: Instant) -> Result<(), String> {
        let material = Material::from_data(data, &self.provider).map_err(|e| e.to_string())?;
        let mut retired = inner.retired.clone();
        for root in &inner.current.material.roots {
            if !material.roots.contains(root) && !retired.iter().any(|(r, _)| r == root) {
                retired.push((root.clone(), now));
            }
        }
        retired.retain(|(r, since)| {
            !material.roots.contains(r) && now.duration_since(*since) < RETIRED_ROOT_TRUST
        });
        let roots: Vec<CertificateDer<'static>> = retired.iter().map(|(r, _)| r.clone()).collect();
        let tls = tls::build(
            &material,
            &roots,
            &self.upstreams,
            &self.provider,
            self.resumption,
        )
        .map_err(|e| e.to_string())?;
        inner.retired = retired;
        inner.current = Arc::new(Current {
            material: Arc::new(material),
            tls,
            generation: inner.current.generation + 1,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{testing::Mesh, upstream};

    fn shared(mesh: &Mesh, every: Duration) -> (Arc<Shared>, Arc<CryptoProvider>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let m = Material::from_data(mesh.data(&mesh.leaf("fn")), &provider).unwrap();
        let ups = upstream::parse_list("web:1234", "dc1").unwrap();
        (
            Shared::new(m, ups, provider.clone(), every, true).unwrap(),
            provider,
        )
    }

    #[test]
    fn failures_and_garbage_keep_the_last_good_and_changes_bump_the_generation() {
        let mesh = Mesh::new();
        let (s, _) = shared(&mesh, Duration::from_secs(3600));
        let first = s.current();
        s.apply(Reason::Timer, Err("ssm down".into()));
        let mut garbage = mesh.data(&mesh.leaf("fn"));
        garbage.private_key_pem = mesh.leaf("other").key_pem;
        s.apply(Reason::Timer, Ok(garbage));
        assert_eq!(s.current().generation, 1);
        assert_eq!(s.current().material.leaf_sha256, first.material.leaf_sha256);
        s.apply(Reason::Timer, Ok(first.material.data.clone()));
        assert_eq!(s.current().generation, 1, "the same material is no change");
        let next = mesh.leaf("fn");
        s.apply(Reason::Invoke, Ok(mesh.data(&next)));
        assert_eq!(s.current().generation, 2);
        assert_ne!(s.current().material.leaf_sha256, first.material.leaf_sha256);
    }

    #[test]
    fn a_rotated_out_root_stays_trusted() {
        let old = Mesh::new();
        let (s, _) = shared(&old, Duration::from_secs(3600));
        let new = Mesh::with_trust_domain(&old.trust_domain);
        s.apply(Reason::Timer, Ok(new.data(&new.leaf("fn"))));
        let inner = s.inner.lock();
        assert_eq!(inner.retired.len(), 1);
        assert_eq!(inner.current.material.roots.len(), 1);
        drop(inner);
        // Back to the old root: it is current again, not retired.
        s.apply(Reason::Timer, Ok(old.data(&old.leaf("fn"))));
        let inner = s.inner.lock();
        assert_eq!(inner.retired.len(), 1, "only the other root is retired now");
        assert!(!inner.current.material.roots.contains(&inner.retired[0].0));
    }

    #[test]
    fn the_refresher_reads_when_due_asked_for_and_on_invoke() {
        let mesh = Mesh::new();
        let (s, _) = shared(&mesh, Duration::from_millis(20));
        let reads = Arc::new(Mutex::new(0u32));
        let (s2, reads2) = (s.clone(), reads.clone());
        let data = s.current().material.data.clone();
        let t = std::thread::spawn(move || {
            s2.run_refresher(|| {
                *reads2.lock() += 1;
                Ok(data.clone())
            });
        });
        // Timer reads happen on their own; a connection after the interval waits for one.
        for _ in 0..500 {
            if *reads.lock() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(*reads.lock() >= 2);
        std::thread::sleep(Duration::from_millis(30));
        s.on_invoke();
        let _ = s.current_for_connection(Duration::from_secs(5));
        s.stop();
        t.join().unwrap();
    }

    #[test]
    fn newer_material_is_awaited_until_the_deadline() {
        let mesh = Mesh::new();
        let (s, _) = shared(&mesh, Duration::from_secs(3600));
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(s.newer_than(1, deadline).is_none());
        let (s2, next) = (s.clone(), mesh.data(&mesh.leaf("fn")));
        let t = std::thread::spawn(move || {
            s2.run_refresher(|| Ok(next.clone()));
        });
        let got = s.newer_than(1, Instant::now() + Duration::from_secs(30));
        assert_eq!(got.map(|c| c.generation), Some(2));
        s.stop();
        t.join().unwrap();
    }
}
