//! `/v1/connect/intentions/*` (being built).
use axum::response::Response;
use crate::error::{ApiError, ApiResult};
macro_rules! pending { ($($n:ident),*) => { $(pub async fn $n() -> ApiResult<Response> { Err(ApiError::not_found("intention endpoints are not built yet")) })* } }
pending!(list, exact_get, exact_put, exact_delete, match_, check);
