//! The datastore (`docs/st2-api.md` §6.2, "Datastore server side"): `GET /keys`,
//! `GET/PUT/DELETE /keys/{name}`, system scope (`st2kv.system`). Plugins reach the same values
//! through the `kv` host import, within their grant.
//!
//! As in StackStorm:
//! - `PUT` with `"secret": true` stores the value encrypted with the datastore key; with
//!   `"encrypted": true` the value is already a ciphertext made with that key (`st2 key load`
//!   of exported secrets): it must decrypt, and is stored as it is. Either way the pair is a
//!   secret.
//! - A secret is shown as its ciphertext (`"secret": true, "encrypted": true`) unless
//!   `?decrypt=true`. StackStorm allows `decrypt` to administrators only; Stormhook has no
//!   RBAC, so every authenticated caller may decrypt.
//! - `"ttl": <seconds>` makes the pair expire (`expire_timestamp` in the answer); an expired
//!   pair is gone for every reader. A `PUT` without `ttl` stores a pair that does not expire.
//!
//! - `?user=<someone else>` (and a body's `user`) is refused with StackStorm's 403: without
//!   RBAC StackStorm never lets one user name another (`assert_user_is_admin_if_user_query_param_is_provided`
//!   in `st2common/st2common/rbac/backends/noop.py`).
//! - A scope that is not one of StackStorm's (`system`, `user`, `st2kv.system`, `st2kv.user`)
//!   is refused with its message (`_validate_scope` in `st2api/st2api/controllers/v1/keyvalue.py`),
//!   in a `PUT` body and, unlike StackStorm (which does not read it), in a `PUT`'s `?scope=`:
//!   a mistyped scope is not quietly taken as the system scope.
//!
//! Not supported, and refused with a 400 that says so rather than stored wrongly: the user
//! scope.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use stormhook_storage::{KvPair, KvValue, StorageError};

use super::paging::{Paging, Params, boolean, list_response};
use super::{ApiError, AppState};
use crate::auth::Principal;
use stormhook_automation::triggers::python_repr;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list))
        .route("/keys/{name}", get(get_one).put(put).delete(delete))
}

/// A pair as StackStorm shows it; `decrypted` is a secret's plaintext when `?decrypt=true`.
fn key_json(pair: &KvPair, decrypted: Option<String>) -> Value {
    use sha2::Digest as _;
    let name = &pair.name;
    let encrypted = pair.secret && decrypted.is_none();
    let mut doc = json!({
        "id": hex::encode(&sha2::Sha256::digest(format!("kv:{name}").as_bytes())[..12]),
        "uid": format!("key_value_pair:st2kv.system:{name}"),
        "name": name,
        "value": decrypted.unwrap_or_else(|| pair.value.clone()),
        "secret": pair.secret,
        "encrypted": encrypted,
        "scope": "st2kv.system",
    });
    if let (Some(at), Some(doc)) = (&pair.expire_timestamp, doc.as_object_mut()) {
        doc.insert("expire_timestamp".into(), json!(at));
    }
    doc
}

/// `key_json`, decrypting a secret when `decrypt` is asked for.
fn shown(state: &AppState, pair: &KvPair, decrypt: bool) -> Result<Value, ApiError> {
    if !(decrypt && pair.secret) {
        return Ok(key_json(pair, None));
    }
    let plaintext = state
        .store
        .datastore_key()?
        .decrypt(&pair.value)
        .map_err(|e| {
            // The pair was stored encrypted with another key (or altered): an operator's
            // problem, logged with the key's name only.
            ApiError::Internal(format!("decrypting the secret `{}`: {e}", pair.name))
        })?;
    Ok(key_json(pair, Some(plaintext)))
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

/// StackStorm's 403 for naming another user without RBAC; naming oneself is allowed.
fn check_user(user: Option<&str>, principal: &Principal) -> Result<(), ApiError> {
    match user {
        Some(user) if user != principal.user => Err(ApiError::Forbidden(
            "\"user\" attribute can only be provided by admins when RBAC is enabled".into(),
        )),
        _ => Ok(()),
    }
}

/// A scope as StackStorm writes it in full (`get_datastore_full_scope`), checked against its
/// allowed scopes: whether it is the system scope.
fn full_scope_is_system(scope: &str) -> Result<bool, ApiError> {
    let full = if scope.contains("st2kv") {
        scope.to_owned()
    } else {
        format!("st2kv.{scope}")
    };
    match full.as_str() {
        "st2kv.system" => Ok(true),
        "st2kv.user" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "Scope {full} is not in allowed scopes list: ['system', 'user', 'st2kv.system', 'st2kv.user']."
        ))),
    }
}

