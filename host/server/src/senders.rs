//! The request side of a hook's sender policy (`stormhook_senders`): the secrets it names, read
//! from the datastore or the pack's config (kept a second; a write through this node's API
//! takes effect at once), the handshake answers, the signature check, the delivery id, and the counters of
//! `GET /senders`.
//!
//! A hook with a policy is reached without credentials (its sender cannot send an API key);
//! [`crate::middleware::authenticate`] lets such a request through unauthenticated, and
//! [`gate`] then demands a valid signature, a handshake, or (for a hook that only has a
//! handshake or a replay window) the credentials after all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use stormhook_automation::triggers::Hook;
use stormhook_senders::{Delivery, HookPolicy, Refusal, SecretRef, Secrets};
use stormhook_storage::{DeliveryKey, ids};

use super::{ApiError, AppState};

/// What [`gate`] decided.
pub(crate) enum Gate {
    /// A handshake, answered as computed; `store` when the rule asked for it to be stored too.
    Answer {
        /// The answer.
        response: Response,
        /// Whether the handshake is stored as an event as well.
        store: bool,
    },
    /// A delivery to store, with its replay key when the sender gave an id.
    Deliver(Option<DeliveryKey>),
}

/// Per-hook counts since the server started, for `GET /senders` and the log, and the
/// secrets' values read recently.
#[derive(Debug, Default)]
pub struct SenderStats {
    hooks: Mutex<BTreeMap<String, HookStats>>,
    /// Secret values by (pack, reference), with when they were read: a signed hook under load
    /// would otherwise read (and decrypt) its secret from the store for every delivery. Kept
    /// for [`SECRET_TTL`]; forgotten at once when this node's API writes the datastore.
    secrets: Mutex<HashMap<(String, SecretRef), SecretRead>>,
}

/// When a secret was read, and its value (or why there is none).
type SecretRead = (Instant, Result<String, String>);

/// How long a secret's value is used before it is read again (a rotation made through another
/// node, or by a plugin, takes effect within it).
const SECRET_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, serde::Serialize)]
struct HookStats {
    /// Deliveries refused by verification (401).
    refused: u64,
    /// Deliveries acknowledged as duplicates (not stored again).
    duplicates: u64,
    /// Handshakes answered.
    handshakes: u64,
    /// Calls of the hook's responder that failed (trap, deadline, error, bad answer).
    responder_failures: u64,
    /// The last refusal: its faultstring and when it happened.
    last_refusal: Option<LastRefusal>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct LastRefusal {
    faultstring: String,
    at: String,
}

impl SenderStats {
    fn count(&self, hook: &str, what: impl FnOnce(&mut HookStats)) -> HookStats {
        let mut hooks = self
            .hooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: only hooks that exist are counted, and a hook is a rule's url.
        let stats = hooks.entry(hook.to_owned()).or_default();
        what(stats);
        stats.clone()
    }

