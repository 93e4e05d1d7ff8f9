//! `GET /v1/agent/metrics` (`agent:read`, as Consul): Consul's JSON, or Prometheus' text format
//! with `?format=prometheus`. What is measured and both renderings are `crate::metrics`'.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::api::Ctx;
use crate::error::ApiResult;
use crate::metrics;
use crate::query::json;

pub async fn metrics(
    State(app): State<AppState>,
    Ctx { query: q, caller }: Ctx,
) -> ApiResult<Response> {
    let node = &app.config.node_name;
    caller.require(caller.authorizer.agent_read(node), "agent:read", node)?;
    let all = metrics::collect(&app);
    // Consul checks `format` for exactly this value; anything else is its JSON.
    if q.get("format") == Some("prometheus") {
        return Ok((
            [(header::CONTENT_TYPE, telemetry::text::CONTENT_TYPE)],
            metrics::to_prometheus(&all),
        )
            .into_response());
    }
    Ok(json(&metrics::to_consul_json(
        &all,
        time::OffsetDateTime::now_utc(),
        app.metrics.uptime_secs(),
    )))
}
