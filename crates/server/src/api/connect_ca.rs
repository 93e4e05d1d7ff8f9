//! Connect CA endpoints (`/v1/{agent/,}connect/ca/roots`, `/v1/agent/connect/ca/leaf/:service`,
//! `/v1/connect/ca/configuration`, `/v1/agent/connect/authorize`) and the CA's runtime duties.
//!
//! Certificates are made here (with `ca`, which is pure) and carried into the store inside one
//! `CaOp`, so the committer stays deterministic. Leaves are not stored: they live in the
//! [`LeafCache`] and are reissued when they pass two thirds of their lifetime or when the active
//! root changes. Rotation keeps the old root in the bundle (`Active:false`) until every leaf it
//! signed has expired; leaves are reissued from the new root only [`ROTATION_GRACE`] after the
//! rotation, so that every proxy holds the two-root bundle before it meets a new leaf.

mod leaf;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use mesh_model::names::ServiceName;
use store::state::ca::{CaConfigRecord, CaOp, CaRoot};
use store::{Op, WatchKey};

use crate::AppState;
use crate::api::body;
use crate::authz;
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, blocking, json, json_with_index};

pub use leaf::{Leaf, LeafCache};

/// How long after a rotation leaves keep coming from the old root: the time the new two-root
/// bundle has to reach every proxy before any of them presents a leaf only the new root signs.
pub const ROTATION_GRACE: Duration = Duration::from_secs(2);

/// How often [`run`] looks for leaves to renew and roots to prune.
const TICK: Duration = Duration::from_secs(1);

fn keys() -> [WatchKey; 1] {
    [WatchKey::CaRoots]
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
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

fn root_json(state: &store::State, r: &CaRoot) -> Value {
    let rotated_out = r
        .retired_at_unix
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339);
    json!({
        "ID": r.id,
        "Name": r.name,
        "SerialNumber": r.serial_number,
        "SigningKeyID": r.signing_key_id,
        "ExternalTrustDomain": state.ca().cluster_id,
        "NotBefore": r.not_before,
        "NotAfter": r.not_after,
        "RootCert": r.root_cert,
        "IntermediateCerts": null,
        "Active": r.active,
        "RotatedOutAt": rotated_out,
        "PrivateKeyType": r.private_key_type,
        "PrivateKeyBits": r.private_key_bits,
        "CreateIndex": r.create_index,
        "ModifyIndex": r.modify_index,
    })
}

fn roots_json(state: &store::State) -> Value {
    let ca = state.ca();
    json!({
        "ActiveRootID": ca.active_root().map(|r| r.id.clone()).unwrap_or_default(),
        "TrustDomain": trust_domain(state),
        "Roots": ca.roots.iter().map(|r| root_json(state, r)).collect::<Vec<_>>(),
    })
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
    }
}

async fn generate_root(
    app: &AppState,
    trust_domain: &str,
    config: &CaConfigRecord,
) -> ApiResult<CaRoot> {
    let serial = app.leaves.next_serial(app).await?;
    let root = ca::generate_root(
        trust_domain,
        serial,
        OffsetDateTime::now_utc(),
        Duration::from_secs(config.root_cert_ttl_secs),
        config.private_key.as_deref(),
    )
    .map_err(|e| match e {
        ca::CaError::BadKey(_) | ca::CaError::WrongKeyType => {
            ApiError::bad_request(format!("Config.PrivateKey: {e}"))
        }
        other => ApiError::internal(format!("cannot generate the CA root: {other}")),
    })?;
    Ok(root_record(root, config.leaf_cert_ttl_secs))
}

// === endpoints ===

/// `GET /v1/agent/connect/ca/roots` and `/v1/connect/ca/roots` (blocking; no ACL needed).
/// `?pem=true` answers the PEM bundle as text, active root first.
pub async fn roots(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    if q.flag("pem") {
        let (pems, _) = blocking(&app, &q, &keys(), trust_bundle).await;
        let text = pems
            .iter()
            .map(|p| p.trim_end().to_owned() + "\n")
            .collect::<String>();
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
            text,
        )
            .into_response());
    }
    let (v, index) = blocking(&app, &q, &keys(), roots_json).await;
    Ok(json_with_index(&v, index))
}

/// `GET /v1/agent/connect/ca/leaf/:service` (blocking on the cached leaf; needs `service:write`).
pub async fn leaf(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    mesh_model::names::validate_service_name("service name", &service)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    authz::require(
        &ident,
        ident.authorizer.service_write(&service),
        "service:write",
        &service,
    )?;
    let svc = ServiceName::new(service, q.meta.clone());
    let leaf = match q.index.filter(|i| *i > 0) {
        None => app.leaves.get(&app, &svc).await?,
        Some(min) => app.leaves.wait_newer(&app, &svc, min, q.wait).await?,
    };
    Ok(json_with_index(&leaf.to_json(), leaf.modify_index))
}

