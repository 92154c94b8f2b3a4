//! Pack configs (StackStorm's `GET /configs` and `GET /configs/{pack}`): the validated values
//! of each pack's values file, defaults filled in, as `{"id", "pack", "values"}`.
//!
//! Values whose schema says `secret: true` are `********` unless the caller asks for
//! `show_secrets=true`. StackStorm shows them then to admins only; Stormhook has no RBAC and
//! every authenticated caller is an admin, as for the other endpoints that take
//! `show_secrets`. Values written as `{{ st2kv... }}` templates are shown as written, never
//! rendered (StackStorm stores and serves them so), so a datastore value does not appear here.
//!
//! As in StackStorm, only packs with a values file have a config here (a pack with only a
//! schema still gives its defaults to `config_context`). Writing configs (`PUT`) is not
//! served: the values file is the source, and it is hot-reloaded.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use stormhook_automation::config::LoadedConfig;

use super::paging::{Paging, Params, boolean, list_response};
use super::{ApiError, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/configs", get(list))
        .route("/configs/{pack}", get(get_one))
}

fn config_json(pack: &str, loaded: &LoadedConfig, show_secrets: bool) -> Value {
    use sha2::Digest as _;
    let values = if show_secrets {
        loaded.config.values.clone()
    } else {
        loaded.config.masked()
    };
    json!({
        "id": hex::encode(&sha2::Sha256::digest(format!("config:{pack}").as_bytes())[..12]),
        "pack": pack,
        "values": values,
    })
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let paging = Paging::from(&params, 100)?;
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let configs = state.packs.configs();
    let with_values: Vec<(&String, &LoadedConfig)> = configs
        .iter()
        .filter(|(_, loaded)| loaded.values_file.is_some())
        .collect();
    let total = with_values.len() as u64;
    let items = with_values
        .into_iter()
        .skip(usize::try_from(paging.offset).unwrap_or(usize::MAX))
        .take(
            paging
                .limit
                .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)),
        )
        .map(|(pack, loaded)| config_json(pack, loaded, show_secrets))
        .collect();
    Ok(list_response(items, total, paging))
}

async fn get_one(
    State(state): State<AppState>,
    Path(pack): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let configs = state.packs.configs();
    match configs.get(&pack) {
        Some(loaded) if loaded.values_file.is_some() => {
            Ok(Json(config_json(&pack, loaded, show_secrets)))
        }
        _ => Err(ApiError::NotFound(format!(
            "Unable to identify resource with pack_ref \"{pack}\"."
        ))),
    }
}
