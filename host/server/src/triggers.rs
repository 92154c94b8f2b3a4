//! Trigger types, triggers, trigger instances and traces (`docs/st2-api.md` §5 and §7.2).
//!
//! Triggers (`/triggers`, StackStorm's `TriggerController`): the list is every trigger that
//! exists ([`existing_triggers`]: shadow triggers of types without parameters, triggers created
//! here, and the triggers rules make). `POST` stores a trigger (or answers the one with the same
//! ref, as StackStorm does); `PUT` and `DELETE` change and delete stored ones. A shadow or
//! rule-made trigger follows its trigger type or rules, and is refused with a 400 that says so:
//! StackStorm would change or delete it under the rules that use it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use stormhook_automation::triggers::{
    ExistingTrigger, Trigger, TriggerOrigin, existing_triggers, python_repr,
};
use stormhook_storage::{
    NewEvent, StoredTrigger, Trace, TraceQuery, TriggerInstance, TriggerInstanceQuery, TriggerType,
    ids,
};

use super::attributes::{self, Attributes, Endpoint};
use super::paging::{Paging, Params, list_response, time_param};
use super::{ApiError, AppState};
use stormhook_automation::documents::trigger_type_json as type_json;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/triggertypes", get(list_types).post(create_type))
        .route(
            "/triggertypes/{ref_or_id}",
            get(get_type).put(update_type).delete(delete_type),
        )
        .route("/triggers", get(list_triggers).post(create_trigger))
        .route(
            "/triggers/{trigger_id}",
            get(get_trigger).put(update_trigger).delete(delete_trigger),
        )
        .route("/triggerinstances", get(list_instances))
        .route("/triggerinstances/{id}", get(get_instance))
        .route("/triggerinstances/{id}/re_emit", post(re_emit))
        .route("/traces", get(list_traces))
        .route("/traces/{id}", get(get_trace))
}

pub(crate) fn instance_json(ti: &TriggerInstance) -> Value {
    json!({
        "id": ti.id,
        "trigger": ti.trigger,
        "payload": ti.payload,
        "occurrence_time": ti.occurrence_time,
        "status": ti.status,
    })
}

fn trace_json(t: &Trace) -> Value {
    let instances: Vec<Value> = t
        .trigger_instances
        .iter()
        .map(|(id, reference, updated_at)| json!({"object_id": id, "ref": reference, "updated_at": updated_at, "caused_by": {}}))
        .collect();
    json!({
        "id": t.id,
        "uid": format!("trace:{}", t.id),
        "trace_tag": t.trace_tag,
        "start_timestamp": t.start_timestamp,
        "trigger_instances": instances,
        "rules": [],
        "action_executions": [],
    })
}

/// The body of a trigger type create or update.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeBody {
    #[serde(default)]
    id: Option<String>,
    name: String,
    pack: String,
    #[serde(default, rename = "ref")]
    _reference: Option<String>,
    #[serde(default, rename = "uid")]
    _uid: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    payload_schema: Option<Value>,
    #[serde(default)]
    parameters_schema: Option<Value>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    metadata_file: Option<String>,
}

fn parse_type(body: &[u8], id: String) -> Result<TriggerType, ApiError> {
    let body: TypeBody = super::json_body(body)?;
    let _ = body.metadata_file;
    if body.name.is_empty() || body.pack.is_empty() {
        return Err(ApiError::BadRequest(
            "'name' and 'pack' must not be empty".into(),
        ));
    }
    Ok(TriggerType {
        id: body.id.filter(|i| ids::is_object_id(i)).unwrap_or(id),
        reference: format!("{}.{}", body.pack, body.name),
        pack: body.pack,
        name: body.name,
        description: body.description,
        payload_schema: body.payload_schema.unwrap_or_else(|| json!({})),
        parameters_schema: body.parameters_schema.unwrap_or_else(|| json!({})),
        tags: body.tags.unwrap_or_else(|| json!([])),
    })
}

