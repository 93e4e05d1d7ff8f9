//! The route table of the HTTP API. One module per Consul API area, holding handlers only: each
//! takes its query options and caller from the `Ctx` extractor, decodes its body, authorizes,
//! and then writes one op, calls a runtime service (`connect`, `agent`, `intentions`, ...) or
//! runs a blocking read, and answers in Consul's JSON (`rows` for catalog and health rows).
//!
//! Runtime services must not depend on this module.

mod acl;
mod agent;
mod catalog;
mod config;
pub mod connect_ca;
mod extract;
mod health;
mod intentions;
mod kv;
mod metrics;
mod status;
mod ui;
mod xds_status;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{delete, get, put};

use crate::AppState;
use crate::error::ApiError;

use extract::MAX_BODY;
pub(crate) use extract::{Ctx, body};
/// The UI's authorization-request body decoder (fuzzed in `fuzz/fuzz_targets/server_inputs.rs`).
pub use ui::decode_access_requests;

/// Every route of the HTTP API, with the body limit and the `?dc` check.
pub(crate) fn router(app: AppState) -> Router {
    Router::new()
        // catalog
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/catalog/connect/{name}", get(catalog::connect))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route(
            "/v1/catalog/node-services/{node}",
            get(catalog::node_services),
        )
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        // agent
        .route("/v1/agent/self", get(agent::self_info))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/metrics", get(metrics::metrics))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/service/{id}", get(agent::service))
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/check/register", put(agent::check_register))
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent::check_deregister),
        )
        .route("/v1/agent/check/pass/{id}", put(agent::check_pass))
        .route("/v1/agent/check/warn/{id}", put(agent::check_warn))
        .route("/v1/agent/check/fail/{id}", put(agent::check_fail))
        .route("/v1/agent/check/update/{id}", put(agent::check_update))
        // health
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/connect/{name}", get(health::connect))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        // config entries
        .route("/v1/config", put(config::apply))
        .route("/v1/config/{kind}", get(config::list))
        .route(
            "/v1/config/{kind}/{name}",
            get(config::get).delete(config::delete),
        )
        // intentions
        .route("/v1/connect/intentions", get(intentions::list))
        .route(
            "/v1/connect/intentions/exact",
            get(intentions::exact_get)
                .put(intentions::exact_put)
                .delete(intentions::exact_delete),
        )
        .route("/v1/connect/intentions/match", get(intentions::match_))
        .route("/v1/connect/intentions/check", get(intentions::check))
        // connect CA
        .route("/v1/agent/connect/ca/roots", get(connect_ca::roots))
        .route("/v1/connect/ca/roots", get(connect_ca::roots))
        .route("/v1/agent/connect/ca/leaf/{service}", get(connect_ca::leaf))
        .route(
            "/v1/connect/ca/configuration",
            get(connect_ca::configuration_get).put(connect_ca::configuration_put),
        )
        .route(
            "/v1/agent/connect/authorize",
            axum::routing::post(connect_ca::authorize),
        )
        // acl
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/token", put(acl::token_create))
        .route("/v1/acl/token/self", get(acl::token_self))
        .route(
            "/v1/acl/token/{id}",
            get(acl::token_read)
                .put(acl::token_update)
                .delete(acl::token_delete),
        )
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route("/v1/acl/policy/name/{name}", get(acl::policy_read_by_name))
        .route(
            "/v1/acl/policy/{id}",
            get(acl::policy_read)
                .put(acl::policy_update)
                .delete(acl::policy_delete),
        )
        .route("/v1/acl/policies", get(acl::policy_list))
        // key/value store
        .route(
            "/v1/kv/",
            get(kv::get_root).put(kv::put_root).delete(kv::delete_root),
        )
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        // xDS status (lambdamesh-specific): NACKs and ACKs per proxy
        .route("/v1/internal/xds/status", get(xds_status::status))
        // the web UI: its assets and the reads it needs beyond the public API
        .route("/", get(crate::ui::redirect))
        .route("/ui", get(crate::ui::redirect))
        .route("/ui/", get(crate::ui::index))
        .route("/ui/{*path}", get(crate::ui::asset))
        .route("/v1/internal/ui/services", get(ui::services))
        .route("/v1/internal/ui/service/{name}", get(ui::service))
        .route("/v1/internal/ui/config", get(ui::config_entries))
        .route(
            "/v1/internal/ui/config/decode",
            axum::routing::post(ui::decode_entry),
        )
        .route(
            "/v1/internal/acl/authorize",
            axum::routing::post(ui::authorize),
        )
        .route(
            "/v1/internal/federation/status",
            get(
                |axum::extract::State(app): axum::extract::State<AppState>| async move {
                    axum::Json(crate::federation::status_json(&app))
                },
            ),
        )
        // status
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        .route("/v1/config/{kind}/{name}/", delete(config::delete))
        .fallback(not_found)
        // Innermost, so it sees the matched route (Consul's path label) and every answer.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::metrics::track_http,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            consistent_reads,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            check_datacenter,
        ))
        .layer(axum::middleware::map_response_with_state(
            app.clone(),
            crate::query::contact_headers,
        ))
        .with_state(app)
}

