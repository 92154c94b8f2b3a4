//! Cross-cutting request handling. [`edge`] is one layer, outermost, that does in order: CORS
//! and `OPTIONS`, the request id, load shedding (a global concurrency limit answered 503), the
//! body-size limit (413 on `Content-Length` before reading) and the trailing slash. On API
//! routes only, [`authenticate`] runs after routing.
//!
//! These steps were four axum layers; each layer boxes a future and clones a boxed service per
//! request, and on the webhook path that overhead was measurable (BENCHMARKS.md), so they are one
//! function now.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{ApiError, AppState};
use crate::auth::Credential;

const CORS: [(HeaderName, HeaderValue); 3] = [
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
        HeaderName::from_static("access-control-expose-headers"),
        HeaderValue::from_static("Content-Type,X-Limit,X-Total-Count,X-Request-ID"),
    ),
];
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
const ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");

/// The limits [`edge`] applies.
#[derive(Debug)]
pub(crate) struct EdgeLimits {
    /// Requests in progress at once.
    pub(crate) concurrency: Semaphore,
    /// Requests in progress at once from one client (0: no cap), so that one client cannot
    /// take every slot of `concurrency`. A client is an address and the credential it sends.
    pub(crate) per_client: usize,
    /// Requests in progress per client.
    pub(crate) clients: Mutex<HashMap<Client, usize>>,
    /// Keys the credential fingerprints of [`Client`] (random per process).
    pub(crate) hasher: std::hash::RandomState,
    /// Largest declared body.
    pub(crate) max_body_bytes: usize,
    /// How long reading a body may take.
    pub(crate) body: BodyLimits,
    /// The origins CORS answers for.
    pub(crate) origins: Origins,
}

/// How long a request body may take to arrive: at most `timeout` in all, and after the first
/// [`BODY_GRACE`], at least `min_rate` bytes per second on average. A client that stalls is cut
/// off with 408 instead of holding a request slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// The longest a whole body may take.
    pub(crate) timeout: Duration,
    /// The slowest average rate accepted after the grace period, in bytes per second.
    pub(crate) min_rate: u64,
}

/// The time a body may take before its rate counts.
pub(crate) const BODY_GRACE: Duration = Duration::from_secs(5);

/// The origins that get CORS answers with credentials: `Access-Control-Allow-Origin` echoes
/// an allowed `Origin` (with `Access-Control-Allow-Credentials: true`), as StackStorm's
/// `api.allow_origin` does; any other origin gets no `Access-Control-Allow-Origin` (StackStorm
/// answers `null`, which a sandboxed frame's `Origin: null` would match). `*` in the list allows every origin, without
/// credentials (browsers refuse credentials with a wildcard).
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    allowed: Vec<HeaderValue>,
    any: bool,
}

