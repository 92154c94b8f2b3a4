//! The datastore (`docs/st2-api.md` §6.2, "Datastore server side"): `GET /keys`,
//! `GET/PUT/DELETE /keys/{name}`, system scope (`st2kv.system`). Plugins reach the same values
//! through the `kv` host import, within their grant.
//!
//! Not supported, and refused with a 400 that says so rather than stored wrongly: secret
//! (encrypted) values, `ttl`, and the user scope.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::paging::{Paging, Params, list_response};
use super::{ApiError, AppState};
use stormhook_automation::triggers::python_repr;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list))
        .route("/keys/{name}", get(get_one).put(put).delete(delete))
}

fn key_json(name: &str, value: &str) -> Value {
    use sha2::Digest as _;
    json!({
        "id": hex::encode(&sha2::Sha256::digest(format!("kv:{name}").as_bytes())[..12]),
        "uid": format!("key_value_pair:st2kv.system:{name}"),
        "name": name,
        "value": value,
        "secret": false,
        "encrypted": false,
        "scope": "st2kv.system",
    })
}

/// `system` and `st2kv.system` are the system scope; `all` includes it.
fn check_scope(params: &Params) -> Result<bool, ApiError> {
    match params.get("scope").map(String::as_str) {
        None | Some("system" | "st2kv.system" | "all") => Ok(true),
        Some("user" | "st2kv.user") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Scope \"{other}\" is not valid. Allowed scopes are ['st2kv.system', 'st2kv.user', 'all']."
        ))),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "KeyValuePair with name: {name} and scope: st2kv.system not found in db."
    ))
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let paging = Paging::from(&params, 100)?;
    let system = check_scope(&params)?;
    let prefix = params.get("prefix").cloned().unwrap_or_default();
    let all: Vec<(String, String)> = if system {
        state
            .store
            .kv_all()
            .await?
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect()
    } else {
        Vec::new()
    };
    let total = all.len() as u64;
    let items = all
        .iter()
        .skip(paging.offset as usize)
        .take(paging.limit.map_or(usize::MAX, |l| l as usize))
        .map(|(k, v)| key_json(k, v))
        .collect();
    Ok(list_response(items, total, paging))
}

async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    if !check_scope(&params)? {
        return Err(ApiError::BadRequest(
            "The user scope (st2kv.user) is not supported by Stormhook; only the system scope (st2kv.system) is.".into(),
        ));
    }
    let value = state
        .store
        .kv_get(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(key_json(&name, &value)))
}

async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value = super::json_body(&body)?;
    let Some(body) = body.as_object() else {
        return Err(ApiError::BadRequest(format!(
            "{} is not of type 'object'",
            python_repr(&body)
        )));
    };
    let value = match body.get("value") {
        Some(Value::String(v)) => v.clone(),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{} is not of type 'string'",
                python_repr(other)
            )));
        }
        None => {
            return Err(ApiError::BadRequest(
                "'value' is a required property".into(),
            ));
        }
    };
    match body.get("scope").and_then(Value::as_str) {
        None | Some("system" | "st2kv.system") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Scope \"{other}\" is not supported by Stormhook; only the system scope (st2kv.system) is."
            )));
        }
    }
    let flag = |k: &str| body.get(k).and_then(Value::as_bool) == Some(true);
    if flag("secret") || flag("encrypted") {
        return Err(ApiError::BadRequest(
            "Secret (encrypted) values are not supported by Stormhook; the value was not stored."
                .into(),
        ));
    }
    if body.get("ttl").is_some_and(|t| !t.is_null()) {
        return Err(ApiError::BadRequest(
            "Expiring values (ttl) are not supported by Stormhook; the value was not stored."
                .into(),
        ));
    }
    state.store.kv_set(&name, &value).await?;
    Ok(Json(key_json(&name, &value)))
}

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if state.store.kv_delete(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}
