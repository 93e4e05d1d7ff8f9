//! Connect CA endpoints (`/v1/{agent/,}connect/ca/roots`, `/v1/agent/connect/ca/leaf/:service`,
//! `/v1/connect/ca/configuration`, `/v1/agent/connect/authorize`) and the CA's JSON (roots, leaf,
//! configuration). The CA's runtime (start-up, rotation, leaf cache) is `crate::connect`'s.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use mesh_model::names::ServiceName;
use store::WatchKey;
use store::state::ca::{CaConfigRecord, CaRoot};

use crate::AppState;
use crate::api::{Ctx, body};
use crate::connect::{self, Leaf, rfc3339, trust_bundle, trust_domain};
use crate::error::{ApiError, ApiResult};
use crate::query::{Query, blocking, json, json_with_index};

fn keys() -> [WatchKey; 1] {
    [WatchKey::CaRoots]
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
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
        // A secondary's intermediate, as Consul shows it on the active root there.
        "IntermediateCerts": if r.intermediate_certs.is_empty() { Value::Null } else { json!(r.intermediate_certs) },
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

/// Consul's `/v1/agent/connect/ca/leaf/:service` JSON.
fn leaf_json(l: &Leaf) -> Value {
    json!({
        "SerialNumber": l.serial,
        "CertPEM": l.cert_pem,
        "PrivateKeyPEM": l.key_pem,
        "Service": l.service.name,
        "ServiceURI": l.spiffe_id,
        "ValidAfter": l.valid_after,
        "ValidBefore": l.valid_before,
        "Namespace": l.service.meta.namespace,
        "Partition": l.service.meta.partition,
        "CreateIndex": l.modify_index,
        "ModifyIndex": l.modify_index,
    })
}

// === endpoints ===

/// `GET /v1/agent/connect/ca/roots` and `/v1/connect/ca/roots` (blocking; no ACL needed).
/// `?pem=true` answers the PEM bundle as text, active root first.
pub async fn roots(State(app): State<AppState>, q: Query) -> ApiResult<Response> {
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
    Path(service): Path<String>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    mesh_model::names::validate_service_name("service name", &service)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    caller.require(
        caller.authorizer.service_write(&service),
        "service:write",
        &service,
    )?;
    let svc = ServiceName::new(service, q.meta.clone());
    let leaf = match q.index.filter(|i| *i > 0) {
        None => app.leaves.get(&app, &svc).await?,
        Some(min) => app.leaves.wait_newer(&app, &svc, min, q.wait).await?,
    };
    Ok(json_with_index(&leaf_json(&leaf), leaf.modify_index))
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
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.operator_read(), "operator:read", "")?;
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

/// `PUT /v1/connect/ca/configuration` (`operator:write`): stores the configuration and rotates
/// the root when the key settings change (see `docs/connect-ca.md`).
pub async fn configuration_put(
    State(app): State<AppState>,
    Ctx { caller, .. }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    caller.require(caller.authorizer.operator_write(), "operator:write", "")?;
    let config = parse_config_body(&body(b)?)?;
    connect::configure(&app, config).await?;
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
    Ctx { query: q, caller }: Ctx,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let v: Value = serde_json::from_slice(&body(b)?)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
    let target = field(&v, "Target")
        .ok_or_else(|| ApiError::bad_request("Target service must be specified"))?;
    let uri = field(&v, "ClientCertURI")
        .ok_or_else(|| ApiError::bad_request("ClientCertURI must be given"))?;
    caller.require(
        caller.authorizer.service_write(target),
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
