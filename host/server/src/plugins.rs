//! `GET /plugins` (what is loaded) and `POST /plugins/reload` (rescan the packs folder now).
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

async fn reload(State(state): State<AppState>) -> Json<serde_json::Value> {
    let report = state.packs.reload().await;
    Json(serde_json::json!({
        "loaded": report.loaded,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "errors": report.errors,
        "plugins": state.packs.runtime().list(),
    }))
}
