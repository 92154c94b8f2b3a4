//! Executions (`docs/st2-api.md` §4.1–4.3): `POST/GET /executions`, `GET/DELETE
//! /executions/{id}` (and `last`), `GET /executions/{id}/children`.
//!
//! Beyond StackStorm: `POST /executions?wait=<seconds>` answers with the execution once it
//! completed, or as it is at the deadline (at most [`MAX_WAIT_SECS`]).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};
use stormhook_storage::{Execution, ExecutionQuery, ids};

use super::attributes::{self, Attributes, Endpoint};
use super::paging::{Paging, Params, boolean, int, list_response, time_param};
use super::{ApiError, AppState};
use crate::auth::Principal;
use stormhook_automation::executions::{CancelError, Request, RequestError};

/// The longest `wait` a caller may ask for, in seconds.
pub(super) const MAX_WAIT_SECS: i64 = 300;

/// Largest `max_result_size` StackStorm accepts (14 MiB).
const MAX_RESULT_SIZE: i64 = 14 << 20;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/executions", get(list).post(create))
        .route("/executions/{id}", get(get_one).delete(cancel))
        .route("/executions/{id}/children", get(children))
}

/// Whether a value counts as false in Python (StackStorm drops such top-level fields).
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The execution as the API shows it: falsy top-level fields dropped, secret parameters
/// masked unless `show_secrets`.
pub(crate) fn execution_json(e: &Execution, show_secrets: bool) -> Value {
    let mut doc = e.document.clone();
    if !show_secrets {
        let secret = stormhook_automation::executions::secret_parameters(&doc);
        for pointer in ["/parameters", "/liveaction/parameters"] {
            if let Some(params) = doc.pointer_mut(pointer) {
                stormhook_automation::executions::mask(params, &secret);
            }
        }
    }
    if let Value::Object(map) = &mut doc {
        map.retain(|_, v| !falsy(v));
    }
    doc
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let wait = match int(&params, "wait")? {
        None => None,
        Some(n) if (0..=MAX_WAIT_SECS).contains(&n) => Some(Duration::from_secs(n as u64)),
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "Parameter \"wait\" must be between 0 and {MAX_WAIT_SECS} seconds, not {n}."
            )));
        }
    };
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let body: Value = super::json_body(&body)?;
    let Value::Object(mut body) = body else {
        return Err(ApiError::BadRequest(format!(
            "{} is not of type 'object'",
            stormhook_automation::triggers::python_repr(&body)
        )));
    };
    let action = match body.remove("action") {
        Some(Value::String(a)) => a,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{} is not of type 'string'",
                stormhook_automation::triggers::python_repr(&other)
            )));
        }
        None => {
            return Err(ApiError::BadRequest(
                "'action' is a required property".into(),
            ));
        }
    };
    let parameters = match body.remove("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{} is not of type 'object'",
                stormhook_automation::triggers::python_repr(&other)
            )));
        }
    };
    if body.get("delay").is_some_and(|d| !d.is_null()) {
        return Err(ApiError::BadRequest(
            "Delayed executions (\"delay\") are not supported by Stormhook.".into(),
        ));
    }
    let mut context = match body.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{} is not of type 'object'",
                stormhook_automation::triggers::python_repr(&other)
            )));
        }
    };
    if let Some(raw) = headers.get("st2-context") {
        let parsed: Option<Value> = raw.to_str().ok().and_then(|t| serde_json::from_str(t).ok());
        match parsed {
            Some(Value::Object(extra)) => context.extend(extra),
            other => {
                let was = match other {
                    None => "str",
                    Some(v) => stormhook_rules::operators::type_name(&v),
                };
                return Err(ApiError::BadRequest(format!(
                    "Unable to convert st2-context from the headers into JSON (was {was})."
                )));
            }
        }
    }
    // With RBAC off every user is an admin, and admins may run as someone else.
    let user = match body.remove("user") {
        Some(Value::String(u)) if !u.is_empty() => u,
        _ => principal.user,
    };
    let request = Request {
        action,
        parameters,
        user,
        context,
    };
    let execution = match state.executor.request(request).await {
        Ok(execution) => execution,
        Err(RequestError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::BadRequest(e.to_string())),
    };
    let execution = match wait {
        Some(timeout) => state
            .executor
            .wait(&execution.id, timeout)
            .await?
            .unwrap_or(execution),
        None => execution,
    };
    Ok((
        StatusCode::CREATED,
        Json(execution_json(&execution, show_secrets)),
    )
        .into_response())
}