    /// Forgets the secrets read (the datastore changed).
    pub(crate) fn forget_secrets(&self) {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Counts a duplicate delivery of `hook`.
    pub(crate) fn duplicate(&self, hook: &str) {
        self.count(hook, |s| s.duplicates += 1);
    }

    /// Counts a failed call of `hook`'s responder.
    pub(crate) fn responder_failed(&self, hook: &str) {
        self.count(hook, |s| s.responder_failures += 1);
    }
}

/// A responder's checked answer as a response.
pub(crate) fn answer(answer: stormhook_runtime::HookResponse) -> Response {
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        answer.body,
    )
        .into_response();
    let headers = response.headers_mut();
    // The responder's own content type, not the default of a byte body (which it keeps when
    // it names none).
    let named = answer
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if named {
        headers.remove(axum::http::header::CONTENT_TYPE);
    }
    for (name, value) in answer.headers {
        // Checked by the runtime; anything that still does not parse is dropped.
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// `GET /senders`: per hook, the deliveries refused, the duplicates acknowledged and the
/// handshakes answered since the server started.
pub(crate) async fn stats(State(state): State<AppState>) -> Json<Value> {
    let hooks = state
        .senders
        .hooks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Json(json!({ "hooks": hooks }))
}

/// Whether a hook with `policy` is reached without credentials: its sender proves itself with
/// a signature (unless the policy also requires an API key), or it has a handshake (whose
/// answer needs none; its ordinary deliveries still do, see [`gate`]).
pub(crate) fn opens(policy: &HookPolicy) -> bool {
    policy.handshake.is_some() || policy.verify.as_ref().is_some_and(|v| !v.require_api_key)
}

/// The header that carries the secret itself (GitLab's token), which must not be stored in
/// the payload.
pub(crate) fn secret_header(policy: &HookPolicy) -> Option<&'static str> {
    match policy.verify.as_ref().map(|v| &v.preset) {
        Some(stormhook_senders::Preset::GitLab) => Some("x-gitlab-token"),
        _ => None,
    }
}

/// Decides what to do with a request to `hook`, whose policy is `policy`: answer a
/// handshake, refuse it (401, nothing stored), or deliver it. `authenticated` says whether
/// the request carried valid credentials (the middleware checked them when present).
pub(crate) async fn gate(
    state: &AppState,
    hook: &Hook,
    policy: &HookPolicy,
    parts: &Parts,
    body: &[u8],
    authenticated: bool,
) -> Result<Gate, ApiError> {
    let secrets = secrets(state, hook, policy).await;
    let url = public_url(state, parts);
    let delivery = delivery(parts, &url, body);
    if let Some(response) = handshake(state, hook, policy, &delivery, &secrets)? {
        return Ok(Gate::Answer {
            response,
            store: policy.store_handshakes,
        });
    }
    match &policy.verify {
        Some(verify) => {
            stormhook_senders::verify(verify, &delivery, &secrets)
                .map_err(|refusal| refused(state, hook, &refusal))?;
            if verify.require_api_key && !authenticated {
                return Err(ApiError::from(crate::auth::AuthError::Missing));
            }
        }
        // A hook with only a replay window or a handshake: ordinary deliveries need the
        // credentials StackStorm asks for.
        None if !authenticated => {
            return Err(ApiError::from(crate::auth::AuthError::Missing));
        }
        None => {}
    }
    let key = stormhook_senders::delivery_id(policy, &delivery).map(|id| DeliveryKey {
        // The url's length first, so no url and id can spell another hook's key.
        key: format!("{}:{} {id}", hook.url.len(), hook.url),
        expires_at: ids::after(policy.replay.window),
    });
    Ok(Gate::Deliver(key))
}

/// The answer to a `GET` of `hook` when it is the policy's handshake (Meta's `hub.challenge`,
/// Dropbox's `challenge`, Graph's `validationToken`), `None` otherwise.
pub(crate) async fn get_handshake(
    state: &AppState,
    hook: &Hook,
    policy: &HookPolicy,
    parts: &Parts,
) -> Result<Option<Response>, ApiError> {
    let secrets = secrets(state, hook, policy).await;
    let url = public_url(state, parts);
    handshake(state, hook, policy, &delivery(parts, &url, &[]), &secrets)
}

/// The request as the checks see it, at the current time.
fn delivery<'a>(parts: &'a Parts, url: &'a str, body: &'a [u8]) -> Delivery<'a> {
    Delivery {
        method: parts.method.as_str(),
        url,
        headers: &parts.headers,
        body,
        now: chrono::Utc::now().timestamp(),
    }
}

/// The policy's secrets; one that cannot be read is the operator's mistake, said in the log
/// and not to the sender (whose delivery then fails verification with "no secret").
async fn secrets(state: &AppState, hook: &Hook, policy: &HookPolicy) -> Secrets {
    resolve(state, hook, policy)
        .await
        .unwrap_or_else(|missing| {
            tracing::error!(hook = %hook.url, "webhook secret not available: {missing}");
            Secrets::default()
        })
}

/// The handshake's answer as a response, counted and logged.
fn handshake(
    state: &AppState,
    hook: &Hook,
    policy: &HookPolicy,
    delivery: &Delivery<'_>,
    secrets: &Secrets,
) -> Result<Option<Response>, ApiError> {
    let Some(answer) = stormhook_senders::handshake(policy, delivery, secrets) else {
        return Ok(None);
    };
    let answer = answer.map_err(|refusal| refused(state, hook, &refusal))?;
    state.senders.count(&hook.url, |s| s.handshakes += 1);
    tracing::info!(hook = %hook.url, "webhook handshake answered");
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        answer.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(Some(response))
}