impl Origins {
    /// `allowed` origins, or `*`. Each is taken as a URL and reduced to its origin
    /// (`scheme://host[:port]`, the default port left out), so an API URL with a path
    /// (`https://st2.example.com/api`) allows `https://st2.example.com`.
    pub(crate) fn new(allowed: &[String]) -> Self {
        let any = allowed.iter().any(|o| o.trim() == "*");
        let allowed = allowed
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty() && *o != "*")
            .filter_map(|o| {
                let origin = match url::Url::parse(o) {
                    Ok(url) => url.origin().ascii_serialization(),
                    Err(_) => o.trim_end_matches('/').to_owned(),
                };
                HeaderValue::from_str(&origin).ok()
            })
            .filter(|o| o != "null")
            .collect();
        Self { allowed, any }
    }

    /// `Access-Control-Allow-Origin` for a request from `origin` (none for an origin that is
    /// not allowed), and whether credentials are allowed with it.
    fn answer(&self, origin: Option<&HeaderValue>) -> (Option<HeaderValue>, bool) {
        if self.any {
            return (Some(HeaderValue::from_static("*")), false);
        }
        match origin {
            Some(origin) if self.allowed.iter().any(|a| a == origin) => {
                (Some(origin.clone()), true)
            }
            Some(_) => (None, false),
            None => (self.allowed.first().cloned(), false),
        }
    }
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
    let (allow_origin, credentials) = limits.origins.answer(request.headers().get(header::ORIGIN));
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
    // One span per request: everything logged while it is handled carries its method, path
    // and request id.
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route = tracing::field::Empty,
        request_id = %request_id.to_str().unwrap_or_default(),
    );
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        faultstring(guard(&limits, request, next).instrument(span).await).await
    };
    let headers = response.headers_mut();
    headers.reserve(7);
    headers.insert(REQUEST_ID, request_id);
    if let Some(allow_origin) = allow_origin {
        headers.insert(ALLOW_ORIGIN, allow_origin);
    }
    if credentials {
        headers.insert(ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
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
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .filter(|_| limits.per_client > 0)
        .map(|ConnectInfo(peer)| peer.ip());
    let client = peer.map(|ip| {
        // Read once: `authenticate` takes the same credential from the request's extensions.
        let presented = credential(&request);
        let client = Client::of(ip, presented.0.as_ref(), &limits.hasher);
        request.extensions_mut().insert(Presented(presented));
        client
    });
    let _client_slot = match client {
        Some(client) => match ClientSlot::take(limits, client) {
            Some(slot) => Some(slot),
            None => {
                return ApiError::TooManyRequests(
                    "Too many requests in progress from this client; retry later.".into(),
                )
                .into_response();
            }
        },
        _ => None,
    };
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
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        if http_body::Body::is_end_stream(&body) {
            body
        } else {
            Body::new(TimedBody::new(body, limits.body, Arc::clone(&expired)))
        }
    });
    let response = next.run(request).await;
    if expired.load(Ordering::Relaxed) {
        // Whatever the handler made of the failed read (an extractor's 400), the answer is 408,
        // and the connection is closed rather than drained.
        let mut response = ApiError::Timeout(body_timeout_message(limits.body)).into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    response
}

fn body_timeout_message(limits: BodyLimits) -> String {
    format!(
        "Request body was not received in time (at most {} s in all, and at least {} bytes per second after the first {} s).",
        limits.timeout.as_secs(),
        limits.min_rate,
        BODY_GRACE.as_secs()
    )
}

/// Who a request comes from, for the per-client cap: its address (an IPv6 address by its /64,
/// which one host usually has whole), and a keyed hash of the credential that authentication
/// will read, found the same way ([`credential`]), unverified. Clients behind one address (a
/// proxy, a NAT) are told apart by their credentials. A made-up credential gains nothing: it
/// is refused (401) before any body is read, so it holds a slot for a moment only; anything
/// else in the request (other headers, a Basic `Authorization`) does not change the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Client {
    ip: IpAddr,
    credential: u64,
}

impl Client {
    fn of(ip: IpAddr, credential: Option<&Credential>, hasher: &std::hash::RandomState) -> Self {
        use std::hash::BuildHasher as _;
        let ip = match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
            v4 => v4,
        };
        let credential = match credential {
            Some(Credential::Token(t)) => hasher.hash_one((0u8, t)),
            Some(Credential::ApiKey(k)) => hasher.hash_one((1u8, k)),
            None => 0,
        };
        Self { ip, credential }
    }
}

/// The credential [`credential`] found in a request, kept for [`authenticate`] when [`guard`]
/// has already read it.
#[derive(Clone)]
struct Presented((Option<Credential>, bool));

/// One request in progress from a [`Client`]; counted in [`EdgeLimits::clients`] until
/// dropped.
struct ClientSlot<'a> {
    limits: &'a EdgeLimits,
    client: Client,
}

