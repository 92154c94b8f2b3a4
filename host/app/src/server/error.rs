//! The API error: StackStorm's `{"faultstring": ...}` body with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such resource (or route).
    #[error("{0}")]
    NotFound(String),
    /// 500: our fault. The details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let faultstring = match &self {
            Self::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "Internal Server Error".to_owned()
            }
            other => other.to_string(),
        };
        (
            self.status_code(),
            Json(serde_json::json!({ "faultstring": faultstring })),
        )
            .into_response()
    }
}
