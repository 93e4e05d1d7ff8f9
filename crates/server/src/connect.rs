//! The built-in Connect CA at run time: its start-up (`init`: cluster ID and first root), its
//! configuration changes with root rotation ([`configure`]), its background task (`run`: leaf
//! renewal and pruning of retired roots), and the leaf cache ([`LeafCache`]).
//!
//! Certificates are made here (with `ca`, which is pure) and carried into the store inside one
//! `CaOp`, so the committer stays deterministic. Leaves are not stored: they live in the
//! [`LeafCache`] and are reissued when they pass two thirds of their lifetime or when the active
//! root changes. Rotation keeps the old root in the bundle (`Active:false`) until every leaf it
//! signed has expired; leaves are reissued from the new root only [`ROTATION_GRACE`] after the
//! rotation, so that every proxy holds the two-root bundle before it meets a new leaf.
//!
//! This module owns no wire format: the CA's JSON is `api/connect_ca.rs`'s, and [`CaError`]
//! becomes an HTTP answer only in `error.rs`.

mod leaf;

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use store::Op;
use store::state::ca::{CaConfigRecord, CaOp, CaRoot};

use crate::AppState;

pub use leaf::{Leaf, LeafCache};

/// How long after a rotation leaves keep coming from the old root: the time the new two-root
/// bundle has to reach every proxy before any of them presents a leaf only the new root signs.
pub const ROTATION_GRACE: Duration = Duration::from_secs(2);

/// How often `run` looks for leaves to renew and roots to prune.
const TICK: Duration = Duration::from_secs(1);

/// Failures of the CA's runtime duties.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The configured `PrivateKey` cannot sign (the caller's mistake).
    #[error("Config.PrivateKey: {0}")]
    BadKey(#[source] ca::CaError),
    #[error("cannot generate the CA root: {0}")]
    Generate(#[source] ca::CaError),
    #[error("the Connect CA has no active root")]
    NoActiveRoot,
    /// The replica reloaded its state between reserving serials and reading its block (a resync
    /// from etcd): the block is unused, the next request reserves another.
    #[error("the reserved certificate serials were lost in a resync; retry")]
    SerialsLost,
    /// A secondary datacenter's root is the primary's (`docs/multi-dc.md`).
    #[error(
        "this datacenter ({datacenter}) is a secondary: its CA root comes from the primary ({primary}); change the CA's keys there"
    )]
    Secondary { datacenter: String, primary: String },
    #[error("cannot sign a leaf for {service}: {source}")]
    Sign {
        service: String,
        #[source]
        source: ca::CaError,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// RFC 3339 text of a time (empty if it cannot be formatted, which no real time hits).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The trust domain, `<cluster-id>.consul` (empty cluster ID before `init`).
pub fn trust_domain(state: &store::State) -> String {
    mesh_model::connect::trust_domain(&state.ca().cluster_id)
}

/// PEMs of every root still trusted, the active one first.
pub fn trust_bundle(state: &store::State) -> Vec<String> {
    let roots = &state.ca().roots;
    roots
        .iter()
        .filter(|r| r.active)
        .chain(roots.iter().filter(|r| !r.active))
        .map(|r| r.root_cert.clone())
        .collect()
}

/// A stored root from a freshly generated one.
fn root_record(g: ca::GeneratedRoot, leaf_ttl: u64) -> CaRoot {
    CaRoot {
        id: g.id,
        name: ca::ROOT_NAME.to_owned(),
        common_name: g.common_name,
        serial_number: g.serial,
        signing_key_id: g.signing_key_id,
        not_before: rfc3339(g.not_before),
        not_after: rfc3339(g.not_after),
        not_after_unix: g.not_after.unix_timestamp(),
        root_cert: g.cert_pem,
        private_key: g.key_pem,
        private_key_type: "ec".to_owned(),
        private_key_bits: 256,
        active: true,
        max_leaf_ttl_secs: leaf_ttl,
        retired_at_unix: None,
        create_index: 0,
        modify_index: 0,
        intermediate_certs: Vec::new(),
        signing_common_name: String::new(),
    }
}

async fn generate_root(
    app: &AppState,
    trust_domain: &str,
    config: &CaConfigRecord,
) -> Result<CaRoot, CaError> {
    let serial = app.leaves.next_serial(app).await?;
    let root = ca::generate_root(
        trust_domain,
        serial,
        OffsetDateTime::now_utc(),
        Duration::from_secs(config.root_cert_ttl_secs),
        config.private_key.as_deref(),
    )
    .map_err(|e| match e {
        ca::CaError::BadKey(_) | ca::CaError::WrongKeyType => CaError::BadKey(e),
        other => CaError::Generate(other),
    })?;
    Ok(root_record(root, config.leaf_cert_ttl_secs))
}

/// Consul's provider identity (`provider_consul.go`: a hash of PrivateKey, RootCert,
/// PrivateKeyType, PrivateKeyBits): when it changes, the provider makes a new root.
fn key_settings(c: &CaConfigRecord) -> (Option<&str>, &str, u32) {
    (
        c.private_key.as_deref(),
        &c.private_key_type,
        c.private_key_bits,
    )
}

/// Stores a new CA configuration, rotating the root when its key settings change (see
/// `docs/connect-ca.md`).
///
/// # Errors
/// The new key cannot sign, root generation fails, or the store refuses the write.
pub async fn configure(app: &AppState, config: CaConfigRecord) -> Result<(), CaError> {
    // One configuration change at a time: the rotation decision reads the stored config.
    let _guard = app.leaves.config_lock().await;
    let (current, td) = app.store.read(|s| (s.ca().config.clone(), trust_domain(s)));
    let fed = &app.config.federation;
    if fed.is_secondary(&app.config.datacenter) && key_settings(&current) != key_settings(&config) {
        return Err(CaError::Secondary {
            datacenter: app.config.datacenter.clone(),
            primary: fed.primary_datacenter.clone(),
        });
    }
    let rotate = if key_settings(&current) != key_settings(&config) {
        Some(generate_root(app, &td, &config).await?)
    } else {
        None
    };
    let rotated = rotate.as_ref().map(|r| r.id.clone());
    app.store
        .write(Op::Ca(CaOp::SetConfig {
            config,
            rotate,
            now_unix: OffsetDateTime::now_utc().unix_timestamp(),
        }))
        .await?;
    if let Some(id) = rotated {
        tracing::info!(root = %id, "CA root rotated; the previous root stays trusted until its leaves expire");
    }
    Ok(())
}

/// Background duties of the CA: renew leaves before they expire (and after a rotation's grace),
/// prune retired roots whose leaves have all expired.
pub(crate) async fn run(app: AppState) {
    use tracing::Instrument as _;
    async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            app.leaves.renew_due(&app).await;
            // Pruning is the cluster's, not each replica's: the elected one does it (always
            // this process with the embedded store).
            let leading = *app.store.leadership().borrow();
            if leading && let Err(e) = prune(&app).await {
                tracing::warn!(error = %e, "cannot prune retired CA roots");
            }
        }
    }
    .instrument(tracing::info_span!("connect_ca"))
    .await;
}

