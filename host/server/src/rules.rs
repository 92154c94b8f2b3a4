//! Rules (`docs/st2-api.md` §3.5): `GET/POST /rules`, `GET/PUT/DELETE /rules/{ref_or_id}`, and
//! st2web's `GET /rules/views[/{ref_or_id}]` (the same documents with the descriptions of the
//! action and the trigger added).
//!
//! Rules come from two places: files in pack folders (listed here, edited in the files) and
//! this API (stored in the database). Both register webhooks. A rule created here is disabled
//! unless it says `enabled: true`, as in StackStorm.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Map, Value};
use stormhook_packs::RuleDoc;
use stormhook_rules::operators::NAMES;
use stormhook_storage::{StoredRule, ids};

use super::attributes::{self, Attributes, Endpoint};
use super::paging::{Paging, Params, boolean, list_response};
use super::{ApiError, AppState};
use crate::auth::Principal;
use stormhook_automation::documents::rule_json;
use stormhook_automation::packs::load_api_rules;
use stormhook_automation::packs::{LoadedRule, RuleSource};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/rules", get(list).post(create))
        .route(
            "/rules/{ref_or_id}",
            get(get_one).put(update).delete(delete),
        )
        .route("/rules/views", get(list_views))
        .route("/rules/views/{ref_or_id}", get(get_view))
}

/// Top-level keys of StackStorm's rule schema (`additionalProperties: false`).
const KEYS: &[&str] = &[
    "name",
    "pack",
    "description",
    "enabled",
    "trigger",
    "criteria",
    "action",
    "type",
    "tags",
    "context",
    "id",
    "ref",
    "uid",
    "metadata_file",
];

/// Masks the rule's action parameters that the action declares `secret`, unless the caller
/// asked for `show_secrets` (StackStorm masks them the same way; with RBAC off every caller may
/// ask).
fn masked(state: &AppState, mut rule: Value, params: &Params) -> Result<Value, ApiError> {
    if boolean(params, "show_secrets")?.unwrap_or(false) {
        return Ok(rule);
    }
    let Some(action) = rule["action"]["ref"]
        .as_str()
        .and_then(|r| state.executor.catalog().get(r))
    else {
        return Ok(rule);
    };
    let Some(runner) = stormhook_automation::actions::runner_type(&action.runner_type) else {
        return Ok(rule);
    };
    let declared = action.effective_parameters(runner);
    if let Some(given) = rule["action"]["parameters"].as_object_mut() {
        for (name, value) in given.iter_mut() {
            let secret = declared
                .get(name)
                .and_then(|s| s.get("secret"))
                .and_then(Value::as_bool)
                == Some(true);
            if secret {
                *value = Value::String("********".into());
            }
        }
    }
    Ok(rule)
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    list_rules(&state, &params, false).await
}

/// `GET /rules/views` (StackStorm's `RuleViewController`, `st2api/st2api/controllers/v1/rule_views.py`):
/// the list, each rule with its action's and trigger's descriptions.
async fn list_views(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    list_rules(&state, &params, true).await
}

async fn list_rules(state: &AppState, params: &Params, views: bool) -> Result<Response, ApiError> {
    let fields = Attributes::from(params, &attributes::RULES, Endpoint::List)?;
    // `offset` is not a declared parameter for rules in StackStorm: ignored, not even checked.
    let mut declared = params.clone();
    declared.remove("offset");
    let paging = Paging::from(&declared, u64::MAX)?;
    let paging = Paging {
        limit: paging.limit.filter(|&l| l != u64::MAX),
        ..paging
    };
    let enabled = boolean(params, "enabled")?;
    let ids: Option<Vec<&str>> = params.get("id").map(|ids| ids.split(',').collect());
    let set = state.packs.rules();
    let mut matching: Vec<&LoadedRule> = set
        .rules
        .iter()
        .filter(|r| params.get("name").is_none_or(|n| *n == r.doc.name))
        .filter(|r| params.get("pack").is_none_or(|p| *p == r.doc.pack))
        .filter(|r| {
            params
                .get("action")
                .is_none_or(|a| *a == r.doc.action.reference)
        })
        .filter(|r| enabled.is_none_or(|e| e == r.doc.enabled))
        .filter(|r| {
            params
                .get("trigger")
                .is_none_or(|t| *t == r.trigger().reference)
        })
        .filter(|r| ids.as_ref().is_none_or(|ids| ids.contains(&r.id())))
        .collect();
    matching.sort_by(|a, b| (&a.doc.pack, &a.doc.name).cmp(&(&b.doc.pack, &b.doc.name)));
    let total = matching.len() as u64;
    let root = state.packs.root().to_owned();
    let mut page: Vec<Value> = matching
        .into_iter()
        .take(paging.limit.map_or(usize::MAX, |l| l as usize))
        .map(|r| masked(state, rule_json(r, &root), params).map(|doc| fields.apply(doc)))
        .collect::<Result<_, _>>()?;
    if views {
        add_view_properties(state, &mut page).await?;
    }
    Ok(list_response(page, total, paging))
}

