//! Several datacenters in one trust domain (`docs/multi-dc.md`): the inter-server protocol's
//! listener (`serve`), what the primary answers (`primary.rs`), how a secondary joins and keeps
//! its intermediate CA chained to the primary's active root (`secondary.rs`), the wire
//! (`wire.rs`) and TLS with server certificates from the mesh CA (`tls.rs`).
//!
//! Servers never assume they reach each other directly: a secondary dials the addresses in
//! `primary_gateways` (the primary's mesh gateways) with the SNI `server.<primary>.consul`,
//! which a gateway routes to the primary's server port; a gateway-less setup lists the server
//! port itself. The names and rules are `mesh_model::federation`'s, the certificates `ca`'s.

mod forward;
mod primary;
mod replicate;
mod secondary;
pub mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use mesh_model::federation::{DEFAULT_DOMAIN, GatewayAddr, server_sni};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use forward::{ForwardError, forward, forward_request, is_replicated_write_path};

use crate::AppState;
use crate::connect::CaError;

/// Lifetime of a server certificate (renewed at two thirds, and when the active root changes).
const SERVER_CERT_TTL: Duration = Duration::from_secs(72 * 3600);

/// How long a peer has to finish the handshake and send its request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

/// Why this server cannot speak the protocol right now.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("cannot sign this server's certificate: {0}")]
    Sign(#[source] ca::CaError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot read ca_file {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// This server's certificate and the TLS configurations made from it.
struct Identity {
    /// The active root (and so the signing CA) it was made under.
    root_id: String,
    renew_at: OffsetDateTime,
    server: Arc<rustls::ServerConfig>,
    /// The chain (leaf first) and key, presented when this server dials another (the client
    /// side's roots change with what it learns, so its configuration is made per call).
    chain_pem: String,
    key_pem: String,
}

/// What the secondary knows of its link to the primary (for logs now; for the replication
/// status and `/v1/catalog/datacenters` next).
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    /// Unix time of the last answer from the primary.
    pub last_contact_unix: Option<i64>,
    /// The last failure, with the gateway it happened on.
    pub last_error: Option<String>,
}

/// The protocol's run-time state, shared by the listener and the secondary's task.
#[derive(Default)]
pub struct Federation {
    identity: parking_lot::Mutex<Option<Arc<Identity>>>,
    /// Datacenters whose servers proved who they are (a server certificate on a `Roots`
    /// request, or a signed intermediate), with the Unix time last seen. In memory: after a
    /// restart of the primary each secondary is seen again on its next request.
    pub(crate) seen: parking_lot::Mutex<BTreeMap<String, i64>>,
    /// In a secondary: the datacenters the primary knows (its last answer).
    pub(crate) from_primary: parking_lot::Mutex<Vec<String>>,
    /// In a secondary: config-entry replication from the primary.
    pub(crate) replication: parking_lot::Mutex<replicate::ReplicationStatus>,
    pub(crate) link: parking_lot::Mutex<LinkStatus>,
    /// Where this server's protocol listener is bound (set when it starts).
    bound: parking_lot::Mutex<Option<std::net::SocketAddr>>,
}

/// How long a datacenter stays listed after its servers were last seen: Consul's
/// `reconnect_timeout_wan` (72 h), after which a WAN member that left is reaped.
const SEEN_FOR_SECS: i64 = 72 * 3600;

impl Federation {
    /// Records a datacenter whose server just proved who it is.
    pub(crate) fn saw(&self, datacenter: &str, now: i64) {
        self.seen.lock().insert(datacenter.to_owned(), now);
    }

    /// Every datacenter this server knows of besides its own: those seen recently, and those its
    /// primary reported.
    pub fn known(&self, now: i64) -> Vec<String> {
        let mut seen = self.seen.lock();
        seen.retain(|_, t| now - *t <= SEEN_FOR_SECS);
        let mut all: Vec<String> = seen.keys().cloned().collect();
        all.extend(self.from_primary.lock().iter().cloned());
        all
    }

    /// `/v1/catalog/datacenters`, in Consul's order (`mesh_model::federation::order_datacenters`).
    pub fn datacenters(&self, local: &str, now: i64) -> Vec<String> {
        mesh_model::federation::order_datacenters(local, self.known(now))
    }

