//! Tokens (`docs/st2-api.md` §2.2): `POST /tokens` with Basic auth (no other credential
//! needed) and `POST /tokens/validate`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::{Credential, Principal, TokenError};

const INVALID: &str = "Invalid or missing credentials";

/// `POST /auth/v1/tokens`. The Basic credentials are checked before the body (an optional
/// `ttl`; a user to impersonate is refused) is read: a client without them cannot hold a request slot by
/// sending a slow body.
pub(super) async fn create(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (user, password) = basic_credentials(request.headers())
        .ok_or_else(|| ApiError::Unauthorized(INVALID.into()))?;
    let token_error = |e: TokenError| match e {
        TokenError::InvalidCredentials => ApiError::Unauthorized(INVALID.into()),
        TokenError::Busy => ApiError::Unavailable(TokenError::Busy.to_string()),
        TokenError::Store(e) => e.into(),
        other => ApiError::BadRequest(other.to_string()),
    };
    state
        .auth
        .check_password(&user, &password)
        .await
        .map_err(token_error)?;
    let body = super::read_body(request.into_body(), state.settings.max_body_bytes).await?;
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        super::json_body(&body)?
    };
    // Impersonation (`user`, or `impersonate_user` with `nickname_origin`) is for service
    // users, and no Stormhook user is one (`st2auth/st2auth/handlers.py`
    // `_get_username_for_request`). The credentials were checked first, as StackStorm does.
    let impersonates = ["user", "impersonate_user"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()));
    if impersonates {
        return Err(ApiError::BadRequest(
            "Current user is not a service and cannot request impersonated tokens".into(),
        ));
    }
    let ttl = match body.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{other} is not of type 'integer', 'null'"
            )));
        }
    };
    let issued = state
        .auth
        .issue_token_for(&user, ttl)
        .await
        .map_err(token_error)?;
    let body = json!({
        "id": issued.record.id,
        "user": issued.record.user,
        "token": issued.value,
        "expiry": issued.record.expiry,
        "metadata": issued.record.metadata,
        "service": false,
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(url) = HeaderValue::from_str(&state.settings.api_url) {
        response.headers_mut().insert("X-API-URL", url);
    }
    Ok(response)
}

/// `POST /auth/v1/tokens/validate`.
pub(super) async fn validate(
    State(state): State<AppState>,
    Extension(_who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value = super::json_body(&body)?;
    let Some(token) = body
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Err(ApiError::BadRequest("Token is not provided.".into()));
    };
    let valid = state
        .auth
        .verify(Some(&Credential::Token(token.to_owned())))
        .await
        .is_ok();
    Ok(Json(json!({ "valid": valid })))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
