//! Connect CA endpoints and the leaf-certificate cache. (Placeholder hooks; filled in by the
//! Connect CA work.)

use axum::response::Response;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Leaf certificates signed for services, reused until they need renewal.
#[derive(Default)]
pub struct LeafCache {}

/// Background duties of the CA: renew leaves before they expire, prune retired roots.
pub(crate) async fn run(_app: AppState) {}

/// Creates the CA's first root when the store has none.
pub(crate) async fn init(_app: &AppState) -> ApiResult<()> {
    Ok(())
}

macro_rules! pending { ($($n:ident),*) => { $(pub async fn $n() -> ApiResult<Response> { Err(ApiError::not_found("Connect CA endpoints are not built yet")) })* } }
pending!(roots, leaf, configuration_get, configuration_put, authorize);