    /// This datacenter's server ports as a mesh gateway reaches them: this server's listener
    /// (an unspecified bind address is reached on loopback, where the gateway runs beside it in
    /// every setup this builds; several servers per datacenter are not built yet).
    pub fn local_servers(&self) -> Vec<(String, u16)> {
        self.bound
            .lock()
            .iter()
            .map(|a| {
                let ip = if a.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    a.ip()
                };
                (ip.to_string(), a.port())
            })
            .collect()
    }

    /// The secondary's link to its primary.
    pub fn link(&self) -> LinkStatus {
        self.link.lock().clone()
    }
}

/// PEMs of the roots this server trusts for peers: the trust domain's bundle, or, before a
/// secondary holds any, the `ca_file` it was given.
fn peer_roots(app: &AppState) -> Result<Vec<String>, FederationError> {
    let bundle = app.store.read(crate::connect::trust_bundle);
    if !bundle.is_empty() {
        return Ok(bundle);
    }
    match &app.config.federation.ca_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| FederationError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            Ok(vec![text])
        }
        None => Ok(Vec::new()),
    }
}

/// This server's identity, signed anew when there is none, it is due for renewal, or the active
/// root changed (a rotation in this datacenter, or a new intermediate in a secondary).
///
/// # Errors
/// The CA has no active root yet (a secondary before it joins), or signing fails.
fn identity(app: &AppState) -> Result<Arc<Identity>, FederationError> {
    let now = OffsetDateTime::now_utc();
    let (root, td, previous) = app.store.read(|s| {
        let ca = s.ca();
        (
            ca.active_root().cloned(),
            crate::connect::trust_domain(s),
            // Previous roots whose keys this datacenter holds (the primary's own).
            ca.roots
                .iter()
                .filter(|r| {
                    !r.active && !r.private_key.is_empty() && r.intermediate_certs.is_empty()
                })
                .cloned()
                .collect::<Vec<_>>(),
        )
    });
    let root = root.ok_or(CaError::NoActiveRoot)?;
    let mut chain = root.intermediate_certs.clone();
    if root.intermediate_certs.is_empty() {
        // After a rotation, peers that missed it trust only a previous root: the active root
        // cross-signed by each previous one lets them verify this server and learn the new root.
        for prev in &previous {
            let until = root.not_after_unix.min(prev.not_after_unix);
            let Ok(until) = OffsetDateTime::from_unix_timestamp(until) else {
                continue;
            };
            match ca::federation::cross_sign_root(
                ca::SigningRoot {
                    key_pem: &prev.private_key,
                    common_name: prev.signing_cn(),
                },
                &root.private_key,
                &root.common_name,
                u64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(1),
                now - time::Duration::minutes(1),
                until,
            ) {
                Ok(pem) => chain.push(pem),
                Err(e) => {
                    tracing::warn!(root = %prev.id, error = %e, "cannot cross-sign the active root")
                }
            }
        }
    }
    if let Some(id) = app.federation.identity.lock().clone()
        && id.root_id == root.id
        && now < id.renew_at
    {
        return Ok(id);
    }
    // Serials come from the CA's blocks; a blocking reservation is not worth it here: a server
    // certificate's serial only has to differ from its leaves', so take it from the clock.
    let serial = u64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(1);
    let issued = ca::federation::sign_server_cert(
        ca::SigningRoot {
            key_pem: &root.private_key,
            common_name: root.signing_cn(),
        },
        &td,
        &app.config.datacenter,
        &app.config.node_name,
        DEFAULT_DOMAIN,
        serial,
        now,
        SERVER_CERT_TTL,
    )
    .map_err(FederationError::Sign)?;
    let mut chain_pem = issued.cert_pem.clone();
    for c in &chain {
        chain_pem.push_str(c);
    }
    let roots = peer_roots(app)?;
    let server = tls::server_config(&chain_pem, &issued.key_pem, &roots)?;
    let renew_at = issued.not_before + (issued.not_after - issued.not_before) * 2 / 3;
    let id = Arc::new(Identity {
        root_id: root.id.clone(),
        renew_at,
        server,
        chain_pem,
        key_pem: issued.key_pem,
    });
    tracing::info!(
        datacenter = %app.config.datacenter,
        root = %root.id,
        server_name = %server_sni(&app.config.datacenter, None, DEFAULT_DOMAIN),
        "signed this server's certificate for the inter-server protocol"
    );
    *app.federation.identity.lock() = Some(id.clone());
    Ok(id)
}

