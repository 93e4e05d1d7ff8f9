//! A secondary datacenter's side: join the primary (take its trust domain and roots, have it sign
//! an intermediate CA for a key made here), then follow its roots with a blocking `Roots` request
//! and ask for a new intermediate when the primary's active root changes (a rotation) or the
//! intermediate is due for renewal (`mesh_model::federation::intermediate_need`).
//!
//! The primary is reached only through `primary_gateways`, each dialled with the SNI
//! `server.<primary>.consul` and verified by that name against the primary's roots (`ca_file`
//! until the first join, then the roots held). A gateway that fails is named in the log and the
//! next one is tried, with a backoff up to `primary_gateways_interval`. While the primary cannot
//! be reached this datacenter keeps serving with what it holds.

use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;

use mesh_model::federation::{GatewayAddr, HeldIntermediate, IntermediateNeed, intermediate_need};
use store::Op;
use store::state::ca::{CaOp, CaRoot};

use super::wire::{Answer, Request, Roots, VERSION};
use crate::AppState;

/// How long the primary holds a `Roots` request when nothing changes: also how soon a change of
/// this datacenter's mesh gateways reaches the primary (each request reports them).
const ROOTS_WAIT: Duration = Duration::from_secs(10);
/// First retry delay after a failure (doubled up to `primary_gateways_interval`).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub(crate) async fn run(app: AppState) {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "federation",
        datacenter = %app.config.datacenter,
        primary = %app.config.federation.primary_datacenter
    );
    async move {
        let gateways = app.config.federation.primary_gateways.clone();
        let cap = app.config.federation.primary_gateways_interval;
        let mut next = 0usize;
        let mut backoff = FIRST_BACKOFF;
        let mut follow = Follow::default();
        loop {
            // With several replicas on one etcd store, the elected one joins and follows
            // (always this process with the embedded store).
            if !*app.store.leadership().borrow() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let Some(gw) = gateways.get(next % gateways.len().max(1)) else {
                tracing::error!("no primary_gateways to reach the primary through");
                return;
            };
            match step(&app, gw, &mut follow).await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    let mut link = app.federation.link.lock();
                    link.last_contact_unix = Some(OffsetDateTime::now_utc().unix_timestamp());
                    link.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(gateway = %gw, error = %e, retry_in = ?backoff, "cannot reach the primary through this gateway");
                    app.federation.link.lock().last_error = Some(format!("{gw}: {e}"));
                    // The next gateway may answer; the wait grows only as failures repeat.
                    next = next.wrapping_add(1);
                    follow.min_index = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cap);
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// What the loop carries between steps.
#[derive(Default)]
struct Follow {
    /// The primary's roots index last seen (0: answer at once).
    min_index: u64,
    /// Roots learned from the primary that the store may not hold yet (a rotation seen before
    /// the new intermediate is in): trusted for the primary's certificate meanwhile.
    learned: Vec<String>,
}

/// One exchange with the primary: a join when an intermediate is needed, else one blocking
/// `Roots` request and what it implies.
async fn step(app: &AppState, gw: &GatewayAddr, follow: &mut Follow) -> Result<(), String> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (held, cluster_id) = app.store.read(|s| (held(s), s.ca().cluster_id.clone()));
    let need = intermediate_need(
        held.as_ref(),
        held.as_ref().map_or("", |h| h.root_id.as_str()),
        now,
    );
    if need != IntermediateNeed::Keep {
        return join(app, gw, follow, need).await;
    }
    let answer = call(
        app,
        gw,
        follow,
        &Request::Roots {
            version: VERSION,
            min_index: follow.min_index,
            wait_ms: u64::try_from(ROOTS_WAIT.as_millis()).unwrap_or(u64::MAX),
            mesh_gateways: app
                .store
                .read(super::local_gateways)
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        ROOTS_WAIT + Duration::from_secs(15),
    )
    .await?;
    let roots = match answer {
        Answer::Roots(r) => r,
        other => return Err(refused(other)),
    };
    if roots.cluster_id != cluster_id {
        return Err(format!(
            "the primary's trust domain is {}.consul, this datacenter's {cluster_id}.consul",
            roots.cluster_id
        ));
    }
    follow.min_index = roots.index;
    follow.learned = roots.roots.iter().map(|r| r.root_cert.clone()).collect();
    *app.federation.from_primary.lock() = roots.datacenters.clone();
    learn_gateways(app, &roots).await;
    let held_root = held.map(|h| h.root_id).unwrap_or_default();
    if roots.active_root_id != held_root {
        tracing::info!(old = %held_root, new = %roots.active_root_id, "the primary's active root changed");
        return join(app, gw, follow, IntermediateNeed::RootRotated).await;
    }
    // Same active root: keep the intermediate, take the rest (retired roots added or pruned).
    let same = app.store.read(|s| {
        let ids: Vec<(&str, bool)> = s
            .ca()
            .roots
            .iter()
            .map(|r| (r.id.as_str(), r.active))
            .collect();
        let theirs: Vec<(&str, bool)> = roots
            .roots
            .iter()
            .map(|r| (r.id.as_str(), r.active))
            .collect();
        ids == theirs
    });
    if !same {
        let active = app.store.read(|s| s.ca().active_root().cloned());
        let Some(active) = active else {
            return Err("no active root held".into());
        };
        write_roots(app, &roots, &active).await?;
    }
    Ok(())
}

/// Stores the primary's map of mesh gateways (other datacenters'), for `?dc=` forwarding and
/// for service traffic to other datacenters.
async fn learn_gateways(app: &AppState, roots: &Roots) {
    for (dc, list) in &roots.mesh_gateways {
        if *dc == app.config.datacenter {
            continue;
        }
        let addrs: Vec<GatewayAddr> = list
            .iter()
            .filter_map(|g| mesh_model::federation::parse_gateway_addr(g).ok())
            .collect();
        super::learn_gateways_of(app, dc, &addrs).await;
    }
}

/// The intermediate this datacenter holds, if any.
fn held(s: &store::State) -> Option<HeldIntermediate> {
    let root = s.ca().active_root()?;
    let pem = root.intermediate_certs.first()?;
    let (nb, na) = ca::cert_validity(pem).ok()?;
    Some(HeldIntermediate {
        root_id: root.id.clone(),
        not_before: nb.unix_timestamp(),
        not_after: na.unix_timestamp(),
    })
}

/// Takes the primary's roots and a new intermediate for a key made here.
async fn join(
    app: &AppState,
    gw: &GatewayAddr,
    follow: &mut Follow,
    why: IntermediateNeed,
) -> Result<(), String> {
    let dc = app.config.datacenter.clone();
    // The trust domain is the primary's: read it first (roots are public, as on the HTTP API).
    let roots = match call(
        app,
        gw,
        follow,
        &Request::Roots {
            version: VERSION,
            min_index: 0,
            wait_ms: 0,
            mesh_gateways: Vec::new(),
        },
        Duration::from_secs(15),
    )
    .await?
    {
        Answer::Roots(r) => r,
        other => return Err(refused(other)),
    };
    let ours = app.store.read(|s| s.ca().cluster_id.clone());
    if !ours.is_empty() && ours != roots.cluster_id {
        return Err(format!(
            "the primary's trust domain is {}.consul, this datacenter's {ours}.consul: a data dir keeps one trust domain",
            roots.cluster_id
        ));
    }
    follow.learned = roots.roots.iter().map(|r| r.root_cert.clone()).collect();
    *app.federation.from_primary.lock() = roots.datacenters.clone();
    let td = mesh_model::connect::trust_domain(&roots.cluster_id);
    let key = ca::federation::new_intermediate_key(&td, &dc).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let req = Request::SignIntermediate {
        version: VERSION,
        datacenter: dc.clone(),
        public_key: b64.encode(key.public_key.as_bytes()),
        proof: b64.encode(&key.proof),
        token: app.config.federation.replication_token.clone(),
    };
    let int = match call(app, gw, follow, &req, Duration::from_secs(15)).await? {
        Answer::Intermediate(i) => i,
        other => return Err(refused(other)),
    };
    if int.roots.cluster_id != roots.cluster_id || int.root_id != int.roots.active_root_id {
        return Err(
            "the primary's answer does not hold together (trust domain or active root)".into(),
        );
    }
    let active = CaRoot {
        private_key: key.key_pem,
        intermediate_certs: vec![int.cert_pem],
        signing_common_name: int.common_name.clone(),
        ..CaRoot::default()
    };
    write_roots(app, &int.roots, &active).await?;
    follow.min_index = int.roots.index;
    tracing::info!(
        reason = ?why,
        root = %int.root_id,
        intermediate = %int.common_name,
        trust_domain = %td,
        "holding an intermediate CA signed by the primary"
    );
    Ok(())
}

/// Stores the primary's roots, the active one carrying this datacenter's intermediate (taken
/// from `signing`).
async fn write_roots(app: &AppState, roots: &Roots, signing: &CaRoot) -> Result<(), String> {
    let records = roots
        .roots
        .iter()
        .map(|r| {
            let mut rec = CaRoot {
                id: r.id.clone(),
                name: r.name.clone(),
                common_name: r.common_name.clone(),
                serial_number: r.serial_number,
                signing_key_id: r.signing_key_id.clone(),
                not_before: r.not_before.clone(),
                not_after: r.not_after.clone(),
                not_after_unix: r.not_after_unix,
                root_cert: r.root_cert.clone(),
                private_key: String::new(),
                private_key_type: "ec".into(),
                private_key_bits: 256,
                active: r.active,
                max_leaf_ttl_secs: r.max_leaf_ttl_secs,
                retired_at_unix: r.retired_at_unix,
                ..CaRoot::default()
            };
            if r.active {
                rec.private_key = signing.private_key.clone();
                rec.intermediate_certs = signing.intermediate_certs.clone();
                rec.signing_common_name = signing.signing_common_name.clone();
            }
            rec
        })
        .collect();
    app.store
        .write(Op::Ca(CaOp::SetPrimaryRoots {
            cluster_id: roots.cluster_id.clone(),
            roots: records,
        }))
        .await
        .map_err(|e| format!("cannot store the primary's roots: {e}"))?;
    Ok(())
}

fn refused(answer: Answer) -> String {
    match answer {
        Answer::Error(e) => format!("the primary refused: {:?}: {}", e.code, e.message),
        other => format!("unexpected answer from the primary: {other:?}"),
    }
}

/// One request to the primary through `gw` (`super::dial`), trusting the roots just learned too.
async fn call(
    app: &AppState,
    gw: &GatewayAddr,
    follow: &Follow,
    req: &Request,
    timeout: Duration,
) -> Result<Answer, String> {
    let primary = &app.config.federation.primary_datacenter;
    super::dial(app, primary, gw, &follow.learned, req, timeout).await
}
