//! Actions and runner types (`docs/st2-api.md` §6.4): `GET /actions`,
//! `GET /actions/{ref_or_id}`, `GET /runnertypes`, `GET /runnertypes/{name_or_id}`.
//! Actions come from the catalog (built-in `core` actions and pack actions); they are not
//! created through the API.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::attributes::{self, Attributes, Endpoint};
use super::paging::{Paging, Params, list_response};
use super::{ApiError, AppState};
use stormhook_automation::actions;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/actions", get(list_actions))
        .route("/actions/{ref_or_id}", get(get_action))
        .route("/runnertypes", get(list_runners))
        .route("/runnertypes/{name_or_id}", get(get_runner))
}

fn page(
    items: Vec<Value>,
    params: &Params,
    default_limit: Option<u64>,
) -> Result<Response, ApiError> {
    let paging = match default_limit {
        Some(d) => Paging::from(params, d)?,
        None if params.contains_key("limit") || params.contains_key("offset") => {
            Paging::from(params, u64::MAX)?
        }
        None => Paging {
            limit: None,
            offset: 0,
        },
    };
    let total = items.len() as u64;
    let items: Vec<Value> = items
        .into_iter()
        .skip(paging.offset as usize)
        .take(paging.limit.map_or(usize::MAX, |l| l as usize))
        .collect();
    let paging = Paging {
        limit: paging.limit.filter(|l| *l != u64::MAX),
        ..paging
    };
    Ok(list_response(items, total, paging))
}

async fn list_actions(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let fields = Attributes::from(&params, &attributes::ACTIONS, Endpoint::List)?;
    let items: Vec<Value> = state
        .executor
        .catalog()
        .list()
        .into_iter()
        .filter(|a| params.get("pack").is_none_or(|p| *p == a.pack))
        .filter(|a| params.get("name").is_none_or(|n| *n == a.name))
        .filter(|a| {
            params
                .get("runner_type")
                .is_none_or(|r| *r == a.runner_type)
        })
        .map(|a| a.json())
        // `tags`: an action with a tag of that name (`supported_filters`: `tags.name`).
        .filter(|a| {
            params.get("tags").is_none_or(|t| {
                a["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|tag| tag["name"] == t.as_str()))
            })
        })
        .map(|a| fields.apply(a))
        .collect();
    page(items, &params, None)
}

async fn get_action(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .executor
        .catalog()
        .describe(&ref_or_id)
        .map(|a| Json(a.json()))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Resource with a reference or id \"{ref_or_id}\" not found"
            ))
        })
}

async fn list_runners(Query(params): Query<Params>) -> Result<Response, ApiError> {
    let items: Vec<Value> = actions::runner_types()
        .iter()
        .map(actions::RunnerType::json)
        .filter(|r| params.get("name").is_none_or(|n| r["name"] == n.as_str()))
        .filter(|r| params.get("id").is_none_or(|i| r["id"] == i.as_str()))
        .collect();
    page(items, &params, Some(100))
}

async fn get_runner(Path(name_or_id): Path<String>) -> Result<Json<Value>, ApiError> {
    actions::runner_types()
        .iter()
        .map(actions::RunnerType::json)
        .find(|r| r["name"] == name_or_id.as_str() || r["id"] == name_or_id.as_str())
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Resource with a name or id \"{name_or_id}\" not found"
            ))
        })
}
