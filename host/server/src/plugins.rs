//! `GET /plugins` (what is loaded) and `POST /plugins/reload` (rescan the packs folder now),
//! and the unauthenticated readiness probe `GET /readyz`.
//!
//! Stormhook's own endpoints; StackStorm has no equivalent.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use stormhook_runtime::PluginInfo;

use super::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(list))
        .route("/plugins/reload", post(reload))
}

async fn list(State(state): State<AppState>) -> Json<Vec<PluginInfo>> {
    Json(state.packs.runtime().list())
}

/// `GET /readyz`: 200 once every plugin of the packs has a version serving or was refused,
/// 503 while some plugin's first version is still compiling (the server already accepts
/// webhooks then; calls to such a plugin wait for it). Needs no credentials: it says nothing
/// but counts.
pub(super) async fn ready(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use stormhook_runtime::PluginState;
    let plugins = state.packs.runtime().list();
    let count = |s: PluginState| plugins.iter().filter(|p| p.state == s).count();
    let loading = count(PluginState::Loading);
    let status = if loading == 0 {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": loading == 0,
        "plugins": {
            "ready": count(PluginState::Ready),
            "loading": loading,
            "failed": count(PluginState::Failed),
        },
    });
    (status, Json(body)).into_response()
}

async fn reload(State(state): State<AppState>) -> Json<serde_json::Value> {
    let report = state.packs.reload().await;
    Json(serde_json::json!({
        "loaded": report.loaded,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "superseded": report.superseded,
        "errors": report.errors,
        "plugins": state.packs.runtime().list(),
    }))
}
