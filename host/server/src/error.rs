//! The API error: StackStorm's `{"faultstring": ...}` body with the right status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stormhook_storage::StorageError;
use stormhook_storage::ingest::IngestError;

use crate::auth::AuthError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credential; the message is StackStorm's.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller may not do this (StackStorm's `AccessDeniedError`).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (or route).
    #[error("{0}")]
    NotFound(String),
    /// 409: a unique key is taken.
    #[error("{message}")]
    Conflict {
        /// What clashed.
        message: String,
        /// The id of the record holding the key (`conflict-id`).
        existing_id: Option<String>,
    },
    /// 408: the request body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// 429: this client has too many requests in progress; retry after a second.
    #[error("{0}")]
    TooManyRequests(String),
    /// 413: the body is larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 503: overloaded; retry after a second.
    #[error("{0}")]
    Unavailable(String),
    /// 502: a component that computes the answer (a hook's responder) failed.
    #[error("{0}")]
    BadGateway(String),
    /// 500: our fault. The details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// StackStorm's 404 for an unknown route or method.
    pub fn no_route() -> Self {
        Self::NotFound("The resource could not be found.".into())
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Conflict {
                message,
                existing_id,
            } => Self::Conflict {
                message,
                existing_id,
            },
            unavailable if unavailable.is_unavailable() => {
                if log_now() {
                    tracing::error!("the store cannot commit (answered 503): {unavailable}");
                }
                Self::Unavailable(format!(
                    "The store cannot accept writes right now ({}); retry later.",
                    unavailable.cause()
                ))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Whether a 503 for an unavailable store is logged now: at most once a second, because while
/// the disk is full every write request gets one.
fn log_now() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(u64::MAX);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.swap(second, Ordering::Relaxed) != second
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Failed(detail) => Self::Internal(detail),
            IngestError::Unavailable(cause) => Self::Unavailable(format!(
                "The store cannot accept events right now ({cause}); retry later."
            )),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Store(e) => e.into(),
            other => Self::Unauthorized(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = match &self {
            Self::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                serde_json::json!({ "faultstring": "Internal Server Error" })
            }
            Self::Conflict {
                message,
                existing_id,
            } => {
                serde_json::json!({ "faultstring": message, "conflict-id": existing_id })
            }
            other => serde_json::json!({ "faultstring": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