const SYSTEM_PACK: &str = "Resources belonging to system level packs can't be manipulated";

async fn list_types(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let fields = Attributes::from(&params, &attributes::TRIGGER_TYPES, Endpoint::List)?;
    let paging = Paging::from(&params, 100)?;
    let all = state.store.list_trigger_types().await?;
    let matching: Vec<&TriggerType> = all
        .iter()
        .filter(|t| params.get("name").is_none_or(|n| *n == t.name))
        .filter(|t| params.get("pack").is_none_or(|p| *p == t.pack))
        .filter(|t| params.get("id").is_none_or(|i| *i == t.id))
        .collect();
    let total = matching.len() as u64;
    let page = matching
        .into_iter()
        .skip(paging.offset as usize)
        .take(paging.limit.map_or(usize::MAX, |l| l as usize));
    Ok(list_response(
        fields.apply_all(page.map(type_json).collect()),
        total,
        paging,
    ))
}

async fn find_type(state: &AppState, ref_or_id: &str) -> Result<TriggerType, ApiError> {
    state.store.trigger_type(ref_or_id).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "Resource with a reference or id \"{ref_or_id}\" not found"
        ))
    })
}

async fn get_type(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(type_json(&find_type(&state, &ref_or_id).await?)))
}

async fn create_type(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let trigger_type = parse_type(&body, ids::object_id())?;
    if trigger_type.pack == "core" {
        return Err(ApiError::BadRequest(SYSTEM_PACK.into()));
    }
    state.store.insert_trigger_type(&trigger_type).await?;
    Ok((StatusCode::CREATED, Json(type_json(&trigger_type))).into_response())
}

async fn update_type(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let existing = find_type(&state, &ref_or_id).await?;
    let updated = parse_type(&body, existing.id.clone())?;
    if existing.pack == "core" || updated.pack == "core" {
        return Err(ApiError::BadRequest(SYSTEM_PACK.into()));
    }
    let updated = TriggerType {
        id: existing.id,
        ..updated
    };
    state.store.update_trigger_type(&updated).await?;
    Ok(Json(type_json(&updated)))
}

async fn delete_type(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let existing = find_type(&state, &ref_or_id).await?;
    if existing.pack == "core" {
        return Err(ApiError::BadRequest(SYSTEM_PACK.into()));
    }
    state.store.delete_trigger_type(&existing.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A trigger as StackStorm's `TriggerAPI` shows it (its `ref_count` hidden).
fn trigger_json(existing: &ExistingTrigger) -> Value {
    let mut doc = serde_json::to_value(&existing.trigger).unwrap_or(Value::Null);
    if let (Some(description), Some(map)) = (&existing.description, doc.as_object_mut()) {
        map.insert("description".into(), json!(description));
    }
    doc
}

async fn all_triggers(state: &AppState) -> Result<Vec<ExistingTrigger>, ApiError> {
    let types = state.store.list_trigger_types().await?;
    let stored = state.store.list_triggers().await?;
    let rules = state.packs.rules();
    Ok(existing_triggers(
        &types,
        &stored,
        rules.rules.iter().map(|r| &r.doc),
    ))
}

/// The trigger with this id (StackStorm looks triggers up by id only).
async fn find_trigger(state: &AppState, id: &str) -> Result<ExistingTrigger, ApiError> {
    all_triggers(state)
        .await?
        .into_iter()
        .find(|e| e.trigger.id == id)
        .ok_or_else(|| {
            if ids::is_object_id(id) {
                ApiError::NotFound(format!(
                    "Unable to find the TriggerDB instance. {{'id': '{id}'}}"
                ))
            } else {
                // StackStorm's `abort(404)` without a message, for an id that is no ObjectId.
                ApiError::NotFound("Unhandled exception".into())
            }
        })
}

async fn list_triggers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = all_triggers(&state).await?;
    Ok(Json(Value::Array(all.iter().map(trigger_json).collect())))
}

async fn get_trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(trigger_json(&find_trigger(&state, &id).await?)))
}