/// The user scope, refused where a request would use it.
fn user_scope_unsupported() -> ApiError {
    ApiError::BadRequest(
        "The user scope (st2kv.user) is not supported by Stormhook; only the system scope (st2kv.system) is.".into(),
    )
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "KeyValuePair with name: {name} and scope: st2kv.system not found in db."
    ))
}

async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let paging = Paging::from(&params, 100)?;
    let decrypt = boolean(&params, "decrypt")?.unwrap_or(false);
    let user = params.get("user").filter(|u| !u.is_empty());
    check_user(user.map(String::as_str), &principal)?;
    // Naming a user (oneself, by now) asks for the user scope.
    if !check_scope(&params)? || user.is_some() {
        return Ok(list_response(Vec::new(), 0, paging));
    }
    let prefix = params.get("prefix").map_or("", String::as_str);
    let page = state
        .store
        .kv_list(prefix, paging.limit, paging.offset)
        .await?;
    let items = page
        .items
        .iter()
        .map(|pair| shown(&state, pair, decrypt))
        .collect::<Result<_, _>>()?;
    Ok(list_response(items, page.total, paging))
}

async fn get_one(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let user = params.get("user").filter(|u| !u.is_empty());
    check_user(user.map(String::as_str), &principal)?;
    if !check_scope(&params)? || user.is_some() {
        return Err(user_scope_unsupported());
    }
    let decrypt = boolean(&params, "decrypt")?.unwrap_or(false);
    let pair = state
        .store
        .kv_get(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(shown(&state, &pair, decrypt)?))
}

/// A boolean field of the body (absent or null: false), with jsonschema's message otherwise.
fn flag(body: &serde_json::Map<String, Value>, field: &str) -> Result<bool, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{} is not of type 'boolean'",
            python_repr(other)
        ))),
    }
}

/// The body's `ttl`: none when absent, null or 0 (StackStorm stores no expiry for a falsy
/// ttl); a positive whole number of seconds otherwise.
fn ttl(body: &serde_json::Map<String, Value>) -> Result<Option<std::time::Duration>, ApiError> {
    match body.get("ttl") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            Ok(n.as_u64().map(std::time::Duration::from_secs))
        }
        Some(Value::Number(n)) if n.as_i64().is_some() => Err(ApiError::BadRequest(format!(
            "ttl must be a positive number of seconds, got {n}"
        ))),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{} is not of type 'integer'",
            python_repr(other)
        ))),
    }
}

async fn put(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
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
        Some(Value::String(v)) => v.as_str(),
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
    // The body's scope wins over the query's, as StackStorm reads the body's first.
    let scope = match body.get("scope") {
        None | Some(Value::Null) => params.get("scope").map(String::as_str),
        Some(Value::String(scope)) => Some(scope.as_str()),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{} is not of type 'string'",
                python_repr(other)
            )));
        }
    };
    if let Some(scope) = scope.filter(|s| !s.is_empty() && *s != "all")
        && !full_scope_is_system(scope)?
    {
        return Err(user_scope_unsupported());
    }
    check_user(body.get("user").and_then(Value::as_str), &principal)?;
    let ttl = ttl(body)?;
    // `encrypted` implies `secret` (StackStorm: otherwise anyone could decrypt any
    // ciphertext by storing it as a plain value).
    let value = if flag(body, "encrypted")? {
        KvValue::Encrypted(value)
    } else if flag(body, "secret")? {
        KvValue::Secret(value)
    } else {
        KvValue::Plain(value)
    };
    let pair = state
        .store
        .kv_put(&name, value, ttl)
        .await
        .map_err(|e| match e {
            StorageError::Invalid(message) => ApiError::BadRequest(message),
            other => other.into(),
        })?;
    state.senders.forget_secrets();
    Ok(Json(key_json(&pair, None)))
}

async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let user = params.get("user").filter(|u| !u.is_empty());
    if let Some(scope) = params.get("scope").filter(|s| !s.is_empty() && *s != "all")
        && !full_scope_is_system(scope)?
    {
        return Err(user_scope_unsupported());
    }
    check_user(user.map(String::as_str), &principal)?;
    if user.is_some() {
        return Err(user_scope_unsupported());
    }
    let deleted = state.store.kv_delete(&name).await?;
    state.senders.forget_secrets();
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}
