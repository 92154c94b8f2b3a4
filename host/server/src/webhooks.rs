//! Webhooks (`docs/st2-api.md` §1): `GET /webhooks`, `GET /webhooks/{url}`,
//! `POST /webhooks/{hook}` and the generic `POST /webhooks/st2`.
//!
//! A POST is answered 202 only after its trigger instances are committed to the store (group
//! commit, [`stormhook_storage::ingest`]). Rules run later, from the store, never on the
//! request path.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};
use stormhook_storage::{Committed, NewEvent, NewInstance, Trace, TriggerInstance, ids};

use super::{ApiError, AppState};
use stormhook_automation::triggers::{WEBHOOK_TYPE, python_repr};

pub(super) fn routes() -> Router<AppState> {
    // GET takes one path segment (StackStorm declares no `x-requirements` for it); POST takes
    // any number (`hook: .*`).
    Router::new()
        .route("/webhooks", get(list))
        .route("/webhooks/{hook}", get(get_one).post(post))
        .route("/senders", get(crate::senders::stats))
        .route(
            "/webhooks/{hook}/{*rest}",
            get(get_nested).post(post_nested),
        )
}

async fn list(State(state): State<AppState>) -> Json<Vec<Value>> {
    let rules = state.packs.rules();
    Json(
        rules
            .webhooks
            .all()
            .map(|t| serde_json::to_value(&**t).unwrap_or_default())
            .collect(),
    )
}

async fn get_one(
    State(state): State<AppState>,
    Path(url): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let rules = state.packs.rules();
    // A sender's handshake (Meta, Dropbox, Graph) is a GET of the hook, without credentials.
    if let Some(hook) = rules.webhooks.hook(&url)
        && let Some(policy) = &hook.policy
    {
        // A hook that takes GET deliveries: this is one (its handshake included). A HEAD
        // (which axum routes here too) stores nothing: it only says the hook is there.
        if policy.accept.get {
            drop(rules);
            if parts.method == axum::http::Method::HEAD {
                return Ok(StatusCode::OK.into_response());
            }
            return deliver(state, url, parts, Bytes::new()).await;
        }
        if let Some(answer) = crate::senders::get_handshake(&state, hook, policy, &parts).await? {
            return Ok(answer);
        }
        if parts.extensions.get::<crate::auth::Principal>().is_none() {
            return Err(ApiError::from(crate::auth::AuthError::Missing));
        }
    }
    let first = rules
        .webhooks
        .get(&url)
        .and_then(|t| t.first())
        .ok_or_else(|| ApiError::NotFound("Unhandled exception".into()))?;
    Ok(Json(serde_json::to_value(&**first).unwrap_or_default()).into_response())
}