/// The body of a trigger create or update (StackStorm's `TriggerAPI`; the computed `id`,
/// `ref` and `uid`, and anything else, are ignored as StackStorm ignores them).
#[derive(Debug, serde::Deserialize)]
struct TriggerBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    pack: Option<String>,
    #[serde(default, rename = "type")]
    trigger_type: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    description: Option<String>,
}

/// A body as the trigger it stores, with StackStorm's messages; `id` is the trigger's.
async fn parse_trigger(
    state: &AppState,
    body: &[u8],
    id: String,
) -> Result<StoredTrigger, ApiError> {
    let body: TriggerBody = super::json_body(body)?;
    let parameters = match body.parameters {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "{} is not of type 'object'",
                python_repr(&other)
            )));
        }
    };
    let (Some(pack), Some(name)) = (
        body.pack.clone().filter(|p| !p.is_empty()),
        body.name.clone().filter(|n| !n.is_empty()),
    ) else {
        // StackStorm's `ResourceReference.to_string_reference` (Python's `%s` of None).
        let shown = |v: Option<String>| v.unwrap_or_else(|| "None".into());
        return Err(ApiError::BadRequest(format!(
            "Both pack and name needed for building ref. pack={}, name={}",
            shown(body.pack),
            shown(body.name)
        )));
    };
    if pack.contains('.') {
        return Err(ApiError::BadRequest(
            "Pack name should not contain \".\"".into(),
        ));
    }
    let trigger_type = body.trigger_type.unwrap_or_default();
    // The parameters against the type's schema, as a rule's are (`validate_trigger_parameters`).
    if let Some(t) = state.store.trigger_type(&trigger_type).await?
        && t.parameters_schema
            .as_object()
            .is_some_and(|s| !s.is_empty())
    {
        stormhook_automation::schema::validate_verbose(&t.parameters_schema, &parameters)
            .map_err(ApiError::BadRequest)?;
    }
    Ok(StoredTrigger {
        id,
        reference: format!("{pack}.{name}"),
        pack,
        name,
        trigger_type,
        parameters,
        description: body.description,
    })
}

async fn create_trigger(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let trigger = parse_trigger(&state, &body, ids::object_id()).await?;
    // The same ref again answers the trigger already stored (`create_trigger_db`).
    let stored = match state.store.trigger(&trigger.reference).await? {
        Some(existing) => existing,
        None => {
            state.store.insert_trigger(&trigger).await?;
            reload_rules(&state).await?;
            trigger
        }
    };
    let shown = ExistingTrigger {
        trigger: Trigger::stored(&stored),
        description: stored.description,
        ref_count: 0,
        origin: TriggerOrigin::Stored,
    };
    Ok((StatusCode::CREATED, Json(trigger_json(&shown))).into_response())
}

/// The stored trigger with this id; a shadow or rule-made one is refused, as only a stored
/// one can be changed or deleted.
async fn find_stored_trigger(state: &AppState, id: &str) -> Result<ExistingTrigger, ApiError> {
    let existing = find_trigger(state, id).await?;
    let what = match existing.origin {
        TriggerOrigin::Stored => return Ok(existing),
        TriggerOrigin::Shadow => "is the shadow trigger of its trigger type; it goes with the type",
        TriggerOrigin::Rules => {
            "is made by the rules that use its type and parameters; it goes with them"
        }
    };
    Err(ApiError::BadRequest(format!(
        "Trigger {} {what}",
        existing.trigger.reference
    )))
}

async fn update_trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let existing = find_stored_trigger(&state, &id).await?;
    let updated = parse_trigger(&state, &body, id).await?;
    state.store.update_trigger(&updated).await?;
    reload_rules(&state).await?;
    Ok(Json(trigger_json(&ExistingTrigger {
        trigger: Trigger::stored(&updated),
        description: updated.description,
        ..existing
    })))
}

