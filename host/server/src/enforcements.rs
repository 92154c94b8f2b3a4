//! Rule enforcements (`docs/st2-api.md` §3.6): `GET /ruleenforcements` and `/{id}`.
//! Falsy fields are omitted, as StackStorm omits them.

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
    let fields = Attributes::from(&params, &attributes::ENFORCEMENTS, Endpoint::List)?;
    let paging = Paging::from(&params, 50)?;
    let query = EnforcementQuery {
        id: params.get("id").cloned(),
        rule_ref: params.get("rule_ref").cloned(),
        rule_id: params.get("rule_id").cloned(),
        trigger_instance: params.get("trigger_instance").cloned(),
        execution: params.get("execution").cloned(),
        enforced_at_gt: time_param(&params, "enforced_at_gt")?,
        enforced_at_lt: time_param(&params, "enforced_at_lt")?,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = state.store.list_rule_enforcements(&query).await?;
    Ok(list_response(
        fields.apply_all(page.items.iter().map(enforcement_json).collect()),
        page.total,
        paging,
    ))
}

async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = state.store.rule_enforcement(&id).await?.ok_or_else(|| {
        ApiError::NotFound(format!("Unable to identify resource with id \"{id}\"."))
    })?;
    Ok(Json(enforcement_json(&e)))
}