/// The 401 of a refused delivery: counted, logged (hook and check, never the signature or a
/// secret), and said to the sender as the check that failed.
fn refused(state: &AppState, hook: &Hook, refusal: &Refusal) -> ApiError {
    let message = refusal.to_string();
    let stats = state.senders.count(&hook.url, |s| {
        s.refused += 1;
        s.last_refusal = Some(LastRefusal {
            faultstring: message.clone(),
            at: ids::now(),
        });
    });
    tracing::warn!(
        hook = %hook.url,
        refused = stats.refused,
        "webhook delivery refused: {message}"
    );
    ApiError::Unauthorized(message)
}

/// The values of the policy's secrets, read now (a rotated secret takes effect at once).
/// Errors name the first reference with no value; references with values still count.
async fn resolve(state: &AppState, hook: &Hook, policy: &HookPolicy) -> Result<Secrets, String> {
    let mut secrets = Secrets::default();
    let mut missing = None;
    let Some(verify) = &policy.verify else {
        return Ok(secrets);
    };
    for (refs, out) in [
        (&verify.secrets, &mut secrets.signing),
        (&verify.verify_token, &mut secrets.verify_token),
    ] {
        for r in refs {
            match value(state, hook, r).await {
                Ok(v) => out.push(v.into_bytes()),
                Err(e) => {
                    missing.get_or_insert(e);
                }
            }
        }
    }
    match missing {
        Some(e) if secrets.signing.is_empty() => Err(e),
        Some(e) => {
            tracing::warn!(hook = %hook.url, "one of the webhook's secrets is not available: {e}");
            Ok(secrets)
        }
        None => Ok(secrets),
    }
}

/// A secret's value: from the recent reads, or from the store.
async fn value(state: &AppState, hook: &Hook, r: &SecretRef) -> Result<String, String> {
    let key = (hook.pack.clone(), r.clone());
    let cached = state
        .senders
        .secrets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
        .filter(|(at, _)| at.elapsed() < SECRET_TTL)
        .map(|(_, value)| value.clone());
    if let Some(value) = cached {
        return value;
    }
    let value = read_value(state, hook, r).await;
    state
        .senders
        .secrets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, (Instant::now(), value.clone()));
    value
}

async fn read_value(state: &AppState, hook: &Hook, r: &SecretRef) -> Result<String, String> {
    match r {
        SecretRef::Datastore(name) => {
            let pair = state
                .store
                .kv_get(name)
                .await
                .map_err(|e| format!("reading datastore key `{name}`: {e}"))?
                .ok_or_else(|| {
                    format!("datastore key `{name}` is not set (st2 key set {name} ... --encrypt)")
                })?;
            if !pair.secret {
                return Ok(pair.value);
            }
            let key = state
                .store
                .datastore_key()
                .map_err(|e| format!("the datastore key is not available: {e}"))?;
            key.decrypt(&pair.value)
                .map_err(|e| format!("datastore key `{name}` cannot be decrypted: {e}"))
        }
        SecretRef::Config(name) => {
            let config = state
                .packs
                .config(&hook.pack)
                .ok_or_else(|| format!("pack `{}` has no config", hook.pack))?;
            match config.values.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Null) | None => Err(format!(
                    "key `{name}` of pack `{}`'s config is not set",
                    hook.pack
                )),
                Some(other) => Ok(other.to_string()),
            }
        }
    }
}

/// The URL the sender addressed, as it would have computed it (Twilio signs it): the scheme
/// from `X-Forwarded-Proto` or the API URL, the host from `X-Forwarded-Host` or `Host`, and
/// the path and query as received (with the `/api/v1` prefix). A hook behind a proxy that
/// rewrites more than that names its URL in the policy (`verify.url`).
fn public_url(state: &AppState, parts: &Parts) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto").unwrap_or_else(|| {
        if state.settings.api_url.starts_with("https:") {
            "https"
        } else {
            "http"
        }
    });
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .unwrap_or("localhost");
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
    let path = path.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{path}")
}