/// `GET /webhooks/a/b/c`: a delivery or a handshake to a multi-segment hook that takes them;
/// otherwise the 404 of any unknown route (StackStorm's GET takes one segment).
async fn get_nested(
    State(state): State<AppState>,
    Path((first, rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let url = format!("{first}/{rest}");
    let rules = state.packs.rules();
    let Some(policy) = rules.webhooks.hook(&url).and_then(|h| h.policy.as_deref()) else {
        return Err(ApiError::no_route());
    };
    if !(policy.accept.get || policy.handshake.is_some()) {
        return Err(ApiError::no_route());
    }
    drop(rules);
    let (parts, _) = request.into_parts();
    if parts.method == axum::http::Method::HEAD {
        return Ok(StatusCode::OK.into_response());
    }
    deliver(state, url, parts, Bytes::new()).await
}

/// `POST /webhooks/a/b/c`: a multi-segment hook.
async fn post_nested(
    State(state): State<AppState>,
    Path((first, rest)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    post(State(state), Path(format!("{first}/{rest}")), request).await
}

async fn post(
    State(state): State<AppState>,
    Path(hook): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    // The request whole, not a `HeaderMap` extractor, which would clone every header.
    let (parts, body) = request.into_parts();
    let raw = super::read_body(body, state.settings.max_body_bytes).await?;
    deliver(state, hook, parts, raw).await
}

/// One delivery to `hook` (a POST, or a GET to a hook that takes them), its body read.
async fn deliver(
    state: AppState,
    hook: String,
    parts: axum::http::request::Parts,
    raw: Bytes,
) -> Result<Response, ApiError> {
    // A hook with a sender policy: its handshake is answered, and its deliveries verified
    // (on the raw bytes as received), before anything is parsed.
    let rules = state.packs.rules();
    let mut delivery = None;
    let mut handshake = None;
    let mut hidden_header = None;
    let authenticated = parts.extensions.get::<crate::auth::Principal>().is_some();
    let policy = match rules.webhooks.hook(&hook) {
        Some(found) if hook != "st2" => found.policy.as_deref().map(|p| (found, p)),
        _ => None,
    };
    // The middleware let an unauthenticated request in by the rules it saw; these rules may
    // be newer (a reload while the body arrived): they decide.
    if !authenticated && !policy.is_some_and(|(_, p)| crate::senders::opens(p)) {
        return Err(ApiError::from(crate::auth::AuthError::Missing));
    }
    let accept = policy.map(|(_, p)| p.accept).unwrap_or_default();
    let replay_window = policy.map(|(_, p)| p.replay.window);
    // The hook's responder (its first rule's ref) and what to do when it fails.
    let responder = policy.and_then(|(found, p)| {
        p.respond
            .as_ref()
            .map(|r| (found.rule.clone(), r.store_on_failure))
    });
    if let Some((found, policy)) = policy {
        hidden_header = crate::senders::secret_header(policy);
        match crate::senders::gate(&state, found, policy, &parts, &raw, authenticated).await? {
            crate::senders::Gate::Answer {
                response,
                store: false,
            } => return Ok(response),
            crate::senders::Gate::Answer {
                response,
                store: true,
            } => handshake = Some(response),
            crate::senders::Gate::Deliver(key) => delivery = key,
        }
    }
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let method = parts.method.to_string();
    let headers = parts.headers;
    let received = responder.as_ref().map(|_| raw.clone());
    // As in StackStorm, the body is parsed (and a bad content type refused) before the hook is
    // looked up.
    let media = media_type(&headers, accept)?;
    let trace_tag = headers
        .get("st2-trace-tag")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .map_or_else(
            // StackStorm's `webhook-<hook>-<uuid hex>`, with a time-ordered uuid (v7) so new
            // tags land at the end of the trace-tag index instead of on a random page.
            || format!("webhook-{hook}-{}", uuid::Uuid::now_v7().simple()),
            str::to_owned,
        );
    let now = ids::now();
    let trace = Trace {
        id: ids::object_id(),
        trace_tag,
        start_timestamp: now.clone(),
        trigger_instances: Vec::new(),
    };

    if hook == "st2" {
        let body = match media {
            Media::Json(_) => json_value(&raw)?,
            Media::Form => form(&raw),
            // A hook with a policy never reaches here (st2 takes none).
            Media::CloudEvent | Media::Other(_) => {
                return Err(parse_failed("Unsupported Content-Type".into()));
            }
        };
        let (trigger, trigger_type, payload) = generic(&state, &body).await?;
        let instance = TriggerInstance {
            id: ids::object_id(),
            trigger,
            trigger_type: Some(trigger_type),
            payload,
            occurrence_time: now,
            status: stormhook_storage::InstanceStatus::Pending,
            trace_id: Some(trace.id.clone()),
            depth: 0,
        };
        let id = instance.id.clone();
        submit(&state, NewEvent::new(trace, vec![instance])).await?;
        tracing::debug!(trigger_instance = %id, "webhook accepted");
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }

    // A custom hook takes an object or an array. A JSON body is checked, then stored inside the
    // payload's JSON text and echoed as it came (no re-encoding); a form body is stored and
    // echoed as its JSON.
    let mut extra = Map::new();
    if accept.raw_body {
        extra.insert("raw_body".into(), raw_body(&raw, None));
    }
    if accept.get && parts_method_is_get(&method) {
        extra.insert("query".into(), form(query.as_bytes()));
    }
    if accept.cloudevents
        && let Some(attributes) = binary_cloudevent(&headers)
    {
        extra.insert("cloudevent".into(), attributes);
    }
    let body: Bytes = match media {
        // `text/plain` that is not JSON, on a hook that takes any content type: text.
        Media::Json(Some(media_type))
            if accept.any_content_type && !is_blank(&raw) && json_value(&raw).is_err() =>
        {
            Bytes::from(raw_body(&raw, Some(&media_type)).to_string())
        }
        Media::Json(_) if !is_blank(&raw) => {
            // Parsed in full and dropped: a lighter check (`IgnoredAny`) would let through what
            // the value parse refuses (numbers out of range, lone surrogates, bytes that are not
            // UTF-8, nesting past 128), and the engine could not decode such a payload.
            let value = json_value(&raw)?;
            if !(value.is_object() || value.is_array()) {
                return Err(ApiError::BadRequest(format!(
                    "{} is not of type 'object', 'array'",
                    python_repr(&value)
                )));
            }
            raw
        }
        Media::Json(_) => Bytes::from_static(b"{}"),
        Media::Form => Bytes::from(form(&raw).to_string()),
        Media::Other(media_type) => Bytes::from(raw_body(&raw, Some(&media_type)).to_string()),
        Media::CloudEvent => {
            let (attributes, data) = structured_cloudevent(&raw)?;
            extra.insert("cloudevent".into(), attributes);
            Bytes::from(data.to_string())
        }
    };
    // A CloudEvent's source and id identify it: the replay key, when the sender gave no other.
    if delivery.is_none()
        && let (Some(window), Some(Value::Object(ce))) = (replay_window, extra.get("cloudevent"))
        && !window.is_zero()
        && let (Some(Value::String(source)), Some(Value::String(id))) =
            (ce.get("source"), ce.get("id"))
        && source.len() + id.len() <= 512
    {
        delivery = Some(stormhook_storage::DeliveryKey {
            key: format!("{}:{hook} ce {}:{source} {id}", hook.len(), source.len()),
            expires_at: ids::after(window),
        });
    }
    let triggers = rules
        .webhooks
        .get(&hook)
        .ok_or_else(|| ApiError::NotFound(format!("Webhook {hook} not registered with st2")))?;
    // Every rule on the hook gets its own instance.
    let payload = webhook_payload(&headers, &body, hidden_header, &extra);
    let instances = triggers
        .iter()
        .map(|t| NewInstance {
            id: ids::object_id(),
            trigger: t.reference.clone(),
            trigger_type: Some(WEBHOOK_TYPE.to_owned()),
            payload: payload.clone(),
            occurrence_time: now.clone(),
            status: stormhook_storage::InstanceStatus::Pending,
            trace_id: Some(trace.id.clone()),
            depth: 0,
        })
        .collect::<Vec<_>>();
    if tracing::enabled!(tracing::Level::DEBUG) {
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        tracing::debug!(trigger_instances = ?ids, "webhook accepted");
    }
    // The responder's answer, computed before the delivery is stored (it may say not to store
    // it); sent only once a delivery it asks to store is stored.
    let mut answer = None;
    let mut responder_failed = None;
    if let (Some((reference, store_on_failure)), Some(received)) = (responder, received) {
        let request = stormhook_runtime::HookRequest {
            hook: hook.clone(),
            method,
            query,
            headers: responder_headers(&headers, hidden_header),
            body: received.to_vec(),
            payload: payload.clone(),
            trace_tag: trace.trace_tag.clone(),
        };
        let report = state.packs.runtime().respond(&reference, request).await;
        match report.result {
            Ok(response) => {
                let store = response.store;
                answer = Some(crate::senders::answer(response));
                if !store {
                    tracing::info!(hook = %hook, "webhook delivery answered by its responder, not stored");
                    return Ok(answer.unwrap_or_default());
                }
            }
            Err(e) => {
                let message = format!("the hook's responder failed: {e}");
                state.senders.responder_failed(&hook);
                tracing::warn!(hook = %hook, kind = e.kind(), "{message}");
                if !store_on_failure {
                    return Err(ApiError::BadGateway(format!(
                        "{message}; the delivery is not stored"
                    )));
                }
                responder_failed = Some(e.kind());
            }
        }
    }
    let committed = submit(
        &state,
        NewEvent {
            trace,
            instances,
            delivery,
        },
    )
    .await?;
    if let Committed::Duplicate {
        trace_id,
        trace_tag,
    } = committed
    {
        // Acknowledged (2xx), so the sender stops retrying; nothing stored again.
        state.senders.duplicate(&hook);
        tracing::info!(hook = %hook, original_trace = %trace_tag, "duplicate webhook delivery acknowledged, not stored");
        return Ok((
            StatusCode::OK,
            Json(serde_json::json!({
                "duplicate": true,
                "message": "This delivery was received before; it is not stored again.",
                "trace": {"id": trace_id, "trace_tag": trace_tag},
            })),
        )
            .into_response());
    }
    if let Some(answer) = handshake.or(answer) {
        return Ok(answer);
    }
    if let Some(kind) = responder_failed {
        // The fallback: the answer the hook gives without a responder, and why.
        return Ok((
            StatusCode::ACCEPTED,
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                ),
                (
                    axum::http::HeaderName::from_static("stormhook-responder"),
                    axum::http::HeaderValue::from_str(&format!("failed ({kind}); stored"))
                        .unwrap_or(axum::http::HeaderValue::from_static("failed; stored")),
                ),
            ],
            body,
        )
            .into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Hands the event to the group commit and waits until it is on disk.
async fn submit(state: &AppState, event: NewEvent) -> Result<Committed, ApiError> {
    state.ingest.submit(event).await.map_err(ApiError::from)
}

/// The generic webhook: `{"trigger": "<type or trigger ref>", "payload": {...}}`, validated
/// against the trigger type's payload schema. Returns the trigger as given, its type, and the
/// payload.
async fn generic(state: &AppState, body: &Value) -> Result<(String, String, Value), ApiError> {
    let Value::Object(object) = body else {
        return Err(ApiError::BadRequest(format!(
            "Webhook body needs to be an object, got: {}",
            json_type(body)
        )));
    };
    let trigger = match object.get("trigger") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v) if !stormhook_rules::criteria::is_falsy(v) => v.to_string(),
        _ => return Err(ApiError::BadRequest("Trigger not specified.".into())),
    };
    let payload = object.get("payload").cloned().unwrap_or(Value::Null);
    let refused = |reason: String| {
        ApiError::BadRequest(format!(
            "Trigger payload validation failed and validation is enabled, not dispatching a trigger \"{trigger}\" ({}): {reason}",
            python_repr(&payload)
        ))
    };
    // A ref whose last segment is a uuid names a trigger; anything else names a trigger type.
    let last = trigger.rsplit('.').next().unwrap_or_default();
    let type_ref = if uuid::Uuid::parse_str(last).is_ok_and(|u| u.get_version_num() == 4) {
        let rules = state.packs.rules();
        if rules.webhooks.verifies(&trigger) {
            // Its hook proves its sender by a signature: an API key does not replace it.
            return Err(refused(format!(
                "Trigger \"{trigger}\" belongs to a webhook that verifies its sender's signature; post to the webhook's own url, signed"
            )));
        }
        match rules.webhooks.trigger(&trigger) {
            Some(t) => t.trigger_type.clone(),
            None => {
                return Err(refused(format!(
                    "Trigger with reference \"{trigger}\" doesn't exist in the database"
                )));
            }
        }
    } else {
        trigger.clone()
    };
    let Some(trigger_type) = state.store.trigger_type(&type_ref).await? else {
        return Err(refused(format!(
            "Trigger type with reference \"{type_ref}\" doesn't exist in the database"
        )));
    };
    // A type whose triggers take parameters (`core.st2.webhook` takes `url`) has no trigger of
    // its own: StackStorm's rules engine finds no trigger for the bare type and dispatches
    // nothing. Stormhook refuses it, rather than acknowledging an event no rule may see (or,
    // worse, one that every rule of every url sees, with headers the sender made up).
    let takes_parameters = trigger_type
        .parameters_schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if takes_parameters && trigger == trigger_type.reference {
        return Err(ApiError::BadRequest(format!(
            "Trigger type \"{trigger}\" takes parameters, so no trigger has that ref and nothing would be dispatched; name one of its triggers by ref (<pack>.<uuid>), or post to the webhook's own url"
        )));
    }
    let schema = &trigger_type.payload_schema;
    if schema.as_object().is_some_and(|s| !s.is_empty()) {
        stormhook_automation::schema::validate(schema, &payload).map_err(refused)?;
    }
    Ok((trigger, trigger_type.reference, payload))
}

/// How a body is parsed, by its media type, as StackStorm's router does (§0.3), and, on a
/// hook whose policy `accept`s them, CloudEvents and any other media type.
enum Media {
    /// JSON; `Some(media type)` when it was sent as `text/plain`.
    Json(Option<String>),
    Form,
    /// A structured CloudEvent (`application/cloudevents+json`).
    CloudEvent,
    /// Anything else, kept as text or base64 with its media type.
    Other(String),
}

fn media_type(headers: &HeaderMap, accept: stormhook_senders::Accept) -> Result<Media, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    match media_type.to_ascii_lowercase().as_str() {
        "application/json" => Ok(Media::Json(None)),
        // Standalone st2api parses text/plain as JSON too.
        "text/plain" => Ok(Media::Json(Some(media_type.to_owned()))),
        "application/x-www-form-urlencoded" | "multipart/form-data" => Ok(Media::Form),
        "application/cloudevents+json" if accept.cloudevents => Ok(Media::CloudEvent),
        _ if accept.any_content_type && media_type.len() <= 255 => {
            Ok(Media::Other(media_type.to_owned()))
        }
        other => Err(parse_failed(format!(
            "Unsupported Content-Type: \"{other}\""
        ))),
    }
}

fn parts_method_is_get(method: &str) -> bool {
    method == "GET"
}

/// A body as received: `{"text": ..., "media_type": ...}` when it is UTF-8, else
/// `{"base64": ..., "media_type": ...}` (the media type only when known). Without a media type
/// (the payload's `raw_body`), UTF-8 text is the string itself.
fn raw_body(raw: &[u8], media_type: Option<&str>) -> Value {
    use base64::Engine as _;
    match (std::str::from_utf8(raw), media_type) {
        (Ok(text), None) => Value::String(text.to_owned()),
        (Ok(text), Some(media_type)) => serde_json::json!({"text": text, "media_type": media_type}),
        (Err(_), media_type) => {
            let mut value = serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(raw)
            });
            if let Some(media_type) = media_type {
                value["media_type"] = Value::String(media_type.to_owned());
            }
            value
        }
    }
}

