//! The HTTP server: one router for the binary and the tests.
//!
//! Architecture invariant: only this module knows HTTP. Routes translate between requests and
//! the runtime, packs and storage APIs; they hold no logic of their own beyond that.
//!
//! Every API path is served under `/api/v1/...` (what curl users and nginx-fronted StackStorm
//! expose) and `/v1/...` (what st2api serves and the `st2` CLI calls). One trailing slash is
//! ignored, and an unknown path or method answers 404 `The resource could not be found.`, as
//! StackStorm does (it never answers 405).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::Uri;
use tokio::net::TcpListener;

mod error;
mod plugins;

pub use error::ApiError;

use crate::packs::PackManager;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The packs folder and, through it, the plugin runtime.
    pub packs: Arc<PackManager>,
}

/// The API routes, without prefixes.
fn api() -> Router<AppState> {
    Router::new().merge(plugins::routes())
}

/// The whole application: API routes under both prefixes, StackStorm's 404 for the rest.
pub fn router(state: AppState) -> Router {
    let api = api();
    Router::new()
        .nest("/api/v1", api.clone())
        .nest("/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

/// StackStorm answers 404 for an unknown path and for a known path with the wrong method.
async fn not_found() -> ApiError {
    ApiError::NotFound("The resource could not be found.".into())
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = tower_normalize(router(state));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Removes one trailing slash before routing, as StackStorm's router does (`/v1/rules/` is
/// `/v1/rules`; the `st2` CLI depends on it).
fn tower_normalize(router: Router) -> axum::routing::IntoMakeService<Router> {
    Router::new()
        .fallback_service(router)
        .layer(axum::middleware::map_request(strip_trailing_slash))
        .into_make_service()
}

async fn strip_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = &path[..path.len() - 1];
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse::<Uri>() {
            *request.uri_mut() = uri;
        }
    }
    request
}