/// Adds `action.description` (the action's, or `""`) and `trigger.description` (the stored
/// trigger's, else its type's, else `""`) to the rules that have those fields after
/// `include_attributes`/`exclude_attributes` (StackStorm's `_append_view_properties`).
async fn add_view_properties(state: &AppState, rules: &mut [Value]) -> Result<(), ApiError> {
    let triggers = state.store.list_triggers().await?;
    let mut types: std::collections::HashMap<String, String> = Default::default();
    for rule in rules.iter_mut() {
        if let Some(action) = rule.get_mut("action").and_then(Value::as_object_mut) {
            let description = action
                .get("ref")
                .and_then(Value::as_str)
                .and_then(|r| state.executor.catalog().get(r))
                .map(|a| a.description.clone())
                .unwrap_or_default();
            action.insert("description".into(), Value::String(description));
        }
        let Some(trigger) = rule.get_mut("trigger").and_then(Value::as_object_mut) else {
            continue;
        };
        let reference = trigger.get("ref").and_then(Value::as_str).unwrap_or("");
        let mut description = triggers
            .iter()
            .find(|t| t.reference == reference)
            .and_then(|t| t.description.clone())
            .unwrap_or_default();
        if description.is_empty()
            && let Some(type_ref) = trigger.get("type").and_then(Value::as_str)
        {
            if !types.contains_key(type_ref) {
                let found = state.store.trigger_type(type_ref).await?;
                types.insert(
                    type_ref.to_owned(),
                    found.and_then(|t| t.description).unwrap_or_default(),
                );
            }
            description = types[type_ref].clone();
        }
        trigger.insert("description".into(), Value::String(description));
    }
    Ok(())
}

fn find(state: &AppState, ref_or_id: &str) -> Result<LoadedRule, ApiError> {
    let set = state.packs.rules();
    let found = if ref_or_id.contains('.') {
        set.get(ref_or_id)
    } else {
        set.rules.iter().find(|r| r.id() == ref_or_id)
    };
    found.cloned().ok_or_else(|| {
        ApiError::NotFound(format!(
            "Resource with a reference or id \"{ref_or_id}\" not found"
        ))
    })
}

async fn get_one(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let rule = rule_json(&find(&state, &ref_or_id)?, state.packs.root());
    Ok(Json(masked(&state, rule, &params)?))
}

/// `GET /rules/views/{ref_or_id}`: the rule with its action's and trigger's descriptions.
async fn get_view(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let rule = rule_json(&find(&state, &ref_or_id)?, state.packs.root());
    let mut rules = [masked(&state, rule, &params)?];
    add_view_properties(&state, &mut rules).await?;
    let [rule] = rules;
    Ok(Json(rule))
}