/// A binary-mode CloudEvent's attributes, from its `ce-*` headers (`ce-specversion` present).
fn binary_cloudevent(headers: &HeaderMap) -> Option<Value> {
    headers.get("ce-specversion")?;
    let mut attributes = Map::new();
    for (name, value) in headers {
        if let (Some(attribute), Ok(value)) = (name.as_str().strip_prefix("ce-"), value.to_str()) {
            attributes.insert(attribute.to_owned(), Value::String(value.to_owned()));
        }
    }
    if let Some(content_type) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        attributes.insert(
            "datacontenttype".into(),
            Value::String(content_type.to_owned()),
        );
    }
    Some(Value::Object(attributes))
}

/// A structured-mode CloudEvent: its attributes (everything but the data), and its data as
/// the body (an object or array as it is, `{"data": <value>}` for other JSON values,
/// `{"base64": ...}` for `data_base64`, `{}` when there is none). The required attributes
/// (`specversion`, `id`, `source`, `type`) must be strings.
fn structured_cloudevent(raw: &[u8]) -> Result<(Value, Value), ApiError> {
    let Value::Object(mut event) = json_value(raw)? else {
        return Err(parse_failed("a CloudEvent must be a JSON object".into()));
    };
    for required in ["specversion", "id", "source", "type"] {
        if !event.get(required).is_some_and(Value::is_string) {
            return Err(parse_failed(format!(
                "the CloudEvent has no `{required}` attribute (a string)"
            )));
        }
    }
    let data = match (event.remove("data"), event.remove("data_base64")) {
        (Some(data @ (Value::Object(_) | Value::Array(_))), _) => data,
        (Some(Value::Null) | None, None) => Value::Object(Map::new()),
        (Some(Value::Null) | None, Some(encoded)) => serde_json::json!({"base64": encoded}),
        (Some(other), _) => serde_json::json!({ "data": other }),
    };
    Ok((Value::Object(event), data))
}

