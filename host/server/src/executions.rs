//! Executions (`docs/st2-api.md` §4.1–4.3): `POST/GET /executions`, `GET/PUT/DELETE
//! /executions/{id}` (and `last`), `POST /executions/{id}/re_run`, `GET
//! /executions/{id}/children`, `GET /executions/{id}/attribute/{attribute}`, `GET
//! /executions/views/filters` and `GET /executions/{id}/result` (`execution_views.rs`); every
//! one also under `/actionexecutions`, StackStorm's alias.
//!
//! Beyond StackStorm: `POST /executions?wait=<seconds>` answers with the execution once it
//! completed, or as it is at the deadline (at most [`MAX_WAIT_SECS`]).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Map, Value, json};
use stormhook_storage::{Execution, ExecutionQuery, ExecutionStatus, FieldFilter, ids};

use super::attributes::{self, Attributes, Endpoint};
use super::paging::{Paging, Params, boolean, int, list_response, time_param};
use super::{ApiError, AppState};
use crate::auth::Principal;
use stormhook_automation::executions::{CancelError, Request, RequestError, UpdateError};

/// The longest `wait` a caller may ask for, in seconds.
pub(super) const MAX_WAIT_SECS: i64 = 300;

/// Largest `max_result_size` StackStorm accepts (14 MiB).
const MAX_RESULT_SIZE: i64 = 14 << 20;

pub(super) fn routes() -> Router<AppState> {
    // `/actionexecutions` is StackStorm's alias of every executions route (st2api's `app.py`
    // path transforms).
    ["/executions", "/actionexecutions"]
        .into_iter()
        .fold(Router::new(), |router, base| {
            router
                .route(base, get(list).post(create))
                .route(
                    &format!("{base}/{{id}}"),
                    get(get_one).put(update).delete(cancel),
                )
                .route(&format!("{base}/{{id}}/children"), get(children))
                .route(
                    &format!("{base}/views/filters"),
                    get(super::execution_views::filters),
                )
                .route(
                    &format!("{base}/{{id}}/result"),
                    get(super::execution_views::raw_result),
                )
                .route(
                    &format!("{base}/{{id}}/attribute/{{attribute}}"),
                    get(attribute),
                )
                .route(&format!("{base}/{{id}}/re_run"), post(re_run))
        })
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
/// masked unless `show_secrets`, and its `web_url` (st2web's page of it, under the
/// configured base URL).
pub(crate) fn execution_json(state: &AppState, e: &Execution, show_secrets: bool) -> Value {
    let mut doc = e.document.clone();
    doc["web_url"] = json!(format!(
        "{}/#/history/{}/general",
        state.settings.webui_url.trim_end_matches('/'),
        e.id
    ));
    if !show_secrets {
        let secret = stormhook_automation::executions::secret_parameters(&doc);
        for pointer in ["/parameters", "/liveaction/parameters"] {
            if let Some(params) = doc.pointer_mut(pointer) {
                stormhook_automation::executions::mask(params, &secret);
            }
        }
        stormhook_automation::executions::mask_secret_output(&mut doc);
    }
    if let Value::Object(map) = &mut doc {
        map.retain(|_, v| !falsy(v));
    }
    doc
}

/// A request body that must be a JSON object, with jsonschema's message when it is not.
fn object_body(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match super::json_body(raw)? {
        Value::Object(body) => Ok(body),
        other => Err(ApiError::BadRequest(format!(
            "{} is not of type 'object'",
            stormhook_automation::triggers::python_repr(&other)
        ))),
    }
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
    let mut body = object_body(&body)?;
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
    let delay = delay_of(&body)?;
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
        delay,
    };
    schedule(&state, request, show_secrets, wait).await
}

/// Requests an execution and answers 201 with it (once it completed or at the deadline,
/// with `wait`), as `_handle_schedule_execution` does.
async fn schedule(
    state: &AppState,
    request: Request,
    show_secrets: bool,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
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
        Json(execution_json(state, &execution, show_secrets)),
    )
        .into_response())
}

/// `jsonschema`'s message for a body field of the wrong type, when it is.
fn check_type(body: &Map<String, Value>, name: &str, ty: &str) -> Result<(), ApiError> {
    let Some(value) = body.get(name) else {
        return Ok(());
    };
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "{} is not of type '{ty}'",
        stormhook_automation::triggers::python_repr(value)
    )))
}