/// Validates a rule body as StackStorm does at create and update; returns the stored document.
async fn validate(state: &AppState, body: &[u8]) -> Result<(RuleDoc, Value), ApiError> {
    let value: Value = super::json_body(body)?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::BadRequest(
            "the rule must be a JSON object".into(),
        ));
    };
    if let Some(extra) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        let hint = if extra == "wasm" {
            "; rule components are loaded from pack folders"
        } else {
            ""
        };
        return Err(ApiError::BadRequest(format!(
            "Additional properties are not allowed ('{extra}' was unexpected){hint}"
        )));
    }
    for required in ["name", "trigger", "action"] {
        if !object.contains_key(required) {
            return Err(ApiError::BadRequest(format!(
                "'{required}' is a required property"
            )));
        }
    }
    // Through the API a rule is disabled unless it says otherwise.
    object.entry("enabled").or_insert(Value::Bool(false));
    object
        .entry("pack")
        .or_insert(Value::String("default".into()));
    for computed in ["id", "ref", "uid", "context", "metadata_file"] {
        object.remove(computed);
    }
    check_criteria(object.get("criteria"))?;
    let document = Value::Object(object);
    let doc = RuleDoc::from_json("rule", document.clone())
        .map_err(|e| ApiError::BadRequest(super::serde_message(&e.message)))?;
    // The ref is split at its first dot, so a pack has none (`ResourceReference.to_string_reference`).
    if doc.pack.contains('.') {
        return Err(ApiError::BadRequest(
            "Pack name should not contain \".\"".into(),
        ));
    }

    // One url, one sender policy: an enabled rule that would not be registered on its hook
    // is refused here, not only logged.
    if doc.enabled
        && doc.trigger.trigger_type == stormhook_automation::triggers::WEBHOOK_TYPE
        && let Some(url) = doc.trigger.parameters.get("url").and_then(Value::as_str)
    {
        let url = stormhook_automation::triggers::normalize_url(url);
        let policy = stormhook_senders::HookPolicy::parse(&doc.trigger.parameters)
            .ok()
            .flatten();
        let rules = state.packs.rules();
        if let Some(hook) = rules.webhooks.hook(url)
            && hook.enabled
            && hook.rule != format!("{}.{}", doc.pack, doc.name)
            && hook.policy.as_deref() != policy.as_ref()
        {
            return Err(ApiError::BadRequest(format!(
                "webhook {url} already has other sender parameters (verify, replay, handshake, respond, accept) from rule {}; every rule on one url must declare the same ones",
                hook.rule
            )));
        }
    }
    if doc.trigger.parameters.contains_key("respond") {
        return Err(ApiError::BadRequest(
            "a webhook's responder (respond) is a component loaded from a pack folder: put the rule in <packs>/<pack>/rules/ next to its .wasm".into(),
        ));
    }
    // StackStorm's timers (which Stormhook does not run): their parameters are checked as
    // StackStorm checks them (the schema, then APScheduler's cron fields).
    if let Some(schema) =
        stormhook_automation::triggers::timer_parameters_schema(&doc.trigger.trigger_type)
    {
        let parameters = Value::Object(doc.trigger.parameters.clone());
        stormhook_automation::schema::validate_verbose(&schema, &parameters)
            .map_err(ApiError::BadRequest)?;
        if let Some(day_of_week) = doc.trigger.parameters.get("day_of_week") {
            stormhook_automation::triggers::check_cron_day_of_week(day_of_week)
                .map_err(ApiError::BadRequest)?;
        }
        return Ok((doc, document));
    }
    // Trigger parameters against the trigger type's schema.
    let trigger_type = state.store.trigger_type(&doc.trigger.trigger_type).await?;
    match trigger_type {
        None if doc.trigger.parameters.is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "Trigger \"{}\" defined in the rule does not exist in system or it's missing required \"parameters\" attribute",
                doc.trigger.trigger_type
            )));
        }
        None => {}
        Some(t)
            if t.parameters_schema
                .as_object()
                .is_some_and(|s| !s.is_empty()) =>
        {
            // A webhook's sender policy (`verify`, `replay`, ...) is Stormhook's, checked by
            // `RuleDoc::from_json` above; StackStorm's schema knows only `url`.
            let mut parameters = doc.trigger.parameters.clone();
            if t.reference == stormhook_automation::triggers::WEBHOOK_TYPE {
                parameters
                    .retain(|k, _| !stormhook_senders::policy::POLICY_KEYS.contains(&k.as_str()));
            }
            stormhook_automation::schema::validate_verbose(
                &t.parameters_schema,
                &Value::Object(parameters),
            )
            .map_err(ApiError::BadRequest)?;
        }
        Some(_) => {}
    }
    Ok((doc, document))
}

