//! Cross-cutting request handling. [`edge`] is one layer, outermost, that does in order: CORS
//! and `OPTIONS`, the request id, load shedding (a global concurrency limit answered 503), the
//! body-size limit (413 on `Content-Length` before reading) and the trailing slash. On API
//! routes only, [`authenticate`] runs after routing.
//!
//! These steps were four axum layers; each layer boxes a future and clones a boxed service per
//! request, and on the webhook path that overhead was measurable (BENCHMARKS.md), so they are one
//! function now.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::{ApiError, AppState};
use crate::auth::Credential;

const CORS: [(HeaderName, HeaderValue); 4] = [
    (
        HeaderName::from_static("access-control-allow-methods"),
        HeaderValue::from_static("GET,POST,PUT,DELETE,OPTIONS"),
    ),
    (
        HeaderName::from_static("access-control-allow-headers"),
        HeaderValue::from_static(
            "Content-Type,Authorization,X-Auth-Token,St2-Api-Key,X-Request-ID",
        ),
    ),
    (
        HeaderName::from_static("access-control-allow-credentials"),
        HeaderValue::from_static("true"),
    ),
    (
        HeaderName::from_static("access-control-expose-headers"),
        HeaderValue::from_static("Content-Type,X-Limit,X-Total-Count,X-Request-ID"),
    ),
];
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");

/// The limits [`edge`] applies.
#[derive(Debug)]
pub(crate) struct EdgeLimits {
    /// Requests in progress at once.
    pub(crate) concurrency: Semaphore,
    /// Largest declared body.
    pub(crate) max_body_bytes: usize,
}

/// CORS headers on every response, `OPTIONS` answered without authentication, and
/// `X-Request-ID` echoed or generated (and injected into the request, as StackStorm does, so a
/// webhook payload carries it). Then [`guard`]: shedding, the declared body size, the trailing
/// slash.
pub(crate) async fn edge(
    State(limits): State<std::sync::Arc<EdgeLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let request_id = match request.headers().get(&REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            let id = HeaderValue::from_str(text).expect("a uuid is a valid header value");
            request.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        faultstring(guard(&limits, request, next).await).await
    };
    let headers = response.headers_mut();
    headers.reserve(6);
    headers.insert(REQUEST_ID, request_id);
    headers.insert(
        ALLOW_ORIGIN,
        origin.unwrap_or_else(|| HeaderValue::from_static("*")),
    );
    for (name, value) in CORS {
        headers.insert(name, value);
    }
    response
}

/// Sheds load past the global concurrency limit with 503 and `Retry-After`, rather than queueing
/// without bound; refuses a body whose declared length exceeds the limit, without reading it
/// (bodies without a declared length are bounded where they are read); and removes one trailing
/// slash before routing, as StackStorm's router does (`/v1/rules/` is `/v1/rules`; the `st2` CLI
/// depends on it). All of it before authentication and before any body is read.
async fn guard(limits: &EdgeLimits, mut request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.concurrency.try_acquire() else {
        return ApiError::Unavailable("Too many requests in progress; retry later.".into())
            .into_response();
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return too_large(limits.max_body_bytes).into_response();
    }
    strip_trailing_slash(&mut request);
    next.run(request).await
}

/// Gives every error the `{"faultstring": ...}` shape, including the plain-text rejections of
/// axum's extractors (a path that is not valid percent-encoded UTF-8, a body over the limit).
async fn faultstring(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_owned();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("Error").to_owned();
    }
    if status.is_server_error() {
        tracing::error!(%status, "internal error: {message}");
        message = "Internal Server Error".into();
    }
    let mut fixed = (
        status,
        axum::Json(serde_json::json!({ "faultstring": message })),
    )
        .into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name, value.clone());
        }
    }
    fixed
}

/// The 413 error for a body over `max` bytes.
pub(crate) fn too_large(max: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "Request body is larger than the limit of {max} bytes."
    ))
}

/// Authenticates API routes in StackStorm's order: `X-Auth-Token` header, `St2-Api-Key` header,
/// `x-auth-token` query, `st2-api-key` query, `auth-token` cookie. The first present credential
/// decides; an invalid one never falls back to the next.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let (credential, from_cookie) = credential(&request);
    match state.auth.verify(credential.as_ref()).await {
        Ok(principal) => {
            let cookie = match (&credential, &principal.token_expiry) {
                // As StackStorm does: a token from a header or the query is handed back as a
                // cookie, so a browser can go on without it.
                (Some(Credential::Token(token)), Some(expiry)) if !from_cookie => {
                    auth_cookie(token, expiry)
                }
                _ => None,
            };
            request.extensions_mut().insert(principal);
            let mut response = next.run(request).await;
            if let Some(cookie) = cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// `auth-token=<token>; Max-Age=<seconds to expiry>; HttpOnly; SameSite=lax; Secure`.
fn auth_cookie(token: &str, expiry: &str) -> Option<HeaderValue> {
    let expiry = stormhook_storage::ids::parse_time(expiry)?;
    let max_age = (expiry - chrono::Utc::now()).num_seconds().max(0);
    HeaderValue::from_str(&format!(
        "auth-token={token}; Max-Age={max_age}; HttpOnly; SameSite=lax; Secure"
    ))
    .ok()
}

/// The request's credential in StackStorm's order, and whether it came from the cookie.
fn credential(request: &Request) -> (Option<Credential>, bool) {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(token) = header("x-auth-token") {
        return (Some(Credential::Token(token)), false);
    }
    if let Some(key) = header("st2-api-key") {
        return (Some(Credential::ApiKey(key)), false);
    }
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(token) = param("x-auth-token") {
        return (Some(Credential::Token(token)), false);
    }
    if let Some(key) = param("st2-api-key") {
        return (Some(Credential::ApiKey(key)), false);
    }
    let cookie = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix("auth-token=")
                .map(|t| Credential::Token(t.to_owned()))
        });
    (cookie, true)
}

/// Removes one trailing slash (`/v1/rules/` is `/v1/rules`).
fn strip_trailing_slash(request: &mut Request) {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = &path[..path.len() - 1];
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
}