/// Serves the inter-server protocol on `listener` until `stop` turns true. A connection that
/// comes before this server has a certificate (a secondary that has not joined yet) is closed.
pub(crate) async fn serve(
    app: AppState,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    *app.federation.bound.lock() = listener.local_addr().ok();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "inter-server accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(&app, stream).await {
                tracing::debug!(peer = %from, error = %e, "inter-server connection ended");
            }
        });
    }
}

async fn connection(app: &AppState, stream: tokio::net::TcpStream) -> Result<(), String> {
    let id = identity(app).map_err(|e| e.to_string())?;
    let handshake = async {
        let mut tls = TlsAcceptor::from(id.server.clone())
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let frame = wire::read_frame(&mut tls)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((tls, frame))
    };
    let (mut tls, frame) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "no request within the handshake timeout".to_owned())??;
    let td = app.store.read(crate::connect::trust_domain);
    let peer = tls::peer(tls.get_ref().1.peer_certificates(), &td);
    let answer = match wire::decode_request(&frame) {
        Ok(req) => primary::answer(app, req, &peer).await,
        Err(e) => wire::Answer::error(wire::ErrorCode::BadRequest, e.to_string()),
    };
    wire::write_frame(&mut tls, &answer)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    Ok(())
}

/// This datacenter's mesh gateways that carry servers' traffic (registered with
/// `Meta { consul-wan-federation = "1" }`), as other datacenters dial them.
pub(crate) fn local_gateways(s: &store::State) -> Vec<GatewayAddr> {
    use mesh_model::catalog::ServiceKind;
    let mut out = Vec::new();
    for node in s.nodes("default") {
        for svc in s.node_services("default", &node.node) {
            let exposed = svc.kind == ServiceKind::MeshGateway
                && svc
                    .meta
                    .get(mesh_model::federation::WAN_FEDERATION_META)
                    .is_some_and(|v| v == "1");
            if exposed && svc.port > 0 {
                let host = if svc.address.is_empty() {
                    node.address.clone()
                } else {
                    svc.address.clone()
                };
                out.push(GatewayAddr {
                    host,
                    port: svc.port,
                });
            }
        }
    }
    out
}

/// Stores `datacenter`'s mesh gateways when they differ from the stored ones (the federation's
/// map is a store record, so every replica of this datacenter and every proxy watching
/// `WatchKey::FederationStates` sees it). A failed write is logged: the next exchange with the
/// peer tries again.
pub(crate) async fn learn_gateways_of(app: &AppState, datacenter: &str, addrs: &[GatewayAddr]) {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    if app
        .store
        .read(|s| s.federation_states().get(datacenter) == Some(&list))
    {
        return;
    }
    let op = store::Op::SetFederationState {
        datacenter: datacenter.to_owned(),
        mesh_gateways: list,
    };
    if let Err(e) = app.store.write(op).await {
        tracing::warn!(datacenter, error = %e, "cannot store the datacenter's mesh gateways");
    }
}

/// Every other datacenter's mesh gateways as (HOST, PORT), by datacenter: what this
/// datacenter's mesh gateways forward that datacenter's SNI to, and sidecars in mode `remote`
/// send to.
pub fn gateway_map(app: &AppState) -> BTreeMap<String, Vec<(String, u16)>> {
    app.store.read(|s| gateway_map_of(s, &app.config))
}

/// [`gateway_map`] over a state already read.
pub fn gateway_map_of(
    s: &store::State,
    config: &crate::config::ServerConfig,
) -> BTreeMap<String, Vec<(String, u16)>> {
    let fed = &config.federation;
    let mut dcs: Vec<String> = s.federation_states().keys().cloned().collect();
    if fed.is_secondary(&config.datacenter) {
        dcs.push(fed.primary_datacenter.clone());
    }
    dcs.into_iter()
        .filter(|dc| *dc != config.datacenter)
        .map(|dc| {
            let list = route_of(s, config, &dc)
                .into_iter()
                .map(|g| (g.host, g.port))
                .collect();
            (dc, list)
        })
        .collect()
}