/// Criteria need an operator from the table (case-sensitive here, as StackStorm checks at
/// create time) and a pattern (even `exists`: StackStorm issue #6197).
fn check_criteria(criteria: Option<&Value>) -> Result<(), ApiError> {
    let Some(criteria) = criteria else {
        return Ok(());
    };
    let criteria: &Map<String, Value> = criteria
        .as_object()
        .ok_or_else(|| ApiError::BadRequest("criteria must be an object".into()))?;
    for (key, criterion) in criteria {
        let Some(op) = criterion.get("type").and_then(Value::as_str) else {
            return Err(ApiError::BadRequest(format!(
                "Operator not specified for field: {key}"
            )));
        };
        if !NAMES.iter().any(|(name, _)| *name == op) {
            let allowed: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            return Err(ApiError::BadRequest(format!(
                "For field: {key}, operator {op} not in list of allowed operators: {allowed:?}"
            )));
        }
        if criterion.get("pattern").is_none_or(Value::is_null) {
            return Err(ApiError::BadRequest(format!(
                "For field: {key}, no pattern specified for operator {op}"
            )));
        }
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (doc, document) = validate(&state, &body).await?;
    let reference = doc.reference();
    if let Some(existing) = state
        .packs
        .rules()
        .get(&reference)
        .filter(|r| matches!(r.source, RuleSource::Pack { .. }))
    {
        return Err(ApiError::Conflict {
            message: format!("Rule {reference} is defined by a pack file"),
            existing_id: Some(existing.id().to_owned()),
        });
    }
    let stored = StoredRule {
        id: ids::object_id(),
        reference: reference.clone(),
        pack: doc.pack.clone(),
        name: doc.name.clone(),
        document,
        created_by: principal.user,
    };
    state.store.insert_rule(&stored).await?;
    load_api_rules(state.store.as_ref(), &state.packs).await?;
    let rule = find(&state, &reference)?;
    Ok((
        StatusCode::CREATED,
        Json(rule_json(&rule, state.packs.root())),
    )
        .into_response())
}

async fn update(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let existing = find(&state, &ref_or_id)?;
    let RuleSource::Api { id, created_by } = existing.source.clone() else {
        return Err(ApiError::BadRequest(format!(
            "Rule {} is defined by a pack file; edit the file instead",
            existing.reference()
        )));
    };
    let (doc, document) = validate(&state, &body).await?;
    let stored = StoredRule {
        id,
        reference: doc.reference(),
        pack: doc.pack.clone(),
        name: doc.name.clone(),
        document,
        created_by,
    };
    state.store.update_rule(&stored).await?;
    load_api_rules(state.store.as_ref(), &state.packs).await?;
    release_trigger(&state, &existing.doc).await?;
    Ok(Json(rule_json(
        &find(&state, &doc.reference())?,
        state.packs.root(),
    )))
}

async fn delete(
    State(state): State<AppState>,
    Path(ref_or_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let existing = find(&state, &ref_or_id)?;
    let RuleSource::Api { id, .. } = &existing.source else {
        return Err(ApiError::BadRequest(format!(
            "Rule {} is defined by a pack file; delete the file instead",
            existing.reference()
        )));
    };
    state.store.delete_rule(id).await?;
    load_api_rules(state.store.as_ref(), &state.packs).await?;
    release_trigger(&state, &existing.doc).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the stored trigger `old` used, when no rule uses it any more (StackStorm's
/// `cleanup_trigger_db_for_rule`, `st2common/st2common/services/triggers.py`).
async fn release_trigger(state: &AppState, old: &RuleDoc) -> Result<(), ApiError> {
    let stored = state.store.list_triggers().await?;
    let rules = state.packs.rules();
    if let Some(id) = stormhook_automation::triggers::unused_stored_trigger(
        &old.trigger.trigger_type,
        &old.trigger.parameters,
        &stored,
        rules.rules.iter().map(|r| &r.doc),
    ) {
        state.store.delete_trigger(&id).await?;
    }
    Ok(())
}
