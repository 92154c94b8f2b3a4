//! Stormhook's HTTP server: the StackStorm-compatible API, credentials, the listener and TLS.
//!
//! The only crate that knows HTTP. Handlers translate between requests and the automation
//! domain (`stormhook-automation`), the credentials ([`auth`]) and the store; they hold no
//! automation logic. [`Stormhook`] is the one wiring of the application, used by
//! `stormhook serve` and by the tests.
//!
//! Conventions from StackStorm (`docs/st2-api.md` §0):
//! - Every API path is served under `/api/v1/...` (what curl users and nginx-fronted StackStorm
//!   expose) and `/v1/...` (what st2api serves and the `st2` CLI calls). Tokens are served under
//!   `/auth/v1/tokens`, `/auth/tokens`, `/v1/tokens` and `/tokens`.
//! - One trailing slash is ignored.
//! - An unknown path or method answers 404 `The resource could not be found.` (never 405).
//! - Routes are matched before authentication (404 before 401). Every route except token
//!   creation needs a credential.
//! - Errors are `{"faultstring": ...}`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use serde::de::DeserializeOwned;
use stormhook_storage::Store;
use stormhook_storage::ingest::Ingest;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

mod actions;
mod apikeys;
pub mod app;
mod attributes;
pub mod auth;
mod configs;
mod enforcements;
mod error;
mod execution_views;
mod executions;
mod keys;
pub mod listener;
mod middleware;
mod paging;
mod plugins;
mod rules;
pub mod senders;
mod tokens;
mod triggers;
mod webhooks;

pub use app::{Config, Serving, Stormhook};
pub use error::ApiError;
pub use listener::ConnectionLimits;

use crate::auth::Auth;
use stormhook_automation::packs::PackManager;

/// Request-level settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body accepted (413 past it).
    pub max_body_bytes: usize,
    /// Most requests in progress at once (503 with `Retry-After` past it).
    pub max_concurrent_requests: usize,
    /// The public API URL, sent as `X-API-URL` when a token is issued, and allowed as a CORS
    /// origin.
    pub api_url: String,
    /// The base URL of st2web (StackStorm's `webui.webui_base_url`): executions link to their
    /// page under it (`web_url`, `<base>/#/history/<id>/general`).
    pub webui_url: String,
    /// More origins allowed to call the API from a browser with credentials (CORS), besides
    /// `api_url`; `*` allows any origin, without credentials.
    pub allow_origins: Vec<String>,
    /// Most requests in progress at once from one client, an address and the credential it
    /// sends (0: no cap).
    pub max_requests_per_client: usize,
    /// The longest a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The slowest average rate a request body may arrive at, after its first 5 seconds, in
    /// bytes per second (0: no minimum).
    pub body_min_rate: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_concurrent_requests: 1024,
            api_url: "http://127.0.0.1:9101".into(),
            webui_url: "http://127.0.0.1:9101".into(),
            allow_origins: Vec::new(),
            max_requests_per_client: 256,
            body_timeout: std::time::Duration::from_secs(30),
            body_min_rate: 1024,
        }
    }
}

/// What every handler can reach: one `Arc`, so the clones that axum makes for every middleware
/// and extractor on every request cost one reference count each.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The packs folder (rules, webhooks) and, through it, the plugin runtime.
    pub packs: Arc<PackManager>,
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Group commit of accepted events.
    pub ingest: Ingest,
    /// Credentials.
    pub auth: Arc<Auth>,
    /// Request-level settings.
    pub settings: Arc<Settings>,
    /// Runs executions.
    pub executor: Arc<stormhook_automation::executions::Executor>,
    /// Counts of refused, duplicate and handshake deliveries per hook (`GET /senders`).
    pub senders: Arc<senders::SenderStats>,
}

