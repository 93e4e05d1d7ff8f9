//! JSON-protocol services: SSM, Resource Groups Tagging, EventBridge.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::Req;
use crate::{Platform, wire::ApiError};

pub(crate) async fn dispatch(_p: &Platform, _service: &str, _target: &str, _req: &Req) -> Result<Response<Full<Bytes>>, ApiError> {
    Err(ApiError::new(400, "UnknownOperationException", ""))
}