async fn delete_trigger(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    find_stored_trigger(&state, &id).await?;
    state.store.delete_trigger(&id).await?;
    reload_rules(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Republishes the rules with the stored triggers as they are now: a rule on a stored
/// trigger's type and parameters uses it (`docs/st2-api.md` §5.3).
async fn reload_rules(state: &AppState) -> Result<(), ApiError> {
    stormhook_automation::packs::load_api_rules(state.store.as_ref(), &state.packs).await?;
    Ok(())
}

async fn list_instances(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let fields = Attributes::from(&params, &attributes::TRIGGER_INSTANCES, Endpoint::List)?;
    let paging = Paging::from(&params, 100)?;
    let query = TriggerInstanceQuery {
        id: params.get("id").cloned(),
        ids: Vec::new(),
        triggers: params
            .get("trigger")
            .map(|t| vec![t.clone()])
            .unwrap_or_default(),
        trigger_type: params.get("trigger_type").cloned(),
        timestamp_gt: time_param(&params, "timestamp_gt")?,
        timestamp_lt: time_param(&params, "timestamp_lt")?,
        // `status` is not a declared parameter in StackStorm: it is ignored there, and here.
        status: None,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = state.store.list_trigger_instances(&query).await?;
    Ok(list_response(
        fields.apply_all(page.items.iter().map(instance_json).collect()),
        page.total,
        paging,
    ))
}

async fn find_instance(state: &AppState, id: &str) -> Result<TriggerInstance, ApiError> {
    state
        .store
        .trigger_instance(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Unable to identify resource with id \"{id}\".")))
}

async fn get_instance(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(instance_json(&find_instance(&state, &id).await?)))
}

async fn re_emit(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let original = find_instance(&state, &id).await?;
    let mut payload = original.payload.clone();
    if let Value::Object(map) = &mut payload {
        map.insert("__context".into(), json!({"original_id": id}));
    }
    let now = ids::now();
    let new_id = ids::object_id();
    let trace = Trace {
        id: ids::object_id(),
        trace_tag: format!("trigger_instance-{new_id}"),
        start_timestamp: now.clone(),
        trigger_instances: Vec::new(),
    };
    let instance = TriggerInstance {
        id: new_id,
        trigger: original.trigger,
        trigger_type: original.trigger_type,
        payload: payload.clone(),
        occurrence_time: now,
        status: stormhook_storage::InstanceStatus::Pending,
        trace_id: Some(trace.id.clone()),
        depth: 0,
    };
    state
        .ingest
        .submit(NewEvent::new(trace, vec![instance]))
        .await
        .map_err(ApiError::from)?;
    // "succesfully" is StackStorm's spelling; clients match on it.
    Ok(Json(
        json!({"message": format!("Trigger instance {id} succesfully re-sent."), "payload": payload}),
    ))
}

async fn list_traces(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let fields = Attributes::from(&params, &attributes::TRACES, Endpoint::List)?;
    let paging = Paging::from(&params, 100)?;
    // StackStorm's `TracesController.get_all`: `sort_desc=True` wins, then `sort_asc=True`;
    // only the exact string `True` counts.
    let ascending = params.get("sort_desc").map(String::as_str) != Some("True")
        && params.get("sort_asc").map(String::as_str) == Some("True");
    let query = TraceQuery {
        trace_tag: params.get("trace_tag").cloned(),
        trigger_instance: params.get("trigger_instance").cloned(),
        execution: params.get("execution").cloned(),
        rule: params.get("rule").cloned(),
        ascending,
        limit: paging.limit,
        offset: paging.offset,
    };
    let page = state.store.list_traces(&query).await?;
    let docs = full_traces_json(&state, &page.items).await?;
    Ok(list_response(fields.apply_all(docs), page.total, paging))
}

/// How many traces (or trigger instances) one query of a trace page's components names.
pub(crate) const TRACE_CHUNK: usize = 500;