/// `?consistent` (Consul's strongest read mode): before the handler reads this replica's state,
/// the store confirms it holds every write committed anywhere (`Store::sync`); when that cannot
/// be confirmed the read answers 503 rather than a possibly stale answer, as Consul answers a
/// consistent read without a leader with an error.
async fn consistent_reads(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let consistent = req.method() == axum::http::Method::GET
        && req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .any(|p| p == "consistent" || p.starts_with("consistent="));
    if !consistent {
        return next.run(req).await;
    }
    if let Err(e) = app.store.sync().await {
        return crate::error::ApiError::from(e).into_response();
    }
    let mut resp = next.run(req).await;
    if resp
        .headers()
        .contains_key("X-Consul-Effective-Consistency")
    {
        resp.headers_mut().insert(
            "X-Consul-Effective-Consistency",
            axum::http::HeaderValue::from_static("consistent"),
        );
    }
    resp
}

/// `?dc=` naming another datacenter: a read is forwarded to it over the inter-server protocol
/// (`federation::forward`), blocking included; a datacenter with no known path answers as Consul
/// does, 500 "No path to datacenter". Writes are not forwarded yet (`docs/multi-dc.md`).
async fn check_datacenter(
    axum::extract::State(app): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let query = req.uri().query().unwrap_or("");
    let other = query.split('&').find_map(|pair| {
        pair.strip_prefix("dc=")
            .filter(|dc| !dc.is_empty() && *dc != app.config.datacenter)
            .map(str::to_owned)
    });
    let Some(dc) = other else {
        // A secondary's config-entry and intention writes go to the primary, which replicates
        // them back (Consul forwards `ConfigEntry.Apply` and `Intention.Apply` the same way).
        let fed = &app.config.federation;
        if fed.wan_federation
            && fed.is_secondary(&app.config.datacenter)
            && req.method() != Method::GET
            && crate::federation::is_replicated_write_path(req.uri().path())
        {
            return to_primary(&app, req).await;
        }
        return next.run(req).await;
    };
    if req.method() != Method::GET {
        return ApiError::bad_request(format!(
            "writes to another datacenter ({dc}) are not forwarded yet: send them to a server of {dc}"
        ))
        .into_response();
    }
    let path_and_query = without_dc(req.uri());
    let token = crate::authz::token_of(req.headers(), &crate::query::Query::default());
    match crate::federation::forward(&app, &dc, &path_and_query, token).await {
        Ok(a) => http_answer(a),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// The request's path and query without `dc=`: the datacenter a request is sent to must read
/// it as its own.
fn without_dc(uri: &axum::http::Uri) -> String {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.starts_with("dc=") && !p.is_empty())
        .collect();
    if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    }
}

/// Sends a secondary's write to its primary and answers what the primary answered.
async fn to_primary(app: &AppState, req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = req.method().as_str().to_owned();
    // `dc` names this (secondary) datacenter here; the primary must not read it as another.
    let path_and_query = without_dc(req.uri());
    let token = crate::authz::token_of(req.headers(), &crate::query::Query::default());
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the body: {e}")).into_response();
        }
    };
    let primary = app.config.federation.primary_datacenter.clone();
    match crate::federation::forward_request(
        app,
        &primary,
        &method,
        &path_and_query,
        Some(body),
        token,
    )
    .await
    {
        Ok(a) => http_answer(a),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// An answer of another datacenter as this server's answer.
fn http_answer(a: crate::federation::wire::HttpAnswer) -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::from(a.body));
    *resp.status_mut() = axum::http::StatusCode::from_u16(a.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in a.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::try_from(k),
            axum::http::HeaderValue::try_from(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "Invalid URL path: {method} {} is not a recognized HTTP API endpoint",
        uri.path()
    ))
}