fn config_json(c: &CaConfigRecord) -> Value {
    let d = |s: u64| ca::format_duration(Duration::from_secs(s));
    json!({
        "Provider": c.provider,
        "Config": {
            "LeafCertTTL": d(c.leaf_cert_ttl_secs),
            "IntermediateCertTTL": d(c.intermediate_cert_ttl_secs),
            "RootCertTTL": d(c.root_cert_ttl_secs),
            "PrivateKeyType": c.private_key_type,
            "PrivateKeyBits": c.private_key_bits,
            "RotationPeriod": d(c.rotation_period_secs),
        },
        "State": null,
        "ForceWithoutCrossSigning": c.force_without_cross_signing,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    })
}

/// `GET /v1/connect/ca/configuration` (`operator:read`). A supplied `PrivateKey` is never shown.
pub async fn configuration_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    authz::require(
        &ident,
        ident.authorizer.operator_read(),
        "operator:read",
        "",
    )?;
    let (v, index) = blocking(&app, &q, &keys(), |s| config_json(&s.ca().config)).await;
    Ok(json_with_index(&v, index))
}

/// Decodes a configuration PUT body into the stored record (the parser the fuzz target drives).
///
/// # Errors
/// 400 naming the bad field.
pub fn parse_config_body(bytes: &[u8]) -> ApiResult<CaConfigRecord> {
    let req = ca::parse_config_request(bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let c = req.config;
    Ok(CaConfigRecord {
        provider: req.provider,
        leaf_cert_ttl_secs: secs(c.leaf_cert_ttl),
        intermediate_cert_ttl_secs: secs(c.intermediate_cert_ttl),
        root_cert_ttl_secs: secs(c.root_cert_ttl),
        rotation_period_secs: secs(c.rotation_period),
        private_key_type: c.private_key_type,
        private_key_bits: c.private_key_bits,
        private_key: c.private_key,
        force_without_cross_signing: req.force_without_cross_signing,
        create_index: 0,
        modify_index: 0,
    })
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

/// `PUT /v1/connect/ca/configuration` (`operator:write`): stores the configuration and rotates
/// the root when the key settings change (see `docs/connect-ca.md`).
pub async fn configuration_put(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    authz::require(
        &ident,
        ident.authorizer.operator_write(),
        "operator:write",
        "",
    )?;
    let config = parse_config_body(&body(b)?)?;
    // One configuration change at a time: the rotation decision reads the stored config.
    let _guard = app.leaves.config_lock().await;
    let (current, td) = app.store.read(|s| (s.ca().config.clone(), trust_domain(s)));
    let rotate = if key_settings(&current) != key_settings(&config) {
        Some(generate_root(&app, &td, &config).await?)
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
    Ok(StatusCode::OK.into_response())
}

/// Reads a JSON string field in any key case (`Target`, `target`).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
}

/// `POST /v1/agent/connect/authorize` (`service:write` on the target): would a client presenting
/// `ClientCertURI` be allowed to connect to `Target`? L7 intentions count as deny.
pub async fn authorize(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let q = Query::parse(raw.as_deref())?;
    let ident = authz::resolve(&app, &headers, &q)?;
    let v: Value = serde_json::from_slice(&body(b)?)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    let target = field(&v, "Target")
        .ok_or_else(|| ApiError::bad_request("Target service must be specified"))?;
    let uri = field(&v, "ClientCertURI")
        .ok_or_else(|| ApiError::bad_request("ClientCertURI must be given"))?;
    authz::require(
        &ident,
        ident.authorizer.service_write(target),
        "service:write",
        target,
    )?;
    let src = mesh_model::connect::parse_service_spiffe_id(uri).map_err(|e| {
        ApiError::bad_request(format!("ClientCertURI not a valid Service identifier: {e}"))
    })?;
    let dst = ServiceName::new(target, q.meta.clone());
    let default_allow = !app.config.acl.enabled || app.config.acl.default_allow;
    let (authorized, reason) = app.store.read(|s| {
        if !src.trust_domain.eq_ignore_ascii_case(&trust_domain(s)) {
            return (
                false,
                format!(
                    "Identity from an external trust domain: {}",
                    src.trust_domain
                ),
            );
        }
        let d =
            mesh_model::intentions::check(s.config_entries(), &src.service, &dst, default_allow);
        (d.allowed, d.reason)
    });
    Ok(json(&json!({"Authorized": authorized, "Reason": reason})))
}

// === lifecycle ===

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
            if let Err(e) = prune(&app).await {
                tracing::warn!(error = %e.message, "cannot prune retired CA roots");
            }
        }
    }
    .instrument(tracing::info_span!("connect_ca"))
    .await;
}

async fn prune(app: &AppState) -> ApiResult<()> {
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
pub(crate) async fn init(app: &AppState) -> ApiResult<()> {
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
    app.store
        .write(Op::Ca(CaOp::Initialize {
            cluster_id,
            config,
            root,
        }))
        .await?;
    Ok(())
}
