//! `/v1/status/*`: a single-server cluster is always its own leader.

use axum::extract::State;
use axum::response::Response;

use crate::AppState;
use crate::query::json;

fn server_addr(app: &AppState) -> String {
    // Consul reports the server RPC address; ours is the HTTP host with Consul's RPC port.
    format!("{}:8300", app.config.http_addr.ip())
}

pub async fn leader(State(app): State<AppState>) -> Response {
    json(&server_addr(&app))
}

pub async fn peers(State(app): State<AppState>) -> Response {
    json(&[server_addr(&app)])
}