/// The mesh gateways through which `dc`'s servers are reached: the configured
/// `primary_gateways` for a secondary's primary, then what was learned.
pub(crate) fn route(app: &AppState, dc: &str) -> Vec<GatewayAddr> {
    app.store.read(|s| route_of(s, &app.config, dc))
}

fn route_of(s: &store::State, config: &crate::config::ServerConfig, dc: &str) -> Vec<GatewayAddr> {
    let fed = &config.federation;
    let mut out = Vec::new();
    if dc == fed.primary_datacenter && fed.is_secondary(&config.datacenter) {
        out.extend(fed.primary_gateways.iter().cloned());
    }
    if let Some(learned) = s.federation_states().get(dc) {
        for g in learned
            .iter()
            .filter_map(|g| mesh_model::federation::parse_gateway_addr(g).ok())
        {
            if !out.contains(&g) {
                out.push(g);
            }
        }
    }
    out
}

/// One request to a server of `dc` through the gateway `gw`: TLS with the SNI
/// `server.<dc>.consul`, the server's certificate verified by that name against the roots held
/// (or `ca_file`, plus `extra_roots` just learned), this server's certificate presented when it
/// has one.
pub(crate) async fn dial(
    app: &AppState,
    dc: &str,
    gw: &GatewayAddr,
    extra_roots: &[String],
    req: &wire::Request,
    timeout: Duration,
) -> Result<wire::Answer, String> {
    let mut roots = peer_roots(app).map_err(|e| e.to_string())?;
    roots.extend(extra_roots.iter().cloned());
    if roots.is_empty() {
        return Err("no roots to verify the other server with (ca_file)".into());
    }
    let me = identity(app).ok();
    let config = tls::client_config(
        &roots,
        me.as_ref()
            .map(|i| (i.chain_pem.as_str(), i.key_pem.as_str())),
    )
    .map_err(|e| e.to_string())?;
    let sni = server_sni(dc, None, DEFAULT_DOMAIN);
    let name = ServerName::try_from(sni.clone()).map_err(|e| format!("server name {sni}: {e}"))?;
    let exchange = async {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((gw.host.as_str(), gw.port)),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {sni}: {e}"))?;
        wire::write_frame(&mut conn, req)
            .await
            .map_err(|e| e.to_string())?;
        let frame = wire::read_frame_up_to(&mut conn, wire::MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        wire::decode_answer(&frame).map_err(|e| e.to_string())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// A connection attempt to a gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a secondary's tasks: join and follow the primary's roots, replicate its config
/// entries. None in a primary.
pub(crate) fn start_secondary(app: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let f = &app.config.federation;
    if !(f.wan_federation && f.is_secondary(&app.config.datacenter)) {
        return Vec::new();
    }
    vec![
        tokio::spawn(secondary::run(app.clone())),
        tokio::spawn(replicate::run(app.clone())),
    ]
}

/// `GET /v1/internal/federation/status` (ours; Consul has no such endpoint for config entries):
/// this datacenter's place, its link to the primary, and the replication lag in seconds since
/// the last successful exchange.
pub fn status_json(app: &AppState) -> serde_json::Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let f = &app.config.federation;
    let link = app.federation.link();
    let repl = app.federation.replication.lock().clone();
    let secondary = f.is_secondary(&app.config.datacenter);
    serde_json::json!({
        "Datacenter": app.config.datacenter,
        "PrimaryDatacenter": f.primary_datacenter,
        "Secondary": secondary,
        "Datacenters": app.federation.datacenters(&app.config.datacenter, now),
        "Primary": if secondary { serde_json::json!({
            "LastContactUnix": link.last_contact_unix,
            "LastError": link.last_error,
        }) } else { serde_json::Value::Null },
        "ConfigEntryReplication": if secondary { serde_json::json!({
            "ReplicatedIndex": repl.replicated_index,
            "LastSuccessUnix": repl.last_success_unix,
            "LagSeconds": repl.last_success_unix.map(|t| now - t),
            "LastError": repl.last_error,
        }) } else { serde_json::Value::Null },
        // Where this datacenter's mesh gateways send each other datacenter's traffic.
        "MeshGateways": gateway_map(app)
            .into_iter()
            .map(|(dc, list)| {
                let addrs: Vec<String> = list.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                (dc, serde_json::json!(addrs))
            })
            .collect::<serde_json::Map<_, _>>(),
    })
}