/// StackStorm's `delay` in a request body (milliseconds; absent or `null`: none): an integer
/// (jsonschema's message otherwise) that is not negative (`LiveActionDB.delay` has
/// `min_value=0`; StackStorm answers the failed save with a 500 and MongoEngine's message,
/// Stormhook with a 400 and the same message).
fn delay_of(body: &Map<String, Value>) -> Result<u64, ApiError> {
    if body.get("delay").is_none_or(Value::is_null) {
        return Ok(0);
    }
    check_type(body, "delay", "integer")?;
    body["delay"].as_u64().ok_or_else(|| {
        ApiError::BadRequest(
            "ValidationError (LiveActionDB:None) (Integer value is too small: ['delay'])".into(),
        )
    })
}

/// A list of strings from a body field (absent or empty: none).
fn strings(body: &Map<String, Value>, name: &str) -> Vec<String> {
    body.get(name)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /executions/{id}/re_run` (`ActionExecutionReRunController.post`): a new execution of
/// the same action, with the parameters of the original (unless `no_merge`) updated with
/// those given, and a context naming the original (`re-run.ref`) and its trace.
async fn re_run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let no_merge = boolean(&params, "no_merge")?.unwrap_or(false);
    let body = object_body(&body)?;
    // The body's schema (`openapi.yaml`), in its order.
    for (name, ty) in [
        ("parameters", "object"),
        ("tasks", "array"),
        ("reset", "array"),
        ("user", "string"),
        ("delay", "integer"),
    ] {
        check_type(&body, name, ty)?;
    }
    let overrides = body
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let tasks = strings(&body, "tasks");
    let reset = strings(&body, "reset");
    if (!tasks.is_empty() || !reset.is_empty()) && !overrides.is_empty() {
        return Err(ApiError::BadRequest(
            "Parameters override is not supported when re-running task(s) for a workflow.".into(),
        ));
    }
    if reset.iter().any(|task| !tasks.contains(task)) {
        return Err(ApiError::BadRequest(
            "List of tasks to reset does not match the tasks to rerun.".into(),
        ));
    }
    // The re-run's own delay; the original's is not inherited.
    let delay = delay_of(&body)?;
    let original = find(&state, &id).await?;
    if !tasks.is_empty() {
        // Only Orquesta workflows re-run tasks, and Stormhook has no workflows.
        return Err(ApiError::BadRequest(
            "Task option is only supported for Orquesta workflows.".into(),
        ));
    }
    let mut parameters = if no_merge {
        Map::new()
    } else {
        original.document["parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    parameters.extend(overrides);
    let mut context = Map::new();
    context.insert("re-run".into(), json!({"ref": id}));
    // The original's trace (the one its context names, or its own), while it is kept.
    let trace = original.document["context"]["trace_context"]["id_"]
        .as_str()
        .unwrap_or(&original.id);
    if state.store.trace(trace).await?.is_some() {
        context.insert("trace_context".into(), json!({"id_": trace}));
    }
    let user = match body.get("user") {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        _ => principal.user,
    };
    let request = Request {
        action: original.action_ref,
        parameters,
        user,
        context,
        delay,
    };
    schedule(&state, request, show_secrets, None).await
}

/// StackStorm's execution statuses (`LIVEACTION_STATUSES`), in its order: the enum of
/// `PUT /executions/{id}`'s `status`.
const STATUSES: [&str; 14] = [
    "requested",
    "scheduled",
    "delayed",
    "running",
    "succeeded",
    "failed",
    "timeout",
    "abandoned",
    "canceling",
    "canceled",
    "pending",
    "pausing",
    "paused",
    "resuming",
];

/// `PUT /executions/{id}` (`ActionExecutionsController.put`): sets the status and result of
/// an execution that has not completed, with StackStorm's validations and messages. No
/// runner here can pause, so `pausing`, `paused` and `resuming` get StackStorm's answer for
/// such runners.
async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let mut body = object_body(&body)?;
    // `ExecutionUpdateRequest`: `status` (a string of the enum), `result` (an object), nothing
    // else.
    check_type(&body, "status", "string")?;
    if let Some(Value::String(status)) = body.get("status")
        && !STATUSES.contains(&status.as_str())
    {
        let list: Vec<String> = STATUSES.iter().map(|s| format!("'{s}'")).collect();
        return Err(ApiError::BadRequest(format!(
            "'{status}' is not one of [{}]",
            list.join(", ")
        )));
    }
    check_type(&body, "result", "object")?;
    let mut extra: Vec<&String> = body
        .keys()
        .filter(|k| !["status", "result"].contains(&k.as_str()))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let list: Vec<String> = extra.iter().map(|k| format!("'{k}'")).collect();
        let verb = if extra.len() == 1 { "was" } else { "were" };
        return Err(ApiError::BadRequest(format!(
            "Additional properties are not allowed ({} {verb} unexpected)",
            list.join(", ")
        )));
    }
    let status = match body.remove("status") {
        Some(Value::String(status)) => Some(status),
        _ => None,
    };
    let result = body.remove("result");
    let execution = find(&state, &id).await?;
    if execution.status.is_completed() {
        return Err(ApiError::BadRequest(
            "Execution is already in completed state.".into(),
        ));
    }
    let liveaction = execution.document["liveaction"]["id"]
        .as_str()
        .unwrap_or(&execution.id)
        .to_owned();
    let status = match status.as_deref() {
        None => None,
        Some(verb @ ("pausing" | "paused" | "resuming")) => {
            let verb = if verb == "resuming" {
                "resume"
            } else {
                "pause"
            };
            return Err(ApiError::BadRequest(format!(
                "Failed updating execution. Unable to {verb} liveaction \"{liveaction}\" because it is not supported by the \"{}\" runner.",
                execution.runner
            )));
        }
        // An execution is delayed only by the `delay` it is requested with (which says when it
        // is due).
        Some(delayed @ "delayed") => {
            return Err(ApiError::BadRequest(format!(
                "Failed updating execution. An execution is delayed only by the \"delay\" it is requested with: it cannot be set \"{delayed}\"."
            )));
        }
        Some(other) => match other.parse::<ExecutionStatus>() {
            Ok(status) => Some(status),
            // `pending` is an inquiry's status, and Stormhook has no inquiries.
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "Failed updating execution. Stormhook has no inquiries: an execution cannot be set \"{other}\"."
                )));
            }
        },
    };
    match state
        .executor
        .update(&execution.id, status, result, &principal.user)
        .await
    {
        Ok(execution) => Ok(Json(execution_json(&state, &execution, show_secrets))),
        Err(UpdateError::NotFound(id)) => Err(ApiError::NotFound(format!(
            "Unable to identify resource with id \"{id}\"."
        ))),
        Err(UpdateError::Completed) => Err(ApiError::BadRequest(
            "Execution is already in completed state.".into(),
        )),
        Err(UpdateError::Store(e)) => Err(e.into()),
    }
}

/// The list parameters whose values are typed: an empty value is an error for them, where an
/// empty filter is ignored (st2web sends `status=&action=&rule=`).
const TYPED_PARAMS: [&str; 4] = ["limit", "offset", "show_secrets", "max_result_size"];

/// The fields of StackStorm's `ActionExecutionDB` that hold documents: a `filter=` path may go
/// into them.
const DOCUMENT_FIELDS: [&str; 11] = [
    "trigger",
    "trigger_type",
    "trigger_instance",
    "rule",
    "action",
    "runner",
    "liveaction",
    "parameters",
    "context",
    "children",
    "log",
];

/// Its other fields: a `filter=` path ends at them.
const SCALAR_FIELDS: [&str; 11] = [
    "id",
    "workflow_execution",
    "task_execution",
    "status",
    "start_timestamp",
    "end_timestamp",
    "result",
    "result_size",
    "parent",
    "delay",
    "web_url",
];

/// A filter value: `null` (any case) is "the field does not exist", as
/// `_process_null_filters` reads it.
fn field_value(value: &str) -> Option<String> {
    (!value.eq_ignore_ascii_case("null")).then(|| value.to_owned())
}

/// Most `field:value` tokens in one `filter` parameter (StackStorm has no limit). Each is a
/// condition the database evaluates on every execution, with up to four bound parameters:
/// thousands of them (a URL holds about 8,000) exceed SQLite's bound parameters (a 500) or
/// scan the table once per token.
const MAX_ADVANCED_FILTERS: usize = 32;

/// The advanced `filter` parameter (`ResourceController._get_all`): space-separated
/// `field.path:value` tokens, each path checked against the execution model as MongoEngine's
/// `_lookup_field` checks it, with its messages.
fn advanced_filters(text: &str) -> Result<Vec<FieldFilter>, ApiError> {
    let count = text.split(' ').count();
    if count > MAX_ADVANCED_FILTERS {
        return Err(ApiError::BadRequest(format!(
            "too many filters in \"filter\": {count}, at most {MAX_ADVANCED_FILTERS}"
        )));
    }
    text.split(' ')
        .map(|token| {
            let Some((key, value)) = token.split_once(':') else {
                return Err(ApiError::BadRequest(format!(
                    "invalid format for filter \"{token}\""
                )));
            };
            let mut path: Vec<String> = key.split('.').map(str::to_owned).collect();
            if path[0] == "pk" {
                path[0] = "id".into();
            }
            let first = path[0].as_str();
            if !DOCUMENT_FIELDS.contains(&first) && !SCALAR_FIELDS.contains(&first) {
                return Err(ApiError::BadRequest(format!(
                    "Cannot resolve field \"{first}\""
                )));
            }
            if SCALAR_FIELDS.contains(&first) && path.len() > 1 {
                return Err(ApiError::BadRequest(format!(
                    "Cannot resolve subfield or operator {} on the field {first}",
                    path[1]
                )));
            }
            // A key no document holds (and that a JSON path could not name).
            if let Some(bad) = path
                .iter()
                .find(|p| p.is_empty() || p.contains(['"', '\\']))
            {
                return Err(ApiError::BadRequest(format!(
                    "Cannot resolve field \"{bad}\""
                )));
            }
            Ok(FieldFilter {
                path,
                value: field_value(value),
            })
        })
        .collect()
}

/// A timestamp in a `timestamp` filter, with `isotime.validate`'s message.
fn timestamp(value: &str) -> Result<String, ApiError> {
    ids::parse_time(value).map(ids::format_time).ok_or_else(|| {
        ApiError::BadRequest("Datetime value does not match expected format.".into())
    })
}

fn list_param(params: &Params, name: &str) -> Option<String> {
    params.get(name).filter(|v| !v.is_empty()).cloned()
}

/// A comma list parameter (none when absent).
fn comma_list(params: &Params, name: &str) -> Vec<String> {
    params
        .get(name)
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// `GET /executions` (`docs/st2-api.md` §4.2), with StackStorm's filters (`SUPPORTED_FILTERS`
/// of `execution_views.py`): empty values are ignored, `null` means "absent", `rule`,
/// `trigger` and `trigger_type` match names, `timestamp` is a time or an inclusive range
/// `a..b` (oldest first) or `b..a` (newest first), and `filter` takes `field:value` pairs.
async fn list(
    State(state): State<AppState>,
    Query(mut params): Query<Params>,
) -> Result<Response, ApiError> {
    params.retain(|k, v| !v.is_empty() || TYPED_PARAMS.contains(&k.as_str()));
    let fields = Attributes::from(&params, &attributes::EXECUTIONS, Endpoint::List)?;
    let paging = Paging::from(&params, 100)?;
    let ids = comma_list(&params, "id");
    if let Some(bad) = ids.iter().find(|id| !ids::is_object_id(id)) {
        return Err(ApiError::BadRequest(format!(
            "'{bad}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
        )));
    }
    // Each status is a bound parameter: a status given twice is one (thousands of commas
    // exceeded SQLite's bound parameters).
    let mut statuses = comma_list(&params, "status");
    statuses.sort_unstable();
    statuses.dedup();
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    let timestamp_gt = time_param(&params, "timestamp_gt")?;
    let timestamp_lt = time_param(&params, "timestamp_lt")?;
    // `get_all`: `timestamp_lt` and `sort_desc` ask newest first, `timestamp_gt` and
    // `sort_asc` oldest first.
    let mut ascending = if boolean(&params, "sort_desc")? == Some(true) || timestamp_lt.is_some() {
        false
    } else {
        boolean(&params, "sort_asc")? == Some(true)
            || timestamp_gt.is_some()
            || params
                .get("sort")
                .is_some_and(|s| s.trim() == "start_timestamp")
    };
    let mut query = ExecutionQuery {
        ids,
        statuses,
        action: list_param(&params, "action"),
        runner: list_param(&params, "runner"),
        user: list_param(&params, "user"),
        timestamp_gt,
        timestamp_lt,
        limit: paging.limit,
        offset: paging.offset,
        ..Default::default()
    };
    match params.get("trigger_instance") {
        Some(v) if v.eq_ignore_ascii_case("null") => query.fields.push(FieldFilter {
            path: vec!["trigger_instance".into()],
            value: None,
        }),
        Some(v) => query.trigger_instance = Some(v.clone()),
        None => {}
    }
    for (name, path) in [
        ("rule", ["rule", "name"]),
        ("trigger", ["trigger", "name"]),
        ("trigger_type", ["trigger_type", "name"]),
        ("liveaction", ["liveaction", "id"]),
    ] {
        if let Some(v) = params.get(name) {
            let value = field_value(v);
            // `null`: the whole field is absent.
            let path = if value.is_some() {
                &path[..]
            } else {
                &path[..1]
            };
            query.fields.push(FieldFilter {
                path: path.iter().map(|p| (*p).to_owned()).collect(),
                value,
            });
        }
    }
    if let Some(t) = params.get("timestamp") {
        let mut parts = t.split("..");
        let first = timestamp(parts.next().unwrap_or_default())?;
        match parts.next() {
            // `_process_datetime_range_filters`: inclusive, in the order given.
            Some(second) => {
                let second = timestamp(second)?;
                ascending = first < second;
                let (from, to) = if ascending {
                    (first, second)
                } else {
                    (second, first)
                };
                query.timestamp_from = Some(from);
                query.timestamp_to = Some(to);
            }
            None => {
                query.timestamp_from = Some(first.clone());
                query.timestamp_to = Some(first);
            }
        }
    }
    if let Some(text) = params.get("filter") {
        query.fields.extend(advanced_filters(text)?);
    }
    query.ascending = ascending;
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
    let mut docs: Vec<Value> = page
        .items
        .iter()
        .map(|e| execution_json(&state, e, show_secrets))
        .collect();
    fill_trigger_types(&state, &mut docs).await?;
    Ok(list_response(
        docs.into_iter().map(|doc| fields.apply(doc)).collect(),
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
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    // `_validate_max_result_size`, before the execution is looked up; 0 is "not given".
    let max_result_size = match int(&params, "max_result_size")? {
        None | Some(0) => None,
        Some(max) if max < 0 => {
            return Err(ApiError::BadRequest(
                "max_result_size must be a positive number".into(),
            ));
        }
        Some(max) if max > MAX_RESULT_SIZE => {
            return Err(ApiError::BadRequest(
                "max_result_size query parameter must be smaller than 14 MB".into(),
            ));
        }
        Some(max) => Some(max),
    };
    let execution = find(&state, &id).await?;
    let mut docs = [execution_json(&state, &execution, show_secrets)];
    fill_trigger_types(&state, &mut docs).await?;
    let [doc] = docs;
    let mut doc = fields.apply(doc);
    if let Some(max) = max_result_size
        && doc["result_size"].as_i64().is_some_and(|size| size > max)
        && let Value::Object(map) = &mut doc
    {
        map.remove("result");
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

/// `GET /executions/{id}/attribute/{attribute}` (`ActionExecutionAttributeController.get`):
/// one of the attributes that may be excluded (`result`, `trigger_instance`, `status`), as
/// stored (`{}` when it has none), checked before the execution is looked up.
async fn attribute(
    State(state): State<AppState>,
    Path((id, attribute)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    const ATTRIBUTES: [&str; 3] = ["result", "trigger_instance", "status"];
    if !ATTRIBUTES.contains(&attribute.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "Invalid attribute \"{attribute}\" specified. Valid attributes are: {}",
            ATTRIBUTES.join(", ")
        )));
    }
    let execution = find(&state, &id).await?;
    let doc = execution_json(&state, &execution, true);
    Ok(Json(
        doc.get(&attribute).cloned().unwrap_or_else(|| json!({})),
    ))
}

/// `DELETE /executions/{id}` (`ActionExecutionsController.delete`): cancels it, with the
/// canceling user in its result at once; an execution already `canceled` is answered as it
/// is (200), one in another state that cannot be canceled with a 200 faultstring.
async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let show_secrets = boolean(&params, "show_secrets")?.unwrap_or(false);
    // `last` works here too.
    let execution = find(&state, &id).await?;
    if execution.status == ExecutionStatus::Canceled {
        return Ok(Json(execution_json(&state, &execution, show_secrets)).into_response());
    }
    match state.executor.cancel(&execution.id, &principal.user).await {
        Ok(execution) => Ok(Json(execution_json(&state, &execution, show_secrets)).into_response()),
        // Canceled meanwhile: answered as above.
        Err(CancelError::Completed(ExecutionStatus::Canceled)) => {
            let execution = find(&state, &execution.id).await?;
            Ok(Json(execution_json(&state, &execution, show_secrets)).into_response())
        }
        // StackStorm answers 200 with a faultstring here.
        Err(e @ CancelError::Completed(_)) => {
            Ok((StatusCode::OK, Json(json!({"faultstring": e.to_string()}))).into_response())
        }
        Err(e @ CancelError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(CancelError::Store(e)) => Err(e.into()),
    }
}

/// The `action_executions` of each of `traces` (StackStorm's trace components: the executions
/// whose context names the trace, and first the execution of the trace's own id when its
/// context names no trace: a run by hand's `execution-<id>` trace), oldest first, at most 100
/// per trace (`docs/st2-api.md` §7.2); read in two queries for a whole page of traces.
pub(crate) async fn trace_components(
    state: &AppState,
    traces: &[String],
) -> Result<std::collections::HashMap<String, Vec<Value>>, ApiError> {
    let mut by_trace: std::collections::HashMap<String, Vec<Value>> =
        std::collections::HashMap::new();
    for chunk in traces.chunks(super::triggers::TRACE_CHUNK) {
        let own = state
            .store
            .list_executions(&ExecutionQuery {
                ids: chunk.to_vec(),
                ..Default::default()
            })
            .await?
            .items
            .into_iter()
            .filter(|e| e.document["context"]["trace_context"]["id_"].is_null())
            .map(|e| (e.id.clone(), e));
        let named = state
            .store
            .list_executions(&ExecutionQuery {
                traces: chunk.to_vec(),
                ascending: true,
                ..Default::default()
            })
            .await?
            .items
            .into_iter()
            .filter_map(|e| {
                let trace = e.document["context"]["trace_context"]["id_"]
                    .as_str()?
                    .to_owned();
                Some((trace, e))
            });
        for (trace, e) in own.chain(named) {
            let components = by_trace.entry(trace).or_default();
            if components.len() < 100 {
                components.push(trace_component(&e));
            }
        }
    }
    Ok(by_trace)
}

/// An execution as a component of its trace.
fn trace_component(e: &Execution) -> Value {
    let caused_by = match (
        e.document["context"]["rule"]["id"].as_str(),
        &e.trigger_instance_id,
    ) {
        (Some(rule), Some(instance)) => {
            json!({"type": "rule", "id": format!("{rule}:{instance}")})
        }
        _ => json!({}),
    };
    json!({
        "object_id": e.id,
        "ref": e.action_ref,
        "updated_at": e.start_timestamp,
        "caused_by": caused_by,
    })
}

/// Puts the whole trigger type document into rule-triggered executions that name only its
/// ref (a trigger type from the store rather than a system one: the rules engine does not
/// read the store for it), one lookup per distinct ref.
async fn fill_trigger_types(state: &AppState, docs: &mut [Value]) -> Result<(), ApiError> {
    let mut found: std::collections::HashMap<String, Option<Value>> = Default::default();
    for doc in docs.iter_mut() {
        let Some(reference) = doc
            .get("trigger_type")
            .filter(|t| t.get("id").is_none())
            .and_then(|t| t.get("ref"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        if !found.contains_key(&reference) {
            let stored = state.store.trigger_type(&reference).await?;
            found.insert(
                reference.clone(),
                stored
                    .as_ref()
                    .map(stormhook_automation::documents::trigger_type_json),
            );
        }
        if let Some(Some(full)) = found.get(&reference) {
            doc["trigger_type"] = full.clone();
        }
    }
    Ok(())
}
