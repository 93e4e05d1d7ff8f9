//! The leaf-certificate cache: one leaf per service, signed on first request and reused until it
//! passes two thirds of its lifetime or the active root changes (after the rotation grace).
//! Leaves are persisted (`leaf/persist.rs`) before they are served, so a restart of the server
//! reissues none: every proxy and every function keeps its certificate (a Consul agent's cache
//! is in memory and signs anew after a restart).

mod persist;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Mutex, MutexGuard, watch};

use mesh_model::names::ServiceName;
use store::Op;
use store::state::ca::CaOp;

use super::{CaError, ROTATION_GRACE};
use crate::AppState;

/// Serials reserved in the store per write: a restart skips the rest of a block, so serials stay
/// unique and increasing across restarts at the cost of one write per 1024 certificates.
const SERIAL_BLOCK: u64 = 1024;

/// A service's current leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub service: ServiceName,
    pub cert_pem: String,
    /// PKCS#8 PEM of the leaf's P-256 key.
    pub key_pem: String,
    /// Colon-hex serial number.
    pub serial: String,
    /// RFC 3339 validity bounds.
    pub valid_after: String,
    pub valid_before: String,
    /// `ID` of the root that signed it.
    pub root_id: String,
    /// The serial as a number: increases with every issue, so it orders leaves for blocking
    /// queries (`?index`).
    pub modify_index: u64,
    pub spiffe_id: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Leaf certificates signed for services, reused until they need renewal.
pub struct LeafCache {
    leaves: parking_lot::Mutex<HashMap<ServiceName, Arc<Leaf>>>,
    /// Held while signing so two requests for one service do not both sign.
    issuing: Mutex<()>,
    serials: Mutex<Serials>,
    /// Serialises configuration writes (a rotation decision reads the stored config).
    config: Mutex<()>,
    changed: watch::Sender<u64>,
    /// Where leaves are kept (`None`: in memory only).
    dir: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Serials {
    next: u64,
    end: u64,
}

/// What signing and freshness checks need from the store, read once.
struct Signer {
    trust_domain: String,
    root_id: String,
    root_key: String,
    root_cn: String,
    /// In a secondary datacenter, the intermediate(s) between the leaf and the primary's root:
    /// appended to every leaf's PEM, as Consul's `CertPEM` carries them.
    chain: Vec<String>,
    /// When the active root was made (the rotation time).
    root_since: OffsetDateTime,
    trusted: Vec<String>,
    leaf_ttl: Duration,
}

impl Default for LeafCache {
    fn default() -> Self {
        Self {
            leaves: parking_lot::Mutex::default(),
            issuing: Mutex::default(),
            serials: Mutex::default(),
            config: Mutex::default(),
            changed: watch::channel(0).0,
            dir: None,
        }
    }
}

// === impl Leaf ===

impl Leaf {
    /// Still good to serve at `now` under `signer`: before two thirds of its lifetime, and signed
    /// by the active root, or by a still-trusted previous root within the rotation grace.
    fn fresh(&self, signer: &Signer, now: OffsetDateTime) -> bool {
        let renew_at = self.not_before + (self.not_after - self.not_before) * 2 / 3;
        if now >= renew_at {
            return false;
        }
        if self.root_id == signer.root_id {
            return true;
        }
        signer.trusted.contains(&self.root_id) && now < signer.root_since + ROTATION_GRACE
    }
}

// === impl LeafCache ===

impl LeafCache {
    /// The cache of a server whose data dir is `data_dir`, with the leaves it kept. A leaf
    /// that is no longer fresh (renewal due, or its root no longer active) is replaced on its
    /// first use, as a cached one is.
    pub fn open(data_dir: &std::path::Path) -> Self {
        let dir = persist::dir(data_dir);
        let loaded = persist::load(&dir);
        if !loaded.is_empty() {
            tracing::info!(
                leaves = loaded.len(),
                "leaf certificates kept from the last run"
            );
        }
        let newest = loaded.iter().map(|l| l.modify_index).max().unwrap_or(0);
        let leaves = loaded
            .into_iter()
            .map(|l| (l.service.clone(), Arc::new(l)))
            .collect();
        Self {
            leaves: parking_lot::Mutex::new(leaves),
            changed: watch::channel(newest).0,
            dir: Some(dir),
            ..Self::default()
        }
    }

