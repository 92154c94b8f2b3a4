//! API keys (`docs/st2-api.md` §2.4): `POST/GET /apikeys`, `GET/PUT/DELETE /apikeys/{id_or_key}`.
//!
//! The key itself appears once, in the create response. Lists mask `key_hash` and `uid` unless
//! `show_secrets=true` is given (every user is an admin: Stormhook has no RBAC).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use stormhook_storage::{ApiKey, ids};

use super::paging::{Paging, Params, boolean, list_response};
use super::{ApiError, AppState};
use crate::auth::{Principal, hash_api_key};

const MASK: &str = "********";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/apikeys", get(list).post(create))
        .route(
            "/apikeys/{id_or_key}",
            get(get_one).put(update).delete(delete),
        )
}

fn key_json(key: &ApiKey, show_secrets: bool) -> Value {
    let (hash, uid) = if show_secrets {
        (key.key_hash.clone(), format!("api_key:{}", key.key_hash))
    } else {
        (MASK.into(), MASK.into())
    };
    json!({
        "id": key.id,
        "uid": uid,
        "user": key.user,
        "key_hash": hash,
        "metadata": key.metadata,
        "created_at": key.created_at,
        "enabled": key.enabled,
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    key_hash: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    created_at: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: KeyBody = super::json_body(&body)?;
    let _ = (&body.uid, &body.created_at);
    let user = body
        .user
        .filter(|u| !u.is_empty())
        .unwrap_or(principal.user);
    let metadata = body.metadata.unwrap_or_else(|| json!({}));
    let (record, key) = match body.key_hash.filter(|h| !h.is_empty()) {
        // Importing a hash (from StackStorm): the key is unknown, so none is returned.
        Some(hash) => {
            let record = ApiKey {
                id: body
                    .id
                    .filter(|i| ids::is_object_id(i))
                    .unwrap_or_else(ids::object_id),
                user,
                key_hash: hash,
                metadata,
                created_at: ids::now(),
                enabled: body.enabled.unwrap_or(true),
            };
            state.store.insert_api_key(&record).await?;
            (record, None)
        }
        None => {
            let (mut record, key) = state.auth.create_api_key(&user, metadata).await?;
            if body.enabled == Some(false) {
                record.enabled = false;
                state.store.update_api_key(&record).await?;
            }
            (record, Some(key))
        }
    };
    let response = json!({
        "id": record.id,
        "uid": format!("api_key:{}", record.key_hash),
        "user": record.user,
        "key": key,
        "metadata": record.metadata,
        "created_at": record.created_at,
        "enabled": record.enabled,
    });
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let paging = Paging::for_api_keys(&params, 50)?;
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let page = state
        .store
        .list_api_keys(paging.limit, paging.offset)
        .await?;
    Ok(list_response(
        page.items
            .iter()
            .map(|k| key_json(k, show_secrets))
            .collect(),
        page.total,
        paging,
    ))
}

/// Finds a key by id or by the plaintext key.
async fn find(state: &AppState, id_or_key: &str) -> Result<Option<ApiKey>, ApiError> {
    if ids::is_object_id(id_or_key)
        && let Some(key) = state.store.api_key(id_or_key).await?
    {
        return Ok(Some(key));
    }
    Ok(state
        .store
        .api_key_by_hash(&hash_api_key(id_or_key))
        .await?)
}

async fn get_one(
    State(state): State<AppState>,
    Path(id_or_key): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let key = find(&state, &id_or_key).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "ApiKey matching {id_or_key} for reference and id not found."
        ))
    })?;
    Ok(Json(key_json(&key, show_secrets)))
}

async fn update(
    State(state): State<AppState>,
    Path(id_or_key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: KeyBody = super::json_body(&body)?;
    let existing = find(&state, &id_or_key).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "ApiKey matching {id_or_key} for reference and id not found."
        ))
    })?;
    if let Some(hash) = body.key_hash.as_deref()
        && !hash.is_empty()
        && hash != MASK
        && hash != existing.key_hash
    {
        return Err(ApiError::BadRequest(
            "Update of key_hash is not allowed.".into(),
        ));
    }
    let updated = ApiKey {
        user: body.user.unwrap_or(existing.user.clone()),
        metadata: body.metadata.unwrap_or(existing.metadata.clone()),
        enabled: body.enabled.unwrap_or(existing.enabled),
        ..existing
    };
    state.store.update_api_key(&updated).await?;
    state.auth.invalidate();
    Ok(Json(key_json(&updated, false)))
}

async fn delete(
    State(state): State<AppState>,
    Path(id_or_key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let existing = find(&state, &id_or_key).await?.ok_or_else(|| {
        ApiError::NotFound(format!("ApiKey with key or id={id_or_key} not found."))
    })?;
    state.store.delete_api_key(&existing.id).await?;
    state.auth.invalidate();
    Ok(StatusCode::NO_CONTENT)
}
