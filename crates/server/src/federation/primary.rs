//! What a server answers on the inter-server protocol. The primary signs secondaries'
//! intermediates and serves its roots as a blocking query; every request says what it needs
//! from the caller (`Peer`): a server certificate of another datacenter, or for a first join a
//! token with `operator:write` (Consul's rule for `ConnectCA.SignIntermediate`).

use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;

use store::WatchKey;

use super::tls::Peer;
use super::wire::{Answer, ErrorCode, Intermediate, Request, Root, Roots, VERSION};
use crate::AppState;

/// Longest a `Roots` request is held (as `?wait` is capped at 10 minutes on the HTTP API).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The roots as the protocol carries them, keys left out.
pub(crate) fn roots_answer(s: &store::State) -> Roots {
    let ca = s.ca();
    Roots {
        cluster_id: ca.cluster_id.clone(),
        index: s.index_of(&[WatchKey::CaRoots]),
        active_root_id: ca.active_root().map(|r| r.id.clone()).unwrap_or_default(),
        roots: ca
            .roots
            .iter()
            .map(|r| Root {
                id: r.id.clone(),
                name: r.name.clone(),
                common_name: r.common_name.clone(),
                serial_number: r.serial_number,
                signing_key_id: r.signing_key_id.clone(),
                not_before: r.not_before.clone(),
                not_after: r.not_after.clone(),
                not_after_unix: r.not_after_unix,
                root_cert: r.root_cert.clone(),
                active: r.active,
                max_leaf_ttl_secs: r.max_leaf_ttl_secs,
                retired_at_unix: r.retired_at_unix,
            })
            .collect(),
        intermediate_cert_ttl_secs: ca.config.intermediate_cert_ttl_secs,
        datacenters: Vec::new(),
        mesh_gateways: std::collections::BTreeMap::new(),
    }
}

/// Why a request is refused (made into an `Answer::Error` by the caller).
type Refusal = (ErrorCode, String);

pub(crate) async fn answer(app: &AppState, req: Request, peer: &Peer) -> Answer {
    let version = match &req {
        Request::SignIntermediate { version, .. }
        | Request::Roots { version, .. }
        | Request::ConfigEntries { version, .. }
        | Request::Forward { version, .. } => *version,
    };
    if version != VERSION {
        return Answer::error(
            ErrorCode::BadRequest,
            format!("protocol version {version} is not spoken here (this server speaks {VERSION})"),
        );
    }
    match req {
        Request::Forward {
            datacenter,
            method,
            path_and_query,
            body,
            token,
            ..
        } => {
            super::forward::answer(
                app,
                peer,
                &datacenter,
                &method,
                &path_and_query,
                body,
                token,
            )
            .await
        }
        Request::ConfigEntries {
            min_index, wait_ms, ..
        } => {
            if !matches!(peer, Peer::Server { .. }) {
                return Answer::error(
                    ErrorCode::PermissionDenied,
                    "ConfigEntries needs a server certificate of this trust domain",
                );
            }
            let keys: Vec<WatchKey> = mesh_model::config_entry::Kind::ALL
                .iter()
                .map(|k| WatchKey::ConfigKind(*k))
                .collect();
            if min_index > 0 {
                let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
                app.store.wait_for_change(&keys, min_index, wait).await;
            }
            Answer::ConfigEntries(app.store.read(|s| super::wire::ConfigEntries {
                index: s.index_of(&keys),
                entries: s.config_entries().iter().map(|e| e.to_json()).collect(),
            }))
        }
        Request::Roots {
            min_index,
            wait_ms,
            mesh_gateways,
            ..
        } => {
            // Roots are public (as `/v1/connect/ca/roots`): a secondary reads them before it
            // joins. Holding a connection open is for servers only.
            if min_index > 0 && !matches!(peer, Peer::Server { .. }) {
                return Answer::error(
                    ErrorCode::PermissionDenied,
                    "a blocking Roots request needs a server certificate of this trust domain",
                );
            }
            if min_index > 0 {
                let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
                app.store
                    .wait_for_change(&[WatchKey::CaRoots], min_index, wait)
                    .await;
            }
            let now = OffsetDateTime::now_utc().unix_timestamp();
            if let Peer::Server { datacenter } = peer
                && *datacenter != app.config.datacenter
            {
                app.federation.saw(datacenter, now);
                // The caller's gateways, so that other datacenters (and `?dc=`) reach it.
                let addrs: Vec<_> = mesh_gateways
                    .iter()
                    .filter_map(|g| mesh_model::federation::parse_gateway_addr(g).ok())
                    .collect();
                super::learn_gateways_of(app, datacenter, &addrs).await;
            }
            tracing::debug!(peer = ?peer, "served the roots");
            let (mut roots, own, mut map) = app.store.read(|s| {
                (
                    roots_answer(s),
                    super::local_gateways(s),
                    s.federation_states().clone(),
                )
            });
            roots.datacenters = app.federation.datacenters(&app.config.datacenter, now);
            map.insert(
                app.config.datacenter.clone(),
                own.iter().map(ToString::to_string).collect(),
            );
            roots.mesh_gateways = map;
            Answer::Roots(roots)
        }
        Request::SignIntermediate {
            datacenter,
            public_key,
            proof,
            token,
            ..
        } => sign_intermediate(
            app,
            &datacenter,
            &public_key,
            &proof,
            token.as_deref(),
            peer,
        )
        .await
        .unwrap_or_else(|(code, message)| Answer::error(code, message)),
    }
}

