//! The one place where failures become HTTP responses. Consul answers errors with a plain-text
//! body and the status code; its clients show that text to the user, so messages name the field
//! or value that is wrong. The runtime services' errors (store, CA, intention writes) get their
//! status here too.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use mesh_model::catalog::CatalogError;
use store::{ApplyError, StoreError};

use crate::connect::CaError;
use crate::intentions::IntentionWriteError;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message: message.into(),
        }
    }
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("Request body too large, max size: {limit} bytes"),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(ApplyError::Invalid(m)) => Self::bad_request(m),
            StoreError::Rejected(ApplyError::NotFound(m)) => Self::not_found(m),
            StoreError::Rejected(ApplyError::Conflict(m)) => Self::conflict(m),
            StoreError::Rejected(ApplyError::Forbidden(m)) => {
                Self::forbidden(format!("Permission denied: {m}"))
            }
            // etcd did not commit in time: the client may retry (Consul answers a lost leader
            // with a 5xx too); the message names the endpoints and what failed.
            e @ (StoreError::Unavailable { .. } | StoreError::Etcd { .. }) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: e.to_string(),
            },
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<CaError> for ApiError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Store(e) => e.into(),
            e @ (CaError::BadKey(_) | CaError::Secondary { .. }) => {
                Self::bad_request(e.to_string())
            }
            e @ CaError::SerialsLost => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: e.to_string(),
            },
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<IntentionWriteError> for ApiError {
    fn from(e: IntentionWriteError) -> Self {
        match e {
            IntentionWriteError::Store(e) => e.into(),
            e @ IntentionWriteError::Invalid(_) => Self::bad_request(e.to_string()),
            e @ IntentionWriteError::Contended => Self::conflict(e.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<mesh_model::decode::DecodeError> for ApiError {
    fn from(e: mesh_model::decode::DecodeError) -> Self {
        Self::bad_request(format!("Request decode failed: {e}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