fn parse_failed(reason: String) -> ApiError {
    ApiError::BadRequest(format!("Failed to parse request body: {reason}"))
}

fn is_blank(raw: &[u8]) -> bool {
    raw.iter().all(u8::is_ascii_whitespace)
}

/// A JSON body's value; a blank body is `{}`.
fn json_value(raw: &[u8]) -> Result<Value, ApiError> {
    if is_blank(raw) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(raw).map_err(|e| parse_failed(e.to_string()))
}

/// Python's `parse_qs`: every value is a list; blank values are dropped.
fn form(raw: &[u8]) -> Value {
    let mut out = Map::new();
    for (key, value) in form_urlencoded::parse(raw) {
        if value.is_empty() {
            continue;
        }
        let entry = out
            .entry(key.into_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(value.into_owned()));
        }
    }
    Value::Object(out)
}

/// The JSON text of `{headers, headers_lower, body}`, with StackStorm's header casing and
/// without the credentials, cookies and trace tag. `body` is JSON text, spliced in as it is.
fn webhook_payload(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
    extra: &Map<String, Value>,
) -> String {
    const REMOVED: [&str; 4] = ["st2-api-key", "x-auth-token", "cookie", "st2-trace-tag"];
    const OPEN: &[u8] = b"{\"headers\":{";
    let string = |out: &mut Vec<u8>, s: &str| {
        let _ = serde_json::to_writer(out, s);
    };
    let mut cased = Vec::with_capacity(1024 + body.len());
    let mut lower = Vec::with_capacity(512);
    cased.extend_from_slice(OPEN);
    lower.extend_from_slice(b",\"headers_lower\":{");
    for name in headers.keys() {
        if REMOVED.contains(&name.as_str()) || secret == Some(name.as_str()) {
            continue;
        }
        let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let mut joined = values.next().unwrap_or_default().to_owned();
        for more in values {
            joined.push_str(", ");
            joined.push_str(more);
        }
        if cased.len() > OPEN.len() {
            cased.push(b',');
            lower.push(b',');
        }
        string(&mut cased, &title_case(name.as_str()));
        cased.push(b':');
        string(&mut cased, &joined);
        string(&mut lower, name.as_str());
        lower.push(b':');
        string(&mut lower, &joined);
    }
    cased.push(b'}');
    lower.push(b'}');
    cased.extend_from_slice(&lower);
    cased.extend_from_slice(b",\"body\":");
    cased.extend_from_slice(body);
    for (key, value) in extra {
        cased.push(b',');
        string(&mut cased, key);
        cased.push(b':');
        let _ = serde_json::to_writer(&mut cased, value);
    }
    cased.push(b'}');
    // Header values passed `to_str` and the body is JSON that parsed: all of it is UTF-8.
    String::from_utf8(cased).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The request's headers for a responder: names in lower case, without the credentials,
/// cookies and the secret-bearing header (as in the stored payload).
fn responder_headers(headers: &HeaderMap, secret: Option<&str>) -> Vec<(String, String)> {
    const REMOVED: [&str; 3] = ["st2-api-key", "x-auth-token", "cookie"];
    headers
        .iter()
        .filter(|(name, _)| !REMOVED.contains(&name.as_str()) && secret != Some(name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// Python's `str.title()`: a letter after a non-letter is upper case, other letters lower case
/// (`x-github-event` -> `X-Github-Event`, `x-2fa` -> `X-2Fa`).
pub(crate) fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut after_letter = false;
    for c in name.chars() {
        if c.is_alphabetic() {
            if after_letter {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            after_letter = true;
        } else {
            out.push(c);
            after_letter = false;
        }
    }
    out
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) | Value::Bool(_) => "number",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_title_cased_like_python() {
        assert_eq!(title_case("x-github-event"), "X-Github-Event");
        assert_eq!(title_case("content-type"), "Content-Type");
        assert_eq!(title_case("x-2fa"), "X-2Fa");
    }

    #[test]
    fn the_payload_text_decodes_to_headers_and_the_body_as_sent() {
        let raw = br#" {"a": [1, 2.5e3, "\u00e9"], "b": {"c": null}} "#;
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", "push".parse().unwrap());
        headers.append("x-multi", "one".parse().unwrap());
        headers.append("x-multi", "two \"quoted\"".parse().unwrap());
        headers.insert("st2-api-key", "secret".parse().unwrap());
        headers.insert("cookie", "auth-token=secret".parse().unwrap());
        let text = webhook_payload(&headers, raw, None, &Map::new());
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({
                "headers": {"X-Github-Event": "push", "X-Multi": "one, two \"quoted\""},
                "headers_lower": {"x-github-event": "push", "x-multi": "one, two \"quoted\""},
                "body": {"a": [1, 2500.0, "é"], "b": {"c": null}},
            })
        );
        assert!(!text.contains("secret"));
        let none = webhook_payload(&HeaderMap::new(), b"[]", None, &Map::new());
        assert_eq!(
            serde_json::from_str::<Value>(&none).unwrap(),
            serde_json::json!({"headers": {}, "headers_lower": {}, "body": []})
        );
    }

    #[test]
    fn json_bodies_that_could_not_be_stored_and_decoded_are_refused() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"[1,]",
            b"nul",
            b"{} x",
            b"\"\\q\"",
            b"{\"a\":1e400}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\xff\"}",
            deep.as_bytes(),
        ] {
            let refused = json_value(bad).unwrap_err().to_string();
            assert!(
                refused.starts_with("Failed to parse request body: "),
                "{}: {refused}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            json_value(b" [1, {\"a\": \"\\u00e9\"}] ").unwrap(),
            serde_json::json!([1, {"a": "\u{e9}"}])
        );
    }

    #[test]
    fn forms_become_lists() {
        assert_eq!(
            form(b"form=test&a=1&a=2&blank="),
            serde_json::json!({"form": ["test"], "a": ["1", "2"]})
        );
    }
}