impl<'a> ClientSlot<'a> {
    fn take(limits: &'a EdgeLimits, client: Client) -> Option<Self> {
        let mut clients = limits.clients.lock().unwrap_or_else(|e| e.into_inner());
        let count = clients.entry(client).or_insert(0);
        if *count >= limits.per_client {
            return None;
        }
        *count += 1;
        Some(Self { limits, client })
    }
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let mut clients = self
            .limits
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = clients.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

/// A request body that fails once it is late: see [`BodyLimits`]. The deadline moves with every
/// chunk received (the grace period plus the time the bytes so far are allowed at the minimum
/// rate), and never past the total timeout. Sets `expired` when it fails, so [`guard`] answers
/// 408 whatever the handler did with the error.
struct TimedBody {
    inner: Body,
    limits: BodyLimits,
    /// When the handler first asked for the body (time spent before, authenticating or
    /// waiting for a database connection, is not the client's).
    start: Option<Instant>,
    received: u64,
    timer: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl TimedBody {
    fn new(inner: Body, limits: BodyLimits, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limits,
            start: None,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            expired,
        }
    }

    fn deadline(&self, start: Instant) -> Instant {
        let earned = match self.limits.min_rate {
            0 => self.limits.timeout,
            rate => BODY_GRACE + Duration::from_secs_f64(self.received as f64 / rate as f64),
        };
        // A timeout too large to add is as good as none.
        start
            .checked_add(earned.min(self.limits.timeout))
            .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365))
    }
}

/// The error a late body fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
struct BodyTimeout;

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let start = match this.start {
            Some(start) => start,
            None => {
                let now = Instant::now();
                this.start = Some(now);
                let deadline = this.deadline(now);
                this.timer.as_mut().reset(deadline);
                now
            }
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline(start);
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.expired.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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
    // Routing has run: the request span gets the route's template (`/webhooks/{*url}`).
    if let Some(route) = request.extensions().get::<axum::extract::MatchedPath>() {
        tracing::Span::current().record("route", tracing::field::display(route.as_str()));
    }
    let (credential, from_cookie) = match request.extensions_mut().remove::<Presented>() {
        Some(Presented(presented)) => presented,
        None => credential(&request),
    };
    if unrouted_get(&state, &request) {
        return ApiError::no_route().into_response();
    }
    if credential.is_none() && open_to_senders(&state, &request) {
        // A hook whose sender proves itself another way (a signature, a handshake): the
        // handler's gate (`crate::senders::gate`) verifies it, or asks for credentials.
        return next.run(request).await;
    }
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

/// Where a webhook request goes: whether its route is the multi-segment one, and its hook's
/// sender policy (`None` for another route, `Some((_, None))` for a hook without one).
fn webhook_policy(
    state: &AppState,
    request: &Request,
) -> Option<(bool, Option<Arc<stormhook_senders::HookPolicy>>)> {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()?
        .as_str();
    let nested = route.ends_with("/webhooks/{hook}/{*rest}");
    if !(nested || route.ends_with("/webhooks/{hook}")) {
        return None;
    }
    let path = request.uri().path();
    let at = path.find("/webhooks/")?;
    let hook = percent_encoding::percent_decode_str(&path[at + "/webhooks/".len()..])
        .decode_utf8()
        .ok()?;
    let hook = stormhook_automation::triggers::normalize_url(&hook);
    if hook == "st2" {
        return Some((nested, None));
    }
    let rules = state.packs.rules();
    let policy = rules.webhooks.hook(hook).and_then(|h| h.policy.clone());
    Some((nested, policy))
}

/// Whether `request` goes to a webhook whose sender policy lets it in without credentials:
/// one verified by a signature (unless it also requires an API key) or with a handshake.
fn open_to_senders(state: &AppState, request: &Request) -> bool {
    webhook_policy(state, request)
        .and_then(|(_, policy)| policy)
        .is_some_and(|p| crate::senders::opens(&p))
}

/// Whether `request` is a GET of a multi-segment webhook url that takes no GET (no handshake,
/// no `accept.get`): StackStorm has no such route, so it is the 404 of any unknown route, before
/// authentication.
fn unrouted_get(state: &AppState, request: &Request) -> bool {
    if !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return false;
    }
    match webhook_policy(state, request) {
        Some((true, policy)) => !policy.is_some_and(|p| p.accept.get || p.handshake.is_some()),
        _ => false,
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
