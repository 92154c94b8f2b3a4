//! Rule enforcements (`docs/st2-api.md` §3.6): `GET /ruleenforcements` and `/{id}`, and
//! st2web's `/ruleenforcements/views[/{id}]` (each with its trigger instance and a summary of
//! its execution). Falsy fields are omitted, as StackStorm omits them.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use stormhook_storage::{EnforcementQuery, RuleEnforcement};

use super::attributes::{self, Attributes, Endpoint};
use super::paging::{Paging, Params, list_response, time_param};
use super::{ApiError, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ruleenforcements", get(list))
        .route("/ruleenforcements/{id}", get(get_one))
        .route("/ruleenforcements/views", get(list_views))
        .route("/ruleenforcements/views/{id}", get(get_view))
}

fn enforcement_json(e: &RuleEnforcement) -> Value {
    let mut v = json!({
        "id": e.id,
        "trigger_instance_id": e.trigger_instance_id,
        "rule": {"ref": e.rule_ref, "id": e.rule_id, "uid": e.rule_uid},
        "enforced_at": e.enforced_at,
        "status": e.status,
    });
    if let Some(execution) = &e.execution_id {
        v["execution_id"] = json!(execution);
    }
    if let Some(reason) = e.failure_reason.as_ref().filter(|r| !r.is_empty()) {
        v["failure_reason"] = json!(reason);
    }
    v
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    list_enforcements(&state, &params, false).await
}

/// `GET /ruleenforcements/views` (StackStorm's `RuleEnforcementViewController`,
/// `st2api/st2api/controllers/v1/rule_enforcement_views.py`).
async fn list_views(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    list_enforcements(&state, &params, true).await
}

async fn list_enforcements(
    state: &AppState,
    params: &Params,
    views: bool,
) -> Result<Response, ApiError> {
    let fields = Attributes::from(params, &attributes::ENFORCEMENTS, Endpoint::List)?;
    let paging = Paging::from(params, 50)?;
    let query = EnforcementQuery {
        id: params.get("id").cloned(),
        rule_ref: params.get("rule_ref").cloned(),
        rule_id: params.get("rule_id").cloned(),
        trigger_instance: params.get("trigger_instance").cloned(),
        trigger_instances: Vec::new(),
        execution: params.get("execution").cloned(),
        enforced_at_gt: time_param(params, "enforced_at_gt")?,
        enforced_at_lt: time_param(params, "enforced_at_lt")?,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = state.store.list_rule_enforcements(&query).await?;
    let mut docs: Vec<Value> = page.items.iter().map(enforcement_json).collect();
    if views {
        for doc in &mut docs {
            add_view_properties(state, doc).await?;
        }
    }
    // After the view's additions, as StackStorm's router filters the controller's answer.
    Ok(list_response(fields.apply_all(docs), page.total, paging))
}

/// Adds `trigger_instance` (the whole document, or `{}`) and `execution` (its `id`, `action.ref`,
/// `action.parameters`, `runner.name`, `runner.runner_parameters`, `parameters` and `status`,
/// secrets masked; or `{}`), as StackStorm's `_append_view_properties` does.
async fn add_view_properties(state: &AppState, doc: &mut Value) -> Result<(), ApiError> {
    let mut instance = json!({});
    if let Some(id) = doc.get("trigger_instance_id").and_then(Value::as_str)
        && let Some(ti) = state.store.trigger_instance(id).await?
    {
        instance = super::triggers::instance_json(&ti);
    }
    let mut execution = json!({});
    if let Some(id) = doc.get("execution_id").and_then(Value::as_str)
        && let Some(e) = state.store.execution(id).await?
    {
        let full = super::executions::execution_json(state, &e, false);
        // Only the fields the execution has, as StackStorm's `only_fields` query answers.
        let pick = |doc: &Value, keys: &[&str]| -> Value {
            keys.iter()
                .filter_map(|k| doc.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        execution = pick(&full, &["id", "parameters", "status"]);
        execution["action"] = pick(&full["action"], &["ref", "parameters"]);
        execution["runner"] = pick(&full["runner"], &["name", "runner_parameters"]);
    }
    doc["trigger_instance"] = instance;
    doc["execution"] = execution;
    Ok(())
}

async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(enforcement_json(&find(&state, &id).await?)))
}

async fn find(state: &AppState, id: &str) -> Result<RuleEnforcement, ApiError> {
    state
        .store
        .rule_enforcement(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Unable to identify resource with id \"{id}\".")))
}

/// `GET /ruleenforcements/views/{id}`.
async fn get_view(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut doc = enforcement_json(&find(&state, &id).await?);
    add_view_properties(&state, &mut doc).await?;
    Ok(Json(doc))
}