async fn prune(app: &AppState) -> Result<(), CaError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let due = app.store.read(|s| {
        s.ca().roots.iter().any(|r| {
            !r.active && (r.leaves_expire_at().is_some_and(|t| t <= now) || r.not_after_unix <= now)
        })
    });
    if due {
        app.store
            .write(Op::Ca(CaOp::Prune { now_unix: now }))
            .await?;
        tracing::info!("pruned retired CA roots whose leaves have expired");
    }
    Ok(())
}

/// Creates the CA's cluster ID and first root when the store has none.
///
/// # Errors
/// Root generation fails or the store refuses the write.
pub(crate) async fn init(app: &AppState) -> Result<(), CaError> {
    let (initialised, cluster_id) = app
        .store
        .read(|s| (!s.ca().cluster_id.is_empty(), s.meta.cluster_id.clone()));
    if initialised {
        return Ok(());
    }
    let cluster_id = if cluster_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        cluster_id
    };
    let config = CaConfigRecord::default();
    let td = mesh_model::connect::trust_domain(&cluster_id);
    let root = generate_root(app, &td, &config).await?;
    tracing::info!(trust_domain = %td, root = %root.id, "initialised the Connect CA");
    match app
        .store
        .write(Op::Ca(CaOp::Initialize {
            cluster_id,
            config,
            root,
        }))
        .await
    {
        // Replicas sharing an etcd store start together: one initialises, the others find it
        // done and use its root.
        Err(store::StoreError::Rejected(store::ApplyError::Conflict(_)))
            if app.store.read(|s| !s.ca().cluster_id.is_empty()) =>
        {
            tracing::info!("another replica initialised the Connect CA first");
            Ok(())
        }
        Err(e) => Err(e.into()),
        Ok(_) => Ok(()),
    }
}