/// Traces with their components: the trigger instances, the rules enforced for them (StackStorm
/// adds each with `caused_by` its trigger instance, `st2reactor/st2reactor/rules/enforcer.py`)
/// and the executions that carry the trace in their context. A page of traces reads its
/// components in one query of each kind (per [`TRACE_CHUNK`] traces), not one per trace.
async fn full_traces_json(state: &AppState, traces: &[Trace]) -> Result<Vec<Value>, ApiError> {
    let instances: Vec<String> = traces
        .iter()
        .flat_map(|t| t.trigger_instances.iter().map(|(id, _, _)| id.clone()))
        .collect();
    let mut enforced_for: std::collections::HashMap<
        String,
        Vec<stormhook_storage::RuleEnforcement>,
    > = std::collections::HashMap::new();
    for chunk in instances.chunks(TRACE_CHUNK) {
        let query = stormhook_storage::EnforcementQuery {
            trigger_instances: chunk.to_vec(),
            ..Default::default()
        };
        for e in state.store.list_rule_enforcements(&query).await?.items {
            enforced_for
                .entry(e.trigger_instance_id.clone())
                .or_default()
                .push(e);
        }
    }
    let ids: Vec<String> = traces.iter().map(|t| t.id.clone()).collect();
    let mut executions = super::executions::trace_components(state, &ids).await?;
    // An execution's action trigger is caused by the execution, as
    // `get_trace_component_for_trigger_instance` says: the action triggers of the page are
    // read together for the execution ids in their payloads.
    let action_triggers: Vec<String> = traces
        .iter()
        .flat_map(|t| &t.trigger_instances)
        .filter(|(_, reference, _)| {
            reference == stormhook_automation::triggers::ACTION_TRIGGER_TYPE
        })
        .map(|(id, _, _)| id.clone())
        .collect();
    let mut caused_by: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    for chunk in action_triggers.chunks(TRACE_CHUNK) {
        let query = TriggerInstanceQuery {
            ids: chunk.to_vec(),
            ..Default::default()
        };
        for instance in state.store.list_trigger_instances(&query).await?.items {
            if let Some(execution) = instance.payload.get("execution_id") {
                caused_by.insert(
                    instance.id,
                    json!({"type": "action_execution", "id": execution}),
                );
            }
        }
    }
    let mut docs = Vec::with_capacity(traces.len());
    for trace in traces {
        let mut doc = trace_json(trace);
        if let Some(components) = doc["trigger_instances"].as_array_mut() {
            for component in components {
                if let Some(cause) = component["object_id"]
                    .as_str()
                    .and_then(|id| caused_by.get(id))
                {
                    component["caused_by"] = cause.clone();
                }
            }
        }
        docs.push(doc);
    }
    Ok(traces
        .iter()
        .zip(docs)
        .map(|(trace, mut doc)| {
            let mut rules = Vec::new();
            for (instance, _, _) in &trace.trigger_instances {
                let Some(enforced) = enforced_for.get_mut(instance) else {
                    continue;
                };
                enforced.sort_by(|a, b| a.enforced_at.cmp(&b.enforced_at));
                rules.extend(enforced.iter().map(|e| {
                    json!({"object_id": e.rule_id, "ref": e.rule_ref, "updated_at": e.enforced_at,
                           "caused_by": {"type": "trigger_instance", "id": instance}})
                }));
            }
            doc["rules"] = Value::Array(rules);
            doc["action_executions"] =
                Value::Array(executions.remove(&trace.id).unwrap_or_default());
            doc
        })
        .collect())
}

async fn get_trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let trace = state.store.trace(&id).await?.ok_or_else(|| {
        ApiError::NotFound(format!("Unable to identify resource with id \"{id}\"."))
    })?;
    let mut docs = full_traces_json(&state, std::slice::from_ref(&trace)).await?;
    Ok(Json(docs.pop().unwrap_or_default()))
}