    /// The service's current leaf, signed now if it has none or the cached one needs renewal.
    ///
    /// # Errors
    /// The CA is not initialised, signing fails, or the store cannot reserve serials.
    pub async fn get(&self, app: &AppState, service: &ServiceName) -> Result<Arc<Leaf>, CaError> {
        let signer = signer(app)?;
        let now = OffsetDateTime::now_utc();
        if let Some(l) = self.cached(service, &signer, now) {
            return Ok(l);
        }
        let _issuing = self.issuing.lock().await;
        // Another request may have signed while this one waited.
        if let Some(l) = self.cached(service, &signer, now) {
            return Ok(l);
        }
        let serial = self.next_serial(app).await?;
        let issued = ca::sign_leaf(
            ca::SigningRoot {
                key_pem: &signer.root_key,
                common_name: &signer.root_cn,
            },
            &signer.trust_domain,
            &app.config.datacenter,
            service,
            serial,
            now,
            signer.leaf_ttl,
        )
        .map_err(|source| CaError::Sign {
            service: service.name.clone(),
            source,
        })?;
        let mut cert_pem = issued.cert_pem;
        for c in &signer.chain {
            cert_pem.push_str(c);
        }
        let leaf = Arc::new(Leaf {
            service: service.clone(),
            cert_pem,
            key_pem: issued.key_pem,
            serial: issued.serial_hex,
            valid_after: issued.not_before.format(&Rfc3339).unwrap_or_default(),
            valid_before: issued.not_after.format(&Rfc3339).unwrap_or_default(),
            root_id: signer.root_id.clone(),
            modify_index: serial,
            spiffe_id: issued.spiffe_id,
            not_before: issued.not_before,
            not_after: issued.not_after,
        });
        if let Some(dir) = self.dir.clone() {
            // On disk before anyone sees it, so no leaf that was served is lost in a restart.
            // A failure only costs a reissue after the next restart.
            let stored = leaf.clone();
            let saved = tokio::task::spawn_blocking(move || persist::save(&dir, &stored)).await;
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(service = %service.name, error = %e, "cannot store a leaf")
                }
                Err(e) => {
                    tracing::warn!(service = %service.name, error = %e, "cannot store a leaf")
                }
            }
        }
        self.leaves.lock().insert(service.clone(), leaf.clone());
        app.metrics.leaves_issued.inc();
        tracing::debug!(service = %service.name, serial, root = %signer.root_id, "signed a leaf");
        self.changed.send_modify(|v| *v = (*v).max(serial));
        Ok(leaf)
    }

    /// The cached leaf of a service, without signing (for change detection).
    pub fn peek(&self, service: &ServiceName) -> Option<Arc<Leaf>> {
        self.leaves.lock().get(service).cloned()
    }

    /// Bumped (to the newest leaf's `modify_index`) on every issue and renewal.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn cached(
        &self,
        service: &ServiceName,
        signer: &Signer,
        now: OffsetDateTime,
    ) -> Option<Arc<Leaf>> {
        self.leaves
            .lock()
            .get(service)
            .filter(|l| l.fresh(signer, now))
            .cloned()
    }

    /// Blocking form of [`get`](Self::get): waits until the service's leaf has a
    /// `modify_index` above `min` (a renewal or a rotation) or `wait` passes, then answers the
    /// current leaf.
    pub(crate) async fn wait_newer(
        &self,
        app: &AppState,
        service: &ServiceName,
        min: u64,
        wait: Duration,
    ) -> Result<Arc<Leaf>, CaError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut rx = self.subscribe();
        loop {
            // Mark the current value seen before looking, so no renewal slips between.
            rx.borrow_and_update();
            let leaf = self.get(app, service).await?;
            if leaf.modify_index > min {
                return Ok(leaf);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(leaf),
            }
        }
    }

    /// Renews every cached leaf that needs it (called by the CA's background task), so blocked
    /// `?index` readers and the xDS server see renewals and rotations without asking first.
    pub(crate) async fn renew_due(&self, app: &AppState) {
        let services: Vec<ServiceName> = self.leaves.lock().keys().cloned().collect();
        for svc in services {
            if let Err(e) = self.get(app, &svc).await {
                tracing::warn!(service = %svc.name, error = %e, "cannot renew a leaf");
            }
        }
    }

    pub(crate) async fn config_lock(&self) -> MutexGuard<'_, ()> {
        self.config.lock().await
    }

    /// The next certificate serial number, reserving a block in the store when the current one is
    /// used up.
    pub(crate) async fn next_serial(&self, app: &AppState) -> Result<u64, CaError> {
        let mut s = self.serials.lock().await;
        if s.next >= s.end {
            let committed = app
                .store
                .write(Op::Ca(CaOp::ReserveSerials {
                    count: SERIAL_BLOCK,
                }))
                .await?;
            // The block this write reserved, whatever other replicas reserved after it.
            let block = app
                .store
                .read(|st| st.serial_block(committed.index))
                .ok_or(CaError::SerialsLost)?;
            *s = Serials {
                next: block.start,
                end: block.end,
            };
        }
        let n = s.next;
        s.next += 1;
        Ok(n)
    }
}

fn signer(app: &AppState) -> Result<Signer, CaError> {
    app.store.read(|s| {
        let ca = s.ca();
        let root = ca.active_root().ok_or(CaError::NoActiveRoot)?;
        let root_since =
            OffsetDateTime::parse(&root.not_before, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(Signer {
            trust_domain: super::trust_domain(s),
            root_id: root.id.clone(),
            root_key: root.private_key.clone(),
            root_cn: root.signing_cn().to_owned(),
            chain: root.intermediate_certs.clone(),
            root_since,
            trusted: ca.roots.iter().map(|r| r.id.clone()).collect(),
            leaf_ttl: Duration::from_secs(ca.config.leaf_cert_ttl_secs),
        })
    })
}
