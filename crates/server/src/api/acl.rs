//! `/v1/acl/*` (being built).
use axum::response::Response;
use crate::error::{ApiError, ApiResult};
macro_rules! pending { ($($n:ident),*) => { $(pub async fn $n() -> ApiResult<Response> { Err(ApiError::not_found("ACL endpoints are not built yet")) })* } }
pending!(bootstrap, token_create, token_self, token_read, token_update, token_delete, token_list, policy_create, policy_read_by_name, policy_read, policy_update, policy_delete, policy_list);
