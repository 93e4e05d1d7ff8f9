//! `/v1/internal/xds/status` (lambdamesh-specific): what each connected proxy last acknowledged
//! and every configuration it rejected, so a NACK found only when Envoy applies it is visible
//! without reading Envoy's logs.

use axum::extract::State;
use axum::response::Response;

use crate::AppState;
use crate::api::Ctx;
use crate::error::ApiResult;
use crate::query::json;

/// `GET /v1/internal/xds/status` (`operator:read`).
pub async fn status(State(app): State<AppState>, Ctx { caller, .. }: Ctx) -> ApiResult<Response> {
    caller.require(caller.authorizer.operator_read(), "operator:read", "")?;
    Ok(json(&serde_json::json!({
        "Acks": app.xds_acks.all(),
        "Nacks": app.xds_nacks.all(),
    })))
}