fn list_param(params: &Params, name: &str) -> Option<String> {
    params.get(name).filter(|v| !v.is_empty()).cloned()
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let fields = Attributes::from(&params, &attributes::EXECUTIONS, Endpoint::List)?;
    let paging = Paging::from(&params, 100)?;
    let ids: Vec<String> = params
        .get("id")
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    if let Some(bad) = ids.iter().find(|id| !ids::is_object_id(id)) {
        return Err(ApiError::BadRequest(format!(
            "'{bad}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
        )));
    }
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let ascending = boolean(&params, "sort_asc")?.unwrap_or(false)
        || params
            .get("sort")
            .is_some_and(|s| s.trim() == "start_timestamp");
    let query = ExecutionQuery {
        ids,
        statuses: params
            .get("status")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default(),
        action: list_param(&params, "action"),
        runner: list_param(&params, "runner"),
        rule: list_param(&params, "rule"),
        trigger_instance: list_param(&params, "trigger_instance"),
        user: list_param(&params, "user"),
        timestamp_gt: time_param(&params, "timestamp_gt")?,
        timestamp_lt: time_param(&params, "timestamp_lt")?,
        ascending,
        limit: paging.limit,
        offset: paging.offset,
    };
    // Stormhook has no workflows: every execution is top level (`parent=null`), and none is
    // the child of another.
    let only_children = params
        .get("parent")
        .is_some_and(|p| !p.eq_ignore_ascii_case("null"));
    let page = if only_children {
        stormhook_storage::Page {
            items: Vec::new(),
            total: 0,
        }
    } else {
        state.store.list_executions(&query).await?
    };
    Ok(list_response(
        page.items
            .iter()
            .map(|e| fields.apply(execution_json(e, show_secrets)))
            .collect(),
        page.total,
        paging,
    ))
}

async fn find(state: &AppState, id: &str) -> Result<Execution, ApiError> {
    let not_found = || ApiError::NotFound(format!("Unable to identify resource with id \"{id}\"."));
    if id == "last" {
        let page = state
            .store
            .list_executions(&ExecutionQuery {
                limit: Some(1),
                ..Default::default()
            })
            .await?;
        return page.items.into_iter().next().ok_or_else(not_found);
    }
    state.store.execution(id).await?.ok_or_else(not_found)
}

async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let fields = Attributes::from(&params, &attributes::EXECUTIONS, Endpoint::One)?;
    let execution = find(&state, &id).await?;
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let mut doc = fields.apply(execution_json(&execution, show_secrets));
    if let Some(max) = int(&params, "max_result_size")? {
        if !(1..=MAX_RESULT_SIZE).contains(&max) {
            return Err(ApiError::BadRequest(format!(
                "max_result_size must be a positive number smaller than {MAX_RESULT_SIZE} bytes"
            )));
        }
        if doc["result_size"].as_i64().is_some_and(|size| size > max)
            && let Value::Object(map) = &mut doc
        {
            map.remove("result");
        }
    }
    Ok(Json(doc))
}

async fn children(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // No workflows: an execution has no children.
    find(&state, &id).await?;
    Ok(Json(json!([])))
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // `last` works here too.
    let id = find(&state, &id).await?.id;
    match state.executor.cancel(&id).await {
        Ok(execution) => Ok(Json(execution_json(&execution, false)).into_response()),
        // StackStorm answers 200 with a faultstring here.
        Err(e @ CancelError::Completed(_)) => {
            Ok((StatusCode::OK, Json(json!({"faultstring": e.to_string()}))).into_response())
        }
        Err(e @ CancelError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(CancelError::Store(e)) => Err(e.into()),
    }
}