async fn sign_intermediate(
    app: &AppState,
    dc: &str,
    public_key: &str,
    proof: &str,
    token: Option<&str>,
    peer: &Peer,
) -> Result<Answer, Refusal> {
    let cfg = &app.config;
    if cfg.federation.is_secondary(&cfg.datacenter) {
        return Err((
            ErrorCode::Unavailable,
            format!(
                "this server is in {}, a secondary; intermediates are signed by the primary ({})",
                cfg.datacenter, cfg.federation.primary_datacenter
            ),
        ));
    }
    if let Err(e) = mesh_model::federation::validate_datacenter(dc) {
        return Err((ErrorCode::BadRequest, e.to_string()));
    }
    if dc == cfg.datacenter {
        return Err((
            ErrorCode::PermissionDenied,
            format!("{dc} is the primary datacenter: its CA is the root"),
        ));
    }
    // A server of that datacenter renews with its certificate; anyone else needs the token.
    let by_cert = matches!(peer, Peer::Server { datacenter } if datacenter == dc);
    if !by_cert {
        let allowed = crate::authz::resolve_secret(app, token)
            .map(|id| id.authorizer.operator_write())
            .map_err(|e| (ErrorCode::PermissionDenied, e.message))?;
        if !allowed {
            return Err((ErrorCode::PermissionDenied, "Permission denied: the token lacks permission 'operator:write' (acl { tokens { replication } } in the secondary)".to_owned(),
            ));
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |what: &str| (ErrorCode::BadRequest, format!("{what} is not base64"));
    let key_bytes = b64.decode(public_key).map_err(|_| bad("PublicKey"))?;
    let proof = b64.decode(proof).map_err(|_| bad("Proof"))?;
    let key = ca::federation::P256PublicKey::from_bytes(&key_bytes)
        .map_err(|e| (ErrorCode::BadRequest, format!("PublicKey: {e}")))?;
    let (td, root, roots) = app.store.read(|s| {
        (
            crate::connect::trust_domain(s),
            s.ca().active_root().cloned(),
            roots_answer(s),
        )
    });
    ca::federation::verify_possession(&td, dc, &key, &proof)
        .map_err(|e| (ErrorCode::PermissionDenied, e.to_string()))?;
    let unavailable = |m: String| (ErrorCode::Unavailable, m);
    let root = root.ok_or_else(|| unavailable("the primary's CA has no active root".into()))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (nb, na) = mesh_model::federation::intermediate_validity(
        now,
        roots.intermediate_cert_ttl_secs,
        root.not_after_unix,
    )
    .map_err(unavailable)?;
    let internal = |m: String| (ErrorCode::Internal, m);
    let serial = app
        .leaves
        .next_serial(app)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t).map_err(|e| internal(format!("validity: {e}")))
    };
    let issued = ca::federation::sign_intermediate(
        ca::SigningRoot {
            key_pem: &root.private_key,
            common_name: root.signing_cn(),
        },
        &td,
        dc,
        &key,
        serial,
        at(nb)?,
        at(na)?,
    )
    .map_err(|e| internal(format!("cannot sign the intermediate: {e}")))?;
    app.federation.saw(dc, now);
    tracing::info!(
        secondary = %dc,
        root = %root.id,
        intermediate = %issued.common_name,
        by_certificate = by_cert,
        "signed a secondary datacenter's intermediate CA"
    );
    Ok(Answer::Intermediate(Intermediate {
        cert_pem: issued.cert_pem,
        common_name: issued.common_name,
        root_id: root.id,
        roots,
    }))
}