/// The API routes (authenticated), without prefixes.
fn api(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(webhooks::routes())
        .merge(triggers::routes())
        .merge(apikeys::routes())
        .merge(plugins::routes())
        .merge(rules::routes())
        .merge(enforcements::routes())
        .merge(executions::routes())
        .merge(actions::routes())
        .merge(keys::routes())
        .merge(configs::routes())
        .route("/", axum::routing::get(root))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ))
}

/// The whole application, with StackStorm's routing conventions and the request limits.
pub fn router(state: AppState) -> Router {
    let api = api(&state);
    let validate = Router::new()
        .route("/tokens/validate", post(tokens::validate))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    let tokens = Router::new()
        .route("/tokens", post(tokens::create))
        .merge(validate);
    // `/api/` is st2api's own root behind nginx, the same document as `/api/v1/`.
    let api_root = Router::new()
        .route("/api", axum::routing::get(root))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    let routes = Router::new()
        .merge(api_root)
        .nest("/api/v1", api.clone())
        .nest("/v1", api.merge(tokens.clone()))
        .nest("/auth/v1", tokens.clone())
        .nest("/auth", tokens.clone())
        .merge(tokens)
        .route("/readyz", axum::routing::get(plugins::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state.clone());
    let settings = &state.settings;
    let mut origins = vec![settings.api_url.clone()];
    origins.extend(settings.allow_origins.iter().cloned());
    let limits = Arc::new(middleware::EdgeLimits {
        concurrency: Semaphore::new(settings.max_concurrent_requests),
        per_client: settings.max_requests_per_client,
        clients: std::sync::Mutex::default(),
        hasher: std::hash::RandomState::new(),
        max_body_bytes: settings.max_body_bytes,
        body: middleware::BodyLimits {
            timeout: settings.body_timeout,
            min_rate: settings.body_min_rate,
        },
        origins: middleware::Origins::new(&origins),
    });
    // Layers run bottom-up: the last added is the outermost.
    Router::new()
        .fallback_service(routes)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            middleware::edge,
        ))
}

/// The version of StackStorm's API that Stormhook serves.
const ST2_API_VERSION: &str = "3.9.0";

/// `GET /api/v1/` (and `/v1/`, `/api/`): general API info (`st2api/st2api/controllers/root.py`).
async fn root() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "version": ST2_API_VERSION,
        "docs_url": "http://docs.stackstorm.com/3.9",
    }))
}

/// StackStorm answers 404 for an unknown path and for a known path with the wrong method.
async fn not_found() -> ApiError {
    ApiError::no_route()
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then finishes the requests
/// in flight.
///
/// # Errors
///
/// The listener fails.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::run(listener, router(state), limits, tls, shutdown).await
}

/// Reads the whole body, refusing more than `max` bytes.
pub(crate) async fn read_body(
    body: axum::body::Body,
    max: usize,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let inner = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*inner);
        while let Some(err) = cause {
            if err.is::<http_body_util::LengthLimitError>() {
                return middleware::too_large(max);
            }
            cause = err.source();
        }
        ApiError::BadRequest(format!("Failed to read request body: {inner}"))
    })
}

/// Parses a JSON request body (empty means `{}`) into `T`, with StackStorm's messages:
/// `Failed to parse request body: ...` for bad JSON, and jsonschema-style messages for the
/// wrong shape.
pub(crate) fn json_body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = if raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(raw)
            .map_err(|e| ApiError::BadRequest(format!("Failed to parse request body: {e}")))?
    };
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(serde_message(&e.to_string())))
}

/// A serde error worded as Python's jsonschema words the same problem.
pub(crate) fn serde_message(text: &str) -> String {
    let field = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|r| r.split('`').next())
            .map(str::to_owned)
    };
    match (field("unknown field `"), field("missing field `")) {
        (Some(f), _) => format!("Additional properties are not allowed ('{f}' was unexpected)"),
        (_, Some(f)) => format!("'{f}' is a required property"),
        _ => text.to_owned(),
    }
}
